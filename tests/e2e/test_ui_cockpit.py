"""The Prefect UI as the cockpit, against a real server: a drift signal's run carries its artifacts, events
and one log line per external state change; a registration triggers the example follow-up deployment;
a retrain by hand from the Run form's parameters is named, tagged, deduplicated and registered with lineage;
a failure is an event."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, time as midnight, timedelta
from typing import Any

import pytest

from drift_retrain.backends.local.registry import FileModelRegistry
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.names import GATE_LABEL, SIGNAL_TAG, digest, window_span
from drift_retrain.testing import DEMO_WORKSPACE, dataset_drift

pytestmark = pytest.mark.e2e

MODEL = "cockpit-model"


def _recent_window() -> tuple[datetime, datetime]:
    """The 30 days up to the coming midnight UTC: all the demo's landing data (7 days ending yesterday), within the
    31 days and the day ahead a signal's window may span (issue 14: 2026-01-01..2030-01-01 is now refused)."""
    end = datetime.combine(datetime.now(UTC).date() + timedelta(days=1), midnight(), tzinfo=UTC)
    return end - timedelta(days=30), end


def _registry(settings) -> FileModelRegistry:
    return FileModelRegistry(settings.resolve(settings.target("cockpit").registry.path))


def test_the_run_page_has_every_artifact_keyed_per_model(cockpit_run, api, e2e_settings) -> None:
    assert cockpit_run["state"]["type"] == "COMPLETED", cockpit_run["state"]
    (decision,) = [a for a in api.artifacts(cockpit_run["id"]) if a["key"] == "decision-cockpit-model"]  # one card
    assert decision["data"].startswith("# Decision for `cockpit-model`: **Retrain** (final)")
    assert decision["description"].endswith("(final decision)")
    for rule in ("already_handled", "drift", "min_rows", "cooldown", "data_copied"):
        assert f"| {rule} | yes |" in decision["data"]

    drift = api.latest_artifact(cockpit_run["id"], "drift-cockpit-model")
    assert drift["type"] == "markdown" and "vs threshold 0.300" in drift["description"]
    assert drift["data"].count("vs threshold **0.300**") == 1  # the dataset's threshold once, not per feature
    rows = _table(drift["data"])
    assert [r["rank"] for r in rows] == [str(n) for n in range(1, len(rows) + 1)]
    assert all({"feature", "contribution", "PSI", "KS statistic", "reference", "current"} <= set(r) for r in rows)
    assert "threshold" not in rows[0]
    by_feature = {r["feature"]: r for r in rows}
    assert _mean(by_feature["age"]["current"]) < _mean(by_feature["age"]["reference"])  # the demo's window: younger
    assert all(r["histogram"].startswith(f"![histogram {r['rank']}](data:image/png;base64,") for r in rows)

    (copy,) = json.loads(api.latest_artifact(cockpit_run["id"], "copy-cockpit-model")["data"])
    assert copy["rows_copied"] == 2100 and copy["status"] == "Succeeded"
    assert list(copy)[:2] == ["landing", "copied_to"]  # where the data landed first, then where it went
    assert copy["landing"] == str(e2e_settings.resolve(e2e_settings.target("cockpit").copy_step.source))
    assert copy["data_read"].endswith(" kB")
    training = api.latest_artifact(cockpit_run["id"], "training-cockpit-model")
    assert {"roc_auc", "accuracy"} <= {r["metric"] for r in json.loads(training["data"])}
    assert training["description"].startswith("HistGradientBoostingClassifier on ")
    assert " reference + 2,100 window), " in training["description"] and "held out" in training["description"]

    model = api.latest_artifact(cockpit_run["id"], "model-cockpit-model")
    (version,) = [v for v in _registry(e2e_settings).versions(MODEL) if v.version == 1]
    folder = e2e_settings.resolve(e2e_settings.target("cockpit").registry.path) / MODEL / "1"
    assert f"- {MODEL} v1 in the local registry: {folder.resolve()}" in model["data"].splitlines()
    assert "](file:" not in model["data"]  # the folder as text: a file:// link opens nothing from the UI
    assert version.tags["prefect.flow_run_id"] == cockpit_run["id"]


