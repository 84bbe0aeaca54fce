"""Hear an Azure ML job's end while a retrain holds its process: a subscription to the Prefect event stream,
filtered on the job's resource and its end events, so the hold waits for the event instead of polling.

The receiver emits ``azureml.job.<status>`` on the resource ``azureml.job.<job>`` for every job event it
accepts (drift_retrain/intake/job_wake.py ``prefect_job_event``); Prefect's ``PrefectEventSubscriber``
streams the matching events over the server's ``/events/out`` websocket, with a one-minute backfill, so an
event posted just before the subscription still arrives (prefect/events/clients.py ``_reconnect``).

The wait stays correct without this: the poller confirms every event with one status call, and any failure
(no server, a refused websocket, a closed stream) makes it poll as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from drift_retrain.intake.job_events import TERMINAL
from drift_retrain.intake.job_wake import JOB_EVENT_PREFIX
from drift_retrain.names import job_resource

#: How long subscribing may take before the hold gives up on events and polls.
CONNECT_SECONDS = 10.0
#: Reconnections the subscriber tries on an abnormal close before the stream counts as lost.
RECONNECTS = 2

#: ``wake(timeout)``: True when an end event of the job arrived (or the stream was lost: look now), False when
#: ``timeout`` seconds passed without one.
Wake = Callable[[float], bool]


def end_event_names() -> list[str]:
    """The Prefect event names of a job's end (what ``job_wake.job_event_name`` gives a terminal status)."""
    return sorted(f"{JOB_EVENT_PREFIX}{status.value.lower()}" for status in TERMINAL)


class _Subscription(threading.Thread):
    """The subscriber's own event loop, in a daemon thread: the poller that waits on it is synchronous."""

    def __init__(self, job_id: str) -> None:
        super().__init__(name=f"job-end-events-{job_id[:40]}", daemon=True)
        self.resource = job_resource(job_id)
        self.ready = threading.Event()  # subscribed, or failed to
        self.heard = threading.Event()  # an end event came, or the stream ended
        self.failure: BaseException | None = None
        self.context = contextvars.copy_context()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            # the caller's context: its Prefect settings (API URL, auth), which may live in a context variable
            self.context.run(asyncio.run, self._listen())
        except BaseException as exc:  # reported to the poller, which then polls
            self.failure = exc
        finally:
            self.ready.set()
            self.heard.set()

    async def _listen(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        wanted = EventFilter(  # occurred: set by the subscriber itself, from its connection time
            resource=EventResourceFilter(id=[self.resource]), event=EventNameFilter(name=end_event_names())
        )
        async with get_events_subscriber(filter=wanted, reconnection_attempts=RECONNECTS) as subscriber:
            self.ready.set()
            first = asyncio.ensure_future(self._first(subscriber))
            stop = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({first, stop}, return_when=asyncio.FIRST_COMPLETED)
            for task in (first, stop):
                task.cancel()
            await asyncio.gather(first, stop, return_exceptions=True)

    async def _first(self, subscriber: Any) -> None:
        async for event in subscriber:
            if event.resource.id == self.resource:
                break
        self.heard.set()  # the end event, or the stream closed cleanly: either way, look now

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        self.join(timeout=CONNECT_SECONDS)


@contextmanager
def job_end_events(job_id: str) -> Iterator[Wake]:
    """Subscribed to ``job_id``'s end events for the ``with`` block; raises when the subscription cannot be
    made within ``CONNECT_SECONDS`` (the caller polls instead)."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # ephemeral mode: get_events_subscriber would start a server of its own
        raise RuntimeError("no Prefect API URL: no event stream to subscribe to")
    subscription = _Subscription(job_id)
    subscription.start()
    try:
        if not subscription.ready.wait(CONNECT_SECONDS):
            raise TimeoutError(f"no event subscription within {CONNECT_SECONDS:g} s")
        if subscription.failure is not None:
            raise subscription.failure
        yield subscription.heard.wait
    finally:
        subscription.stop()
