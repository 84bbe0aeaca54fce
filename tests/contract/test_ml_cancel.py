"""No Azure work left behind: a wait that times out or is interrupted cancels the job, and the fake
receives the cancel (and moves the job to CancelRequested -> Canceled)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from drift_retrain.backends.azure.polling import StepTimedOut
from drift_retrain.backends.azure.training import training_pipeline
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
#: Where each kind's cancel lands at the service.
CANCEL_PATHS = {
    "published_pipeline": f"/history/v1.0{WS}/experimentids/",
    "pipeline_job": "/cancel?api-version=",
    "batch_endpoint": "/cancel?api-version=",
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
    [cancel] = [r for r in fake.sent("POST") if CANCEL_PATHS[kind] in r.path]
    assert job.name in cancel.path
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
    monkeypatch.setattr(pipeline, "poller", lambda: dataclasses.replace(real_poller(), sleep=pause))

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
