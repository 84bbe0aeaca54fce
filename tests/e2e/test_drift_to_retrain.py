"""End to end over real HTTP and a real Prefect server: a drift event becomes exactly one flow run and
one registered model version with its lineage; redeliveries and duplicates create nothing more."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest

from drift_retrain.names import (
    DECISION_MADE,
    DRIFT_DETECTED,
    MODEL_REGISTERED,
    SIGNAL_TAG,
    SWEEP,
    drift_run_resource_id,
    flow_run_name,
    flow_run_resource_id,
    model_resource_id,
    monitor_resource_id,
    signal_resource_id,
    workspace_resource_id,
)
from drift_retrain.backends.local.monitor import drift_event, run_monitor
from drift_retrain.backends.local.registry import FileModelRegistry
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import dataset_drift, monitor_breach, sample

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def first_delivery(stack, api, e2e_settings):
    """The monitor's drift event, delivered once and retrained."""
    run = run_monitor(e2e_settings.local_monitors[0], e2e_settings)
    event = drift_event(run)
    response = deliver_events(stack.webhook_url, [event], stack.secret)
    assert response.status_code == 200, response.text
    accepted = response.json()["accepted"]
    # made here: not a duplicate, unless an earlier attempt of this delivery met a 503 after Prefect recorded it
    assert len(accepted) == 1 and (not accepted[0]["duplicate"] or response.retried)
    flow_run = api.wait(accepted[0]["flow_run_id"])
    return run, event, flow_run


def registry(settings) -> FileModelRegistry:
    return FileModelRegistry(settings.resolve(settings.targets[0].registry.path))


def test_drift_event_retrains_and_registers_with_lineage(first_delivery, e2e_settings) -> None:
    run, event, flow_run = first_delivery
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    signal = to_drift_signal(event)  # the model, the window's days (UTC) and the signal's digest
    assert flow_run["name"] == flow_run_name(e2e_settings.targets[0], signal)
    assert re.fullmatch(rf"credit-default-{signal.window_start:%Y-%m-%d}\.\.[0-9-]+-{signal.digest[:8]}", flow_run["name"])
    assert re.fullmatch(r"retrained → credit-default v\d+", flow_run["state"]["message"]), flow_run["state"]
    assert "decision:retrain" in flow_run["tags"]  # set before the run ended: the list filters by it
    assert {"model:credit-default", "kind:dataset_drift", "backend:local", "via:webhook"} <= set(flow_run["tags"])

    versions = registry(e2e_settings).versions("credit-default")
    assert [v.version for v in versions] == [1]
    tags = versions[0].tags
    assert tags[SIGNAL_TAG] == to_drift_signal(event).identity
    assert tags["drift.run_id"] == run.run_id
    assert tags["drift.monitor"] == "credit-default-drift"
    assert float(tags["drift.coefficient"]) == pytest.approx(run.drift_coefficient)
    assert tags["copy.rows_copied"] == str(run.rows_in_window) == "2100"
    assert tags["prefect.flow_run_id"] == flow_run["id"]
    assert tags["decision"].startswith("retrain: ")
    assert 0.5 < versions[0].metrics["roc_auc"] <= 1


def test_the_run_reports_its_artifacts_and_events(first_delivery, api) -> None:
    _, _, flow_run = first_delivery
    keys = {a["key"] for a in api.artifacts(flow_run["id"])}
    assert {"decision-credit-default", "drift-credit-default", "copy-credit-default",
            "training-credit-default", "model-credit-default"} <= keys
    final = api.latest_artifact(flow_run["id"], "decision-credit-default")["data"]
    assert "| data_copied | yes | 2100 rows copied >= minimum" in final  # the decision with every rule checked
    (registered,) = api.events("drift-retrain.model.registered", "drift-retrain.model.credit-default")
    assert registered["payload"]["version"] == 1
    assert {"drift-run", "monitor", "flow-run"} <= {r["prefect.resource.role"] for r in registered["related"]}


