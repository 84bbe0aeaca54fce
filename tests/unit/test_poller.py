"""The adaptive poller on a fake clock: backoff, ceiling, jitter, deadline, Retry-After, what is transient."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytest

from drift_retrain.backends.azure.polling import ExpectedEnd, Poller, StepTimedOut
from drift_retrain.config import PollingConfig


class Clock:
    """Time that moves only when the poller sleeps; every pause is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


class HttpError(Exception):
    """Shaped like azure-core's HttpResponseError where the poller looks: status_code and response.headers."""

    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("Response", (), {"status_code": status, "headers": {"Retry-After": retry_after} if retry_after else {}})()


def statuses(*sequence: Any) -> Callable[[], str]:
    """A fetch that returns (or raises) the given items in order, then keeps returning the last one."""
    items = list(sequence)

    def fetch() -> str:
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, BaseException):
            raise item
        return item

    return fetch


def poller(clock: Clock, rng: float = 0.5, changes: list | None = None, **policy: Any) -> Poller[str]:
    config = PollingConfig(**{"initial_interval": 1, "max_interval": 10, "backoff": 2, "jitter": 0, "timeout_minutes": 60, **policy})
    return Poller(
        config,
        "copy",
        clock=clock,
        sleep=clock.sleep,
        rng=lambda: rng,
        on_change=(lambda run, before, after: changes.append((before, after))) if changes is not None else None,
    )


def wait(p: Poller[str], fetch: Callable[[], str], terminal: Iterable[str] = ("Succeeded", "Failed")) -> str:
    return p.wait("run-1", fetch, lambda status: status, frozenset(terminal))


def test_unchanged_status_stretches_the_pause_up_to_the_ceiling() -> None:
    clock = Clock()
    assert wait(poller(clock), statuses(*["InProgress"] * 7, "Succeeded")) == "Succeeded"
    assert clock.pauses == [1, 2, 4, 8, 10, 10, 10]


def test_a_status_change_resets_the_pause_to_the_initial_interval() -> None:
    clock = Clock()
    wait(poller(clock), statuses("Queued", "Queued", "Queued", "InProgress", "InProgress", "Succeeded"))
    assert clock.pauses == [1, 2, 4, 1, 2]


@pytest.mark.parametrize("rng, factor", [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)])
def test_jitter_stays_within_its_share(rng: float, factor: float) -> None:
    clock = Clock()
    wait(poller(clock, rng=rng, jitter=0.2), statuses("InProgress", "InProgress", "Succeeded"))
    assert clock.pauses == pytest.approx([1 * factor, 2 * factor], rel=1e-5)


def test_past_the_deadline_it_raises_step_timed_out_with_the_last_status() -> None:
    clock = Clock()
    began = clock.now
    with pytest.raises(StepTimedOut, match="copy run run-1 still InProgress after 0.5 min") as timed_out:
        wait(poller(clock, timeout_minutes=0.5), statuses("InProgress"))
    assert timed_out.value.last_status == "InProgress"
    assert clock.now - began == pytest.approx(30)  # the last pause is cut to the deadline, not beyond
    assert max(clock.pauses) <= 10


def test_throttling_waits_at_least_retry_after_then_goes_on() -> None:
    clock = Clock()
    assert wait(poller(clock), statuses("Queued", HttpError(429, retry_after="7"), "Succeeded")) == "Succeeded"
    assert clock.pauses == [1, 7]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_keep_polling(status: int) -> None:
    clock = Clock()
    assert wait(poller(clock), statuses(HttpError(status), HttpError(status), "Succeeded")) == "Succeeded"
    assert len(clock.pauses) == 2


def _connection_errors() -> list[BaseException]:
    import httpx
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return [
        ServiceRequestError("connection refused"),  # azure-core: the request never reached the service
        ServiceResponseError("connection reset"),  # azure-core: no answer came back
        httpx.ConnectError("connection refused"),  # the plain REST calls (v1 pipelines, run history)
        httpx.ReadTimeout("timed out"),
        ConnectionResetError("reset by peer"),
    ]


@pytest.mark.parametrize("error", _connection_errors(), ids=lambda e: type(e).__name__)
def test_connection_errors_keep_polling(error: BaseException) -> None:
    clock = Clock()
    assert wait(poller(clock), statuses(error, "Succeeded")) == "Succeeded"
    assert len(clock.pauses) == 1


