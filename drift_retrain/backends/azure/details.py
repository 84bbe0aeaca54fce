"""Drift details, dispatched by the signal's kind.

A v2 model-monitor signal's come from the monitor's MLflow metric runs (``details_v2``: the evaluate step's run
the event names logs no metrics); a v1 drift signal's from the datadrift service (``details_v1``: v1 results live
with the monitor, not on the run). A retrain asked for by hand has no drift run. Details that cannot be had are
``available=False`` with the reason; the policy then decides on the event's own data and says so.
"""

from __future__ import annotations

from drift_retrain.backends.azure.details_v1 import fetch_v1
from drift_retrain.backends.azure.details_v2 import monitor_details
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.azure.unavailable import unavailable
from drift_retrain.backends.azure.workspace_rest import WorkspaceRest
from drift_retrain.config import AzureTarget
from drift_retrain.results import DriftDetails
from drift_retrain.signals import DriftSignal, SignalKind


class AzureDriftDetails:
    def __init__(self, session: AzureSession, target: AzureTarget) -> None:
        self.session, self.target = session, target
        self._rest: dict[str, WorkspaceRest] = {}

    def _rest_for(self, workspace_id: str) -> WorkspaceRest:
        key = workspace_id.lower()
        if key not in self._rest:
            self._rest[key] = WorkspaceRest(self.session, workspace_id)
        return self._rest[key]

    def fetch(self, signal: DriftSignal) -> DriftDetails:
        match signal.kind:
            case SignalKind.MODEL_MONITOR:
                return monitor_details(self._rest_for(signal.workspace_id), signal)
            case SignalKind.DATASET_DRIFT:
                return fetch_v1(self._rest_for(signal.workspace_id), signal)
            case SignalKind.MANUAL:
                return unavailable(f"retrain {signal.run_id}", "a retrain asked for by hand has no drift run")
