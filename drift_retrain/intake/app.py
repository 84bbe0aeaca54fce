"""The Event Grid webhook receiver: an ASGI app run beside Prefect (``drift-retrain webhook``).

Per delivery, in this order: authenticate from the request line and headers (401, nothing read);
check the content type (400) and read the body up to its limit (413); answer the handshakes; parse,
filter and route every event (400 refuses the whole batch); hand every drift signal to Prefect and
acknowledge (200) only once Prefect has recorded a run for each, else 503 with Retry-After so Event Grid
retries the whole batch. Also: ``OPTIONS`` (CloudEvents abuse protection), ``GET /healthz`` (is Prefect
reachable) and ``GET /metrics`` (Prometheus text).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drift_retrain.config import Settings, TargetConfig, load_settings
from drift_retrain.intake.auth import KeysUnavailable, Unauthorized, authenticator_for
from drift_retrain.intake.delivery import Delivery, Rejected, media_type, read_delivery
from drift_retrain.intake.feed import Handed, NullFeed, PrefectEventFeed
from drift_retrain.intake.handoff import HandedOff, HandoffUnavailable, PrefectHandoff
from drift_retrain.intake.metrics import ReceiverMetrics
from drift_retrain.signals import DriftSignal

log = logging.getLogger("drift_retrain.webhook")

EVENTS_PATH = "/api/eventgrid"


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


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, streamed and cut off at ``limit`` bytes (413) instead of buffered whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"body of {declared} bytes exceeds the {limit}-byte batch limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"body exceeds the {limit}-byte batch limit")
        chunks.append(chunk)
    return b"".join(chunks)


class Receiver:
    """The receiver's handlers over one config: each route is a method, the state lives here."""

    def __init__(self, settings: Settings, handoff: Handoff | None = None, feed: Feed | None = None) -> None:
        self.settings = settings
        self.config = settings.receiver
        self.authenticator = authenticator_for(self.config, settings.source_file)  # refuses an unintended open receiver
        self.metrics = ReceiverMetrics()
        self.retry_after = str(self.config.handoff.retry_after_seconds)
        self._given_handoff = handoff
        self._given_feed = feed
        self.handoff: Handoff
        self.feed: Feed

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Prefect's client (and the event feed) live as long as the app."""
        feed = self._given_feed or (
            PrefectEventFeed() if self._given_handoff is None and self.config.event_feed else NullFeed()
        )
        async with self._given_handoff or PrefectHandoff(config=self.config.handoff) as handoff, feed as publisher:
            self.handoff, self.feed = handoff, publisher
            yield

    async def receive(self, request: Request) -> Response:
        """POST: one Event Grid delivery; every answer is counted by status."""
        response = await self._receive(request)
        self.metrics.requests.labels(str(response.status_code)).inc()
        return response

    async def _receive(self, request: Request) -> Response:
        started = time.monotonic()
        delivery_count = request.headers.get("aeg-delivery-count", "-")[:8]
        try:
            await self.authenticator.check(request.query_params, request.headers)
        except Unauthorized as exc:
            log.warning("outcome=unauthorized delivery_count=%s reason=%r", delivery_count, str(exc))
            challenge = {"WWW-Authenticate": "Bearer"} if self.authenticator.scheme == "entra" else {}
            return _error(401, str(exc), **challenge)
        except KeysUnavailable as exc:  # a JWKS outage must not make Event Grid drop the delivery
            log.error("outcome=auth_unavailable delivery_count=%s reason=%r", delivery_count, str(exc))
            return _error(503, str(exc), **{"Retry-After": self.retry_after})
        try:
            media_type(request.headers.get("content-type"))
            body = await _read_body(request, self.config.max_batch_bytes)
            delivery = read_delivery(body, self.settings, request.headers.get("aeg-event-type"))
        except Rejected as exc:
            self.metrics.count("rejected", max(exc.events, 1))
            log.warning(
                "outcome=rejected status=%d delivery_count=%s reason=%r", exc.status, delivery_count, str(exc)[:300]
            )
            return _error(exc.status, str(exc))
        except ClientDisconnect:
            return _error(400, "client disconnected before the body was read")

        if delivery.acknowledge_only:
            log.info("outcome=acknowledged delivery_count=%s reason=%r", delivery_count, delivery.acknowledge_only)
            return JSONResponse({"accepted": [], "ignored": [], "note": delivery.acknowledge_only})
        if delivery.validation_code is not None:
            log.info(
                "outcome=validated subscription=%s validationUrl (for a manual validation, GET it within 5 minutes): %s",
                request.headers.get("aeg-subscription-name", "-")[:100],
                delivery.validation_url,
            )
            return JSONResponse({"validationResponse": delivery.validation_code})
        return await self._hand_off(delivery, delivery_count, started)

    async def _hand_off(self, delivery: Delivery, delivery_count: str, started: float) -> Response:
        for skipped in delivery.ignored:
            log.info(
                "event_id=%s delivery_count=%s outcome=ignored type=%s reason=%r",
                skipped.event_id,
                delivery_count,
                skipped.event_type,
                skipped.reason,
            )
        try:
            runs = await self.handoff.hand_off_all([(r.signal, r.target) for r in delivery.signals])
        except HandoffUnavailable as exc:
            self.metrics.count("failed_handoff", len(delivery.signals))
            for routed in delivery.signals:
                log.error(
                    "event_id=%s delivery_count=%s outcome=failed_handoff drift_run=%s reason=%r",
                    routed.signal.event_id,
                    delivery_count,
                    routed.signal.run_id,
                    str(exc)[:300],
                )
            return _error(503, "Prefect did not record the flow runs; retry later", **{"Retry-After": self.retry_after})
        self.metrics.count("ignored", len(delivery.ignored))  # counted once the batch is acknowledged
        accepted = []
        for routed, run in zip(delivery.signals, runs, strict=True):
            outcome = "accepted" if run.created else "duplicate"
            self.metrics.count(outcome)
            log.info(
                "event_id=%s delivery_count=%s outcome=%s drift_run=%s flow_run=%s flow_run_name=%s",
                routed.signal.event_id,
                delivery_count,
                outcome,
                routed.signal.run_id,
                run.flow_run_id,
                run.flow_run_name,
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
        if delivery.signals:
            self.metrics.handoff_seconds.observe(time.monotonic() - started)
        ignored = [{"event_id": i.event_id, "event_type": i.event_type, "reason": i.reason} for i in delivery.ignored]
        handed = [Handed(r.signal, r.target, run) for r, run in zip(delivery.signals, runs, strict=True)]
        publish = BackgroundTask(self._publish, handed)
        return JSONResponse({"accepted": accepted, "ignored": ignored}, background=publish if runs else None)

    async def _publish(self, handed: list[Handed]) -> None:
        """After the answer is sent; best effort: a failure here is logged, never the delivery's problem.
        A coroutine, so it runs on the event loop: the feed's asyncio queue is not thread-safe, and a
        worker-thread hop per delivery cost more than the rest of the receiver's work."""
        try:
            self.feed.publish(handed)
        except Exception:
            log.exception("could not queue Prefect events for %d signal(s) (best effort)", len(handed))

    async def abuse_protection(self, request: Request) -> Response:
        """CloudEvents 1.0 webhook validation (OPTIONS). Not an authentication step (the spec says so):
        it grants nothing and reads no body; deliveries themselves are authenticated."""
        origin = request.headers.get("webhook-request-origin", "").strip()
        if not origin:
            return _error(400, "OPTIONS needs a WebHook-Request-Origin header")
        if origin.lower() not in {o.lower() for o in self.config.allowed_origins}:
            log.warning("outcome=refused_origin origin=%r", origin[:100])
            return _error(403, "origin not allowed")
        headers = {"WebHook-Allowed-Origin": origin, "Allow": "POST, OPTIONS"}
        if request.headers.get("webhook-request-rate"):
            headers["WebHook-Allowed-Rate"] = "*"
        if callback := request.headers.get("webhook-request-callback"):
            log.info("outcome=validated origin=%s manual validation callback: %s", origin, callback[:2000])
        else:
            log.info("outcome=validated origin=%s (CloudEvents abuse protection)", origin)
        return Response(status_code=200, headers=headers)

    async def healthz(self, request: Request) -> JSONResponse:
        """Healthy means Prefect is reachable; any failure to reach it is "unreachable", never a 500."""
        try:
            ok = await self.handoff.healthy()
        except Exception:
            ok = False
        return JSONResponse({"prefect": "ok" if ok else "unreachable"}, status_code=200 if ok else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)


def create_app(settings: Settings | None = None, handoff: Handoff | None = None, feed: Feed | None = None) -> Starlette:
    """Build the receiver. Without arguments it reads the config file and talks to $PREFECT_API_URL."""
    receiver = Receiver(settings or load_settings(), handoff, feed)
    app = Starlette(
        routes=[
            Route(EVENTS_PATH, receiver.receive, methods=["POST"]),
            Route(EVENTS_PATH, receiver.abuse_protection, methods=["OPTIONS"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/metrics", receiver.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
    )
    app.state.receiver = receiver
    app.state.metrics = receiver.metrics
    return app


def serve(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8088) -> None:
    """Run the receiver with uvicorn. Uvicorn's access log is off: it would print the ?code= secret."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")


if __name__ == "__main__":
    serve()
