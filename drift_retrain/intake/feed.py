"""Best-effort Prefect events for accepted signals, so the Event Feed shows each drift and users can hang
their own automations on ``azureml.drift.detected``.

Never in the acknowledgement's way: the webhook queues what it handed off after it has its answer, and
the feed's own task builds the events (building a Prefect ``Event`` was about a third of a delivery's
handling, so not on the request path, and not at all without a feed). That task posts them to
``POST /api/events`` one request at a time, up to 20 events each (Prefect's broker drops events under
large concurrent batches), lingering a second for more, so a burst of deliveries costs the Prefect
server a post per second rather than one per delivery (it is busy creating their runs). Prefect's
events are at-most-once: a full queue or a failed post drops the event
and logs it. The event id is derived from the signal, so a redelivery's event is dropped by Prefect's
de-duplication instead of appearing twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from prefect.events import Event

from drift_retrain.config import TargetConfig
from drift_retrain.intake.handoff import HandedOff, prefect_http_client
from drift_retrain.logsafe import log_value
from drift_retrain.names import (
    DRIFT_DETECTED,
    drift_detected_event_id,
    flow_run_related,
    model_related,
    monitor_resource,
    signal_related,
)
from drift_retrain.signals import DriftSignal

log = logging.getLogger("drift_retrain.intake.feed")


@dataclass(frozen=True)
class Handed:
    """A signal the webhook handed off, queued for the feed; ``received`` is when it was acknowledged."""

    signal: DriftSignal
    target: TargetConfig
    run: HandedOff
    received: datetime = field(default_factory=lambda: datetime.now(UTC))


def drift_detected(handed: Handed) -> Event:
    """The monitor is the resource; the signal, workspace and drift run (the same ids as on the flow's own
    events of the signal), the flow run and the model are related."""
    signal, target, run = handed.signal, handed.target, handed.run
    # Validated as the constructor would validate it: pydantic turns the datetime and dicts into Prefect's types.
    return Event.model_validate(
        {
            "id": drift_detected_event_id(signal),
            "occurred": handed.received,  # Azure's own event time is in the payload
            "event": DRIFT_DETECTED,
            "resource": monitor_resource(signal),
            "related": [
                *signal_related(signal, monitor=False),
                flow_run_related(run.flow_run_id, run.flow_run_name),
                model_related(target.model_name),
            ],
            "payload": {
                "kind": signal.kind.value,
                "event_id": signal.event_id,
                "event_time": signal.event_time.isoformat() if signal.event_time else None,
                "run_id": signal.run_id,
                "drift_coefficient": signal.drift_coefficient,
                "breached_metrics": signal.breached_metrics,
                "target": target.name,
                "new_flow_run": run.created,
            },
        }
    )


class NullFeed:
    """No Event Feed (tests of the HTTP contract, or no Prefect API configured)."""

    async def __aenter__(self) -> NullFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def publish(self, handed: list[Handed]) -> None:
        pass


class PrefectEventFeed:
    def __init__(
        self, api_url: str | None = None, max_pending: int = 1000, batch: int = 20, linger: float = 1.0
    ) -> None:
        self.api_url = api_url
        self.max_pending = max_pending
        self.batch = batch
        self.linger = linger  # wait this long for more events: one post per burst, not per delivery
        self.dropped = 0
        self._queue: asyncio.Queue[Handed] = asyncio.Queue(max_pending)
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PrefectEventFeed:
        self._http = prefect_http_client(self.api_url, timeout=5)
        self._task = asyncio.create_task(self._post_forever(), name="prefect-event-feed")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            try:  # give queued events a moment on a clean shutdown, then stop
                await asyncio.wait_for(self._queue.join(), 2)
            except TimeoutError:
                pass
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def publish(self, handed: list[Handed]) -> None:
        """Queue without waiting; a full queue drops (and counts) the signal's event."""
        for item in handed:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped += 1
                log.warning("event feed queue full, dropped %s for %s", DRIFT_DETECTED, log_value(item.signal.identity))

    async def _post_forever(self) -> None:
        assert self._http is not None
        while True:
            items = [await self._queue.get()]
            lingered = asyncio.get_running_loop().time() + self.linger
            while len(items) < self.batch:
                try:
                    items.append(
                        await asyncio.wait_for(
                            self._queue.get(), max(0.0, lingered - asyncio.get_running_loop().time())
                        )
                    )
                except TimeoutError:
                    break
            try:
                body: list[dict[str, Any]] = [drift_detected(i).model_dump(mode="json") for i in items]
                response = await self._http.post("events", json=body)
                if response.status_code >= 300:
                    raise httpx.HTTPStatusError(str(response.status_code), request=response.request, response=response)
            except Exception as exc:  # never let the poster die: later events would pile up unsent
                self.dropped += len(items)
                log.warning(
                    "could not publish %d Prefect event(s) (best effort, dropped): %s", len(items), log_value(exc, 300)
                )
            finally:
                for _ in items:
                    self._queue.task_done()