def test_one_signal_is_followed_by_its_resource_id_from_drift_detected_to_model_registered(first_delivery, api) -> None:
    """Every event of one signal, the receiver's and the flow's, relates the signal's resource id and the same
    workspace, monitor, drift run, flow run and model ids: an automation matching ``drift-retrain.signal.<digest>``
    (as this query of the server's events does) sees the signal's whole story, in order."""
    _, event, flow_run = first_delivery
    signal = to_drift_signal(event)
    story = [DRIFT_DETECTED, DECISION_MADE, MODEL_REGISTERED]
    query = {"filter": {"related": {"id": [signal_resource_id(signal)]}, "event": {"name": story}}, "limit": 50}
    deadline = time.monotonic() + 60  # the server stores events a few seconds after they arrive
    while True:
        response = api.http.post("/events/filter", json=query)
        response.raise_for_status()
        found = sorted(response.json()["events"], key=lambda e: e["occurred"])
        if len(found) >= len(story) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [e["event"] for e in found] == story  # one of each, in the order they happened

    expected = {
        "signal": signal_resource_id(signal),
        "workspace": workspace_resource_id(signal),
        "monitor": monitor_resource_id(signal),
        "drift-run": drift_run_resource_id(signal),
        "flow-run": flow_run_resource_id(flow_run["id"]),
        "model": model_resource_id("credit-default"),
    }
    assert expected["drift-run"] == f"azureml.drift-run.demo-workspace.{signal.run_id}"
    for each in found:
        related = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in each["related"]}
        ids = {role: id_ for role, id_ in related.items() if role in expected}
        primary = "monitor" if each["event"] == DRIFT_DETECTED else "model"  # the feed's resource is the monitor
        ids[primary] = each["resource"]["prefect.resource.id"]
        assert ids == expected, each["event"]
    assert {e["payload"].get("signal") for e in found[1:]} == {signal.identity}
    assert found[-1]["resource"]["prefect.resource.name"] == "credit-default"  # what the promote trigger reads


def test_redelivery_and_duplicate_subscription_create_no_second_run(first_delivery, stack, api, e2e_settings) -> None:
    _, event, flow_run = first_delivery
    redelivered = deliver_events(stack.webhook_url, [event], stack.secret, delivery_count=1)
    duplicate = copy.deepcopy(event)
    duplicate["id"] = str(uuid.uuid4())  # same drift run, another subscription's event id
    twice = deliver_events(stack.webhook_url, [duplicate], stack.secret)
    for response in (redelivered, twice):
        assert response.status_code == 200
        (accepted,) = response.json()["accepted"]
        assert accepted["duplicate"] and accepted["flow_run_id"] == flow_run["id"]
    same_run = [r for r in api.flow_runs() if r["name"] == flow_run["name"]]
    assert len(same_run) == 1
    assert len(registry(e2e_settings).versions("credit-default")) == 1


def test_v2_monitor_breach_inside_the_cooldown_is_skipped_with_its_reason(first_delivery, stack, api, e2e_settings) -> None:
    # as Azure ML sends it: only the breach tag, on the signal's evaluate step run; its name routes it
    event = monitor_breach(f"monitor-run-{uuid.uuid4().hex[:8]}", e2e_settings.targets[0].workspace,
                           "credit-default-monitor", cloudevents=True)
    response = deliver_events(stack.webhook_url, [event], stack.secret)
    assert response.status_code == 200, response.text
    (accepted,) = response.json()["accepted"]
    flow_run = api.wait(accepted["flow_run_id"])
    assert flow_run["state"]["type"] == "COMPLETED"
    decision = api.latest_artifact(flow_run["id"], "decision-credit-default")
    assert "cooldown: v1 was registered" in decision["description"]
    assert len(registry(e2e_settings).versions("credit-default")) == 1


def test_wrong_secret_creates_nothing(first_delivery, stack, api) -> None:
    before = len(api.flow_runs())
    event = sample("eg_DatasetDriftDetected.json")
    assert deliver_events(stack.webhook_url, event, "not-the-secret").status_code == 401
    assert len(api.flow_runs()) == before


def test_subscription_validation_over_http(stack) -> None:
    response = deliver_events(stack.webhook_url, sample("subscription_validation_event.json"), stack.secret)
    assert response.status_code == 200
    assert response.json() == sample("subscription_validation_response.json")


def test_the_secret_never_reaches_the_receiver_log(first_delivery, stack) -> None:
    log = (stack.logs / "webhook.log").read_text()
    assert "outcome=accepted" in log  # the receiver did log the deliveries
    assert stack.secret not in log


def test_a_window_without_new_data_is_skipped_after_the_copy(stack, api, e2e_settings) -> None:
    event = dataset_drift(
        "empty_1", "empty-monitor", StartTime="2001-01-01T00:00:00Z", EndTime="2001-01-08T00:00:00Z", DriftCoefficient=0.9
    )
    (accepted,) = deliver_events(stack.webhook_url, [event], stack.secret).json()["accepted"]
    flow_run = api.wait(accepted["flow_run_id"])
    assert flow_run["state"]["type"] == "COMPLETED"
    decision = api.latest_artifact(flow_run["id"], "decision-empty-model")
    assert decision["description"].startswith("skip: ")
    assert "0 rows copied < minimum 500" in decision["description"]
    assert "deciding on the event's own data" in decision["data"]  # no monitor record for this run
    assert FileModelRegistry(e2e_settings.resolve(e2e_settings.targets[0].registry.path)).versions("empty-model") == []


