"""The waiter's pass on a real (ephemeral) Prefect server: a suspended retrain whose next check is not due costs
no status call (its job event and the pass scheduled for its next check cover it); the pass only renews its kept
slot and leaves it suspended. Without this, the waiter's own 10-minute schedule alone was six status calls an
hour per suspended ML wait (issue 16: push waits <= 1/10 of a fixed 60 s poll)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from prefect import flow, get_client
from prefect.states import Suspended
from prefect.variables import Variable

from drift_retrain.backends import backends_in_process
from drift_retrain.backends.base import Backends
from drift_retrain.names import PROJECT_TAG, TRAINING_STEP, WAITING_TAG, job_resource, waiting_tag
from drift_retrain.waiting import WaitRecord, wait_variable
from tests.flow.conftest import Target


class CountingTraining:
    """A training pipeline that only counts the status calls (``ended``) and cancels the waiter asks for."""

    def __init__(self) -> None:
        self.ended_calls: list[str] = []
        self.cancelled: list[str] = []

    def ended(self, run_id: str) -> bool:
        self.ended_calls.append(run_id)
        return False

    def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)


@flow(name="fake-suspended-retrain")
def fake_retrain() -> None:
    """Never run: only its flow runs are created, then put in Suspended as a retrain suspends itself."""


def suspended_run(target: Target, job: str, next_check: timedelta) -> UUID:
    """A flow run in Prefect's Suspended state, tagged and recorded as ``waiting.suspend`` leaves a retrain."""
    now = datetime.now(UTC)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(fake_retrain, tags=[WAITING_TAG, waiting_tag(job_resource(job))])
        client.set_flow_run_state(run.id, Suspended(timeout_seconds=7200, pause_key=f"k-{job}"), force=True)
    record = WaitRecord(
        TRAINING_STEP,
        job,
        job_resource(job),
        target.name,
        (now + next_check).isoformat(),
        (now + timedelta(hours=1)).isoformat(),
        None,
    )
    Variable.set(wait_variable(run.id), asdict(record), tags=[PROJECT_TAG, WAITING_TAG], overwrite=True)
    return run.id


def test_a_pass_makes_no_status_call_for_a_suspended_run_whose_check_is_not_due(
    make_target: Callable[..., Target], prefect_api: httpx.Client
) -> None:
    from flows.waiter import waiter

    target = make_target()
    training = CountingTraining()
    not_due = suspended_run(target, "train-0123456789abcdef0123", next_check=timedelta(minutes=50))
    backends: Any = Backends(details=None, copy=None, training=training, registry=None)  # type: ignore[arg-type]

    with backends_in_process(lambda settings, t: backends):
        state = waiter(return_state=True)

    assert state.is_completed(), state.message
    done = state.result()
    assert str(not_due) in done.waiting and str(not_due) not in done.resumed
    assert training.ended_calls == [], "a status call for a run whose check is not due"
    run = prefect_api.get(f"/flow_runs/{not_due}").json()
    assert (run["state"]["type"], run["state"]["name"]) == ("PAUSED", "Suspended")
