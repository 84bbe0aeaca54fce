"""Waits that hold no process (docs/waiting.md), on the poller's fake clock: inside a retrain's step a wait
answers StillRunning once it has held its process for hold_seconds (never elsewhere, never cancelling); an ML
job is then looked at again after fallback_minutes, Data Factory after its own schedule's pause, and stays in
process while that pause is shorter than the hold; a resumed wait keeps the step's timeout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from drift_retrain.backends.azure.polling import ExpectedEnd, Poller, StepTimedOut
from drift_retrain.backends.base import StillRunning, run_to_end, suspendable
from drift_retrain.config import PollingConfig
from drift_retrain.results import Check, Decision, DriftDetails
from drift_retrain.testing import copy_result
from drift_retrain.waiting import Decided, Waiting, WaitRecord, waiter_time
from tests.unit.test_poller import Clock, statuses

POLICY = {"initial_interval": 1, "max_interval": 10, "backoff": 2, "jitter": 0, "timeout_minutes": 60}


def poller(clock: Clock, **kwargs: Any) -> Poller[str]:
    policy = PollingConfig(**{**POLICY, "hold_seconds": 30, "fallback_minutes": 10, **kwargs.pop("policy", {})})
    return Poller(
        policy, "training", clock=clock, sleep=clock.sleep, rng=lambda: 0.5, on_change=lambda *_: None, **kwargs
    )


def test_outside_a_retrain_step_a_wait_blocks_until_the_end_as_before() -> None:
    clock = Clock()
    assert (
        poller(clock, push=True).wait("job", statuses(*["Running"] * 40, "Completed"), str, {"Completed"})
        == "Completed"
    )


def test_an_ml_job_past_the_hold_answers_still_running_with_the_fallback_as_next_check() -> None:
    clock = Clock()
    with suspendable(), pytest.raises(StillRunning) as going:
        poller(clock, push=True).wait("train-1", statuses("Running"), str, {"Completed"})
    assert 30 <= clock.now - 1000 <= 40  # held about hold_seconds, not a poll longer
    assert (going.value.run_id, going.value.status, going.value.next_check) == ("train-1", "Running", 600)
    assert going.value.deadline == pytest.approx(3600 - (clock.now - 1000))


def test_hold_seconds_zero_never_suspends() -> None:
    clock = Clock()
    with suspendable():
        done = poller(clock, push=True, policy={"hold_seconds": 0}).wait(
            "j", statuses(*["Running"] * 50, "Completed"), str, {"Completed"}
        )
    assert done == "Completed"


def test_data_factory_stays_in_process_while_its_next_check_is_within_the_hold() -> None:
    """An expected end at 10 min: near it the pauses are short (dense) and the wait keeps its process, far from
    it they exceed the hold and the wait lets go with the schedule's own pause as its next check."""
    expected = ExpectedEnd(median=600, low=570, high=630)
    clock = Clock()
    with suspendable(), pytest.raises(StillRunning) as far:
        poller(clock, expected=expected, policy={"max_patient_interval": 1200}).wait(
            "adf", statuses("InProgress"), str, {"Succeeded"}
        )
    assert far.value.next_check >= 30 and far.value.next_check != 600  # the history-aware pause, not the fallback

    near = Clock()
    resumed_at = 560.0  # resumed just before the band: every pause is short, so it never lets go
    with suspendable():
        done = poller(near, expected=expected, elapsed=resumed_at).wait(
            "adf", statuses(*["InProgress"] * 8, "Succeeded"), str, {"Succeeded"}
        )
    assert done == "Succeeded"


def test_a_resumed_wait_keeps_the_step_timeout() -> None:
    clock = Clock()
    with suspendable(), pytest.raises(StepTimedOut):
        poller(clock, push=True, elapsed=3590).wait("train-1", statuses("Running"), str, {"Completed"})
    assert clock.now - 1000 <= 10


def test_still_running_is_not_an_interruption_the_run_is_not_cancelled() -> None:
    cancelled: list[str] = []

    def wait(run_id: str) -> str:
        raise StillRunning("training", run_id, "Running", 600, 3000)

    with pytest.raises(StillRunning):
        run_to_end(lambda: "train-1", wait, cancelled.append)
    assert cancelled == []


def test_the_run_page_message_names_the_run_bounded_and_on_one_line() -> None:
    job = Waiting.of("training", "train-0123456789abcdef0123", "Running", 600, 3600)
    assert job.message == "waiting for ML job train-0123456789abcdef0123 (suspended)"
    assert job.resource == "azureml.job.train-0123456789abcdef0123"
    hostile = Waiting.of("copy", "x\n[link](http://evil)" + "y" * 500, "InProgress", 60, 3600)
    assert "\n" not in hostile.message and len(hostile.message) < 200
    assert hostile.message.startswith("waiting for Data Factory run x")


