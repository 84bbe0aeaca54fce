"""Waiting on an Azure run: adaptive, jittered polling that survives throttling and blips, and a
deadline that ends in cancellation (the caller's ``run_to_end`` cancels on ``StepTimedOut``).

Polls start often (runs that fail fast are seen fast) and stretch while nothing changes, up to a
ceiling that is short while the run is young and grows with the run's age after that, so young runs are
seen ending quickly and hours-long runs cost a few dozen calls. The calls and detection delays beside a
fixed one-minute poll are measured by benchmarks/polling.py and shown on the docs' Benchmarks page
(docs/benchmarks.md, generated from benchmarks/results.json).

When the run's duration can be expected (Data Factory has no push, but its recent runs of the same pipeline
tell how long this one will likely take: ``pipeline_durations``), an ``ExpectedEnd`` reshapes that ceiling: pauses
double up to the band the history ended in, stay at the band's own short interval across it, and grow again
past it; without one the schedule is exactly the one above.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Generic, TypedDict, TypeVar

from drift_retrain.backends.base import RunLog, StillRunning, log_state_change, may_suspend
from drift_retrain.config import PollingConfig

T = TypeVar("T")

log = RunLog("drift_retrain.azure")  # in the run's log in the UI; this logger outside a run

#: HTTP statuses worth another try: throttling, timeouts and server-side failures.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class StepTimedOut(TimeoutError):
    """The run did not end within the step's timeout; the caller cancels it."""

    def __init__(self, step: str, run_id: str, minutes: float, last_status: str | None) -> None:
        super().__init__(f"{step} run {run_id} still {last_status or 'unknown'} after {minutes:g} min; cancelling it")
        self.step, self.run_id, self.last_status = step, run_id, last_status


def retry_after(exc: BaseException) -> float | None:
    """Seconds the service asked us to wait (``Retry-After``), when the error carries a response."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def is_transient(exc: BaseException) -> bool:
    """Connection failures, throttling and 5xx: keep polling. Anything else (401, 403, 404): raise."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError)):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HttpResponseError) or status is not None:
        return status in TRANSIENT_STATUSES
    try:
        import httpx

        return isinstance(exc, httpx.TransportError)
    except ImportError:  # pragma: no cover
        return False


#: With an expected end, a pause before the band is at most this share of the run's age, so a run that ends
#: early is still seen within its age (a run expected to take an hour that fails after ten minutes is seen within
#: ten); the pauses double until the band, which they land on (a run's first poll in the band is at its start).
EARLY = 1.0
#: Past the band, a pause is at most this share of the time past it: a run slower than its history is
#: still seen within a quarter of its overrun, and the polls thin out again gradually.
OVERRUN = 0.25


@dataclass(frozen=True)
class ExpectedEnd:
    """When, in seconds after the wait began, the run is expected to end: ``median`` and the band
    ``low``-``high`` that recent runs ended in, polled every ``interval`` seconds (``max_interval`` when None);
    all learned by ``pipeline_durations``."""

    median: float
    low: float
    high: float
    interval: float | None = None

    def ceiling(self, age: float, policy: PollingConfig) -> float:
        """The longest pause ``age`` seconds into the wait: ``interval`` inside the band; before it, a share of
        the age but never past the band's start; after it, a share of the time past it; never above
        ``max_patient_interval``."""
        dense = policy.max_interval if self.interval is None else self.interval
        if age < self.low:
            share = min(EARLY * age, self.low - age)
        elif age <= self.high:
            share = 0.0
        else:
            share = OVERRUN * (age - self.high)
        return min(policy.max_patient_interval, max(dense, share))


class PollTiming(TypedDict, total=False):
    """What drives a wait besides its policy (tests and benchmarks inject a virtual clock)."""

    sleep: Callable[[float], None]
    clock: Callable[[], float]
    rng: Callable[[], float]


