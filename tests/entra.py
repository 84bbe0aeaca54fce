"""A local stand-in for a Microsoft Entra tenant: RSA signing keys, a JWKS endpoint on loopback, and
tokens shaped like the ones Event Grid sends (see fixtures' entra_delivery_token_claims_decoded.json)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


TENANT = "1912158f-712f-400e-819d-8498b1ad6f85"
AUDIENCE = "4d57fb6b-75ff-4e75-b2f1-b7788685f383"
# Azure Event Grid's first-party app, not read from the code under test: $eventGridAppId in MicrosoftDocs/azure-docs
# articles/event-grid/scripts/powershell-webhook-secure-delivery-azure-ad-app.md.
EVENT_GRID_APP_ID = "4962773b-9cdb-44cf-a8bf-237846a00ab7"


class LocalTenant:
    """Serves ``/discovery/v2.0/keys`` with one key (``kid``); signs tokens with it or with a stranger key."""

    def __init__(self, kid: str = "test-key-1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.requests = 0
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=kid, use="sig", alg="RS256")
        self.jwks = {"keys": [jwk]}
        tenant = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                tenant.requests += 1
                body = json.dumps(tenant.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.jwks_url = f"http://127.0.0.1:{self.server.server_address[1]}/{TENANT}/discovery/v2.0/keys"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def token(self, *, signer: Any = None, kid: str | None = None, alg: str = "RS256", **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "aud": AUDIENCE,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "appid": EVENT_GRID_APP_ID,
            "appidacr": "2",
            "tid": TENANT,
            "ver": "1.0",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, signer or self.key, algorithm=alg, headers={"kid": kid or self.kid})

    def entra_table(self) -> str:
        """Append to a config whose [receiver] has ``auth = "entra"``."""
        return (
            f'\n[receiver.entra]\ntenant_id = "{TENANT}"\naudiences = ["{AUDIENCE}", "api://drift-retrain"]\n'
            f'jwks_url = "{self.jwks_url}"\n'
        )
