"""The MLClient plumbing: which cloud it is pointed at, which token audience it asks for, and that the
azure backend does not pay azure-ai-ml's import cost until a step needs it."""

from __future__ import annotations

import subprocess
import sys

from drift_retrain.backends.azure.mlclient import cloud_kwargs, ml_client
from drift_retrain.fake_azure import CLIENT_ID, CLIENT_SECRET, TENANT
from tests.contract.ml_fixtures import WS


def test_public_and_sovereign_clouds_use_their_names():
    assert cloud_kwargs("https://management.azure.com/") == {"cloud": "AzureCloud"}
    assert cloud_kwargs("https://management.usgovcloudapi.net") == {"cloud": "AzureUSGovernment"}


def test_a_loopback_arm_is_a_custom_cloud_whose_audience_is_itself(fake, ml_session):
    kwargs = cloud_kwargs(fake.url)
    assert kwargs["cloud_metadata"]["resource_manager"] == fake.url + "/"

    client = ml_client(ml_session, WS)
    assert ml_client(ml_session, WS) is client  # one client per workspace and session
    list(client.models.list(name="nothing-here"))

    [listed] = fake.sent("GET", "/models/nothing-here/versions")
    assert listed.headers["authorization"].startswith("Bearer ")
    scopes = {scope for _, scope in fake.tokens.issued.values()}
    assert scopes == {f"{fake.url}/.default"}  # never the public cloud's management or ml.azure.com audience


def test_importing_the_azure_ml_steps_does_not_import_azure_ai_ml():
    code = (
        "import sys, drift_retrain.backends.azure.training, drift_retrain.backends.azure.registry, "
        "drift_retrain.backends.azure.details; print('azure.ai.ml' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_custom_cloud_inherited_from_a_parent_process_does_not_break_the_client(fake):
    """A flow process inherits AZUREML_CURRENT_CLOUD from whatever started it (an earlier MLClient sets it);
    azure-ai-ml fails at import on a custom cloud it has not registered, so the client must not let it."""
    code = f"""
import os
os.environ["AZUREML_CURRENT_CLOUD"] = "drift-retrain:https://127.0.0.1:9"  # someone else's custom cloud
os.environ["SECRET"] = {CLIENT_SECRET!r}
from drift_retrain.backends.azure.mlclient import ml_client
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.config import AzureConfig
config = AzureConfig.model_validate({{
    "credential": {{"kind": "client_secret", "tenant_id": {TENANT!r}, "client_id": {CLIENT_ID!r}, "client_secret_env": "SECRET"}},
    "authority_host": {fake.url!r}, "resource_manager": {fake.url!r}, "ca_bundle": {str(fake.ca_path)!r},
}})
print(len(list(ml_client(AzureSession.from_config(config), {WS!r}).models.list(name="nothing-here"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "0"
    assert fake.sent("GET", "/models/nothing-here/versions")
