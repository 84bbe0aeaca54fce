"""The training step's pure rules: the v1 pipelines service's StatusCode in the job vocabulary, and how metrics
logged by several runs of one job merge."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drift_retrain.backends.azure.training import FAILED_ENDS, SUCCEEDED, TERMINAL, StepRun, merge_metrics, v1_status


@pytest.mark.parametrize(
    ("run", "status"),
    [
        # PipelineRunStatus.status_code (azureml-pipeline-core 1.62.0 pipeline_run_status.py) and the int codes
        # _aeva_provider.py get_status maps; a run without Status yet is NotStarted there too.
        ({"Status": {"StatusCode": "NotStarted"}}, "NotStarted"),
        ({"Status": {"StatusCode": "Running"}}, "Running"),
        ({"Status": {"StatusCode": "Failed"}}, "Failed"),
        ({"Status": {"StatusCode": "Finished"}}, "Completed"),
        ({"Status": {"StatusCode": "Canceled"}}, "Canceled"),
        ({"Status": {"StatusCode": "0"}}, "NotStarted"),
        ({"Status": {"StatusCode": "1"}}, "Running"),
        ({"Status": {"StatusCode": "2"}}, "Failed"),
        ({"Status": {"StatusCode": 3}}, "Completed"),
        ({"Status": {"StatusCode": "4"}}, "Canceled"),
        ({"Status": {"StatusCode": "Queued"}}, "Queued"),  # PipelineRun's RUNNING_STATES
        ({"Status": {"StatusCode": "Unknown"}}, "Unknown"),
        ({"Status": None}, "NotStarted"),
        ({}, "NotStarted"),
        # hostile or undocumented: not recognised (the caller waits on them as Unknown)
        ({"Status": {"StatusCode": "Paused"}}, None),
        ({"Status": {"StatusCode": True}}, None),
        ({"Status": {"StatusCode": None}}, None),
        ({"Status": {"StatusCode": "Finished" * 20}}, None),
        ({"Status": "Finished"}, None),
        ("Finished", None),
    ],
)
def test_v1_status_codes_in_the_job_vocabulary(run, status):
    assert v1_status(run) == status


def test_only_completed_failed_and_canceled_end_a_wait():
    assert TERMINAL == {"Completed", "Failed", "Canceled"} and SUCCEEDED == "Completed"
    assert FAILED_ENDS == {"Failed", "Canceled"}
    assert not {"NotResponding", "Paused", "CancelRequested"} & TERMINAL


def _step(name: str, ended_hour: int | None, run_id: str | None = None) -> StepRun:
    ended = datetime(2026, 1, 1, ended_hour, tzinfo=UTC) if ended_hour is not None else None
    return StepRun(run_id=run_id or f"run-{name}", name=name, ended=ended)


def test_root_metrics_come_first_and_steps_fill_the_names_it_lacks():
    merged = merge_metrics({"accuracy": 0.7}, [(_step("train", 1), {"accuracy": 0.9, "roc_auc": 0.8})])
    assert merged == {"accuracy": 0.7, "roc_auc": 0.8}


def test_of_two_steps_logging_one_name_the_one_that_ended_last_wins_whatever_the_listing_order():
    train, evaluate, unended = _step("train", 1), _step("evaluate", 2), _step("aaa", None)
    offers = [(evaluate, {"roc_auc": 0.85}), (train, {"roc_auc": 0.8}), (unended, {"roc_auc": 0.1})]
    assert merge_metrics({}, offers) == {"roc_auc": 0.85}
    assert merge_metrics({}, list(reversed(offers))) == {"roc_auc": 0.85}


def test_steps_that_ended_together_are_ordered_by_name_then_run_id():
    a, b, b2 = _step("a", 1), _step("b", 1, "run-1"), _step("b", 1, "run-2")
    assert merge_metrics({}, [(a, {"m": 1.0}), (b2, {"m": 3.0}), (b, {"m": 2.0})]) == {"m": 3.0}
    assert merge_metrics({}, [(b, {"m": 2.0}), (b2, {"m": 3.0}), (a, {"m": 1.0})]) == {"m": 3.0}
