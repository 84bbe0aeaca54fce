"""Every Azure ML job status, through the real azure-ai-ml against the fake: intermediate statuses (NotResponding
and Paused among them) keep the wait going, Completed gives a result with the job's metrics, every other end
raises MLJobFailed with the service's own message; a run left Paused is cancelled at the step timeout."""

from __future__ import annotations

import logging

import pytest

from drift_retrain.backends.azure.polling import StepTimedOut
from drift_retrain.backends.azure.training import MLJobFailed, training_pipeline
from drift_retrain.backends.base import StepFailed, run_to_end
from tests.contract.ml_fixtures import (
    PIPELINE_YAML,
    WS,
    copied,
    script,
    signal,
    target,
)

#: Every JobStatus but the three ends (azure-ai-ml 1.35.2 _restclient/arm_ml_service/models/_enums.py): NotResponding
#: ("a run can go from NotResponding to any of the previous states") and Paused are waited on like the rest.
INTERMEDIATE = ["NotStarted", "Starting", "Provisioning", "Preparing", "Queued", "Running", "Finalizing", "CancelRequested",
                "NotResponding", "Paused", "Unknown"]
FAILURES = ["Failed", "Canceled"]

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
    """A pipeline job, a v1 pipeline run (its pipelines-service StatusCode) and a batch job all end the same way:
    MLJobFailed (a StepFailed) with the service's own message (run history's, as PipelineRun reads it for v1),
    and nothing cancelled."""
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


V2_KINDS = ["pipeline_job", "batch_endpoint"]


@pytest.mark.parametrize("kind", V2_KINDS)
def test_a_run_back_from_not_responding_completes_as_one_job(kind, fake, ml_session, ledger, caplog):
    """NotResponding is not an end (JobStatus: "a run can go from NotResponding to any of the previous states"):
    the wait goes on through it, the run comes back Running and completes, and nothing is cancelled or redone."""
    fake.ml.add_batch_endpoint("ep", ("train",))
    pipeline = training_pipeline(ml_session, target(KINDS[kind]), ledger)
    fake.ml.script_next_job(script(("NotResponding", 0.5), ("Running", 0.6)), metrics={"roc_auc": 0.9})
    sig = signal(f"drift_not_responding_{kind}")
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")

    result = run_to_end(lambda: pipeline.submit(sig, copied(sig)), pipeline.wait, pipeline.cancel)

    [job] = fake.ml.jobs.values()
    assert (result.job_id, result.status, result.metrics) == (job.name, "Completed", {"roc_auc": 0.9})
    assert job.cancel_calls == 0
    changes = [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.getMessage().startswith(f"training run {job.name}:")]
    assert changes == ["(started) -> NotResponding", "NotResponding -> Running", "Running -> Completed"]


@pytest.mark.parametrize("kind", V2_KINDS)
def test_a_run_paused_until_the_step_timeout_is_cancelled_and_the_reason_says_so(kind, fake, ml_session, ledger):
    """Paused is not an end either: the wait goes on until the step's timeout, which cancels the run; the
    cancellation's reason (what the run's report shows) says it timed out while Paused."""
    fake.ml.add_batch_endpoint("ep", ("train",))
    section = {**KINDS[kind], "polling": {"initial_interval": 0.05, "max_interval": 0.2, "timeout_minutes": 0.01}}
    pipeline = training_pipeline(ml_session, target(section), ledger)
    fake.ml.script_next_job(script(("Paused", 1.0), never=True))
    sig = signal(f"drift_paused_{kind}")
    cancelled: list[tuple[str, str, str]] = []

    with pytest.raises(StepTimedOut, match="still Paused after 0.01 min"):
        run_to_end(lambda: pipeline.submit(sig, copied(sig)), pipeline.wait, pipeline.cancel,
                   lambda *told: cancelled.append(told))

    [job] = fake.ml.jobs.values()
    assert job.status_calls >= 2  # seen Paused and polled again, not taken for an end
    assert job.cancel_calls == 1 and job.status() == "CancelRequested"
    [(run_id, why, outcome)] = cancelled
    assert run_id == job.name and outcome == "cancel requested"
    assert why == f"StepTimedOut: training run {job.name} still Paused after 0.01 min; cancelling it"


def test_a_v1_status_code_outside_the_documented_enum_is_waited_on(fake, ml_session, ledger, caplog):
    """The pipelines service documents NotStarted, Running, Failed, Finished, Canceled (and the SDK waits on
    Queued and Unknown); a StatusCode outside them is not taken for an end: the wait goes on, says so once."""
    pipeline = training_pipeline(ml_session, target(KINDS["published_pipeline"]), ledger)
    fake.ml.script_next_job(script(("Queued", 0.4), ("Paused", 0.6)), metrics={"roc_auc": 0.9})  # "Paused" is not a StatusCode
    sig = signal("drift_v1_unknown_status")
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")

    job_id = pipeline.submit(sig, copied(sig))
    result = pipeline.wait(job_id)

    assert result.status == "Completed"
    assert len(fake.sent("GET", f"/pipelines/v1.0{WS}/PipelineRuns/{job_id}")) >= 3
    changes = [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.getMessage().startswith(f"training run {job_id}:")]
    assert changes == ["(started) -> Queued", "Queued -> Unknown", "Unknown -> Completed"]
    warnings = [r.getMessage() for r in caplog.records if "reported StatusCode" in r.getMessage()]
    assert warnings == ["training: the pipelines service reported StatusCode 'Paused'; not an end, waiting on"]
