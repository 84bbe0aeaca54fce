"""Every Azure ML job status, through the real azure-ai-ml against the fake: intermediate statuses keep
the wait going, Completed gives a result with the job's metrics, every other end raises MLJobFailed
with the service's own message."""

from __future__ import annotations

import logging

import pytest

from drift_retrain.backends.azure.training import MLJobFailed, training_pipeline
from drift_retrain.backends.base import StepFailed
from tests.contract.ml_fixtures import (
    PIPELINE_YAML,
    copied,
    script,
    signal,
    target,
)

INTERMEDIATE = ["NotStarted", "Starting", "Provisioning", "Preparing", "Queued", "Running", "Finalizing", "CancelRequested",
                "Unknown"]
FAILURES = ["Failed", "Canceled", "NotResponding", "Paused"]

YAML_TARGET = {"kind": "pipeline_job", "yaml": str(PIPELINE_YAML),
               "inputs": {"training_data": "{copy_output_uri}", "window_end": "{window_end_date}"}}


@pytest.fixture
def pipeline(ml_session, ledger):
    return training_pipeline(ml_session, target(YAML_TARGET), ledger)


@pytest.mark.parametrize("status", INTERMEDIATE)
def test_an_intermediate_status_keeps_the_wait_going(status, fake, pipeline, caplog):
    fake.ml.script_next_job(script((status, 0.6)), metrics={"roc_auc": 0.91})
    sig = signal(f"drift_{status}")
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")

    job_id = pipeline.submit(sig, copied(sig))
    result = pipeline.wait(job_id)

    assert result.status == "Completed"
    changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"training run {job_id}:")]
    assert changes == [f"training run {job_id}: (started) -> {status}", f"training run {job_id}: {status} -> Completed"]
    assert fake.ml.jobs[job_id].status_calls >= 2  # seen in the intermediate status, then polled again


def test_completed_gives_metrics_and_the_model_output(fake, pipeline):
    fake.ml.script_next_job(script(("Running", 0.1)), metrics={"roc_auc": 0.91, "rows_train": 900.0, "rows_test": 300.0})
    sig = signal("drift_completed")

    job_id = pipeline.submit(sig, copied(sig))
    result = pipeline.wait(job_id)

    assert result.metrics == {"roc_auc": 0.91, "rows_train": 900.0, "rows_test": 300.0}
    assert (result.rows_train, result.rows_test) == (900, 300)
    assert result.model_uri == f"azureml://jobs/{job_id}/outputs/model/paths/model/"
    assert fake.sent("GET", f"/api/2.0/mlflow/runs/get?run_id={job_id}")


KINDS = {
    "pipeline_job": YAML_TARGET,
    "published_pipeline": {"kind": "published_pipeline", "pipeline_id": "p1", "inputs": {"training_data": "{copy_output_uri}"}},
    "batch_endpoint": {"kind": "batch_endpoint", "endpoint": "ep", "deployment": "train",
                       "inputs": {"training_data": "{copy_output_uri}"}},
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("status", FAILURES)
def test_every_kind_fails_with_the_service_message(kind, status, fake, ml_session, ledger):
    """A pipeline job, the v1 run-history status and a batch job all end the same way: MLJobFailed (a
    StepFailed) with the service's own message, and nothing cancelled."""
    fake.ml.add_batch_endpoint("ep", ("train",))
    pipeline = training_pipeline(ml_session, target(KINDS[kind]), ledger)
    message = f"UserError: the training script exited with code 1 ({kind}, {status})"
    fake.ml.script_next_job(script(("Running", 0.1), final=status, message=message))
    sig = signal(f"drift_{kind}_{status}")

    job_id = pipeline.submit(sig, copied(sig))
    with pytest.raises(MLJobFailed) as failed:
        pipeline.wait(job_id)

    assert isinstance(failed.value, StepFailed)
    assert (failed.value.status, failed.value.run_id) == (status, job_id)
    assert failed.value.message == ("The run was canceled by the user (fake)" if status == "Canceled" else message)
    assert fake.ml.jobs[job_id].cancel_calls == 0
