"""The Prefect event feed is best effort: a full queue or a failing Prefect drops (and counts) events,
never raises into the webhook, and the poster keeps going for later events."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from drift_retrain.intake import feed as feed_module
from drift_retrain.intake.feed import Handed, PrefectEventFeed, drift_detected
from drift_retrain.intake.handoff import HandedOff
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.names import DRIFT_DETECTED
from drift_retrain.testing import dataset_drift


def handed(settings, *run_ids: str) -> list[Handed]:
    target = settings.targets[0]
    run = HandedOff(uuid.uuid4(), "run-name", created=True)
    return [Handed(to_drift_signal(dataset_drift(r)), target, run) for r in run_ids]


def events(settings, *run_ids: str):
    return [drift_detected(h) for h in handed(settings, *run_ids)]


@pytest.fixture
def prefect_events(monkeypatch):
    """Prefect's POST /api/events, answering from ``answers`` (status codes, 0 = connection refused) then 204."""
    state = {"answers": [], "posted": []}

    def handler(request: httpx.Request) -> httpx.Response:
        if state["answers"]:
            status = state["answers"].pop(0)
            if status == 0:
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(status)
        state["posted"].extend(e["payload"]["run_id"] for e in json.loads(request.content))
        return httpx.Response(204)

    def client(api_url=None, timeout=5):
        return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://prefect.test/api/")

    monkeypatch.setattr(feed_module, "prefect_http_client", client)
    return state


async def _until(condition, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_full_queue_drops_and_counts_instead_of_raising(settings) -> None:
    async def main():
        feed = PrefectEventFeed(max_pending=2)  # not entered: nothing drains the queue
        feed.publish(handed(settings, "a", "b", "c"))
        return feed.dropped

    assert asyncio.run(main()) == 1


@pytest.mark.parametrize("failure", [500, 0])
def test_a_failed_post_drops_its_events_and_later_events_still_go_out(settings, prefect_events, failure) -> None:
    prefect_events["answers"] = [failure]

    async def main():
        async with PrefectEventFeed(batch=1) as feed:
            feed.publish(handed(settings, "lost"))
            await _until(lambda: feed.dropped == 1)
            feed.publish(handed(settings, "later"))
            await _until(lambda: prefect_events["posted"] == ["later"])
            return feed.dropped

    assert asyncio.run(main()) == 1


def test_the_event_names_the_monitor_as_resource_and_the_signal_and_run_as_related(settings) -> None:
    (event,) = events(settings, "r1")
    signal = to_drift_signal(dataset_drift("r1"))
    assert event.event == DRIFT_DETECTED
    assert event.resource["prefect.resource.id"] == "azureml.monitor.demo-workspace.credit-default-drift"
    assert event.resource["azureml.workspace.id"] == signal.workspace_id
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in event.related}
    assert roles["flow-run"].startswith("prefect.flow-run.")
    assert roles["drift-run"] == "azureml.drift-run.demo-workspace.r1"
    assert roles["signal"] == f"drift-retrain.signal.{signal.digest}"
    assert roles["workspace"] == "azureml.workspace.demo-workspace"
    assert roles["model"] == "drift-retrain.model.credit-default"
    (again,) = events(settings, "r1")  # a redelivery: same signal, so the same event id for Prefect to drop
    assert again.id == event.id