@dataclass
class Poller(Generic[T]):
    """Poll ``fetch`` until ``status_of`` says terminal. Clock, sleep and randomness are injectable so the
    benchmarks can replay hours of polling in a moment."""

    policy: PollingConfig
    step: str
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    on_change: Callable[[str, str | None, str], None] | None = None
    expected: ExpectedEnd | None = None
    #: Seconds the run was already waited on before this wait (a resumed retrain): they count toward the
    #: step's timeout and the run's age, so a suspension never restarts either.
    elapsed: float = 0.0
    #: The run can end with an event (Azure ML jobs): once suspended it is looked at again after
    #: ``PollingConfig.fallback`` of the wait's age only; without (Data Factory) the schedule's own next pause is kept.
    push: bool = False
    #: Push waits: ``listen(run_id)`` subscribes to the run's end events (``job_end_events``) for the hold, which
    #: then takes one status call and waits for an event instead of polling; None (or a failed subscription) polls.
    listen: Callable[[str], AbstractContextManager[Callable[[float], bool]]] | None = None
    #: False for waits that must end in-process (waiting out a cancel before the next attempt).
    holdable: bool = True
    calls: int = field(default=0, init=False)

    def pause(self, unchanged_polls: int, age: float = 0.0) -> float:
        """Seconds to wait after ``unchanged_polls`` polls without a change, ``age`` seconds into the wait."""
        grown = self.policy.initial_interval * self.policy.backoff ** min(unchanged_polls, 64)
        ceiling = self.policy.ceiling(age) if self.expected is None else self.expected.ceiling(age, self.policy)
        base = min(ceiling, grown)
        return max(0.0, base * (1 + self.policy.jitter * (2 * self.rng() - 1)))

    def wait(self, run_id: str, fetch: Callable[[], T], status_of: Callable[[T], str], terminal: Collection[str]) -> T:
        started = self.clock()
        began = started - self.elapsed
        deadline = began + self.policy.timeout_minutes * 60
        hold = self.policy.hold_seconds if self.holdable and may_suspend() and self.policy.hold_seconds > 0 else None
        last: str | None = None
        if hold is not None and self.push and self.listen is not None:
            ended, last = self._hold_on_events(run_id, fetch, status_of, terminal, began, started + hold)
            if ended is not None:
                return ended
        unchanged = 0
        while True:
            looked = self._look(run_id, fetch, status_of, last)
            if isinstance(looked, Exception):
                wait = max(self.pause(unchanged, self.clock() - began), retry_after(looked) or 0.0)
                log.warning(
                    "%s: status call for run %s failed (%s); trying again in %.0f s", self.step, run_id, looked, wait
                )
            else:
                result, status = looked
                unchanged = 0 if status != last else unchanged + 1
                last = status
                if status in terminal:
                    return result
                wait = self.pause(unchanged, self.clock() - began)
                if hold is not None and self.clock() - started >= hold and (self.push or wait >= hold):
                    self._release(run_id, status, wait, deadline, began)
            if self.clock() + wait > deadline:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise StepTimedOut(self.step, run_id, self.policy.timeout_minutes, last)
                wait = remaining
            self.sleep(wait)

    def _look(
        self, run_id: str, fetch: Callable[[], T], status_of: Callable[[T], str], last: str | None
    ) -> tuple[T, str] | Exception:
        """One status call: the run and its status (a change from ``last`` is logged), or the transient failure
        to try again after; any other failure is raised."""
        self.calls += 1
        try:
            result = fetch()
        except Exception as exc:
            if not is_transient(exc):
                raise
            return exc
        status = status_of(result)
        if status != last:
            self._changed(run_id, last, status)
        return result, status

    def _hold_on_events(
        self,
        run_id: str,
        fetch: Callable[[], T],
        status_of: Callable[[T], str],
        terminal: Collection[str],
        began: float,
        hold_end: float,
    ) -> tuple[T | None, str | None]:
        """The hold of a push wait: subscribe to the run's end events, one status call (a run that ended before
        the subscription), then wait for an event until the hold ends and confirm it with one call. Returns the
        ended run, or (None, last status) when polling must take over: no subscription, a failed call, or an
        event the status does not confirm yet. Raises ``StillRunning`` when the hold passes without an event."""
        assert self.listen is not None
        deadline = began + self.policy.timeout_minutes * 60
        last: str | None = None
        with ExitStack() as stack:
            try:
                wake = stack.enter_context(self.listen(run_id))
            except Exception as exc:
                log.warning("%s: no event subscription for run %s (%s); polling", self.step, run_id, exc)
                return None, last
            # the first hold of a wait also looks every hold_look_seconds: a job whose event never reaches the
            # receiver (no job subscription) is still seen ending in the hold; a resumed wait (it has been waited
            # on for a whole hold already: elapsed counts from the job's submission) looks once
            first_hold = self.elapsed < self.policy.hold_seconds
            every = self.policy.hold_look_seconds if first_hold else 0.0
            end = min(hold_end, deadline)
            heard = False  # the first look is for whatever happened before the subscription; later ones follow a wake
            while True:
                looked = self._look(run_id, fetch, status_of, last)
                if isinstance(looked, Exception):
                    return None, last  # polling tries again, with its Retry-After handling
                result, last = looked
                if last in terminal:
                    return result, last
                if heard:
                    return None, last  # an end event the status does not show yet: poll out the hold
                left = end - self.clock()
                if left <= 0:
                    break
                heard = wake(min(left, every) if every > 0 else left)
                if not heard and end - self.clock() < 1.0:
                    break  # the hold is over without an event
            if self.clock() >= deadline:
                raise StepTimedOut(self.step, run_id, self.policy.timeout_minutes, last)
            self._release(run_id, last or "unknown", 0.0, deadline, began)
        return None, last

    def _release(self, run_id: str, status: str, pause: float, deadline: float, began: float) -> None:
        """Held long enough and the next look is not due within the hold: let the retrain suspend. A push wait's
        next check stretches with its age (elapsed included), so each resume asks for a longer one."""
        left = deadline - self.clock()
        if left <= 0:
            return  # the timeout below cancels the run
        next_check = self.policy.fallback(self.clock() - began) if self.push else pause
        raise StillRunning(self.step, run_id, status, min(next_check, left), left)

    def _changed(self, run_id: str, before: str | None, after: str) -> None:
        """One log line per state change of the external run (never one per poll)."""
        if self.on_change is not None:
            self.on_change(run_id, before, after)
        else:
            log_state_change(self.step, run_id, before, after, fallback=log.fallback)
