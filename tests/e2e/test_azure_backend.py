"""The same drift-to-retrain flow with ``backend = "azure"``: a real Prefect server and runner, the real
SDKs, and the loopback Azure on the other side. Assertions are on what Azure received."""

from __future__ import annotations

import time
import uuid

import pytest

from drift_retrain.devstack.sender import deliver_events
from drift_retrain.fake_azure import TENANT, FakeAzure, RunScript
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.names import SIGNAL_TAG
from drift_retrain.testing import DEMO_WORKSPACE, dataset_drift
from tests.e2e.conftest import AZURE_FACTORY

pytestmark = pytest.mark.e2e

WINDOW = {"StartTime": "2026-11-01T00:00:00Z", "EndTime": "2026-11-08T00:00:00Z"}


def deliver(stack, event) -> dict:
    response = deliver_events(stack.webhook_url, [event], stack.secret)
    assert response.status_code == 200, f"{response}: {response.text}"
    return response.json()["accepted"][0]


@pytest.fixture(scope="module")
def azure_retrain(stack, api, fake_azure: FakeAzure):
    run_id = f"azure-credit-drift_{int(time.time() * 1000)}"
    event = dataset_drift(run_id, monitor="azure-credit-drift", **WINDOW)
    fake_azure.ml.datadrift.publish(  # v1 drift results live with the monitor, in the datadrift service
        event["data"]["DataDriftId"], run_id, 0.58,
        {"income": {"datadrift_contribution": 0.41}, "utilization": {"datadrift_contribution": 0.33}},
    )
    fake_azure.ml.script_next_job(  # the training's metrics logged by its step, not by the pipeline run
        RunScript(steps=(("NotStarted", 0.3), ("Running", 1.0)), final="Completed"),
        steps={"train": {"roc_auc": 0.81, "accuracy": 0.77}},
    )
    accepted = deliver(stack, event)
    flow_run = api.wait(accepted["flow_run_id"])
    return event, flow_run


def test_azure_target_runs_every_step_against_azure(azure_retrain, fake_azure: FakeAzure) -> None:
    event, flow_run = azure_retrain
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    assert "backend:azure" in flow_run["tags"]
    signal = to_drift_signal(event)

    # Data Factory: one run, parameters templated from the signal.
    runs = fake_azure.datafactory.created("copy-drift-window")
    assert len(runs) == 1
    created = fake_azure.sent("POST", "/pipelines/copy-drift-window/createRun")
    assert created[0].body == {
        "windowStart": "2026-11-01T00:00:00+00:00",
        "windowEnd": "2026-11-08T00:00:00+00:00",
        "monitor": "azure-credit-drift",
        "dataset": event["data"]["TargetDatasetId"],
    }
    assert fake_azure.sent("POST", "/queryActivityruns"), "copy statistics were not read from the activity runs"

    # The v1 published pipeline: submitted once, fed the copy's output.
    submits = fake_azure.sent("POST", "/PipelineRuns/PipelineSubmit/8b2f6c1e-0000-4000-8000-000000000001")
    assert len(submits) == 1
    assignments = submits[0].body["ParameterAssignments"]
    assert assignments["training_data"].startswith("azureml://datastores/training/paths/azure-credit/2026-11-08_")
    assert assignments["drift_run"] == signal.run_id
    assert submits[0].body["ExperimentName"] == "retrain-azure-credit"

    # The registry: one version, carrying the lineage back to the drift run, the ADF run and the flow run.
    versions = fake_azure.ml.models["azure-credit"]
    assert len(versions) == 1
    tags = versions[0]["properties"]["tags"]
    assert tags[SIGNAL_TAG] == signal.identity
    assert tags["copy.run_id"] == runs[0].run_id
    assert tags["training.job_id"] == [j.name for j in fake_azure.ml.jobs.values() if j.kind == "published_pipeline"][0]
    assert tags["prefect.flow_run_id"] == flow_run["id"]
    assert tags["drift.coefficient"] == f"{signal.drift_coefficient:.6f}"
    properties = versions[0]["properties"]["properties"]
    assert "roc_auc = 0.8100; no champion yet" in properties.get("decision", tags["decision"])  # long values live in properties
    assert versions[0]["properties"]["modelUri"].startswith("azureml://")
    assert versions[0]["properties"]["properties"]["metric.roc_auc"] == "0.81"


