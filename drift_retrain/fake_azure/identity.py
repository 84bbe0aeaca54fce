"""The Microsoft Entra token endpoint, as much of it as ClientSecretCredential (MSAL) uses."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from drift_retrain.fake_azure.server import FakeAzure


def identity_routes(fake: FakeAzure) -> list[Route]:
    async def openid_configuration(request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        base = f"{fake.url}/{tenant}"
        return JSONResponse(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            }
        )

    async def token(request: Request) -> JSONResponse:
        from drift_retrain.fake_azure.server import CLIENT_ID, CLIENT_SECRET

        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided (fake).",
                },
                status_code=401,
            )
        return JSONResponse(fake.tokens.issue(form.get("scope", "")))

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ]
