"""The Event Grid webhook receiver: an ASGI app run beside Prefect (``drift-retrain webhook``).

Per delivery, in this order: authenticate from the request line and headers (401, nothing read);
check the content type (400), its charset and encoding (415) and read the body up to its size (413) and
time (408) limits; answer the handshakes; parse, filter and route every event (400 refuses the whole
batch; 413 a signal Prefect could never store), in a worker thread when the body is large; hand every
drift signal to Prefect and acknowledge (200) only once Prefect has recorded a run for each, else 503 with
Retry-After so Event Grid retries the whole batch. Statuses of our own training jobs (``job_events``) are
named in the answer's ``jobs`` and, once it is sent, become Prefect events and resumes (``job_wake``).
Anything unexpected is a 500 (Event Grid retries), never a dropped connection. Also: ``OPTIONS`` (CloudEvents
abuse protection), ``GET /healthz`` (is Prefect reachable) and ``GET /metrics`` (Prometheus text). Every event
value logged goes through ``log_value``.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drift_retrain.config import Settings, TargetConfig, load_settings
from drift_retrain.intake.auth import KeysUnavailable, Unauthorized, authenticator_for
from drift_retrain.intake.delivery import Delivery, Rejected, content_encoding, media_type, read_delivery
from drift_retrain.intake.feed import Handed, NullFeed, PrefectEventFeed
from drift_retrain.intake.handoff import TRIMMED, HandedOff, HandoffUnavailable, PrefectHandoff
from drift_retrain.intake.job_events import JobEvent
from drift_retrain.intake.job_wake import NullWaker, PrefectJobWaker
from drift_retrain.intake.metrics import ReceiverMetrics
from drift_retrain.intake.server import uvicorn_options
from drift_retrain.logsafe import log_value
from drift_retrain.signals import DriftSignal

log = logging.getLogger("drift_retrain.webhook")

EVENTS_PATH = "/api/eventgrid"
#: Bodies up to this size are parsed on the event loop (a few milliseconds at most: 100 events take ~2 ms);
#: a worker-thread hop would cost the common 1-event delivery more than its parse. Larger ones go to a thread.
INLINE_PARSE_BYTES = 64 * 1024
#: Likewise the audit lines and answer of a delivery of more events than this go to a worker thread.
INLINE_EVENTS = 100
T = TypeVar("T")


class Handoff(Protocol):
    """Where accepted signals go; entered for the app's lifetime (PrefectHandoff in production)."""

    async def __aenter__(self) -> Handoff: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def hand_off_all(
        self, items: Iterable[tuple[DriftSignal, TargetConfig]], started_by: str = ...
    ) -> list[HandedOff]: ...
    async def healthy(self) -> bool: ...


class Feed(Protocol):
    async def __aenter__(self) -> Feed: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def publish(self, handed: list[Handed]) -> None: ...


class Waker(Protocol):
    """Where acknowledged job events go (``job_wake``); ``count`` is set to the receiver's metrics."""

    count: Callable[[str, int], None]

    async def __aenter__(self) -> Waker: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def wake(self, jobs: list[JobEvent]) -> None: ...


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, streamed and cut off at ``limit`` bytes (413) instead of buffered whole, and at ``timeout``
    seconds (408): a client trickling its body must not hold the connection for ever."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"body of {declared[:20]} bytes exceeds the {limit}-byte batch limit")
    chunks, size = [], 0
    with anyio.move_on_after(timeout) as deadline:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Rejected(413, f"body exceeds the {limit}-byte batch limit")
            chunks.append(chunk)
    if deadline.cancelled_caught:
        raise Rejected(408, f"body not received within {timeout:g} s (body_timeout_seconds)")
    return b"".join(chunks)


