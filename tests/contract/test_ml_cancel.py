"""No Azure work left behind: a wait that times out or is interrupted cancels the job, and the fake
receives the cancel (and moves the job to CancelRequested -> Canceled); a rerun never trains beside an
attempt that was given up."""

from __future__ import annotations

import dataclasses
import time

import pytest

from drift_retrain.backends.azure.polling import StepTimedOut
from drift_retrain.backends.azure.training import GIVEN_UP, training_pipeline
from drift_retrain.backends.base import run_to_end
from drift_retrain.names import training_run_key
from tests.contract.ml_fixtures import (
    PIPELINE_YAML,
    QUICK,
    WS,
    copied,
    script,
    signal,
    target,
)

INPUTS = {"training_data": "{copy_output_uri}"}
SECTIONS = {
    "published_pipeline": {"kind": "published_pipeline", "pipeline_id": "p1", "inputs": INPUTS},
    "pipeline_job": {"kind": "pipeline_job", "yaml": str(PIPELINE_YAML), "inputs": INPUTS},
    "batch_endpoint": {"kind": "batch_endpoint", "endpoint": "ep", "deployment": "train", "inputs": INPUTS},
}
#: Where each kind's cancel lands at the service: v1 as PipelineRun.cancel sends it (azureml-pipeline-core 1.62.0
#: aml_pipelines_api10.py: DELETE .../PipelineRuns/{id}/Execution), v2 as azure-ai-ml's jobs.begin_cancel.
CANCEL_PATHS = {
    "published_pipeline": ("DELETE", f"/pipelines/v1.0{WS}/PipelineRuns/"),
    "pipeline_job": ("POST", "/cancel?api-version="),
    "batch_endpoint": ("POST", "/cancel?api-version="),
}
NEVER_ENDS = script(("Running", 1.0), never=True)


