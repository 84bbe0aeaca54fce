"""Drift details from the local monitor's record of its runs."""

from __future__ import annotations

from drift_retrain.backends.local.monitor import MonitorStore
from drift_retrain.results import DriftDetails
from drift_retrain.signals import DriftSignal


class LocalDriftDetails:
    def __init__(self, store: MonitorStore) -> None:
        self.store = store

    def fetch(self, signal: DriftSignal) -> DriftDetails:
        run = self.store.load(signal.monitor, signal.run_id)
        if run is None:
            return DriftDetails(
                available=False,
                source=f"no record of drift run {signal.run_id} in the local monitor; deciding on the event's own data",
            )
        return DriftDetails(
            available=True,
            source=f"local monitor record of run {run.run_id}",
            drift_coefficient=run.drift_coefficient,
            threshold=run.threshold,
            rows_in_window=run.rows_in_window,
            features=run.features,
            distributions_missing=None
            if all(f.reference and f.current for f in run.features)
            else "not recorded by this monitor run",
        )
