"""Pick the backend implementation a target is configured for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from drift_retrain.backends.base import Backends, MissedDriftSource
from drift_retrain.config import Settings, TargetConfig

#: Builds the steps of one target; ``backends_in_process`` puts one in place of the configured choice.
BackendFactory = Callable[[Settings, TargetConfig], Backends]

_in_process: BackendFactory | None = None


@contextmanager
def backends_in_process(factory: BackendFactory) -> Iterator[None]:
    """Flows run in this process (``drift_to_retrain(...)`` called directly, as the fast tests and a notebook
    do) get their steps from ``factory`` instead of the target's configured backend. The flow itself is
    unchanged; the seam is the one place it asks for its backends. Process-wide, not per thread: a flow
    run may execute on another thread than the one that entered this block."""
    global _in_process
    previous, _in_process = _in_process, factory
    try:
        yield
    finally:
        _in_process = previous


def build_backends(settings: Settings, target: TargetConfig) -> Backends:
    """The target's steps: ``local`` or ``azure`` as configured, unless ``backends_in_process`` says otherwise."""
    if _in_process is not None:
        return _in_process(settings, target)
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
            sources.append((target, AzureMonitorRuns(session, target, settings.receiver.signal_limits)))
    return sources


__all__ = [
    "BackendFactory",
    "Backends",
    "MissedDriftSource",
    "backends_in_process",
    "build_backends",
    "missed_drift_sources",
]
