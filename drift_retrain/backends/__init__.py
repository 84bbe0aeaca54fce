"""Pick the backend implementation a target is configured for."""

from __future__ import annotations

from drift_retrain.backends.base import Backends, MissedDriftSource
from drift_retrain.config import Settings, TargetConfig


def build_backends(settings: Settings, target: TargetConfig) -> Backends:
    if target.backend == "local":
        from drift_retrain.backends.local import local_backends

        return local_backends(settings, target)
    from drift_retrain.backends.azure import azure_backends

    return azure_backends(settings, target)


def missed_drift_sources(settings: Settings) -> list[tuple[TargetConfig, MissedDriftSource]]:
    """Where the sweep looks for each target's drift: the records of the local monitors it names (the embedded
    stand-in for Azure's monitors, which may feed an azure target too), and on azure its workspace's runs."""
    from drift_retrain.backends.local.missed import LocalMonitorRecords

    sources: list[tuple[TargetConfig, MissedDriftSource]] = []
    session = None  # one sign-in for every azure target
    for target in settings.targets:
        sources.append((target, LocalMonitorRecords(settings, target)))
        if target.backend == "azure":
            from drift_retrain.backends.azure.missed import AzureMonitorRuns
            from drift_retrain.backends.azure.session import AzureSession

            session = session or AzureSession.from_config(settings.azure)
            sources.append((target, AzureMonitorRuns(session, target)))
    return sources


__all__ = ["Backends", "MissedDriftSource", "build_backends", "missed_drift_sources"]
