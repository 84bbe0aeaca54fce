"""Training metrics from wherever they were logged: "metrics belong to the child run that logged them"
(Azure/azure-sdk-for-python#39198), so a pipeline whose steps log the metrics, not its root run, still gives
TrainingResult.metrics and the gate what they need. Steps are listed through run history's children
(the call azure-ai-ml makes for ``jobs.list(parent_job_name=...)``) and read through MLflow ``runs/get``."""

from __future__ import annotations

import logging

import pytest

from drift_retrain.backends.azure.training import training_pipeline
from drift_retrain.config import GateConfig
from drift_retrain.policy import gate
from tests.contract.ml_fixtures import PIPELINE_YAML, QUICK, WS, copied, signal, target

INPUTS = {"training_data": "{copy_output_uri}"}
SECTIONS = {
    "published_pipeline": {"kind": "published_pipeline", "pipeline_id": "p1", "inputs": INPUTS},
    "pipeline_job": {"kind": "pipeline_job", "yaml": str(PIPELINE_YAML), "inputs": INPUTS},
    "batch_endpoint": {"kind": "batch_endpoint", "endpoint": "ep", "deployment": "train", "inputs": INPUTS},
}


def _train(kind, fake, session, ledger, name):
    fake.ml.add_batch_endpoint("ep", ("train",))
    pipeline = training_pipeline(session, target(SECTIONS[kind]), ledger)
    sig = signal(name)
    return pipeline.wait(pipeline.submit(sig, copied(sig)))


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_metrics_logged_only_by_steps_reach_the_result_and_the_gate(kind, fake, ml_session, ledger):
    fake.ml.script_next_job(QUICK, steps={"prep": {}, "train": {"roc_auc": 0.91, "rows_train": 900.0, "rows_test": 300.0},
                                          "evaluate": {"accuracy": 0.8}})

    result = _train(kind, fake, ml_session, ledger, f"drift_step_metrics_{kind}")

    assert fake.ml.jobs[result.job_id].metrics == {}  # the root run logged nothing
    assert result.metrics == {"roc_auc": 0.91, "rows_train": 900.0, "rows_test": 300.0, "accuracy": 0.8}
    assert (result.rows_train, result.rows_test) == (900, 300)
    check = gate(GateConfig(metric="roc_auc"), result, None)
    assert check.passed and check.detail == "roc_auc = 0.9100; no champion yet"
    assert fake.sent("GET", f"/history/v1.0{WS}/runs/{result.job_id}/children")
    steps = {s.name: s.run_id for s in fake.ml.steps.of_job[result.job_id]}
    for run_id in steps.values():  # each step's own metrics, by its run id
        assert fake.sent("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}")


def test_the_root_run_wins_and_a_name_two_steps_logged_comes_from_the_step_that_ended_last(fake, ml_session, ledger, caplog):
    fake.ml.script_next_job(QUICK, metrics={"accuracy": 0.7},
                            steps={"train": {"accuracy": 0.9, "roc_auc": 0.8}, "evaluate": {"roc_auc": 0.85}})
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")

    result = _train("pipeline_job", fake, ml_session, ledger, "drift_step_metrics_conflict")

    assert result.metrics == {"accuracy": 0.7, "roc_auc": 0.85}
    steps = {s.name: s.run_id for s in fake.ml.steps.of_job[result.job_id]}
    [said] = [r.getMessage() for r in caplog.records if "was logged by" in r.getMessage()]
    assert said == (
        f"training: metric 'roc_auc' was logged by 2 steps; using evaluate (run {steps['evaluate']}) = 0.85, "
        f"the step that ended last (also: train (run {steps['train']}) = 0.8)"
    )


def test_the_steps_inside_a_sub_pipeline_are_read(fake, ml_session, ledger):
    """A registered pipeline component runs as one sub-pipeline node: its steps are the root's grandchildren."""
    fake.ml.script_next_job(QUICK, steps={"train_pipeline/train": {"roc_auc": 0.93}, "train_pipeline/score": {"f1": 0.7}})

    result = _train("pipeline_job", fake, ml_session, ledger, "drift_step_metrics_nested")

    assert result.metrics == {"roc_auc": 0.93, "f1": 0.7}
    [node] = fake.ml.steps.of_job[result.job_id]
    assert fake.sent("GET", f"/history/v1.0{WS}/runs/{node.run_id}/children")


def test_every_page_of_steps_is_read_and_a_throttled_listing_is_asked_again(fake, ml_session, ledger):
    fake.ml.steps.children_page_size = 1
    fake.faults.retry_after = 0.05
    fake.ml.script_next_job(QUICK, steps={"a": {"m_a": 1.0}, "b": {"m_b": 2.0}, "c": {"m_c": 3.0}})
    pipeline = training_pipeline(ml_session, target(SECTIONS["pipeline_job"]), ledger)
    sig = signal("drift_step_metrics_pages")
    job_id = pipeline.submit(sig, copied(sig))
    fake.faults.throttle[f"/runs/{job_id}/children"] = 1

    result = pipeline.wait(job_id)

    assert result.metrics == {"m_a": 1.0, "m_b": 2.0, "m_c": 3.0}
    assert fake.faults.throttle[f"/runs/{job_id}/children"] == 0
    pages = fake.sent("GET", f"/runs/{job_id}/children")
    assert len(pages) == 4 and sum("continuationtoken" in r.path for r in pages) == 2  # one 429, then 3 pages
