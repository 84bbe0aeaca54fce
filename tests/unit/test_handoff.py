"""The hand-off writer against a scripted Prefect API: retries transient failures within the deadline,
fails fast when full, keeps order, batches, and maps duplicates onto existing runs.

Against a real Prefect server (bulk endpoint, idempotency, 32 concurrent deliveries): tests/e2e/test_intake.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from drift_retrain.config import HandoffConfig, Settings
from drift_retrain.intake.handoff import HandoffBusy, HandoffUnavailable, PrefectHandoff
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.names import flow_run_name
from drift_retrain.testing import dataset_drift

DEPLOYMENT = {"id": str(uuid.uuid4()), "flow_id": str(uuid.uuid4())}


class FakePrefect:
    """Answers like Prefect's REST API; ``script`` lists status codes to answer create calls with first."""

    def __init__(self, script: list[int] | None = None, delay: float = 0.0) -> None:
        self.script = list(script or [])
        self.delay = delay
        self.runs: dict[str, dict] = {}  # idempotency key -> run
        self.calls: list[str] = []
        self.created_order: list[str] = []
        self.bulk_failures = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if path.endswith("/health"):
            return httpx.Response(200, json=True)
        if "/deployments/name/" in path:
            return httpx.Response(200, json=DEPLOYMENT)
        if path.endswith("/flow_runs/filter"):
            keys = json.loads(request.content)["flow_runs"]["idempotency_key"]["any_"]
            return httpx.Response(200, json=[self.runs[k] for k in keys if k in self.runs])
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status = self.script.pop(0)
            if status == 0:
                raise httpx.ConnectError("connection refused", request=request)
            if status == -1:  # an answer the writer cannot read
                return httpx.Response(201, json={"unexpected": True})
            return httpx.Response(status, json={"detail": "database is locked"})
        body = json.loads(request.content)
        if path.endswith("/create_flow_run/bulk"):
            if self.bulk_failures:  # Prefect reports a failed item and creates the others
                self.bulk_failures -= 1
                results = [{"flow_run_id": self._create(b)[0]["id"], "status": "CREATED"} for b in body[:-1]]
                return httpx.Response(200, json={"results": results + [{"status": "FAILED", "error": "database is locked"}]})
            return httpx.Response(200, json={"results": [{"flow_run_id": self._create(b)[0]["id"], "status": "CREATED"} for b in body]})
        run, created = self._create(body)
        return httpx.Response(201 if created else 200, json=run)

    def _create(self, body: dict) -> tuple[dict, bool]:
        key = body["idempotency_key"]
        if key in self.runs:
            return self.runs[key], False
        self.runs[key] = {"id": str(uuid.uuid4()), "name": body["name"], "idempotency_key": key}
        self.created_order.append(body["name"])
        return self.runs[key], True


def handoff(fake: FakePrefect, **config) -> PrefectHandoff:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake), base_url="http://prefect.test/api/")
    return PrefectHandoff(config=HandoffConfig(**config), http=http)


def items(settings: Settings, *run_ids: str):
    return [(to_drift_signal(dataset_drift(r)), settings.targets[0]) for r in run_ids]



def run_name(settings, run_id: str) -> str:
    """The name the handoff gives the run of drift run ``run_id`` (names.flow_run_name: window and digest)."""
    return flow_run_name(settings.targets[0], to_drift_signal(dataset_drift(run_id)))

def test_transient_503s_429s_and_dropped_connections_are_retried(settings) -> None:
    fake = FakePrefect(script=[503, 0, 429])  # database locked, connection dropped, rate-limited

    async def main():
        async with handoff(fake, deadline_seconds=10) as h:
            return await h.hand_off_all(items(settings, "a"))

    (run,) = asyncio.run(main())
    assert run.created and run.flow_run_name == run_name(settings, "a")
    assert fake.calls.count(f"POST /api/deployments/{DEPLOYMENT['id']}/create_flow_run") == 4


def test_gives_up_before_the_deadline_when_prefect_keeps_failing(settings) -> None:
    fake = FakePrefect(script=[503] * 1000)

    async def main():
        async with handoff(fake, deadline_seconds=1.5) as h:
            began = time.monotonic()
            with pytest.raises(HandoffUnavailable, match="answered 503"):
                await h.hand_off_all(items(settings, "a"))
            return time.monotonic() - began

    assert asyncio.run(main()) < 3


def test_a_client_error_is_not_retried(settings) -> None:
    fake = FakePrefect(script=[422])

    async def main():
        async with handoff(fake) as h:
            with pytest.raises(HandoffUnavailable, match="answered 422"):
                await h.hand_off_all(items(settings, "a"))

    asyncio.run(main())
    assert len([c for c in fake.calls if c.endswith("create_flow_run")]) == 1


