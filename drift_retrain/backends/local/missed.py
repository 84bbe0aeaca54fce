"""The sweep's catch-up on the local backend: drift the local monitors recorded, read from their records."""

from __future__ import annotations

from datetime import datetime

from drift_retrain.backends.local.monitor import drift_event, monitor_store
from drift_retrain.config import Settings, TargetConfig
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.signals import DriftSignal


class LocalMonitorRecords:
    """The drift runs of the local monitors named by one target, as the events they would have published."""

    blind_spot: str | None = None

    def __init__(self, settings: Settings, target: TargetConfig) -> None:
        self.settings, self.target = settings, target

    def signals_since(self, since: datetime) -> list[DriftSignal]:
        store = monitor_store(self.settings)
        limits = self.settings.receiver.signal_limits  # the same bounds as the receiver's
        return [
            to_drift_signal(drift_event(run, event_id=f"sweep-{run.run_id}"), limits=limits)
            for monitor in self.settings.local_monitors
            if monitor.name in self.target.monitors
            for run in store.runs(monitor.name)
            if run.has_drift and run.computed_at >= since
        ]