def _table(markdown: str) -> list[dict[str, str]]:
    """A markdown artifact's table, row by column name."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]  # noqa: E731
    return [dict(zip(split(lines[0]), split(line), strict=True)) for line in lines[2:]]


def _mean(cell: str) -> float:
    return float(re.match(r"mean ([\d,.]+)", cell).group(1).replace(",", ""))


def test_the_events_name_the_model_and_relate_the_signal(cockpit_run, api) -> None:
    identity = _registry_identity(cockpit_run, api)
    for name in ("drift-retrain.decision.made", "drift-retrain.model.registered"):
        events = api.events(name, f"drift-retrain.model.{MODEL}", signal=identity)
        # this run's own (tests/e2e/test_browser.py runs the same signal again: a skip, with its own decision)
        (event,) = [e for e in events if f"prefect.flow-run.{cockpit_run['id']}" in _related_ids(e)]
        roles = {r["prefect.resource.role"]: r for r in event["related"]}
        assert roles["signal"]["prefect.resource.name"] == identity
        assert {"drift-run", "monitor", "flow-run"} <= set(roles)
        assert roles["flow-run"]["prefect.resource.id"] == f"prefect.flow-run.{cockpit_run['id']}"


def _related_ids(event: dict[str, Any]) -> set[str]:
    return {r["prefect.resource.id"] for r in event["related"]}


def _registry_identity(flow_run: dict[str, Any], api) -> str:
    signal = api.flow_run(flow_run["id"])["parameters"]["signal"]
    return to_drift_signal(signal["raw_event"]).identity


def test_the_log_has_one_line_per_external_state_change_with_the_run_id(cockpit_run, api) -> None:
    lines = api.logs(cockpit_run["id"], until="Running -> Completed")
    copy_lines = [line for line in lines if line.startswith("copy run copy-")]
    training_lines = [line for line in lines if line.startswith("training run train-")]
    assert [line.split(": ", 1)[1] for line in copy_lines] == ["(started) -> InProgress", "InProgress -> Succeeded"]
    assert [line.split(": ", 1)[1] for line in training_lines] == ["(started) -> Running", "Running -> Completed"]
    assert len({line.split(":")[0] for line in copy_lines}) == 1  # the same run id on both lines


def _promote_runs(api, model: str, version: int) -> list[dict[str, Any]]:
    runs = api.flow_runs("promote/promote")
    return [r for r in runs if r["parameters"].get("model") == model and r["parameters"].get("version") == version]


def test_registering_a_model_runs_the_follow_up_deployment(cockpit_run, api) -> None:
    """prefect.yaml's trigger on drift-retrain.model.registered, applied by the runner, fires on the server."""
    deadline = time.monotonic() + 180  # the trigger fires within seconds; the bound is for a busy machine
    while not (runs := _promote_runs(api, MODEL, 1)) and time.monotonic() < deadline:
        time.sleep(0.5)
    (promote,) = runs  # exactly one follow-up per registration
    assert promote["parameters"]["signal"] == _registry_identity(cockpit_run, api)
    assert promote["parameters"]["uri"].endswith("/cockpit-model/1/model.joblib")
    assert promote["parameters"]["gate"] == "passed"  # only a version that passed the gate is promoted
    (registered,) = api.events("drift-retrain.model.registered", f"drift-retrain.model.{MODEL}", signal=promote["parameters"]["signal"])
    assert registered["resource"][GATE_LABEL] == "passed" and registered["payload"]["gate"] == "passed"
    done = api.wait(promote["id"])
    assert done["name"] == f"promote-{MODEL}-v1"  # the follow-up says which version it is about
    assert done["state"]["type"] == "COMPLETED", done["state"]
    (plan,) = [a for a in api.artifacts(done["id"]) if a["key"] == "promote-cockpit-model"]
    assert plan["description"].startswith("would deploy cockpit-model v1 from ")


