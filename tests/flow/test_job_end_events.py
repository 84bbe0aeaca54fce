"""The event-aware hold against a real (ephemeral) Prefect server: ``job_end_events`` hears the end event the
receiver emits for a job (``prefect_job_event``, POSTed to /events as the receiver does), and nothing else; a
push wait holding its process on it takes one status call, then ends at the event with one confirming call
instead of polling."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import httpx

from drift_retrain.backends.azure.polling import Poller
from drift_retrain.backends.base import suspendable
from drift_retrain.config import PollingConfig
from drift_retrain.intake.job_events import JobEvent, JobKind, JobStatus
from drift_retrain.intake.job_wake import prefect_job_event
from drift_retrain.job_end_events import job_end_events
from drift_retrain.testing import DEMO_WORKSPACE

JOB = "train-00112233445566778899"
OTHER = "train-99887766554433221100"


def post_job_event(api: httpx.Client, job: str, status: JobStatus) -> float:
    """The receiver's Prefect event for one job status (its own builder), POSTed as it does; when it was sent."""
    event = prefect_job_event(
        JobEvent(f"eg-{time.monotonic_ns()}", job, JobKind.V2, status, status.value, DEMO_WORKSPACE, None),
        [],
        datetime.now(UTC),
    )
    sent = time.monotonic()
    api.post("/events", json=[event.model_dump(mode="json")]).raise_for_status()
    return sent


def test_the_subscription_wakes_on_the_jobs_end_event_only(prefect_api: httpx.Client) -> None:
    job = f"{JOB[:-2]}aa"
    with job_end_events(job) as wake:
        post_job_event(prefect_api, job, JobStatus.RUNNING)  # not an end
        post_job_event(prefect_api, OTHER, JobStatus.COMPLETED)  # another job's end
        assert not wake(3.0)
        sent = post_job_event(prefect_api, job, JobStatus.FAILED)
        assert wake(60.0)
        print(f"end event POSTed -> heard: {time.monotonic() - sent:.2f} s")  # a figure, not a bound


def test_a_held_push_wait_ends_at_the_event_with_two_status_calls(prefect_api: httpx.Client) -> None:
    job = f"{JOB[:-2]}bb"
    ended = threading.Event()
    calls: list[float] = []

    def fetch() -> str:
        calls.append(time.monotonic())
        return "Completed" if ended.is_set() else "Running"

    def the_job_ends() -> None:
        time.sleep(4)
        ended.set()
        post_job_event(prefect_api, job, JobStatus.COMPLETED)

    # Polled, this wait would look every 2 s; on events it looks once, then at the event.
    policy = PollingConfig(initial_interval=2, max_interval=2, jitter=0, hold_seconds=120, timeout_minutes=10)
    poller: Poller[str] = Poller(policy, "training", push=True, listen=job_end_events, on_change=lambda *_: None)
    threading.Thread(target=the_job_ends, daemon=True).start()
    started = time.monotonic()
    with suspendable():
        assert poller.wait(job, fetch, str, {"Completed"}) == "Completed"
    took = time.monotonic() - started
    assert len(calls) == 2, calls
    assert 4 <= took < 60, took  # at the event, well within the 120 s hold
    print(f"held wait ended {took:.2f} s after it began (the job ended at 4 s)")