def test_a_full_queue_refuses_at_once(settings) -> None:
    fake = FakePrefect(delay=0.5)

    async def main():
        async with handoff(fake, max_pending=3, batch_size=1) as h:
            first = asyncio.create_task(h.hand_off_all(items(settings, "a", "b", "c")))
            await asyncio.sleep(0.05)
            began = time.monotonic()
            with pytest.raises(HandoffBusy):
                await h.hand_off_all(items(settings, "d", "e", "f"))
            assert time.monotonic() - began < 0.3  # at once, not after the 0.5 s write in progress
            return await first

    assert [r.flow_run_name for r in asyncio.run(main())] == [run_name(settings, r) for r in "abc"]


def test_concurrent_requests_are_written_in_arrival_order_in_batches(settings) -> None:
    fake = FakePrefect(delay=0.05)

    async def main():
        async with handoff(fake, batch_size=50) as h:
            requests = [h.hand_off_all(items(settings, f"r{i}a", f"r{i}b")) for i in range(10)]
            return await asyncio.gather(*requests)

    results = asyncio.run(main())
    assert all(r.created for pair in results for r in pair)
    assert fake.created_order == [run_name(settings, f"r{i}{x}") for i in range(10) for x in "ab"]
    creates = [c for c in fake.calls if "create_flow_run" in c]
    assert any(c.endswith("/bulk") for c in creates) and len(creates) < 10  # batched, not one call per signal


def test_duplicates_in_one_batch_and_across_batches_map_onto_one_run(settings) -> None:
    fake = FakePrefect()

    async def main():
        async with handoff(fake) as h:
            first = await h.hand_off_all(items(settings, "a", "b", "a"))
            again = await h.hand_off_all(items(settings, "b", "c"))
            return first, again

    first, again = asyncio.run(main())
    assert [r.created for r in first] == [True, True, False]
    assert first[0].flow_run_id == first[2].flow_run_id
    assert [r.created for r in again] == [False, True]
    assert again[0].flow_run_id == first[1].flow_run_id
    assert len(fake.runs) == 3


def test_a_failed_item_of_a_bulk_create_is_retried_and_the_others_still_count_as_new(settings) -> None:
    fake = FakePrefect()
    fake.bulk_failures = 1

    async def main():
        async with handoff(fake, deadline_seconds=10) as h:
            return await h.hand_off_all(items(settings, "a", "b", "c"))

    runs = asyncio.run(main())
    assert [r.flow_run_name for r in runs] == [run_name(settings, r) for r in "abc"]
    assert all(r.created for r in runs)  # a and b were made by the first try: new runs, not duplicates
    assert fake.created_order == [run_name(settings, r) for r in "abc"]
    assert len([c for c in fake.calls if c.endswith("/bulk")]) == 2


def test_an_unreadable_answer_fails_its_request_at_once_and_the_writer_carries_on(settings) -> None:
    fake = FakePrefect(script=[-1])

    async def main():
        async with handoff(fake, deadline_seconds=10) as h:
            began = time.monotonic()
            with pytest.raises(HandoffUnavailable, match="KeyError"):
                await h.hand_off_all(items(settings, "a"))
            assert time.monotonic() - began < 5  # not left waiting for the deadline
            return await h.hand_off_all(items(settings, "a"))

    (run,) = asyncio.run(main())
    assert run.created and run.flow_run_name == run_name(settings, "a")


def test_a_failed_write_halves_the_batch_and_successes_grow_it_back(settings) -> None:
    fake = FakePrefect(script=[503, 503])  # the first batch meets a locked database twice
    sizes: list[int] = []

    async def recording(request: httpx.Request) -> httpx.Response:
        if "create_flow_run" in request.url.path:
            body = json.loads(request.content)
            sizes.append(len(body) if isinstance(body, list) else 1)
        return await fake(request)

    async def main():
        http = httpx.AsyncClient(transport=httpx.MockTransport(recording), base_url="http://prefect.test/api/")
        async with PrefectHandoff(config=HandoffConfig(batch_size=8, deadline_seconds=10), http=http) as h:
            await h.hand_off_all(items(settings, *[f"a{i}" for i in range(8)]))
            await h.hand_off_all(items(settings, *[f"b{i}" for i in range(8)]))
            return h.batch_limit

    limit = asyncio.run(main())
    # the failing batch is retried whole; the limit went 8 -> 4 -> 2, then doubled with each success
    assert sizes == [8, 8, 8, 4, 4]
    assert limit == 8