def test_a_wait_record_is_due_at_its_next_check_or_its_deadline() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    record = WaitRecord(
        "training",
        "train-1",
        "azureml.job.train-1",
        "t",
        (now + timedelta(minutes=10)).isoformat(),
        (now + timedelta(hours=1)).isoformat(),
        None,
    )
    assert not record.due(now) and record.due(now + timedelta(minutes=10))
    assert WaitRecord.from_json({"step": "training"}) is None and WaitRecord.from_json(["training"]) is None
    newer = asdict(record) | {"kept_by_a_newer_release": 1}
    assert WaitRecord.from_json(newer) == record  # a field this release does not know is dropped


def test_retrains_suspending_together_share_one_scheduled_waiter_pass() -> None:
    base = datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC)
    times = {waiter_time(base + timedelta(seconds=s)) for s in range(0, 29)}
    assert times == {datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)}
    assert waiter_time(datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)) == datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)


# -- the stretched fallback and the event-aware hold (issue 16: push waits <= 1/10 of a fixed 60 s poll) --------


class Listener:
    """``Poller.listen`` on the fake clock: the run's end event arrives at ``event_at`` (never when None); every
    subscription and every wait for it is recorded."""

    def __init__(self, clock: Clock, event_at: float | None = None, fails: bool = False) -> None:
        self.clock, self.event_at, self.fails = clock, event_at, fails
        self.subscribed: list[str] = []

    @contextmanager
    def __call__(self, run_id: str) -> Iterator[Callable[[float], bool]]:
        if self.fails:
            raise ConnectionError("no websocket")
        self.subscribed.append(run_id)

        def wake(timeout: float) -> bool:
            if self.event_at is not None and self.event_at <= self.clock.now + timeout:
                self.clock.now = max(self.clock.now, self.event_at)
                return True
            self.clock.now += timeout
            return False

        yield wake


def job_until(clock: Clock, ends_at: float) -> Callable[[], str]:
    return lambda: "Completed" if clock.now >= ends_at else "Running"


def held(clock: Clock, listener: Listener, fetch: Callable[[], str], elapsed: float = 0.0, **policy: Any) -> Any:
    """One push wait inside a retrain step, default hold and fallback knobs unless given: its poller and
    what it answered (the ended status, or the StillRunning)."""
    p = poller(clock, push=True, listen=listener, elapsed=elapsed, policy={"hold_seconds": 60, **policy})
    with suspendable():
        try:
            return p, p.wait("train-1", fetch, str, {"Completed"})
        except StillRunning as going:
            return p, going


def replay(job_seconds: float, lost: bool, **policy: Any) -> tuple[int, float]:
    """A whole push wait on the fake clock as the product runs it: hold (events), suspend (one more status call:
    ``suspend``'s ``ended``), resumed at the next check it asked for or by the end event, and so on. Status
    calls and the delay from the job's end to the end seen."""
    clock = Clock()
    start = clock.now
    ends = start + job_seconds
    calls = 0

    def fetch() -> str:
        nonlocal calls
        calls += 1
        return job_until(clock, ends)()

    elapsed = 0.0
    while True:
        _p, answer = held(clock, Listener(clock, None if lost else ends), fetch, elapsed=elapsed, **policy)
        if answer == "Completed":
            return calls, clock.now - ends
        assert isinstance(answer, StillRunning)
        fetch()  # suspend()'s one look once the Suspended state is accepted
        resume_at = clock.now + answer.next_check
        if not lost and ends < resume_at:
            resume_at = ends  # the job event resumes it (latency: tests/e2e, the benchmark)
        clock.now = resume_at
        elapsed = clock.now - start


def test_a_push_wait_holds_on_the_job_event_with_one_status_call_and_suspends_with_the_fallback() -> None:
    clock = Clock()
    listener = Listener(clock)
    calls = 0

    def fetch() -> str:
        nonlocal calls
        calls += 1
        return "Running"

    _p, going = held(clock, listener, fetch)
    assert isinstance(going, StillRunning) and listener.subscribed == ["train-1"]
    # a look, the event awaited, the first hold's look at hold_look_seconds, the event awaited to the hold's end
    assert calls == 2 and clock.now - 1000 == pytest.approx(60)
    assert going.next_check == 600  # young: fallback_minutes
    clock, calls = Clock(), 0
    _p, going = held(clock, Listener(clock), fetch, hold_look_seconds=0)
    assert isinstance(going, StillRunning) and calls == 1 and clock.now - 1000 == pytest.approx(60)  # the event alone


