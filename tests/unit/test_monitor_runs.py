"""Reading the monitor's runs: a recorded run-history children body, and hostile MLflow bodies, through the
parsers the catch-up and the v2 details use."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from drift_retrain.backends.azure.missed import run_status_changed
from drift_retrain.backends.azure.monitor_runs import Point, child_run, metric_run
from drift_retrain.breaches import BREACH_TAG, breach_text
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.signals import SignalKind

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "machinelearning" / "history_children_recorded.json"
WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def test_a_recorded_children_answer_reads_into_child_runs():
    body = json.loads(RECORDED.read_text())["body"]

    runs = [child_run(item) for item in body["value"]]

    first = runs[0]
    assert first is not None and first.run_id == "3d732853-5b72-43e3-b2ee-e1d99500a13a"
    assert (first.parent_run_id, first.experiment_id) == ("test_680454434153", "feaf39dd-e0de-4b57-9b9a-d5837337665a")
    assert (first.status, first.run_type) == ("Failed", "azureml.StepRun")
    assert first.created == datetime(2026, 2, 27, 20, 29, 57, 313361, tzinfo=UTC)  # 7 fractional digits, read
    assert first.ended == datetime(2026, 2, 27, 20, 35, 53, 628143, tzinfo=UTC)
    assert first.tags["azureml.pipeline"] == "test_680454434153"
    assert first.properties["azureml.runsource"] == "azureml.StepRun"
    assert all(run is not None for run in runs)


def test_a_recorded_step_run_with_the_breach_tag_becomes_the_event_the_webhook_reads():
    item = json.loads(RECORDED.read_text())["body"]["value"][0]
    rows = [{"metric_name": "JensenShannonDistance", "metric_value": 0.3, "threshold_value": 0.1, "group": "age"}]
    item["tags"][BREACH_TAG] = breach_text("credit-drift-data-drift", rows)
    item["status"] = "Completed"
    run = child_run(item)
    assert run is not None

    signal = to_drift_signal(run_status_changed(run, "credit-drift", WS))

    assert signal.kind is SignalKind.MODEL_MONITOR
    assert signal.run_id == item["runId"] and signal.event_time == run.ended
    assert signal.raw_event["subject"] == f"experiments/{item['experimentId']}/runs/{item['runId']}"


def test_hostile_mlflow_runs_keep_only_finite_bounded_values():
    body = {
        "info": {"run_id": "r-1"},
        "data": {
            "tags": [
                {"key": "azureml.signal_name", "value": "s"},
                {"key": "bad\nkey", "value": "x"},
                {"key": "not-text", "value": 7},
            ],
            "metrics": [
                {"key": "value", "value": 0.1, "step": 10, "timestamp": 5},
                {"key": "value", "value": 0.3, "step": "20", "timestamp": "1"},  # int64 as a JSON string
                {"key": "value", "value": float("nan"), "step": 30, "timestamp": 1},
                {"key": "value", "value": float("inf"), "step": 40, "timestamp": 1},
                {"key": "value", "value": 10**400, "step": 50, "timestamp": 1},  # too large for a float
                {"key": "value", "value": True, "step": 60, "timestamp": 1},
                {"key": "value", "value": "0.9", "step": 70, "timestamp": 1},
                {"key": "value", "value": 0.5, "step": 2**80, "timestamp": 1},  # not an int64
                {"key": "threshold", "value": 0.2, "step": 20},
            ],
        },
    }

    run = metric_run(body)

    assert run is not None and run.tags == {"azureml.signal_name": "s"}
    assert run.latest == {"value": Point(0.3, 20, 1), "threshold": Point(0.2, 20, 0)}
    assert metric_run({"info": {"run_id": "x" * 300}}) is None  # an id past the bound
    assert metric_run({"info": {"run_id": "a\x00b"}}) is None
    assert metric_run(["not", "a", "run"]) is None
    assert child_run({"runId": 42}) is None
