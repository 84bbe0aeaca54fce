"""Pick the backend implementation a target is configured for."""

from __future__ import annotations

from drift_retrain.backends.base import Backends
from drift_retrain.config import Settings, TargetConfig


def build_backends(settings: Settings, target: TargetConfig) -> Backends:
    if target.backend == "local":
        from drift_retrain.backends.local import local_backends

        return local_backends(settings, target)
    if target.backend == "azure":
        from drift_retrain.backends.azure import azure_backends

        return azure_backends(settings, target)
    raise ValueError(f"target '{target.name}': unknown backend '{target.backend}'")  # config validation prevents this


__all__ = ["Backends", "build_backends"]