def test_a_job_whose_event_never_comes_is_seen_at_the_first_holds_look_and_a_resumed_hold_looks_once() -> None:
    """No job subscription: a job ending 20 s in is seen at the 30 s look, not after the suspension's fallback."""
    clock = Clock()
    p, done = held(clock, Listener(clock), job_until(clock, 1020), elapsed=3)  # submitted 3 s before the wait
    assert done == "Completed" and p.calls == 2 and clock.now == pytest.approx(1030)
    clock = Clock()
    p, going = held(clock, Listener(clock), job_until(clock, 1020), elapsed=700)  # resumed: one look, the event
    assert isinstance(going, StillRunning) and p.calls == 1


def test_a_job_ending_within_the_hold_is_seen_at_its_event_and_confirmed_with_one_call() -> None:
    clock = Clock()
    p, done = held(clock, Listener(clock, event_at=1025), job_until(clock, 1025))
    assert done == "Completed" and p.calls == 2 and clock.now == 1025


def test_no_subscription_falls_back_to_polling_the_hold() -> None:
    clock = Clock()
    p, going = held(clock, Listener(clock, fails=True), statuses("Running"))
    assert isinstance(going, StillRunning) and p.calls >= 5  # today's adaptive polls


def test_an_event_the_status_does_not_show_yet_polls_out_the_hold() -> None:
    clock = Clock()
    _p, done = held(clock, Listener(clock, event_at=1010), job_until(clock, 1030))
    assert done == "Completed" and 1030 <= clock.now <= 1045


def test_the_fallback_stretches_with_the_waits_age_up_to_its_cap() -> None:
    policy = PollingConfig(fallback_minutes=10, fallback_share=5, fallback_max_minutes=60)
    assert [policy.fallback(age) for age in (60, 120, 300, 720, 5000)] == [600, 600, 1500, 3600, 3600]
    clock = Clock()
    _, going = held(clock, Listener(clock), statuses("Running"), elapsed=700, timeout_minutes=360)  # resumed at 700 s
    assert isinstance(going, StillRunning) and going.next_check == 3600
    with pytest.raises(ValueError, match="fallback_max_minutes"):
        PollingConfig(fallback_minutes=30, fallback_max_minutes=20)


@pytest.mark.parametrize(("hours", "most_calls"), [(1, 6), (6, 36)])
def test_a_push_wait_costs_at_most_a_tenth_of_a_fixed_minute_poll(hours: float, most_calls: int) -> None:
    """1 h: <= 6 calls (a fixed 60 s poll: 61); 6 h: <= 36 (fixed: 361), with the event and with it lost; a lost
    event is seen within the stretched fallback, never later than fallback_max_minutes."""
    for lost in (False, True):
        calls, delay = replay(hours * 3600, lost, timeout_minutes=7 * 60)
        assert calls <= most_calls, (hours, lost, calls)
        assert delay == 0 if not lost else 0 <= delay <= 3600, (hours, lost, delay)
    costs = {1: 6, 6: 16}[hours]  # what docs/waiting.md says they cost
    assert replay(hours * 3600, lost=False, timeout_minutes=7 * 60)[0] == costs


def test_a_wait_record_keeps_what_the_retrain_decided_through_json_and_an_older_record_decides_again() -> None:
    """What the resumed run goes on from (the details, the in-slot decision, its card, a finished copy) survives
    the record's trip through a Prefect Variable (JSON); a record written without it, or one whose kept decision
    no longer validates, answers None: the resumed run then decides again."""
    decided = Decided(
        DriftDetails(available=True, source="azure <b>", drift_coefficient=0.58, rows_in_window=1200),
        Decision(retrain=True, checks=[Check(rule="drift", passed=True, detail="0.58 >= 0.3")]),
        uuid4(),
        copy_result(run_id="run-1", rows_read=10, rows_copied=10, copy_duration=2.0, output_uri="azureml://x/"),
    )
    fields = (
        "training",
        "train-1",
        "azureml.job.train-1",
        "t",
        "2026-11-30T12:00:00+00:00",
        "2026-11-30T13:00:00+00:00",
    )
    record = WaitRecord(*fields, None, decided.to_json())
    assert WaitRecord.from_json(json.loads(json.dumps(asdict(record)))).settled == decided  # type: ignore[union-attr]

    older = {k: v for k, v in asdict(record).items() if k != "decided"}
    assert WaitRecord.from_json(older).settled is None  # type: ignore[union-attr]
    broken = {**asdict(record), "decided": {**decided.to_json(), "decision": {"retrain": "perhaps"}}}
    assert WaitRecord.from_json(broken).settled is None  # type: ignore[union-attr]