def test_the_sweep_reruns_a_failed_retrain_a_bounded_number_of_times(first_delivery, stack, api, e2e_settings) -> None:
    run, _, first_run = first_delivery
    event = dataset_drift(
        "broken_1", "broken-monitor", StartTime=run.window_start.isoformat(), EndTime=run.window_end.isoformat(), DriftCoefficient=0.9
    )
    (accepted,) = deliver_events(stack.webhook_url, [event], stack.secret).json()["accepted"]
    failed = api.wait(accepted["flow_run_id"])
    assert failed["state"]["type"] == "FAILED"
    assert "label column 'no-such-column' not in" in failed["state"]["message"]

    rows = api.sweep_rows(max_attempts=2)
    assert (rows[failed["name"]]["action"], rows[failed["name"]]["detail"]) == ("rerun", "attempt 2 of 2")
    assert rows[first_run["name"]]["action"] == "already handed off"  # the monitor's drift had its run
    deadline = time.monotonic() + 300
    while api.flow_run(failed["id"])["run_count"] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    again = api.wait(failed["id"])  # the same flow run, run again: same signal, same parameters
    assert again["state"]["type"] == "FAILED" and again["run_count"] == 2
    assert len([r for r in api.flow_runs() if r["name"] == failed["name"]]) == 1

    assert api.sweep_rows(max_attempts=2)[failed["name"]]["action"] == "gave up"
    assert api.flow_run(failed["id"])["run_count"] == 2


def test_the_sweep_catches_up_drift_whose_event_never_arrived(first_delivery, stack, api, e2e_settings) -> None:
    first, _, _ = first_delivery
    missed = run_monitor(e2e_settings.local_monitors[0], e2e_settings, window=(first.window_start, first.window_end - timedelta(days=1)))
    signal = to_drift_signal(drift_event(missed))
    webhook_name = flow_run_name(e2e_settings.targets[0], signal)
    assert not [r for r in api.flow_runs() if r["name"] == webhook_name]

    caught_name = flow_run_name(e2e_settings.targets[0], signal, SWEEP)  # named apart from the webhook's: -sweep
    assert caught_name == f"{webhook_name}-sweep"
    row = api.sweep_rows()[caught_name]
    assert row["action"] == "caught up"
    caught = api.flow_run(row["id"])
    assert caught["idempotency_key"] == signal.idempotency_key  # the webhook's own key
    assert "via:sweep" in caught["tags"]
    assert set(caught["parameters"]) >= {"signal"}

    late = deliver_events(stack.webhook_url, [drift_event(missed)], stack.secret)  # the event turns up after all
    (accepted,) = late.json()["accepted"]
    assert accepted["duplicate"] and accepted["flow_run_id"] == caught["id"]
    assert api.sweep_rows()[caught_name]["action"] == "already handed off"
    done = api.wait(caught["id"])
    assert done["state"]["type"] == "COMPLETED"
    assert api.latest_artifact(caught["id"], "decision-credit-default")["description"].startswith("skip: ")


def test_a_missing_model_limit_fails_the_run_and_drift_retrain_limits_restores_it(stack, api, e2e_settings) -> None:
    """Strict: without its model's limit a retrain does not run unguarded; `drift-retrain limits` (what a
    scale-out deploy runs) creates it again and the same run then goes through."""
    api.http.delete("/v2/concurrency_limits/drift-retrain-model-empty-model").raise_for_status()
    event = dataset_drift(
        f"empty_limit_{uuid.uuid4().hex[:8]}", "empty-monitor", StartTime="2001-02-01T00:00:00Z", EndTime="2001-02-08T00:00:00Z", DriftCoefficient=0.9
    )
    (accepted,) = deliver_events(stack.webhook_url, [event], stack.secret).json()["accepted"]
    failed = api.wait(accepted["flow_run_id"])
    assert failed["state"]["type"] == "FAILED"
    assert "drift-retrain-model-empty-model" in failed["state"]["message"]
    assert not [a for a in api.artifacts(failed["id"]) if a["key"] == "copy-empty-model"]  # nothing ran outside the slot

    made = subprocess.run([sys.executable, "-m", "drift_retrain.cli", "limits"], env=stack.env(), capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert "drift-retrain-model-empty-model = 1" in made.stdout
    assert api.http.get("/v2/concurrency_limits/drift-retrain-model-empty-model").json()["limit"] == 1

    api.http.post(f"/flow_runs/{failed['id']}/set_state", json={"state": {"type": "SCHEDULED"}, "force": True}).raise_for_status()
    deadline = time.monotonic() + 300
    while api.flow_run(failed["id"])["run_count"] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert api.wait(failed["id"])["state"]["type"] == "COMPLETED"
