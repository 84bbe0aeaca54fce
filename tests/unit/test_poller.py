"""The adaptive poller on a fake clock: backoff, ceiling, jitter, deadline, Retry-After, what is transient."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytest

from drift_retrain.backends.azure.polling import Poller, StepTimedOut
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
