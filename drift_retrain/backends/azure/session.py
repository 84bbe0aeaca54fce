"""One Azure identity and cloud per process: the credential, the endpoints, the TLS trust.

azure-identity picks the credential (DefaultAzureCredential unless configured); the SDK clients refresh
their tokens themselves, and ``bearer()`` does the same for the few REST calls made without an SDK.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from drift_retrain.config import AzureConfig, ConfigError

#: Authorities azure-identity knows; any other (a private cloud, the loopback fake) skips instance discovery.
KNOWN_AUTHORITIES = ("login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn")
REFRESH_MARGIN_SECONDS = 300


def build_credential(config: AzureConfig) -> TokenCredential:
    """The configured identity; DefaultAzureCredential (env, workload, managed identity, az login) by default."""
    from azure import identity

    cred = config.credential
    common: dict[str, Any] = {"authority": config.authority_host}
    if not any(host in config.authority_host for host in KNOWN_AUTHORITIES):
        common["disable_instance_discovery"] = True
    if config.ca_bundle is not None:
        common["connection_verify"] = str(config.ca_bundle)
    if cred.kind == "client_secret":
        assert cred.tenant_id and cred.client_id and cred.client_secret_env  # the config validated this
        secret = os.environ.get(cred.client_secret_env)
        if not secret:
            raise ConfigError(f"azure.credential: the client secret variable ${cred.client_secret_env} is not set")
        return identity.ClientSecretCredential(cred.tenant_id, cred.client_id, secret, **common)
    if cred.kind == "managed_identity":
        return identity.ManagedIdentityCredential(client_id=cred.client_id or None)  # None: the system-assigned one
    if cred.kind == "workload_identity":
        given = {"tenant_id": cred.tenant_id, "client_id": cred.client_id, "token_file_path": cred.token_file}
        return identity.WorkloadIdentityCredential(
            **{**common, **{k: str(v) for k, v in given.items() if v is not None}}
        )
    if cred.client_id:
        common["managed_identity_client_id"] = cred.client_id
        common["workload_identity_client_id"] = cred.client_id
    if cred.tenant_id:
        common["workload_identity_tenant_id"] = cred.tenant_id
    return identity.DefaultAzureCredential(**common)


@dataclass
class AzureSession:
    """What every azure step shares: config, credential, and a token cache for plain REST calls."""

    config: AzureConfig
    credential: TokenCredential
    _tokens: dict[str, AccessToken] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_config(cls, config: AzureConfig) -> AzureSession:
        return cls(config, build_credential(config))

    @property
    def arm_scope(self) -> str:
        return self.config.resource_manager.rstrip("/") + "/.default"

    def sdk_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every azure-core based client takes: the CA bundle when one is configured."""
        return {"connection_verify": str(self.config.ca_bundle)} if self.config.ca_bundle else {}

    def verify(self) -> str | bool:
        """For httpx: the CA bundle, or the system trust store."""
        return str(self.config.ca_bundle) if self.config.ca_bundle else True

    def bearer(self, scope: str | None = None) -> str:
        """A valid access token for ``scope`` (ARM by default), fetched again shortly before it expires,
        so a wait of many hours never sends an expired token."""
        scope = scope or self.arm_scope
        with self._lock:
            token = self._tokens.get(scope)
            if token is None or token.expires_on - REFRESH_MARGIN_SECONDS <= time.time():
                token = self.credential.get_token(scope)
                self._tokens[scope] = token
            return token.token
