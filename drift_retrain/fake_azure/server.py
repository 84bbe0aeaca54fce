"""A loopback Azure: HTTPS on 127.0.0.1 with a throwaway CA, speaking the documented REST wire format.

The real SDK clients (azure-identity, azure-mgmt-datafactory, azure-ai-ml) talk to it unchanged: ARM
clients through ``base_url``, MLClient through cloud metadata, ClientSecretCredential through its
``authority``. It records every request, so tests assert on what the SDKs actually sent.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

TENANT = "00000000-0000-0000-0000-00000000a2e0"
CLIENT_ID = "00000000-0000-0000-0000-0000000c11e0"
CLIENT_SECRET = "fake-client-secret"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # path + query, as sent
    body: Any
    headers: dict[str, str]


@dataclass
class Faults:
    """Faults the next requests meet, by path substring: throttling and 5xx bursts."""

    throttle: dict[str, int] = field(default_factory=dict)  # substring -> number of 429s still to answer
    errors: dict[str, int] = field(default_factory=dict)  # substring -> number of 503s still to answer
    retry_after: float = 1.0

    def take(self, path: str) -> Response | None:
        for pattern, left in self.throttle.items():
            if left > 0 and pattern in path:
                self.throttle[pattern] = left - 1
                return JSONResponse(
                    {"error": {"code": "TooManyRequests", "message": "Rate limit exceeded (fake)"}},
                    status_code=429,
                    headers={"Retry-After": f"{self.retry_after:g}"},
                )
        for pattern, left in self.errors.items():
            if left > 0 and pattern in path:
                self.errors[pattern] = left - 1
                return JSONResponse(
                    {"error": {"code": "ServiceUnavailable", "message": "Transient failure (fake)"}}, status_code=503
                )
        return None


class Tokens:
    """The Microsoft Entra side: issues opaque tokens with a lifetime and refuses expired ones."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.lifetime = lifetime
        self.issued: dict[str, tuple[float, str]] = {}  # token -> (expires at, scope)
        self.requests = 0

    def issue(self, scope: str) -> dict[str, Any]:
        self.requests += 1
        token = _unsigned_jwt(scope, self.lifetime)
        self.issued[token] = (time.time() + self.lifetime, scope)
        return {
            "token_type": "Bearer",
            "expires_in": int(self.lifetime),
            "ext_expires_in": int(self.lifetime),
            "access_token": token,
        }

    def problem(self, authorization: str | None, audience: str | None = None) -> str | None:
        """Why a request's bearer token is not acceptable, or None when it is. With ``audience``, a token
        issued for another resource is refused too, as ARM does (InvalidAuthenticationTokenAudience)."""
        if not authorization or not authorization.startswith("Bearer "):
            return "missing bearer token"
        issued = self.issued.get(authorization.removeprefix("Bearer "))
        if issued is None:
            return "unknown token"
        if issued[0] <= time.time():
            return "token expired"
        if audience is not None and _audience(issued[1]) != _audience(audience):
            return (
                f"The access token has been obtained for wrong audience or resource '{_audience(issued[1])}'. "
                f"It should exactly match with one of the allowed audiences '{_audience(audience)}'."
            )
        return None


def _audience(scope: str) -> str:
    """``https://host/.default`` and ``https://host/`` name the same resource."""
    return scope.removesuffix(".default").rstrip("/")


def _unsigned_jwt(scope: str, lifetime: float) -> str:
    """An access token shaped like Entra's (a JWT, signature not meaningful): azure-ai-ml decodes it to
    check ``aud`` before submitting a pipeline job and to read ``tid`` for Studio links."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "aud": scope.removesuffix("/.default"),
        "iss": f"https://sts.windows.net/{TENANT}/",
        "tid": TENANT,
        "appid": CLIENT_ID,
        "iat": now,
        "nbf": now,
        "exp": now + int(lifetime),
        "jti": secrets.token_hex(8),
    }
    return f"{part({'typ': 'JWT', 'alg': 'none'})}.{part(claims)}.{secrets.token_hex(16)}"


Handler = Callable[[Request], Awaitable[Response]]


class FakeAzure:
    """Start with ``with FakeAzure() as azure:``; ``azure.url`` is the base URL, ``azure.ca_path`` the CA
    to trust. Services add their routes with ``mount(routes)`` before the server starts."""

    def __init__(
        self,
        port: int = 0,
        workdir: Path | None = None,
        token_lifetime: float = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port or _free_port()
        #: What scripted runs measure their progress by; a virtual clock replays hours in a moment.
        self.clock = clock
        self.url = f"https://127.0.0.1:{self.port}"
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="fake-azure-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tokens = Tokens(token_lifetime)
        self.faults = Faults()
        self.requests: list[Recorded] = []
        self._routes: list[BaseRoute] = []
        from drift_retrain.fake_azure.datafactory import FakeDataFactory
        from drift_retrain.fake_azure.machinelearning import FakeMachineLearning

        self.datafactory = FakeDataFactory(self)
        self.ml = FakeMachineLearning(self)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = self.workdir / "fake-azure-ca.pem"
        self._cert_path = self.workdir / "fake-azure-cert.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.private_key_and_cert_chain_pem.write_to_path(str(self._cert_path))

    # -- routing ------------------------------------------------------------------------------

    def mount(self, routes: list[BaseRoute]) -> None:
        self._routes.extend(routes)

    def sent(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        """The recorded requests, filtered by method and a path substring."""
        return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    def app(self) -> Starlette:
        from drift_retrain.fake_azure.identity import identity_routes

        fake = self

        async def record_and_authorise(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            raw = await request.body()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            fake.requests.append(Recorded(request.method, path, body, dict(request.headers)))
            if not _is_identity_path(request.url.path):
                # Every service here (ARM, the regional hosts, batch scoring) is this cloud's resource manager:
                # a custom cloud's token audience (see backends/azure/mlclient.py).
                problem = fake.tokens.problem(request.headers.get("authorization"), audience=fake.url)
                if problem:
                    code = (
                        "InvalidAuthenticationTokenAudience" if "audience" in problem else "InvalidAuthenticationToken"
                    )
                    return JSONResponse(
                        {"error": {"code": code, "message": problem}},
                        status_code=401,
                        headers={
                            "WWW-Authenticate": f'Bearer authorization_uri="{fake.url}/{TENANT}", error="invalid_token"'
                        },
                    )
                fault = fake.faults.take(path)
                if fault is not None:
                    return fault
            return await call_next(request)

        routes = [*identity_routes(self), *self.datafactory.routes(), *self.ml.routes(), *self._routes]
        app = Starlette(routes=routes)
        app.add_middleware(BaseHTTPMiddleware, dispatch=record_and_authorise)
        return app

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FakeAzure:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            ssl_certfile=str(self._cert_path),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-azure", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Azure server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            # don't wait for clients' idle keep-alive connections (an SDK client left open, or one whose
            # error responses were never read, held every stop up for the 10 s join timeout)
            self._server.force_exit = True
            self._server.should_exit = True
            # SDK clients keep TLS keep-alive connections open; waiting for them to close costs 10 s.
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()


def _is_identity_path(path: str) -> bool:
    return "/oauth2/" in path or "/.well-known/" in path or path.startswith("/common/discovery")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
