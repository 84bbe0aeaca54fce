"""prefect.yaml's example automation, as the local runner reads it (the e2e test sees it fire)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from drift_retrain.devstack.runner import load_deployments

ROOT = Path(__file__).resolve().parents[2]


def test_the_promote_deployment_is_triggered_by_model_registered_with_the_events_fields() -> None:
    (promote,) = [d for d in load_deployments(ROOT / "prefect.yaml") if d.name == "promote"]
    (trigger,) = promote.triggers
    assert isinstance(trigger, DeploymentEventTrigger)
    assert trigger.name == "promote__automation_1"
    assert trigger.expect == {"drift-retrain.model.registered"}
    assert trigger.match.model_dump() == {"prefect.resource.id": "drift-retrain.model.*"}
    assert trigger.parameters == {
        "model": "{{ event.resource.name }}",
        "version": "{{ event.payload.version }}",
        "uri": "{{ event.payload.uri }}",
        "signal": "{{ event.payload.signal }}",
    }


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
