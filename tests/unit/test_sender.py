"""Event Grid's delivery against a real HTTP server (uvicorn in a thread): 503 and 429 are tried again with
the delivery count one higher and not before Retry-After; a timeout or a refused connection is tried again;
every other answer is final at once; attempts and the deadline bound it all."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from drift_retrain.devstack.sender import DeliveryFailed, RetryPolicy, deliver_events
from drift_retrain.devstack.stack import HOST, free_port
from drift_retrain.testing import running

QUICK = RetryPolicy(attempts=5, deadline=60, pauses=(0.05, 0.1), timeout=30)


class Flaky:
    """A webhook that answers from a script (status, headers) per attempt, then 200; it records what arrived."""

    def __init__(self, *answers: tuple[int, dict[str, str]], hang_first: bool = False) -> None:
        self.answers = list(answers)
        self.hang_first = hang_first
        self.release = threading.Event()
        self.seen: list[dict] = []  # delivery count, secret, event ids, arrival time
        self.app = Starlette(routes=[Route("/api/eventgrid", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> JSONResponse:
        events = await request.json()
        self.seen.append({"count": request.headers["aeg-delivery-count"], "code": request.query_params.get("code"),
                          "ids": [e["id"] for e in events], "at": time.monotonic()})
        if self.hang_first and len(self.seen) == 1:
            while not self.release.is_set():  # longer than the sender's timeout: it gives up and retries
                await asyncio.sleep(0.05)
        if self.answers:
            status, headers = self.answers.pop(0)
            return JSONResponse({"error": "busy"}, status_code=status, headers=headers)
        return JSONResponse({"accepted": [{"event_id": i} for i in self.seen[-1]["ids"]]})


@pytest.fixture
def serve() -> Iterator:
    stack = []

    def start(flaky: Flaky) -> str:
        context = running(flaky.app)
        stack.append((context, flaky))
        return context.__enter__() + "/api/eventgrid"

    yield start
    for context, flaky in stack:
        flaky.release.set()
        context.__exit__(None, None, None)


EVENTS = [{"id": "e-1", "eventType": "Microsoft.MachineLearningServices.DatasetDriftDetected"}]


def test_503_is_retried_after_its_retry_after_with_the_delivery_count_one_higher(serve) -> None:
    flaky = Flaky((503, {"Retry-After": "1"}), (503, {"Retry-After": "1"}))
    delivery = deliver_events(serve(flaky), EVENTS, "s3cret", policy=QUICK)
    assert delivery.status_code == 200, delivery
    assert [a.status for a in delivery.attempts] == [503, 503, 200]
    assert [s["count"] for s in flaky.seen] == ["0", "1", "2"]
    assert {s["code"] for s in flaky.seen} == {"s3cret"} and all(s["ids"] == ["e-1"] for s in flaky.seen)
    gaps = [b["at"] - a["at"] for a, b in zip(flaky.seen, flaky.seen[1:])]
    assert min(gaps) >= 1.0, gaps  # never before Retry-After, however short the policy's own pauses
    assert delivery.json()["accepted"] == [{"event_id": "e-1"}]


def test_429_without_retry_after_backs_off_and_a_redelivery_starts_from_its_count(serve) -> None:
    flaky = Flaky((429, {}), (429, {}))
    delivery = deliver_events(serve(flaky), EVENTS, None, delivery_count=3, policy=QUICK)
    assert delivery.status_code == 200 and delivery.retried == 2
    assert [s["count"] for s in flaky.seen] == ["3", "4", "5"]
    assert flaky.seen[0]["code"] is None


@pytest.mark.parametrize("status", [400, 401, 403, 413, 500])
def test_any_other_answer_is_final_after_one_attempt(serve, status: int) -> None:
    flaky = Flaky((status, {"Retry-After": "1"}))
    delivery = deliver_events(serve(flaky), EVENTS, "s", policy=QUICK)
    assert delivery.status_code == status and len(delivery.attempts) == 1 and len(flaky.seen) == 1


def test_attempts_are_bounded_and_the_last_503_is_returned(serve) -> None:
    flaky = Flaky(*[(503, {})] * 10)
    delivery = deliver_events(serve(flaky), EVENTS, "s", policy=QUICK)
    assert delivery.status_code == 503
    assert len(delivery.attempts) == len(flaky.seen) == QUICK.attempts


def test_no_pause_runs_past_the_deadline(serve) -> None:
    flaky = Flaky((503, {"Retry-After": "30"}))
    began = time.monotonic()
    delivery = deliver_events(serve(flaky), EVENTS, "s", policy=RetryPolicy(attempts=5, deadline=10, timeout=30))
    assert delivery.status_code == 503 and len(flaky.seen) == 1
    assert time.monotonic() - began < 10  # gave up at once: waiting 30 s would pass the 10 s deadline


def test_an_attempt_not_answered_in_time_is_tried_again(serve) -> None:
    flaky = Flaky(hang_first=True)
    policy = RetryPolicy(attempts=3, deadline=120, pauses=(0.05,), timeout=2)
    delivery = deliver_events(serve(flaky), EVENTS, "s", policy=policy)
    assert delivery.status_code == 200, delivery
    assert delivery.attempts[0].status is None and "Timeout" in delivery.attempts[0].error
    assert [s["count"] for s in flaky.seen] == ["0", "1"]


def test_a_receiver_that_never_answers_fails_with_every_attempt_named() -> None:
    url = f"http://{HOST}:{free_port()}/api/eventgrid"  # nothing listens there
    with pytest.raises(DeliveryFailed) as failed:
        deliver_events(url, EVENTS, "s", policy=QUICK)
    assert len(failed.value.attempts) == QUICK.attempts
    assert all(a.status is None and "ConnectError" in a.error for a in failed.value.attempts)
    assert "no answer after 5 attempt(s)" in str(failed.value)
