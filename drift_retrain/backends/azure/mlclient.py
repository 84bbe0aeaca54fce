"""One ``MLClient`` per workspace, pointed at the configured cloud and trusting the configured CA.

MLClient has no ``base_url``: its endpoints come from a named cloud. The public cloud is "AzureCloud";
any other ARM endpoint (a sovereign cloud, a private one, the loopback fake) is registered as a custom
cloud through ``cloud_metadata``, which also makes the token scope ``<resource_manager>/.default``.
The cloud is always passed explicitly because azure-ai-ml remembers the last one in the process
environment (``AZUREML_CURRENT_CLOUD``).

The CA bundle is passed as ``connection_verify``: azure-ai-ml hands its keyword arguments to every
azure-core pipeline it builds (the ARM clients and the raw pipeline ``batch_endpoints.invoke`` posts the
scoring request through), so no process-wide ``REQUESTS_CA_BUNDLE`` is needed.

``azure.ai.ml`` costs about 1.5 s to import, so it is imported here, on first use, and never at module load.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from drift_retrain.backends.azure.arm import ArmId
from drift_retrain.backends.azure.session import AzureSession

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

#: ARM endpoints of the clouds azure-ai-ml knows by name.
KNOWN_CLOUDS = {
    "https://management.azure.com": "AzureCloud",
    "https://management.usgovcloudapi.net": "AzureUSGovernment",
    "https://management.chinacloudapi.cn": "AzureChinaCloud",
}

#: (session id, workspace) -> (the session, kept alive so its id is never reused; its client)
_clients: dict[tuple[int, str], tuple[AzureSession, MLClient]] = {}
_lock = threading.Lock()


def cloud_kwargs(resource_manager: str) -> dict[str, Any]:
    """``cloud=`` (and ``cloud_metadata=`` for a cloud azure-ai-ml does not know) for ``resource_manager``."""
    arm = resource_manager.rstrip("/")
    if arm in KNOWN_CLOUDS:
        return {"cloud": KNOWN_CLOUDS[arm]}
    return {
        "cloud": f"drift-retrain:{arm}",
        "cloud_metadata": {
            "azure_portal": arm + "/",
            "resource_manager": arm + "/",
            "active_directory": arm + "/",
            # The audience of the batch endpoint scoring call; a custom cloud serves it on its ARM host.
            "aml_resource_id": arm + "/",
            "storage_endpoint": "core.windows.net",
            "registry_discovery_endpoint": arm + "/",
        },
    }


CLOUD_ENV = "AZUREML_CURRENT_CLOUD"


def _forget_inherited_cloud() -> None:
    """azure-ai-ml resolves ``AZUREML_CURRENT_CLOUD`` while it is being imported, and the import fails when
    that names a custom cloud this process has not registered yet (one a parent process set, as an earlier
    MLClient does). Every MLClient here names its cloud, so an inherited value can only do harm."""
    if "azure.ai.ml" not in sys.modules and os.environ.get(CLOUD_ENV, "AzureCloud") not in KNOWN_CLOUDS.values():
        os.environ.pop(CLOUD_ENV, None)


def ml_client(session: AzureSession, workspace_id: str) -> MLClient:
    """The (cached) MLClient for a workspace ARM id."""
    key = (id(session), workspace_id.lower())
    with _lock:
        cached = _clients.get(key)
        if cached is None:
            _forget_inherited_cloud()
            from azure.ai.ml import MLClient

            ws = ArmId.parse(workspace_id)
            client = MLClient(
                session.credential,
                subscription_id=ws.subscription,
                resource_group_name=ws.resource_group,
                workspace_name=ws.name,
                enable_telemetry=False,
                show_progress=False,
                **cloud_kwargs(session.config.resource_manager),
                **session.sdk_kwargs(),
            )
            cached = _clients[key] = (session, client)
        return cached[1]