@pytest.mark.parametrize("status, transient", [(503, True), (429, True), (404, False), (403, False)])
def test_plain_rest_errors_are_judged_by_their_status(status: int, transient: bool) -> None:
    """The regional REST calls raise RestError (not azure-core's): the same statuses are retried."""
    import httpx

    from drift_retrain.backends.azure.polling import is_transient, retry_after
    from drift_retrain.backends.azure.workspace_rest import RestError

    response = httpx.Response(status, headers={"retry-after": "12"})
    error = RestError(status, "from the service", response)
    assert is_transient(error) is transient
    assert retry_after(error) == 12.0


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_errors_raise_at_once(status: int) -> None:
    clock = Clock()
    calls = []

    def fetch() -> str:
        calls.append(1)
        raise HttpError(status)

    with pytest.raises(HttpError):
        wait(poller(clock), fetch)
    assert calls == [1] and clock.pauses == []


def test_one_notice_per_status_change_not_per_poll() -> None:
    clock, changes = Clock(), []
    wait(poller(clock, changes=changes), statuses("Queued", "Queued", "InProgress", "InProgress", "InProgress", "Succeeded"))
    assert changes == [(None, "Queued"), ("Queued", "InProgress"), ("InProgress", "Succeeded")]


def test_a_young_run_is_polled_within_max_interval_and_an_old_one_with_growing_patience() -> None:
    clock = Clock()
    p = poller(clock, initial_interval=5, max_interval=30, backoff=2, jitter=0, timeout_minutes=420,
               patient_after_minutes=10, patience=2, max_patient_interval=1200)
    began = clock.now
    wait(p, lambda: "Succeeded" if clock.now - began >= 6 * 3600 else "InProgress")
    ages, age = [], 0.0
    for pause in clock.pauses:
        ages.append(age)
        age += pause
    young = [pause for pause, at in zip(clock.pauses, ages) if at < 600]
    old = [(pause, at) for pause, at in zip(clock.pauses, ages) if at >= 600]
    assert young[:4] == [5, 10, 20, 30] and max(young) == 30  # the first ten minutes: at most 30 s
    assert all(pause == max(30, min(1200, 2 * (at - 600))) for pause, at in old)  # then: twice the time past
    assert old[-1][0] == 1200
    assert p.calls < 60  # a fixed one-minute poll makes 361


def test_without_patience_the_ceiling_stays_max_interval() -> None:
    clock = Clock()
    p = poller(clock, initial_interval=5, max_interval=60, backoff=1.5, jitter=0, timeout_minutes=420, patience=0)
    began = clock.now
    wait(p, lambda: "Succeeded" if clock.now - began >= 6 * 3600 else "InProgress")
    assert max(clock.pauses) == 60 and 6 * 3600 / 60 <= p.calls <= 6 * 3600 / 60 + 10


# -- with an expected end (Data Factory: the pipeline's recent runs, see run_history) -----------------

SHIPPED = {"initial_interval": 5, "max_interval": 30, "backoff": 2, "jitter": 0.1, "timeout_minutes": 420,
           "patient_after_minutes": 10, "patience": 2, "max_patient_interval": 1200}
#: A pipeline whose recent runs took about an hour (median 3600 s, interquartile band 3480-3720 s).
HOUR = ExpectedEnd(median=3600, low=3480, high=3720)


def run_until(ends_at: float, expected: ExpectedEnd | None, seed: int = 1, **policy: Any) -> tuple[Poller[str], list[float], float]:
    """A wait on a run that ends ``ends_at`` s after the wait began: the poller, the ages of its polls and how
    long after the end it noticed (jitter drawn from a seeded generator)."""
    import random

    clock, rng = Clock(), random.Random(seed)
    p = Poller(PollingConfig(**{**SHIPPED, **policy}), "copy", clock=clock, sleep=clock.sleep, rng=rng.random,
               on_change=lambda *_: None, expected=expected)
    began = clock.now
    polls: list[float] = []

    def fetch() -> str:
        polls.append(clock.now - began)
        return "Succeeded" if clock.now - began >= ends_at else "InProgress"

    wait(p, fetch)
    return p, polls, polls[-1] - ends_at


@pytest.mark.parametrize("ends_at", [3490, 3550, 3600, 3650, 3710])
def test_polls_cluster_around_the_expected_end_and_see_it_within_max_interval(ends_at: float) -> None:
    p, polls, delay = run_until(ends_at, HOUR, seed=int(ends_at))
    _, _, today_delay = run_until(ends_at, None, seed=int(ends_at))

    pauses = [(a, b - a) for a, b in zip(polls, polls[1:])]
    assert all(pause <= 33 for age, pause in pauses if age >= HOUR.low)  # every 30 s (±10 %) in the band
    assert delay <= 33  # seen within max_interval plus jitter ...
    assert today_delay > 100  # ... where today's schedule, 20 min apart by then, notices it minutes late
    assert p.calls <= 30  # at most half of a fixed one-minute poll's 60-odd calls on an hour's run
    assert len([age for age in polls if age < 3000]) <= 15  # sparse before