class Receiver:
    """The receiver's handlers over one config: each route is a method, the state lives here."""

    def __init__(
        self, settings: Settings, handoff: Handoff | None = None, feed: Feed | None = None, waker: Waker | None = None
    ) -> None:
        self.settings = settings
        self.config = settings.receiver
        self.authenticator = authenticator_for(self.config, settings.source_file)  # refuses an unintended open receiver
        self.metrics = ReceiverMetrics()
        self.retry_after = str(self.config.handoff.retry_after_seconds)
        self._given_handoff = handoff
        self._given_feed = feed
        self._given_waker = waker
        self.handoff: Handoff
        self.feed: Feed
        self.waker: Waker
        self._parses: anyio.CapacityLimiter | None = None  # made on the event loop that uses it

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Prefect's client (and the event feed, and the job-event waker) live as long as the app; on shutdown the
        waker finishes its queued job events first (bounded)."""
        feed = self._given_feed or (
            PrefectEventFeed() if self._given_handoff is None and self.config.event_feed else NullFeed()
        )
        waker = self._given_waker or (PrefectJobWaker() if self._given_handoff is None else NullWaker())
        waker.count = self.metrics.count_jobs
        self._parses = anyio.CapacityLimiter(self.config.max_concurrent_parses)
        async with (
            self._given_handoff or PrefectHandoff(config=self.config.handoff) as handoff,
            feed as publisher,
            waker as woken,
        ):
            self.handoff, self.feed, self.waker = handoff, publisher, woken
            yield

    async def receive(self, request: Request) -> Response:
        """POST: one Event Grid delivery; every answer is counted by status, an unexpected failure too (500:
        Event Grid retries it, where a dropped connection would leave the client guessing)."""
        try:
            response = await self._receive(request)
        except Exception as exc:
            log.error(
                "outcome=error status=500 delivery_count=%s error=%s\n%s",
                log_value(request.headers.get("aeg-delivery-count", "-"), 8),
                log_value(f"{type(exc).__name__}: {exc}", 300),
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),  # code locations only, no values
            )
            response = _error(500, "internal error: the delivery was not acknowledged; Event Grid retries it")
        self.metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _receive(self, request: Request) -> Response:
        started = time.monotonic()
        delivery_count = log_value(request.headers.get("aeg-delivery-count", "-"), 8)
        try:
            await self.authenticator.check(request.query_params, request.headers)
        except Unauthorized as exc:
            log.warning("outcome=unauthorized delivery_count=%s reason=%s", delivery_count, log_value(exc))
            challenge = {"WWW-Authenticate": "Bearer"} if self.authenticator.scheme == "entra" else {}
            return _error(401, str(exc), **challenge)
        except KeysUnavailable as exc:  # a JWKS outage must not make Event Grid drop the delivery
            log.error("outcome=auth_unavailable delivery_count=%s reason=%s", delivery_count, log_value(exc))
            return _error(503, str(exc), **{"Retry-After": self.retry_after})
        try:
            media_type(request.headers.get("content-type"))
            content_encoding(request.headers.get("content-encoding"))
            body = await _read_body(request, self.config.max_batch_bytes, self.config.body_timeout_seconds)
            delivery = await self._read(body, request.headers.get("aeg-event-type"))
        except Rejected as exc:
            self.metrics.count("rejected", max(exc.events, 1))
            log.warning(
                "outcome=rejected status=%d delivery_count=%s reason=%s events=%d",
                exc.status,
                delivery_count,
                log_value(exc, 300),
                exc.events,
            )
            if exc.status == 408:  # a client this slow is not kept: close once the answer is out
                self.metrics.timed_out("body")
                return _error(exc.status, str(exc), Connection="close")
            return _error(exc.status, str(exc))
        except ClientDisconnect:
            return _error(400, "client disconnected before the body was read")

        if delivery.acknowledge_only:
            log.info(
                "outcome=acknowledged delivery_count=%s reason=%s", delivery_count, log_value(delivery.acknowledge_only)
            )
            return JSONResponse({"accepted": [], "ignored": [], "note": delivery.acknowledge_only})
        if delivery.validation_code is not None:
            log.info(
                "outcome=validated subscription=%s validationUrl (for a manual validation, GET it within 5 minutes): %s",
                log_value(request.headers.get("aeg-subscription-name", "-"), 100),
                log_value(delivery.validation_url, 500),
            )
            return JSONResponse({"validationResponse": delivery.validation_code})
        return await self._hand_off(delivery, delivery_count, started)

    async def _read(self, body: bytes, aeg_event_type: str | None) -> Delivery:
        """Parse, filter and route (``read_delivery``); a large body off the event loop."""
        return await self._off_loop(len(body) > INLINE_PARSE_BYTES, read_delivery, body, self.settings, aeg_event_type)

    async def _off_loop(self, large: bool, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)``: on the event loop when small, else in a worker thread, at most
        ``max_concurrent_parses`` at once, so the event loop keeps serving other requests meanwhile (a
        4 MB batch is ~0.3 s of parsing and as much again of per-event log lines and answer)."""
        if not large:
            return work(*args)
        if self._parses is None:  # served without its lifespan (tests driving the bare ASGI app)
            self._parses = anyio.CapacityLimiter(self.config.max_concurrent_parses)
        return await anyio.to_thread.run_sync(work, *args, limiter=self._parses)

    async def _hand_off(self, delivery: Delivery, delivery_count: str, started: float) -> Response:
        large = len(delivery.signals) + len(delivery.ignored) > INLINE_EVENTS
        await self._off_loop(large, self._log_ignored, delivery, delivery_count)
        try:
            runs = await self.handoff.hand_off_all([(r.signal, r.target) for r in delivery.signals])
        except HandoffUnavailable as exc:
            self.metrics.count("failed_handoff", len(delivery.signals))
            first = delivery.signals[0].signal
            log.error(  # one line per delivery, however many signals it holds
                "event_id=%s delivery_count=%s outcome=failed_handoff drift_run=%s signals=%d reason=%s",
                log_value(first.event_id),
                delivery_count,
                log_value(first.run_id),
                len(delivery.signals),
                log_value(exc, 300),
            )
            return _error(503, "Prefect did not record the flow runs; retry later", **{"Retry-After": self.retry_after})
        self.metrics.count("ignored", len(delivery.ignored))  # counted once the batch is acknowledged
        if delivery.signals:
            self.metrics.handoff_seconds.observe(time.monotonic() - started)
        self.metrics.count_jobs("received", len(delivery.jobs))
        handed = [Handed(r.signal, r.target, run) for r, run in zip(delivery.signals, runs, strict=True)]
        publish = BackgroundTask(self._publish, handed, delivery.jobs) if runs or delivery.jobs else None
        return await self._off_loop(large, self._acknowledge, delivery, runs, delivery_count, publish)

    @staticmethod
    def _log_ignored(delivery: Delivery, delivery_count: str) -> None:
        for job in delivery.jobs:
            log.info(
                "event_id=%s delivery_count=%s outcome=job job=%s kind=%s status=%s",
                log_value(job.event_id),
                delivery_count,
                job.job,
                job.kind.value,
                job.status.value,
            )
        for skipped in delivery.ignored:
            log.info(
                "event_id=%s delivery_count=%s outcome=ignored type=%s reason=%s",
                log_value(skipped.event_id),
                delivery_count,
                log_value(skipped.event_type),
                log_value(skipped.reason, 300),
            )

    def _acknowledge(
        self, delivery: Delivery, runs: list[HandedOff], delivery_count: str, publish: BackgroundTask | None
    ) -> JSONResponse:
        """The 200: an audit line per signal, the outcome counts and the answer naming each run."""
        accepted = []
        for routed, run in zip(delivery.signals, runs, strict=True):
            outcome = "accepted" if run.created else "duplicate"
            log.info(
                "event_id=%s delivery_count=%s outcome=%s drift_run=%s flow_run=%s flow_run_name=%s%s",
                log_value(routed.signal.event_id),
                delivery_count,
                outcome,
                log_value(routed.signal.run_id),
                run.flow_run_id,
                log_value(run.flow_run_name),
                " raw_event=trimmed" if TRIMMED in routed.signal.raw_event else "",
            )
            accepted.append(
                {
                    "event_id": routed.signal.event_id,
                    "signal": routed.signal.identity,
                    "flow_run_id": str(run.flow_run_id),
                    "flow_run_name": run.flow_run_name,
                    "duplicate": not run.created,
                }
            )
        created = sum(run.created for run in runs)
        self.metrics.count("accepted", created)
        self.metrics.count("duplicate", len(runs) - created)
        ignored = [{"event_id": i.event_id, "event_type": i.event_type, "reason": i.reason} for i in delivery.ignored]
        jobs = [job.answer() for job in delivery.jobs]
        return JSONResponse({"accepted": accepted, "ignored": ignored, "jobs": jobs}, background=publish)

    async def _publish(self, handed: list[Handed], jobs: list[JobEvent]) -> None:
        """After the answer is sent; best effort: a failure here is logged, never the delivery's problem.
        A coroutine, so it runs on the event loop: the feed's and the waker's asyncio queues are not
        thread-safe, and a worker-thread hop per delivery cost more than the rest of the receiver's work."""
        try:
            if handed:
                self.feed.publish(handed)
        except Exception:
            log.exception("could not queue Prefect events for %d signal(s) (best effort)", len(handed))
        try:
            if jobs:
                self.waker.wake(jobs)
        except Exception:
            log.exception("could not queue %d job event(s) (best effort)", len(jobs))

    async def abuse_protection(self, request: Request) -> Response:
        """CloudEvents 1.0 webhook validation (OPTIONS). Not an authentication step (the spec says so):
        it grants nothing and reads no body; deliveries themselves are authenticated."""
        origin = request.headers.get("webhook-request-origin", "").strip()
        if not origin:
            return _error(400, "OPTIONS needs a WebHook-Request-Origin header")
        allowed = next((o for o in self.config.allowed_origins if o.lower() == origin.lower()), None)
        if allowed is None:
            log.warning("outcome=refused_origin origin=%s", log_value(origin, 100))
            return _error(403, "origin not allowed")
        headers = {"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}
        if request.headers.get("webhook-request-rate"):
            headers["WebHook-Allowed-Rate"] = "*"
        callback = request.headers.get("webhook-request-callback")
        if callback and await self._authenticated(request):
            log.info("outcome=validated origin=%s manual validation callback: %s", allowed, log_value(callback, 500))
        elif callback:  # anyone can send this header: its URL is logged only for an authenticated caller
            log.info(
                "outcome=validated origin=%s (callback not logged: the request carried no valid credential)", allowed
            )
        else:
            log.info("outcome=validated origin=%s (CloudEvents abuse protection)", allowed)
        return Response(status_code=200, headers=headers)

    async def not_allowed(self, request: Request) -> Response:
        """Other methods on the endpoint: 405, counted like every answer there."""
        self.metrics.requests.labels("405").inc()
        return _error(405, f"{request.method} is not accepted here; Event Grid POSTs", Allow="POST, OPTIONS")

    async def _authenticated(self, request: Request) -> bool:
        try:
            await self.authenticator.check(request.query_params, request.headers)
        except (Unauthorized, KeysUnavailable):
            return False
        return True

    async def healthz(self, request: Request) -> JSONResponse:
        """Healthy means Prefect is reachable; any failure to reach it is "unreachable", never a 500."""
        try:
            ok = await self.handoff.healthy()
        except Exception:
            ok = False
        return JSONResponse({"prefect": "ok" if ok else "unreachable"}, status_code=200 if ok else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)


def create_app(
    settings: Settings | None = None,
    handoff: Handoff | None = None,
    feed: Feed | None = None,
    waker: Waker | None = None,
) -> Starlette:
    """Build the receiver. Without arguments it reads the config file and talks to $PREFECT_API_URL."""
    return build_app(Receiver(settings or load_settings(), handoff, feed, waker))


def build_app(receiver: Receiver) -> Starlette:
    """The routes of a receiver. The endpoint answers with and without a trailing slash, and nothing is
    redirected: Starlette's slash redirect builds its Location from the Host header and repeats the query,
    the ``?code=`` secret included (starlette/routing.py ``Router.app``, ``redirect_slashes``)."""
    routes = []
    for path in (EVENTS_PATH, EVENTS_PATH + "/"):
        routes += [
            Route(path, receiver.receive, methods=["POST"]),
            Route(path, receiver.abuse_protection, methods=["OPTIONS"]),
            Route(path, receiver.not_allowed, methods=["GET", "PUT", "PATCH", "DELETE"]),  # (and HEAD, with GET)
        ]
    routes += [
        Route("/healthz", receiver.healthz, methods=["GET"]),
        Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=receiver.lifespan)
    app.router.redirect_slashes = False
    app.state.receiver = receiver
    app.state.metrics = receiver.metrics
    return app


def serve(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8088) -> None:
    """Run the receiver with uvicorn, its deadlines and limits set from ``[receiver]`` (``server``).
    Uvicorn's access log is off: it would print the ?code= secret. Without a Prefect server to hand off
    to it refuses at once (``ApiUrlMissing``), before uvicorn starts, instead of failing in its lifespan."""
    import uvicorn

    from drift_retrain.prefect_api import require_api_url

    require_api_url()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = settings or load_settings()
    app = create_app(settings)
    options = uvicorn_options(settings.receiver, app.state.metrics.timed_out)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info", **options)


if __name__ == "__main__":
    serve()
