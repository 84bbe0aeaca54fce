"""Deliver events to the webhook the way Event Grid does (used by the monitor, `send-event` and tests).

``post_events`` is one delivery attempt. ``deliver_events`` is Event Grid's delivery: an attempt that meets
503 or 429, a response timeout or a connection error is made again, later (at least the answer's
Retry-After, else a growing pause), with ``aeg-delivery-count`` counting the attempts so far, until an
attempt is answered with anything else or the attempts or the deadline run out. Every other answer (2xx,
and 4xx above all: Event Grid drops or dead-letters those at once) is final after one attempt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

#: Answers Event Grid tries again. It retries every answer but 200-204 and 400/401/403/413, and waits 30 s for
#: one (learn.microsoft.com/azure/event-grid/delivery-and-retry); 408 and other 5xx would be a receiver bug
#: here, so a test sees them at once instead of after a retry.
RETRIED_STATUSES = frozenset({429, 503})
#: Event Grid's own response timeout: an attempt not answered by then is retried.
EVENT_GRID_RESPONSE_TIMEOUT = 30.0


def delivery_headers(events: list[dict[str, Any]] | None = None, *, delivery_count: int = 0) -> dict[str, str]:
    """The headers Event Grid sends with an Event Grid-schema array (``aeg-delivery-count``: attempts so far)."""
    is_validation = any(e.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent" for e in events or [])
    return {
        "Content-Type": "application/json; charset=utf-8",
        "aeg-event-type": "SubscriptionValidation" if is_validation else "Notification",
        "aeg-subscription-name": "DRIFT-RETRAIN-LOCAL",
        "aeg-delivery-count": str(delivery_count),
        "aeg-metadata-version": "1",
        "aeg-data-version": "",
        "aeg-output-event-id": str(uuid.uuid4()),
    }


def post_events(
    url: str, events: list[dict[str, Any]], secret: str | None, *, delivery_count: int = 0, timeout: float = 60.0
) -> httpx.Response:
    """One attempt: POST an Event Grid-schema array with Event Grid's delivery headers; the secret goes in ?code=."""
    params = {"code": secret} if secret else None
    headers = delivery_headers(events, delivery_count=delivery_count)
    return httpx.post(url, json=events, headers=headers, params=params, timeout=timeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying. Event Grid keeps at it for up to 30 attempts over 24 h (10 s, 30 s, 1 min,
    ...); a test or a local sender bounds both, and pauses less between attempts that got no Retry-After."""

    attempts: int = 10
    deadline: float = 300.0  # seconds from the first attempt; no attempt starts after it
    pauses: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)  # the last one repeats
    timeout: float = 60.0  # per attempt (Event Grid's is 30 s; longer here so a slow but working answer counts)
    max_retry_after: float = 120.0  # a Retry-After beyond this is an answer not to wait for

    def pause(self, retry: int, retry_after: float | None) -> float:
        """Seconds before retry number ``retry`` (1-based): at least the answer's Retry-After."""
        backoff = self.pauses[min(retry, len(self.pauses)) - 1]
        return max(backoff, retry_after or 0.0)


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: its ``aeg-delivery-count``, its answer (status) or why there was none."""

    delivery_count: int
    status: int | None
    error: str = ""
    seconds: float = 0.0  # how long the attempt took to be answered (or to fail)
    retry_after: float | None = None

    def __str__(self) -> str:
        answer = self.status if self.status is not None else self.error
        return f"#{self.delivery_count}: {answer} in {self.seconds:.1f} s" + (
            f" (Retry-After {self.retry_after:g})" if self.retry_after else ""
        )


class DeliveryFailed(RuntimeError):
    """No attempt was ever answered (connection errors, timeouts) within the policy's bounds."""

    def __init__(self, url: str, attempts: list[Attempt]) -> None:
        super().__init__(f"{url}: no answer after {len(attempts)} attempt(s): " + "; ".join(map(str, attempts)))
        self.attempts = attempts


@dataclass
class Delivery:
    """The final answer to a delivery and every attempt it took, so a test can say what it met."""

    response: httpx.Response
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def text(self) -> str:
        return self.response.text

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def json(self) -> Any:
        return self.response.json()

    @property
    def retried(self) -> int:
        return len(self.attempts) - 1

    def __str__(self) -> str:
        return f"{self.status_code} after {len(self.attempts)} attempt(s): " + "; ".join(map(str, self.attempts))


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the receiver sends seconds; an HTTP date is not worth parsing here)."""
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def redeliver(
    attempt: Callable[[int, float], httpx.Response],
    *,
    first_count: int = 0,
    policy: RetryPolicy = RetryPolicy(),
    url: str = "",
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Call ``attempt(delivery_count, timeout)`` until it is answered with something Event Grid does not
    retry, or the policy's attempts or deadline run out: the last answer is returned (a 503 included);
    ``DeliveryFailed`` when no attempt was ever answered. No pause runs past the deadline."""
    began = time.monotonic()
    attempts: list[Attempt] = []
    last: httpx.Response | None = None
    count = first_count
    while True:
        started = time.monotonic()
        try:
            response = attempt(count, policy.timeout)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            attempts.append(
                Attempt(count, None, f"{type(exc).__name__}: {exc}".rstrip(": "), time.monotonic() - started)
            )
            retry_after = None
        else:
            retry_after = _retry_after(response)
            attempts.append(Attempt(count, response.status_code, "", time.monotonic() - started, retry_after))
            last = response
            if response.status_code not in RETRIED_STATUSES:
                return Delivery(response, attempts)
        pause = policy.pause(len(attempts), retry_after)
        if (
            len(attempts) >= policy.attempts
            or (retry_after or 0) > policy.max_retry_after
            or time.monotonic() + pause - began > policy.deadline
        ):
            if last is None:
                raise DeliveryFailed(url, attempts)
            return Delivery(last, attempts)
        sleep(pause)
        count += 1


def deliver_events(
    url: str,
    events: list[dict[str, Any]],
    secret: str | None,
    *,
    delivery_count: int = 0,
    policy: RetryPolicy = RetryPolicy(),
) -> Delivery:
    """Deliver a batch as Event Grid does: the same events posted again, ``aeg-delivery-count`` one higher,
    after a 503/429, a timeout or a connection error, within ``policy``."""
    return redeliver(
        lambda count, timeout: post_events(url, events, secret, delivery_count=count, timeout=timeout),
        first_count=delivery_count,
        policy=policy,
        url=url,
    )
