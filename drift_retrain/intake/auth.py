"""Who may deliver: the shared secret (``?code=`` or a configured header) or Microsoft Entra bearer JWTs.

Checked from the request line and headers alone, before the body is read, so a caller without
credentials gets 401 and nothing of its request is processed. Failure messages name what was wrong
but never echo a credential.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import jwt

from drift_retrain.config import ConfigError, EntraConfig, ReceiverConfig


class Unauthorized(Exception):
    """The delivery is refused with 401; the message is safe to return and log."""


class KeysUnavailable(Exception):
    """The tenant's signing keys could not be fetched, so a token cannot be judged either way: answered
    with 503 (Event Grid retries) rather than 401 (Event Grid drops or dead-letters at once)."""


class Authenticator(Protocol):
    scheme: str

    async def check(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        """Return when the caller is allowed, raise ``Unauthorized`` otherwise."""


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode(), expected.encode())


def _only(values: Mapping[str, str], name: str, where: str) -> str | None:
    """The one value of ``name``, or None when absent. Given twice it is refused: frameworks disagree on
    which copy wins (Starlette's mapping keeps the last query value, its headers the first), so a wrong
    copy beside the right one must not pass on one of them (``?code=wrong&code=<secret>``)."""
    getlist = getattr(values, "getlist", None)
    found = getlist(name) if getlist is not None else ([values[name]] if name in values else [])
    if len(found) > 1:
        raise Unauthorized(f"{where} given {len(found)} times; give it once")
    return found[0] if found else None


class SharedSecret:
    """The secret Event Grid sends in the endpoint URL's ``?code=`` (or in a delivery-property header)."""

    scheme = "secret"

    def __init__(self, secret: str, header: str | None = None) -> None:
        self._secret = secret
        self._header = header

    async def check(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        offered = [_only(query, "code", "?code=")]
        if self._header:
            offered.append(_only(headers, self._header.lower(), f"the {self._header} header"))
        # compare every offered value so the time taken does not tell which one was tried
        if not any([_same(value, self._secret) for value in offered if value is not None]):
            where = "?code=" + (f" or {self._header} header" if self._header else "")
            raise Unauthorized(f"missing or wrong secret ({where})")


class NoAuth:
    """Explicitly allowed for local use only (``allow_unauthenticated = true``)."""

    scheme = "none"

    async def check(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        return None


class JwksCache:
    """The tenant's signing keys, fetched with httpx and kept for a TTL; an unknown ``kid`` refetches
    (at most every ``min_refresh`` seconds, so forged kids cannot make us hammer the endpoint)."""

    def __init__(self, url: str, ttl: float, min_refresh: float = 30.0, timeout: float = 5.0) -> None:
        self.url = url
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.timeout = timeout
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")  # last successful fetch
        self._tried_at = float("-inf")  # last attempt, successful or not
        self._lock = asyncio.Lock()

    def _needs_refresh(self, kid: str) -> bool:
        now = time.monotonic()
        if now - self._tried_at < self.min_refresh:
            return False
        return now - self._fetched_at > self.ttl or kid not in self._keys

    async def key(self, kid: str) -> Any:
        if self._needs_refresh(kid):
            async with self._lock:
                if self._needs_refresh(kid):
                    await self._refresh()
        if kid not in self._keys:
            if self._tried_at > self._fetched_at:  # the last fetch failed: the key may well exist
                raise KeysUnavailable("the tenant's signing keys could not be fetched; retry later")
            raise Unauthorized("bearer token signed with an unknown key")
        return self._keys[kid]

    async def _refresh(self) -> None:
        self._tried_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                keyset = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError):
            return  # keep the keys we have (or none: tokens are refused); try again after min_refresh
        self._keys = {k.key_id: k.key for k in keyset.keys if k.key_id}
        self._fetched_at = time.monotonic()


class EntraBearer:
    """Validates Event Grid's Entra token: RS256 signature by the tenant's JWKS, ``iss``, ``aud``, expiry,
    ``tid`` (the configured tenant), and that the caller is Azure Event Grid (``appid`` in v1 tokens, ``azp``
    in v2)."""

    scheme = "entra"

    def __init__(self, config: EntraConfig, keys: JwksCache | None = None) -> None:
        self.config = config
        self.keys = keys or JwksCache(config.keys_url(), config.jwks_cache_seconds)

    async def check(self, query: Mapping[str, str], headers: Mapping[str, str]) -> None:
        scheme, _, token = (_only(headers, "authorization", "the Authorization header") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed bearer token") from None
        if header.get("alg") != "RS256" or not header.get("kid"):
            raise Unauthorized("bearer token must be RS256 with a key id")
        key = await self.keys.key(str(header["kid"]))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.config.audiences,
                issuer=self.config.accepted_issuers(),
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("bearer token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("bearer token has the wrong audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("bearer token has the wrong issuer") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"bearer token rejected: {type(exc).__name__}") from None
        # The token is issued by the webhook app's tenant (the subscription's azureActiveDirectoryTenantId:
        # MicrosoftDocs/azure-docs articles/event-grid/secure-webhook-delivery.md), and its tid names that
        # tenant (/work/shared/reference/azure/eventgrid/entra_delivery_token_claims_decoded.json). A
        # configured issuer list may be broader than one tenant, so tid is checked on its own.
        if str(claims.get("tid", "")).lower() != self.config.tenant_id.lower():
            raise Unauthorized("bearer token was issued for another tenant (tid)")
        caller = claims.get("appid") or claims.get("azp")
        if caller != self.config.event_grid_app_id:
            raise Unauthorized("bearer token was not issued to Azure Event Grid (appid/azp)")


def authenticator_for(receiver: ReceiverConfig, source: object = None) -> Authenticator:
    """The configured check; refuses to build an open receiver unless that was explicitly allowed."""
    if receiver.auth == "entra":
        assert receiver.entra is not None  # the config validator guarantees it
        return EntraBearer(receiver.entra)
    if receiver.auth == "none":
        return NoAuth()
    secret = receiver.secret()
    if secret is None:
        if receiver.allow_unauthenticated:
            return NoAuth()
        raise ConfigError(
            f"{source}: receiver: no secret in ${receiver.secret_env}; set it, or set "
            "receiver.allow_unauthenticated = true for local experiments"
        )
    return SharedSecret(secret, receiver.secret_header)