def _training(kind, fake, session, ledger, timeout_minutes=1.0):
    fake.ml.add_batch_endpoint("ep", ("train",))
    section = {**SECTIONS[kind], "polling": {"initial_interval": 0.05, "max_interval": 0.2, "timeout_minutes": timeout_minutes}}
    return training_pipeline(session, target(section), ledger)


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_a_timed_out_wait_cancels_the_job(kind, fake, ml_session, ledger):
    pipeline = _training(kind, fake, ml_session, ledger, timeout_minutes=0.01)  # 0.6 s
    fake.ml.script_next_job(NEVER_ENDS)
    sig = signal(f"drift_timeout_{kind}")

    began = time.monotonic()
    with pytest.raises(StepTimedOut):
        run_to_end(lambda: pipeline.submit(sig, copied(sig)), pipeline.wait, pipeline.cancel)

    [job] = fake.ml.jobs.values()
    assert job.cancel_calls == 1
    assert job.status() == "CancelRequested"
    method, path = CANCEL_PATHS[kind]
    [cancel] = fake.sent(method, path)
    assert job.name in cancel.path
    if kind == "published_pipeline":
        assert cancel.path == f"/pipelines/v1.0{WS}/PipelineRuns/{job.name}/Execution"
        assert not fake.sent("POST", "/cancel")  # not through run history
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_an_interrupted_wait_cancels_the_job(kind, fake, ml_session, ledger, monkeypatch):
    """Ctrl-C (or a flow cancellation surfacing as an exception) in the middle of the wait: raised from the
    poller's pause once the job has been polled twice, so the interruption lands mid-wait every time (a
    timer and ``_thread.interrupt_main`` could be swallowed by a finaliser running at that moment)."""
    pipeline = _training(kind, fake, ml_session, ledger)
    fake.ml.script_next_job(NEVER_ENDS)
    sig = signal(f"drift_interrupt_{kind}")

    def pause(seconds: float) -> None:
        [job] = fake.ml.jobs.values()
        if job.status_calls >= 2:
            raise KeyboardInterrupt
        time.sleep(seconds)

    real_poller = pipeline.poller
    monkeypatch.setattr(pipeline, "poller", lambda *job: dataclasses.replace(real_poller(*job), sleep=pause))

    with pytest.raises(KeyboardInterrupt):
        run_to_end(lambda: pipeline.submit(sig, copied(sig)), pipeline.wait, pipeline.cancel)

    [job] = fake.ml.jobs.values()
    assert job.status_calls >= 2  # it was waiting when interrupted (a v1 cancel reads the run once more)
    assert job.cancel_calls == 1
    assert job.status() == "CancelRequested"


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_a_rerun_after_a_timed_out_job_trains_again_as_the_next_attempt(kind, fake, ml_session, ledger):
    """The first attempt timed out and was cancelled (it ends Canceled); a rerun of the signal must not
    reattach to that end and fail forever: it starts attempt 2, waits on it, and cancels nothing again."""
    pipeline = _training(kind, fake, ml_session, ledger, timeout_minutes=0.01)
    fake.ml.script_next_job(NEVER_ENDS)
    sig = signal(f"drift_cancel_then_rerun_{kind}")
    with pytest.raises(StepTimedOut):
        run_to_end(lambda: pipeline.submit(sig, copied(sig)), pipeline.wait, pipeline.cancel)
    [first] = fake.ml.jobs.values()
    first.run.CANCEL_SECONDS = 0.0  # the service has finished cancelling it
    assert first.status() == "Canceled"

    fake.ml.script_next_job(QUICK, metrics={"roc_auc": 0.9})
    again = _training(kind, fake, ml_session, ledger)
    result = run_to_end(lambda: again.submit(sig, copied(sig)), again.wait, again.cancel)

    assert len(fake.ml.jobs) == 2 and result.job_id != first.name
    assert result.status == "Completed" and result.metrics == {"roc_auc": 0.9} and not result.reattached
    assert first.cancel_calls == 1  # an ended attempt is not cancelled again
    assert ledger.get("training", training_run_key(sig))["attempt"] == 2
    if kind != "published_pipeline":  # v2 names are ours: deterministic per attempt
        assert result.job_id == f"{first.name}-2"

    third = _training(kind, fake, ml_session, ledger)  # and a rerun after that success reattaches to it
    assert third.submit(sig, copied(sig)) == result.job_id and len(fake.ml.jobs) == 2


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_a_rerun_right_after_a_timeout_waits_for_the_cancel_before_the_next_attempt(kind, fake, ml_session, ledger):
    """The first attempt timed out and its cancel is still under way (v2: CancelRequested; v1: the pipelines
    service still says Running, and the ledger says the attempt was given up). A rerun must not reattach to it
    nor start beside it: it waits until the first has ended, then starts attempt 2."""
    pipeline = _training(kind, fake, ml_session, ledger, timeout_minutes=0.01)
    fake.ml.script_next_job(NEVER_ENDS)
    sig = signal(f"drift_rerun_while_cancelling_{kind}")
    with pytest.raises(StepTimedOut):
        run_to_end(lambda: pipeline.submit(sig, copied(sig)), pipeline.wait, pipeline.cancel)
    [first] = fake.ml.jobs.values()
    assert first.status() == "CancelRequested"  # the service has not finished cancelling it
    assert ledger.get("training", training_run_key(sig))[GIVEN_UP] is True

    fake.ml.script_next_job(QUICK, metrics={"roc_auc": 0.9})
    again = _training(kind, fake, ml_session, ledger)
    result = run_to_end(lambda: again.submit(sig, copied(sig)), again.wait, again.cancel)

    [second] = [j for j in fake.ml.jobs.values() if j is not first]
    assert first.status() == "Canceled" and result.job_id == second.name and result.status == "Completed"
    assert second.run.started >= first.run.ended_at  # never two trainings of the signal at once
    assert ledger.get("training", training_run_key(sig))["attempt"] == 2


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_a_rerun_cancels_a_given_up_attempt_that_still_runs_before_submitting_the_next(kind, fake, ml_session, ledger):
    """An earlier attempt gave its run up (the ledger says so) but the cancel never reached Azure (the process
    died first, or the cancel call failed), so the run still runs. The rerun cancels it, waits for it to end,
    and only then submits attempt 2."""
    pipeline = _training(kind, fake, ml_session, ledger)
    fake.ml.script_next_job(NEVER_ENDS)
    sig = signal(f"drift_given_up_still_running_{kind}")
    first_id = pipeline.submit(sig, copied(sig))
    recorded = ledger.get("training", training_run_key(sig))
    ledger.put("training", training_run_key(sig), first_id, **{k: v for k, v in recorded.items() if k not in ("run_id", "recorded_at")},
               given_up=True)  # what pipeline.cancel writes before it asks Azure to cancel
    first = fake.ml.jobs[first_id]
    assert first.status() == "Running" and first.cancel_calls == 0

    fake.ml.script_next_job(QUICK, metrics={"roc_auc": 0.9})
    again = _training(kind, fake, ml_session, ledger)
    result = run_to_end(lambda: again.submit(sig, copied(sig)), again.wait, again.cancel)

    [second] = [j for j in fake.ml.jobs.values() if j is not first]
    assert first.cancel_calls == 1 and first.status() == "Canceled"
    assert result.job_id == second.name != first_id and not result.reattached
    assert second.run.started >= first.run.ended_at


@pytest.mark.parametrize("kind", list(SECTIONS))
def test_a_rerun_reattaches_to_a_running_attempt_that_was_not_given_up(kind, fake, ml_session, ledger):
    """A crash in the wait gives nothing up: the rerun reattaches to the running attempt and cancels nothing."""
    pipeline = _training(kind, fake, ml_session, ledger)
    fake.ml.script_next_job(script(("Running", 0.5)), metrics={"roc_auc": 0.9})
    sig = signal(f"drift_crash_then_rerun_{kind}")
    first_id = pipeline.submit(sig, copied(sig))

    again = _training(kind, fake, ml_session, ledger)
    result = run_to_end(lambda: again.submit(sig, copied(sig)), again.wait, again.cancel)

    assert result.job_id == first_id and result.reattached and len(fake.ml.jobs) == 1
    assert fake.ml.jobs[first_id].cancel_calls == 0
