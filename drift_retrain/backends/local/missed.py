"""The sweep's catch-up on the local backend: drift the local monitors recorded, read from their records."""

from __future__ import annotations

from datetime import datetime

from drift_retrain.backends.local.monitor import drift_event, monitor_store
from drift_retrain.config import Settings, TargetConfig
from drift_retrain.intake.parsing import InvalidEvent, to_drift_signal
from drift_retrain.signals import DriftSignal


class LocalMonitorRecords:
    """The drift runs of the local monitors named by one target, as the events they would have published."""

    blind_spot: str | None = None

    def __init__(self, settings: Settings, target: TargetConfig) -> None:
        self.settings, self.target = settings, target

    def signals_since(self, since: datetime) -> list[DriftSignal]:
        """Each record read as the event it would have published, through the receiver's parser and limits; a record
        whose values break a rule is left out and said in ``blind_spot`` (as the azure catch-up does)."""
        store = monitor_store(self.settings)
        limits = self.settings.receiver.signal_limits  # the same bounds as the receiver's
        signals, skipped = [], []
        for monitor in self.settings.local_monitors:
            if monitor.name not in self.target.monitors:
                continue
            for run in store.runs(monitor.name):
                if not (run.has_drift and run.computed_at >= since):
                    continue
                try:
                    signals.append(to_drift_signal(drift_event(run, event_id=f"sweep-{run.run_id}"), limits=limits))
                except InvalidEvent as exc:
                    skipped.append(str(exc))
        self.blind_spot = (
            f"{len(skipped)} monitor records could not be read as events: {skipped[0]}" if skipped else None
        )
        return signals