@pytest.mark.parametrize("ends_at", [3780, 3960])  # +5 %, +10 % of the median
def test_a_run_just_past_the_band_is_seen_within_a_quarter_of_its_overrun(ends_at: float) -> None:
    _, _, delay = run_until(ends_at, HOUR, seed=int(ends_at))
    assert delay <= 1.1 * max(30, 0.25 * (ends_at - HOUR.high)) + 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_the_approach_doubles_and_lands_on_the_bands_start_without_closing_in_on_it(seed: int) -> None:
    """The band is where runs end: before it, pauses grow with the age and the last one stops at its start (no
    run of polls closing in on it, which spent a third of an hour's budget before the band)."""
    _, polls, _ = run_until(HOUR.high, HOUR, seed=seed)
    before = [age for age in polls if age < HOUR.low]
    assert len(before) <= 12
    first_in_band = min(age for age in polls if age >= HOUR.low)
    assert first_in_band <= HOUR.low + 1.1 * 30
    assert all(later - age <= 1.1 * max(30, age) + 1e-6 for age, later in zip(polls, polls[1:]) if age < HOUR.low)


def test_the_band_is_polled_at_its_own_interval() -> None:
    """A ten-minute pipeline's band is polled every 5 s (``interval``), so its end is seen within seconds."""
    ten = ExpectedEnd(median=615, low=540, high=690, interval=5)
    for ends_at in (545, 600, 689):
        _, polls, delay = run_until(ends_at, ten, seed=int(ends_at))
        assert delay <= 5 * 1.1 + 1e-6
        assert all(later - age <= 5.5 + 1e-6 for age, later in zip(polls, polls[1:]) if ten.low <= age <= ten.high)


def test_the_dense_start_of_a_young_run_is_kept() -> None:
    _, polls, _ = run_until(3600, HOUR, seed=0, jitter=0)
    _, today, _ = run_until(3600, None, seed=0, jitter=0)
    assert polls[:4] == today[:4] == [0, 5, 15, 35]  # 5, 10, 20 s: a fast failure is seen as fast as today


@pytest.mark.parametrize("ends_at", [120, 600, 1800])
def test_a_run_that_ends_well_before_its_history_is_seen_within_its_age(ends_at: float) -> None:
    _, _, delay = run_until(ends_at, HOUR)
    assert delay <= max(30, ends_at) * 1.1 + 1e-6


def test_past_the_expected_end_the_polls_thin_out_gradually() -> None:
    _, polls, delay = run_until(3 * 3600, HOUR, jitter=0)
    late = [(a, b - a) for a, b in zip(polls, polls[1:]) if a > HOUR.high]
    pauses = [pause for _, pause in late]
    assert pauses == sorted(pauses)  # never denser again
    assert [pause for _, pause in late] == pytest.approx([min(1200, max(30, 0.25 * (age - HOUR.high))) for age, _ in late])
    assert pauses[0] == 30 and pauses[-1] == 1200
    assert delay <= 1200


def test_with_an_expected_end_the_deadline_still_raises_step_timed_out() -> None:
    clock = Clock()
    p = Poller(PollingConfig(**{**SHIPPED, "timeout_minutes": 90, "jitter": 0}), "copy", clock=clock, sleep=clock.sleep,
               rng=lambda: 0.5, on_change=lambda *_: None, expected=HOUR)
    began = clock.now
    with pytest.raises(StepTimedOut):
        wait(p, statuses("InProgress"))
    assert clock.now - began == pytest.approx(90 * 60)


def test_with_an_expected_end_retry_after_is_still_honoured_in_the_dense_band() -> None:
    clock = Clock()
    p = Poller(PollingConfig(**{**SHIPPED, "jitter": 0}), "copy", clock=clock, sleep=clock.sleep, rng=lambda: 0.5,
               on_change=lambda *_: None, expected=ExpectedEnd(median=60, low=0, high=120))
    assert wait(p, statuses("InProgress", HttpError(429, retry_after="45"), HttpError(503), "Succeeded")) == "Succeeded"
    assert clock.pauses[1] == 45  # Retry-After over the band's 30 s (5 s here: the dense start)
    assert len(clock.pauses) == 3  # the 503 was ridden out too