def test_azure_run_reports_details_decision_and_model(azure_retrain, api) -> None:
    _, flow_run = azure_retrain
    keys = {a["key"] for a in api.artifacts(flow_run["id"])}
    assert {"decision-azure-credit", "drift-azure-credit", "copy-azure-credit", "training-azure-credit", "model-azure-credit"} <= keys
    decision = api.latest_artifact(flow_run["id"], "decision-azure-credit")["data"]
    assert "drift coefficient 0.580 (drift run)" in decision  # the drift run's metrics, not the event's
    drift = api.latest_artifact(flow_run["id"], "drift-azure-credit")["data"]
    assert "| not available from Azure ML | not available from Azure ML | not available from Azure ML |" in drift


def test_the_model_report_links_the_portals_and_the_log_has_each_state_change_once(azure_retrain, api, fake_azure: FakeAzure) -> None:
    """Deep links to the Data Factory run, the ML job and the model; one log line per external state change."""
    _, flow_run = azure_retrain
    adf_run = fake_azure.datafactory.created("copy-drift-window")[0].run_id
    (job,) = [j.name for j in fake_azure.ml.jobs.values() if j.kind == "published_pipeline"]
    model = api.latest_artifact(flow_run["id"], "model-azure-credit")["data"]
    assert f"(https://adf.azure.com/en/monitoring/pipelineruns/{adf_run}?factory={AZURE_FACTORY})" in model
    assert f"(https://ml.azure.com/runs/{job}?wsid={DEMO_WORKSPACE}&tid={TENANT})" in model
    assert f"(https://ml.azure.com/model/azure-credit:1/details?wsid={DEMO_WORKSPACE}&tid={TENANT})" in model

    for step, run_id, final in (("copy", adf_run, "Succeeded"), ("training", job, "Completed")):
        lines = api.logs(flow_run["id"], until=f"-> {final}")
        changes = [line.split(": ", 1)[1] for line in lines if line.startswith(f"{step} run {run_id}: ")]
        assert changes[0].startswith("(started) -> ") and changes[-1].endswith(f"-> {final}"), changes
        states = [change.split(" -> ")[1] for change in changes]
        assert len(states) == len(set(states)), changes  # each state once, however many polls saw it


def test_redelivery_starts_nothing_in_azure(azure_retrain, stack, api, fake_azure: FakeAzure) -> None:
    event, flow_run = azure_retrain
    again = dict(event, id=str(uuid.uuid4()))  # a second subscription: same drift run, another event id
    accepted = deliver(stack, again)
    assert accepted["duplicate"] and accepted["flow_run_id"] == flow_run["id"]
    assert len(fake_azure.datafactory.created("copy-drift-window")) == 1
    assert len(fake_azure.ml.models["azure-credit"]) == 1


def test_a_challenger_worse_than_the_champion_is_not_registered_and_the_report_says_why(
    azure_retrain, stack, api, fake_azure: FakeAzure
) -> None:
    """The gate on the azure backend: the champion's metrics come from its version's properties in the
    workspace registry; a worse model is trained but not registered, and the decision report shows the gate."""
    run_id = f"azure-credit-drift_{int(time.time() * 1000)}"
    later = {"StartTime": "2026-11-08T00:00:00Z", "EndTime": "2026-11-15T00:00:00Z"}  # not covered by the champion's window
    event = dataset_drift(run_id, monitor="azure-credit-drift", **later)
    fake_azure.ml.datadrift.publish(event["data"]["DataDriftId"], run_id, 0.61)
    fake_azure.ml.script_next_job(RunScript(steps=(("Running", 0.3),), final="Completed"), metrics={"roc_auc": 0.7})

    flow_run = api.wait(deliver(stack, event)["flow_run_id"])

    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    assert len(fake_azure.ml.models["azure-credit"]) == 1  # still only the champion
    decision = api.latest_artifact(flow_run["id"], "decision-azure-credit")["data"]
    assert "| gate | no | challenger roc_auc = 0.7000 does not beat champion v1 = 0.8100 (needed +0) |" in decision
    training = api.latest_artifact(flow_run["id"], "training-azure-credit")
    assert "vs champion v1" in training["description"]


