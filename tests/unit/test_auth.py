"""The Entra key cache: keys are fetched once and reused, a rotated key is picked up, an unreachable
JWKS endpoint gives no verdict (503, retried) until it answers again."""

from __future__ import annotations

import asyncio
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from drift_retrain.intake.auth import EntraBearer, JwksCache, KeysUnavailable, Unauthorized
from drift_retrain.config import EntraConfig
from tests.entra import AUDIENCE, TENANT, LocalTenant


@pytest.fixture
def tenant():
    local = LocalTenant()
    yield local
    local.close()


def bearer(tenant: LocalTenant, url: str | None = None, **cache) -> EntraBearer:
    config = EntraConfig(tenant_id=TENANT, audiences=[AUDIENCE], jwks_url=url or tenant.jwks_url)
    return EntraBearer(config, JwksCache(config.keys_url(), ttl=3600, **cache))


def check(auth: EntraBearer, token: str) -> None:
    asyncio.run(auth.check({}, {"authorization": f"Bearer {token}"}))


def test_keys_are_cached_and_a_rotated_key_is_fetched(tenant) -> None:
    auth = bearer(tenant, min_refresh=0)
    check(auth, tenant.token())
    check(auth, tenant.token())
    assert tenant.requests == 1
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rotated.public_key())) | {"kid": "rotated"}
    tenant.jwks["keys"].append(jwk)
    check(auth, tenant.token(signer=rotated, kid="rotated"))
    assert tenant.requests == 2


def test_unknown_key_ids_do_not_hammer_the_jwks_endpoint(tenant) -> None:
    auth = bearer(tenant, min_refresh=30)
    check(auth, tenant.token())
    for _ in range(5):
        with pytest.raises(Unauthorized, match="unknown key"):
            check(auth, tenant.token(kid=f"forged-{_}"))
    assert tenant.requests == 1


def test_unreachable_jwks_is_no_verdict_until_it_answers_again(tenant) -> None:
    """Without keys a token can be judged neither way: KeysUnavailable (503, Event Grid retries), not
    Unauthorized (401, Event Grid drops the delivery)."""
    auth = bearer(tenant, url="http://127.0.0.1:9/keys", min_refresh=0)
    with pytest.raises(KeysUnavailable, match="could not be fetched"):
        check(auth, tenant.token())
    auth.keys.url = tenant.jwks_url  # the endpoint answers again
    check(auth, tenant.token())
    with pytest.raises(Unauthorized, match="unknown key"):  # keys in hand: a stranger kid is a verdict
        check(auth, tenant.token(kid="forged"))
