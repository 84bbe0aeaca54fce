"""The servers the intake benchmark loads, each in its own process under the same uvicorn settings:

    python -m benchmarks.apps bare --port N                  a bare Starlette handler answering 200
    python -m benchmarks.apps receiver --port N              the receiver, handing off to a no-op sink
    python -m benchmarks.apps receiver-inline --port N       the same, doing all its work on the event loop
                                                             (as before issue 14; benchmarks/loop.py compares)

The receiver reads $DRIFT_RETRAIN_CONFIG and logs at INFO as ``drift-retrain webhook`` does.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from typing import Any, Callable, Iterable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from drift_retrain.config import TargetConfig, load_settings
from drift_retrain.intake.feed import NullFeed
from drift_retrain.intake.handoff import HandedOff
from drift_retrain.signals import DriftSignal


class NoopHandoff:
    """A sink that records nothing: what is left of a delivery's cost is the receiver's own work."""

    async def __aenter__(self) -> "NoopHandoff":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def hand_off_all(self, items: Iterable[tuple[DriftSignal, TargetConfig]], started_by: str = "webhook") -> list[HandedOff]:
        return [HandedOff(uuid.uuid4(), "noop", created=True) for _ in items]

    async def healthy(self) -> bool:
        return True


def bare_app() -> Starlette:
    async def ok(request: Request) -> Response:
        await request.body()  # read what was sent, as any handler must
        return Response(b'{"accepted":[]}', media_type="application/json")

    return Starlette(routes=[Route("/api/eventgrid", ok, methods=["POST"])])


def receiver_app() -> Starlette:
    from drift_retrain.intake.app import create_app

    return create_app(load_settings(), handoff=NoopHandoff(), feed=NullFeed())


def inline_receiver_app() -> Starlette:
    from drift_retrain.intake.app import Receiver, build_app

    class OnTheLoop(Receiver):
        """Parses, routes, logs and answers on the event loop, whatever the delivery's size."""

        async def _off_loop(self, large: bool, work: Callable[..., Any], *args: Any) -> Any:
            return work(*args)

    return build_app(OnTheLoop(load_settings(), handoff=NoopHandoff(), feed=NullFeed()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app", choices=["bare", "receiver", "receiver-inline"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = {"bare": bare_app, "receiver": receiver_app, "receiver-inline": inline_receiver_app}[args.app]()
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="info")


if __name__ == "__main__":
    main()