def test_cancelling_the_flow_run_cancels_the_data_factory_run(stack, api, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(
        "copy-drift-window", RunScript(steps=(("Queued", 0.5), ("InProgress", 3600.0)), never_finishes=True)
    )
    before = len(fake_azure.datafactory.created("copy-drift-window"))
    event = dataset_drift(f"azure-stuck-drift_{int(time.time() * 1000)}", monitor="azure-stuck-drift",
                          StartTime="2026-08-01T00:00:00Z", EndTime="2026-08-08T00:00:00Z")  # a window no version covers
    flow_run_id = deliver(stack, event)["flow_run_id"]

    deadline = time.monotonic() + 120
    while len(fake_azure.datafactory.created("copy-drift-window")) == before:
        assert time.monotonic() < deadline, "the flow never started the Data Factory run"
        time.sleep(0.3)
    adf_run = fake_azure.datafactory.created("copy-drift-window")[-1]
    while adf_run.status_calls < 2:  # the flow is in its wait: it has polled the run and will poll again
        assert time.monotonic() < deadline, "the flow never polled the Data Factory run"
        time.sleep(0.1)

    response = api.http.post(f"/flow_runs/{flow_run_id}/set_state", json={"state": {"type": "CANCELLING"}, "force": True})
    response.raise_for_status()
    final = api.wait(flow_run_id, timeout=300)
    assert final["state"]["type"] == "CANCELLED", final["state"]
    deadline = time.monotonic() + 120
    while adf_run.cancel_calls == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert adf_run.cancel_calls >= 1, "cancelling the flow run left the Data Factory run running"
    assert adf_run.status() in {"Canceling", "Cancelled"}
    report = api.latest_artifact(flow_run_id, "cancelled-azure-credit")
    assert f"| copy | {adf_run.run_id} |" in report["data"] and "| cancel requested |" in report["data"]


def test_cancelling_the_flow_run_while_it_trains_cancels_the_ml_job_and_the_report_says_so(stack, api, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script("copy-drift-window", RunScript(steps=(("InProgress", 0.3),), final="Succeeded"))
    fake_azure.ml.script_next_job(RunScript(steps=(("Running", 3600.0),), never_finishes=True), metrics={"roc_auc": 0.99})
    run_id = f"azure-stuck-drift_{int(time.time() * 1000)}"
    flow_run_id = deliver(stack, dataset_drift(run_id, monitor="azure-stuck-drift", StartTime="2026-09-01T00:00:00Z",
                                               EndTime="2026-09-08T00:00:00Z"))["flow_run_id"]

    def job():
        found = [j for j in fake_azure.ml.jobs.values() if j.body.get("ParameterAssignments", {}).get("drift_run") == run_id]
        return found[0] if found else None

    deadline = time.monotonic() + 120
    while job() is None or job().run.status_calls < 1:  # submitted, and the flow is waiting on it (its hold)
        assert time.monotonic() < deadline, "the flow never waited on its training run"
        time.sleep(0.1)

    api.http.post(f"/flow_runs/{flow_run_id}/set_state", json={"state": {"type": "CANCELLING"}, "force": True}).raise_for_status()
    final = api.wait(flow_run_id, timeout=300)
    assert final["state"]["type"] == "CANCELLED", final["state"]
    deadline = time.monotonic() + 120
    while job().run.cancel_calls == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job().run.cancel_calls >= 1, "cancelling the flow run left the training run running"
    assert job().status() in {"CancelRequested", "Canceled"}
    report = api.latest_artifact(flow_run_id, "cancelled-azure-credit")
    assert f"| training | {job().name} |" in report["data"] and "| cancel requested |" in report["data"]


def test_the_sweep_catches_up_a_monitor_breach_whose_event_never_arrived(stack, api, fake_azure: FakeAzure) -> None:
    """The monitor's data drift signal breached; its evaluate step's RunStatusChanged never arrived. The sweep
    finds the step two levels under the monitor's pipeline job and hands off the event Azure ML would have
    sent; the real event, when it turns up late, lands on that run as a duplicate."""
    signal = "azure-credit-drift-data-drift"  # <monitor>-<signal>, so routing by signal name finds the target
    rows = [{"metric_name": "JensenShannonDistance", "metric_value": 0.31, "threshold_value": 0.1, "group": "income"}]
    quiet = [{"metric_name": "PopulationStabilityIndex", "metric_value": 0.01, "threshold_value": 0.2, "group": "score"}]
    tree = fake_azure.ml.add_monitor_run(
        DEMO_WORKSPACE, "azure-credit-drift", {signal: rows, "azure-credit-drift-prediction-drift": quiet},
        experiment="azure-credit-drift",
    )
    event = tree.breach_event(signal)  # never delivered
    run_id = event["data"]["runId"]  # the evaluate step's run, not the pipeline job's
    assert run_id == tree.evaluate[signal].run_id != tree.job.name
    digest = to_drift_signal(event).digest[:8]  # names end in the signal's digest; the sweep's in -sweep too
    assert not [r for r in api.flow_runs() if digest in r["name"]]

    (name, row), = [(n, r) for n, r in api.sweep_rows().items() if r["detail"].startswith(f"drift run {run_id} ")]
    assert name.startswith("azure-credit-") and name.endswith(f"-{digest}-sweep"), name
    assert row["action"] == "caught up", row
    caught = api.flow_run(row["id"])
    assert caught["idempotency_key"] == to_drift_signal(event).idempotency_key  # the webhook's own key
    assert "via:sweep" in caught["tags"]
    assert fake_azure.sent("GET", "/workspaces/demo-workspace/jobs?")  # the pipeline jobs, through ARM Jobs - List
    assert fake_azure.sent("GET", f"/runs/{tree.job.name}/children")  # then its signals through run history

    late = deliver(stack, event)  # the event turns up after all
    assert late["duplicate"] and late["flow_run_id"] == caught["id"]
    assert api.sweep_rows()[name]["action"] == "already handed off"
    assert len(api.flow_runs_like(name)) == 1
    assert api.wait(caught["id"])["state"]["type"] == "COMPLETED"


def test_a_monitor_run_that_breaches_several_signals_retrains_once_and_lists_the_breached_features(
    stack, api, fake_azure: FakeAzure
) -> None:
    """One monitor run, three signals, two breached: Azure ML sends one RunStatusChanged per evaluate step, each
    tag built as the component builds it. Both are accepted (two drift runs); the first to hold the model's slot
    retrains and its decision lists its breached features; the other is covered by it (same monitor run)."""
    data, prediction = "azure-credit-drift-data-drift", "azure-credit-drift-prediction-drift"
    tree = fake_azure.ml.add_monitor_run(
        DEMO_WORKSPACE,
        "azure-credit-drift",
        {
            data: [
                {"metric_name": "JensenShannonDistance", "metric_value": 0.31, "threshold_value": 0.1, "group": "income"},
                {"metric_name": "TwoSampleKolmogorovSmirnovTest", "metric_value": 0.01, "threshold_value": 0.05, "group": "age"},
            ],
            prediction: [{"metric_name": "PopulationStabilityIndex", "metric_value": 0.4, "threshold_value": 0.2}],
            "azure-credit-drift-data-quality": [
                {"metric_name": "NullValueRate", "metric_value": 0.0, "threshold_value": 0.1, "group": "score"}
            ],
        },
        experiment="azure-credit-drift",
    )
    fake_azure.ml.script_next_job(RunScript(steps=(("Running", 0.5),), final="Completed"), steps={"train": {"roc_auc": 0.99}})
    submits = len(fake_azure.sent("POST", "/PipelineSubmit/"))
    versions = len(fake_azure.ml.models.get("azure-credit", []))

    response = deliver_events(stack.webhook_url, [tree.breach_event(data), tree.breach_event(prediction)], stack.secret)

    assert response.status_code == 200, response.text
    accepted = response.json()["accepted"]
    assert len(accepted) == 2 and not any(a["duplicate"] for a in accepted)
    runs = [api.wait(a["flow_run_id"]) for a in accepted]
    assert all(r["state"]["type"] == "COMPLETED" for r in runs), [r["state"] for r in runs]
    decisions = [api.latest_artifact(r["id"], "decision-azure-credit")["data"] for r in runs]
    retrained = [d for d in decisions if "**Retrain**" in d]
    [skipped] = [d for d in decisions if "**Skip**" in d]
    assert len(retrained) == 1
    assert f"retrained for another signal of monitor run {tree.job.name}" in skipped
    assert len(fake_azure.sent("POST", "/PipelineSubmit/")) == submits + 1  # one training
    assert len(fake_azure.ml.models.get("azure-credit", [])) == versions + 1  # one new version
    listed = {data: ["income: JensenShannonDistance 0.31", "age: TwoSampleKolmogorovSmirnovTest 0.01"],
              prediction: ["PopulationStabilityIndex 0.4"]}
    [signal] = [name for name in listed if f"signal '{name}' breached" in retrained[0]]
    assert all(row in retrained[0] for row in listed[signal]), retrained[0]
