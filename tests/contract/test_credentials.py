"""Identity: a real ClientSecretCredential against the fake's token endpoint, tokens refreshed during a long
wait, the credential class each ``credential.kind`` builds, and clear errors for missing or wrong secrets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import (
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from drift_retrain.backends.azure.datafactory import DataFactoryCopy
from drift_retrain.backends.azure.session import AzureSession, build_credential
from drift_retrain.backends.base import run_to_end
from drift_retrain.backends.ledger import FileRunLedger
from drift_retrain.config import AzureConfig, AzureTarget, ConfigError
from drift_retrain.fake_azure import CLIENT_ID, TENANT, FakeAzure, RunScript
from tests.contract.conftest import PIPELINE, SECRET_ENV, azure_settings, drift_signal


def _copy_once(tmp_path: Path, fake: FakeAzure) -> tuple[DataFactoryCopy, object]:
    settings = azure_settings(tmp_path, fake)
    target = settings.targets[0]
    assert isinstance(target, AzureTarget)  # azure_settings configures an azure target
    copy = DataFactoryCopy(AzureSession.from_config(settings.azure), target, FileRunLedger(tmp_path / "ledger"))
    signal = drift_signal()
    try:
        return copy, run_to_end(lambda: copy.start(signal), copy.wait, copy.cancel)
    finally:
        copy.close()
        copy.session.credential.close()  # type: ignore[attr-defined]


def _bearers(fake: FakeAzure) -> list[str]:
    return [r.headers["authorization"] for r in fake.sent(contains="/providers/Microsoft.DataFactory/")]


def test_client_secret_credential_signs_in_at_the_token_endpoint(tmp_path: Path, fake_azure: FakeAzure) -> None:
    copy, result = _copy_once(tmp_path, fake_azure)

    assert isinstance(copy.session.credential, ClientSecretCredential)
    assert result.status == "Succeeded"  # type: ignore[attr-defined]
    token_request = fake_azure.sent("POST", f"/{TENANT}/oauth2/v2.0/token")[0]
    assert f"client_id={CLIENT_ID}" in token_request.body and "grant_type=client_credentials" in token_request.body
    assert f"scope=https%3A%2F%2F127.0.0.1%3A{fake_azure.port}%2F.default" in token_request.body  # ARM audience
    bearers = _bearers(fake_azure)
    assert bearers and all(b.removeprefix("Bearer ") in fake_azure.tokens.issued for b in bearers)  # tokens it issued


def test_tokens_that_expire_during_a_long_wait_are_refreshed_transparently(tmp_path: Path) -> None:
    with FakeAzure(token_lifetime=2) as fake:
        fake.datafactory.script(PIPELINE, RunScript(steps=(("Queued", 0.5), ("InProgress", 3.5)), final="Succeeded"))
        began = time.monotonic()
        _, result = _copy_once(tmp_path, fake)

        assert time.monotonic() - began > 3  # the wait outlived the first token
        assert result.status == "Succeeded"  # type: ignore[attr-defined]  # a 401 would have ended the wait
        assert fake.tokens.requests >= 2
        assert len(set(_bearers(fake))) >= 2  # later calls carried a newer token


def test_session_bearer_for_plain_rest_calls_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    with FakeAzure(token_lifetime=2) as fake:
        session = AzureSession.from_config(azure_settings(tmp_path, fake).azure)
        first = session.bearer()
        time.sleep(2.1)
        second = session.bearer()
        assert first != second
        assert fake.tokens.problem(f"Bearer {first}") == "token expired"
        assert fake.tokens.problem(f"Bearer {second}") is None
        session.credential.close()  # type: ignore[attr-defined]


def test_a_wrong_client_secret_fails_clearly(tmp_path: Path, fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        _copy_once(tmp_path, fake_azure)
    assert fake_azure.datafactory.created() == []


def test_a_missing_client_secret_variable_is_a_config_error(tmp_path: Path, fake_azure: FakeAzure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    settings = azure_settings(tmp_path, fake_azure)
    with pytest.raises(ConfigError, match=f"azure.credential: the client secret variable \\${SECRET_ENV} is not set"):
        build_credential(settings.azure)


# -- which class each kind builds (construction only: no network) --------------------------------


def test_managed_identity_with_a_client_id() -> None:
    credential = build_credential(AzureConfig.model_validate({"credential": {"kind": "managed_identity", "client_id": "mi-client"}}))
    assert isinstance(credential, ManagedIdentityCredential)
    assert credential._credential._settings["client_id"] == "mi-client"  # type: ignore[attr-defined]  # no public accessor


def test_workload_identity(tmp_path: Path) -> None:
    token_file = tmp_path / "azure-identity-token"
    credential = build_credential(
        AzureConfig.model_validate(
            {"credential": {"kind": "workload_identity", "tenant_id": "tenant-1", "client_id": "app-1", "token_file": str(token_file)}}
        )
    )
    assert isinstance(credential, WorkloadIdentityCredential)
    assert credential._token_file_path == str(token_file)  # type: ignore[attr-defined]
    assert (credential._client._tenant_id, credential._client._client_id) == ("tenant-1", "app-1")  # type: ignore[attr-defined]


def test_default_credential_by_default_and_its_managed_identity_takes_the_client_id() -> None:
    assert isinstance(build_credential(AzureConfig()), DefaultAzureCredential)
    credential = build_credential(AzureConfig.model_validate({"credential": {"client_id": "mi-client"}}))
    assert isinstance(credential, DefaultAzureCredential)
    [managed] = [c for c in credential.credentials if isinstance(c, ManagedIdentityCredential)]
    assert managed._credential._settings["client_id"] == "mi-client"  # type: ignore[attr-defined]


def test_default_credential_in_a_pod_uses_the_configured_workload_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On AKS (AZURE_FEDERATED_TOKEN_FILE set by the webhook) the chain's workload identity takes the configured
    client and tenant, not whatever the pod's environment says."""
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant-from-env")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client-from-env")
    credential = build_credential(AzureConfig.model_validate({"credential": {"client_id": "app-1", "tenant_id": "tenant-1"}}))
    [workload] = [c for c in credential.credentials if isinstance(c, WorkloadIdentityCredential)]
    assert (workload._client._tenant_id, workload._client._client_id) == ("tenant-1", "app-1")  # type: ignore[attr-defined]


def test_client_secret_needs_tenant_client_and_variable() -> None:
    with pytest.raises(ValueError, match="kind 'client_secret' needs tenant_id, client_id, client_secret_env"):
        AzureConfig.model_validate({"credential": {"kind": "client_secret"}})


def test_the_fake_refuses_a_token_for_another_audience(tmp_path: Path, fake_azure: FakeAzure) -> None:
    """As ARM does: a valid token for the public cloud's management audience is no good at this cloud's ARM,
    so a step asking for the wrong scope fails against the fake as it would against Azure."""
    import httpx

    credential = build_credential(azure_settings(tmp_path, fake_azure).azure)
    wrong = credential.get_token("https://management.azure.com/.default").token
    right = credential.get_token(f"{fake_azure.url}/.default").token
    factory = f"{fake_azure.url}/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataFactory/factories/f?api-version=2018-06-01"

    with httpx.Client(verify=str(fake_azure.ca_path)) as http:
        refused = http.get(factory, headers={"Authorization": f"Bearer {wrong}"})
        accepted = http.get(factory, headers={"Authorization": f"Bearer {right}"})

    assert refused.status_code == 401 and refused.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    assert accepted.status_code == 200
    credential.close()  # type: ignore[attr-defined]
