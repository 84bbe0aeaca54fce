"""The azure backend: Data Factory for the copy, Azure ML for details, training and the registry.

Every step uses the real SDK (azure-mgmt-datafactory, azure-ai-ml, azure-identity) or, where no SDK
covers a call (v1 published pipelines, run metrics), the documented REST API with an azure-identity token.
"""

from __future__ import annotations

from drift_retrain.backends.base import Backends
from drift_retrain.backends.ledger import PrefectVariableLedger, RunLedger
from drift_retrain.config import AzureTarget, Settings


def azure_backends(settings: Settings, target: AzureTarget, ledger: RunLedger | None = None) -> Backends:
    """``ledger``: where started run ids are recorded; by default on the Prefect server, shared by every worker."""
    from drift_retrain.backends.azure.datafactory import DataFactoryCopy
    from drift_retrain.backends.azure.details import AzureDriftDetails
    from drift_retrain.backends.azure.registry import AzureModelRegistry
    from drift_retrain.backends.azure.session import AzureSession
    from drift_retrain.backends.azure.training import training_pipeline

    session = AzureSession.from_config(settings.azure)
    ledger = ledger or PrefectVariableLedger()
    return Backends(
        details=AzureDriftDetails(session, target),
        copy=DataFactoryCopy(session, target, ledger),
        training=training_pipeline(session, target, ledger),
        registry=AzureModelRegistry(session, target),
    )


__all__ = ["azure_backends"]
