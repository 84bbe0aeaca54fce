"""prefect.yaml's example automation, as the local runner reads it (the e2e test sees it fire)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

import yaml
from prefect.cli.deploy._triggers import _initialize_deployment_triggers

from drift_retrain.devstack.runner import load_deployments

ROOT = Path(__file__).resolve().parents[2]


def test_the_promote_deployment_is_triggered_by_model_registered_with_the_events_fields() -> None:
    (promote,) = [d for d in load_deployments(ROOT / "prefect.yaml") if d.name == "promote"]
    (trigger,) = promote.triggers
    assert isinstance(trigger, DeploymentEventTrigger)
    assert trigger.name == "promote-gated-model-versions"  # not promote__automation_1
    assert "passed the champion/challenger gate" in trigger.description  # not just "A custom trigger"
    assert trigger.expect == {"drift-retrain.model.registered"}
    # only a version that passed the gate: the registered event labels its model resource so
    assert trigger.match.model_dump() == {"prefect.resource.id": "drift-retrain.model.*", "drift-retrain.gate": "passed"}
    assert trigger.parameters == {
        "model": "{{ event.resource.name }}",
        "version": "{{ event.payload.version }}",
        "uri": "{{ event.payload.uri }}",
        "signal": "{{ event.payload.signal }}",
        "gate": "{{ event.payload.gate }}",
    }
    trigger._deployment_id = uuid.UUID(int=1)  # set when the deployment is applied
    automation = trigger.as_automation()  # what the UI lists under Automations
    assert (automation.name, automation.description) == (trigger.name, trigger.description)


def test_prefect_deploy_keeps_the_automations_name_and_description_too() -> None:
    """`prefect deploy` names an unnamed trigger <deployment>__automation_<n> (prefect/cli/deploy/_triggers.py)."""
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    (spec,) = [d for d in document["deployments"] if d["name"] == "promote"]
    (trigger,) = _initialize_deployment_triggers("promote", spec["triggers"])
    assert trigger.name == "promote-gated-model-versions" and trigger.description.startswith("drift-retrain.model.registered")


def test_a_malformed_trigger_stops_the_runner_naming_the_deployment_and_the_trigger(tmp_path: Path) -> None:
    spec = tmp_path / "prefect.yaml"
    spec.write_text(f"""
deployments:
  - name: promote
    entrypoint: {ROOT}/flows/promote.py:promote
    triggers:
      - type: event
        expect: [drift-retrain.model.registered]
        posture: Sideways
""")
    with pytest.raises(SystemExit, match=r"deployment 'promote', trigger 1: .*posture"):
        load_deployments(spec)


def test_the_trigger_matches_a_registered_version_only_when_it_passed_the_gate() -> None:
    """Prefect's own matching of the trigger's ``match`` against the event's resource (the e2e test sees it on
    a real server): the resource ``report_model`` emits, labelled by the decision's gate."""
    from prefect.events.schemas.events import Resource

    from drift_retrain.names import GATE_FAILED, GATE_OFF, GATE_PASSED, model_resource

    (promote,) = [d for d in load_deployments(ROOT / "prefect.yaml") if d.name == "promote"]
    (trigger,) = promote.triggers
    assert trigger.match.matches(Resource(model_resource("credit-default", GATE_PASSED)))
    for gate in (GATE_OFF, GATE_FAILED, None):
        assert not trigger.match.matches(Resource(model_resource("credit-default", gate)))
