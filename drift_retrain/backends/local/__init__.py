"""The embedded default: every step on this machine, with nothing but Python."""

from __future__ import annotations

from drift_retrain.backends.base import Backends
from drift_retrain.backends.local.copy import LocalCopy
from drift_retrain.backends.local.details import LocalDriftDetails
from drift_retrain.backends.local.monitor import monitor_store
from drift_retrain.backends.local.registry import FileModelRegistry
from drift_retrain.backends.local.training import LocalTraining
from drift_retrain.config import LocalTarget, Settings


def local_backends(settings: Settings, target: LocalTarget) -> Backends:
    runs = settings.state_dir / "runs"
    return Backends(
        details=LocalDriftDetails(monitor_store(settings)),
        copy=LocalCopy(
            source=settings.resolve(target.copy_step.source),
            sink=settings.resolve(target.copy_step.sink),
            runs=runs / "copy",
        ),
        training=LocalTraining(
            target.training, reference=settings.resolve(target.training.reference), jobs=runs / "training"
        ),
        registry=FileModelRegistry(settings.resolve(target.registry.path)),
    )
