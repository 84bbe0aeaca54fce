"""The Event Grid webhook receiver: an ASGI app run beside Prefect.

    drift-retrain webhook --host 127.0.0.1 --port 8088      (or: python -m deployments.webhook)

It answers the subscription handshake, checks the shared secret, reads and routes the delivery, and
acknowledges (200) only after Prefect has durably recorded a flow run for every drift signal in it.
When Prefect cannot, it answers 503 so Event Grid retries later.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from typing import AsyncIterator, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from drift_retrain.config import ConfigError, Settings, TargetConfig, load_settings
from drift_retrain.handoff import HandedOff, HandoffUnavailable, PrefectHandoff
from drift_retrain.intake import Rejected, read_delivery
from drift_retrain.signals import DriftSignal

log = logging.getLogger("drift_retrain.webhook")

EVENTS_PATH = "/api/eventgrid"
MAX_BODY_BYTES = 16 * 1024 * 1024  # Event Grid batches are "preferably" up to 1 MB; leave room, refuse floods
RETRY_AFTER_SECONDS = "30"


class Handoff(Protocol):
    """Where accepted signals go; entered for the app's lifetime (PrefectHandoff in production)."""

    async def __aenter__(self) -> "Handoff": ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def hand_off(self, signal: DriftSignal, target: TargetConfig, started_by: str = ...) -> HandedOff: ...
    async def healthy(self) -> bool: ...


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def create_app(settings: Settings | None = None, handoff: Handoff | None = None) -> Starlette:
    """Build the receiver. Without arguments it reads the config file and talks to $PREFECT_API_URL."""
    settings = settings or load_settings()
    secret = settings.receiver.secret()
    if secret is None and not settings.receiver.allow_unauthenticated:
        raise ConfigError(
            f"{settings.source_file}: receiver: no secret in ${settings.receiver.secret_env}; set it, or set "
            "receiver.allow_unauthenticated = true for local experiments"
        )

    def authorised(request: Request) -> bool:
        if secret is None:
            return True
        offered = request.query_params.get("code", "")
        return hmac.compare_digest(offered.encode(), secret.encode())

    async def receive(request: Request) -> JSONResponse:
        if not authorised(request):
            return _error(401, "missing or wrong ?code= secret")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _error(413, f"body of {declared} bytes exceeds {MAX_BODY_BYTES}")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
        try:
            delivery = read_delivery(body, settings)
        except Rejected as exc:
            log.warning("rejected delivery: %s", exc)
            return _error(exc.status, str(exc))
        if delivery.validation_code is not None:
            log.info("subscription validation answered (manual validation URL: %s)", delivery.validation_url)
            return JSONResponse({"validationResponse": delivery.validation_code})
        for ignored in delivery.ignored:
            log.info("ignored event %s (%s): %s", ignored.event_id, ignored.event_type, ignored.reason)
        accepted = []
        for routed in delivery.signals:
            try:
                run = await app.state.handoff.hand_off(routed.signal, routed.target)
            except HandoffUnavailable as exc:
                log.error("hand-off failed for event %s, asking Event Grid to retry: %s", routed.signal.event_id, exc)
                return _error(503, "Prefect is unavailable; retry later", **{"Retry-After": RETRY_AFTER_SECONDS})
            log.info(
                "event %s (delivery %s) drift run %s -> flow run %s (%s)",
                routed.signal.event_id,
                request.headers.get("aeg-delivery-count", "?"),
                routed.signal.run_id,
                run.flow_run_id,
                "created" if run.created else "duplicate",
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
        ignored = [{"event_id": i.event_id, "event_type": i.event_type, "reason": i.reason} for i in delivery.ignored]
        return JSONResponse({"accepted": accepted, "ignored": ignored})

    async def healthz(request: Request) -> JSONResponse:
        try:
            ok = await app.state.handoff.healthy()
        except Exception:  # any failure to reach Prefect is "not healthy", never a 500
            ok = False
        return JSONResponse({"prefect": "ok" if ok else "unreachable"}, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with handoff or PrefectHandoff() as entered:
            app.state.handoff = entered
            yield

    app = Starlette(
        routes=[Route(EVENTS_PATH, receive, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])],
        lifespan=lifespan,
    )
    return app


def serve(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8088) -> None:
    """Run the receiver with uvicorn. Uvicorn's access log is off: it would print the ?code= secret."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False, log_level="info")


if __name__ == "__main__":
    serve()