def test_a_retrain_by_hand_from_the_run_form_is_named_tagged_registered_and_deduplicated(cockpit_run, api, e2e_settings) -> None:
    start, end = _recent_window()
    window = {"window_start": start.isoformat(), "window_end": end.isoformat()}
    run_id = f"manual-cockpit-{start:%Y%m%dT%H%MZ}-{end:%Y%m%dT%H%MZ}"
    first = api.wait(api.run_deployment("drift-to-retrain/drift-to-retrain", {"target": "cockpit", **window}))
    assert first["state"]["type"] == "COMPLETED", first["state"]
    # the model, "manual", the window's days and the signal's digest: the target is not said twice
    assert first["name"] == f"cockpit-model-manual-{window_span(start, end)}-{digest(f'{DEMO_WORKSPACE.lower()}/runs/{run_id}')[:8]}"
    assert first["state"]["message"].startswith("retrained → cockpit-model v") and "decision:retrain" in first["tags"]
    assert {"model:cockpit-model", "target:cockpit", "kind:manual", "via:manual", "backend:local"} <= set(first["tags"])
    (by_hand,) = [v for v in _registry(e2e_settings).versions(MODEL) if v.tags["prefect.flow_run_id"] == first["id"]]
    assert by_hand.tags["drift.run_id"] == run_id
    assert by_hand.tags["drift.kind"] == "manual"
    assert by_hand.tags[SIGNAL_TAG].endswith(f"/runs/{run_id}")
    count = len(_registry(e2e_settings).versions(MODEL))

    again = api.wait(api.run_deployment("drift-to-retrain/drift-to-retrain", {"target": "cockpit", "force": True, **window}))
    assert again["state"]["type"] == "COMPLETED"
    decision = api.latest_artifact(again["id"], "decision-cockpit-model")
    assert decision["description"].startswith(f"skip: already handled: registered as cockpit-model v{by_hand.version}")
    assert again["state"]["message"] == f"skipped: already handled: registered as cockpit-model v{by_hand.version}"
    assert "decision:skip" in again["tags"]
    assert len(_registry(e2e_settings).versions(MODEL)) == count  # force never registers a signal twice


def test_parameters_that_name_no_configured_target_are_refused_by_the_server(stack, api) -> None:
    deployment_id = api.http.get("/deployments/name/drift-to-retrain/drift-to-retrain").json()["id"]
    response = api.http.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": {"target": "nope"}})
    assert response.status_code == 409, response.text
    assert "nope" in response.text


def test_a_failed_retrain_emits_retrain_failed_with_its_error(stack, api) -> None:
    start, end = _recent_window()
    event = dataset_drift(
        "broken_cockpit_1", "broken-monitor", StartTime=start.isoformat(), EndTime=end.isoformat(), DriftCoefficient=0.9
    )
    (accepted,) = deliver_events(stack.webhook_url, [event], stack.secret).json()["accepted"]
    failed = api.wait(accepted["flow_run_id"])
    assert failed["state"]["type"] == "FAILED"
    identity = to_drift_signal(event).identity
    (failure,) = api.events("drift-retrain.retrain.failed", "drift-retrain.model.broken-model", signal=identity)
    assert "label column 'no-such-column' not in" in failure["payload"]["error"]
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in failure["related"]}
    assert roles["flow-run"] == f"prefect.flow-run.{failed['id']}"
    assert roles["drift-run"] == "azureml.drift-run.demo-workspace.broken_cockpit_1"


def test_promote_refuses_a_version_that_did_not_pass_the_gate(stack, api) -> None:
    """Run by hand (or by another automation) for a version registered without a gate: it fails, saying why,
    and records no plan."""
    parameters = {"model": MODEL, "version": 99, "uri": "x", "signal": "s", "gate": "off"}
    refused = api.wait(api.run_deployment("promote/promote", parameters))
    assert refused["state"]["type"] == "FAILED"
    assert refused["state"]["message"] == f"refused: {MODEL} v99 did not pass the champion/challenger gate (gate: off)"
    assert not [a for a in api.artifacts(refused["id"]) if a["key"] == "promote-cockpit-model"]


def test_the_automation_runs_promote_only_for_a_version_that_passed_the_gate(stack, api) -> None:
    """Two registered events on the real server: one without a passed gate, then one with. The second's promote
    run shows the trigger has seen both; the first has none."""
    import asyncio
    from prefect.events import Event
    from prefect.events.clients import PrefectEventsClient

    model = f"gate-probe-{uuid.uuid4().hex[:6]}"

    def registered(version: int, gate: str) -> Event:
        resource = {"prefect.resource.id": f"drift-retrain.model.{model}", "prefect.resource.name": model, GATE_LABEL: gate}
        payload = {"version": version, "uri": f"probe/{version}", "signal": f"probe-{version}", "gate": gate}
        return Event(event="drift-retrain.model.registered", resource=resource, payload=payload)

    async def emit() -> None:
        async with PrefectEventsClient(api_url=stack.api_url) as client:
            await client.emit(registered(1, "off"))
            await client.emit(registered(2, "passed"))

    asyncio.run(emit())
    deadline = time.monotonic() + 180
    while not _promote_runs(api, model, 2) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(_promote_runs(api, model, 2)) == 1
    time.sleep(5)  # the events arrived in order; give the first any time it would have needed besides
    assert _promote_runs(api, model, 1) == []
