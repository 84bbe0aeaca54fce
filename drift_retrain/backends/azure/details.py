"""Drift details, dispatched by the signal's kind: a v2 model-monitor signal's come from the monitor's MLflow
metric runs (``details_v2``: the evaluate step's run the event names logs no metrics); the others' from the
drift run itself, the metrics logged on it, read through MLflow's ``runs/get`` on the tracking URI.

azure-ai-ml has no metrics API (``jobs.get`` gives status and tags only, and v1 drift runs are not v2
jobs), and MLflow's REST answer carries the run's status and tags as well.

Metric names (v1: MicrosoftDocs/azure-ai-docs articles/machine-learning/v1/how-to-monitor-datasets.md): v1
logs the dataset-level ``datadrift_coefficient`` and, per feature, ``datadrift_contribution``,
``wasserstein_distance``, ``energy_distance``. A per-feature metric is read from a key that joins the metric
and the feature with ``.``, ``/`` or ``:`` in either order (``datadrift_contribution.age``); anything else is a
dataset-level metric.

Details that cannot be had (no such run, no permission, no metrics, the service down) are reported as
``available=False`` with the reason; the policy then decides on the event's own data and says so.
"""

from __future__ import annotations

import re
from collections import defaultdict

from drift_retrain.backends.azure.details_v1 import fetch_v1
from drift_retrain.backends.azure.details_v2 import monitor_details
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.azure.workspace_rest import RestError, WorkspaceRest
from drift_retrain.config import AzureTarget
from drift_retrain.results import DriftDetails, FeatureDrift
from drift_retrain.signals import DriftSignal, SignalKind

#: Per-feature metric names Azure ML drift (v1) and model monitoring (v2) log, and the FeatureDrift field
#: each fills (None: kept in FeatureDrift.metrics under its own name).
FEATURE_METRICS: dict[str, str | None] = {
    "datadrift_contribution": "contribution",
    "wasserstein_distance": "wasserstein",
    "population_stability_index": "psi",
    "two_sample_kolmogorov_smirnov_test": "ks_statistic",
    "energy_distance": None,
    "jensen_shannon_distance": None,
    "normalized_wasserstein_distance": None,
    "pearsons_chi_squared_test": None,
}
COEFFICIENT = "datadrift_coefficient"
THRESHOLD_KEYS = ("drift_threshold", "datadrift_threshold")
ROW_KEYS = ("target_row_count", "rows_in_window", "row_count")

_SEP = re.compile(r"[./:]")


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
        if signal.kind is SignalKind.MODEL_MONITOR:  # v2: the monitor's metric runs (details_v2)
            return monitor_details(self._rest_for(signal.workspace_id), signal)
        if signal.kind is SignalKind.DATASET_DRIFT:  # v1 results live with the monitor, not on the run (details_v1.py)
            return fetch_v1(self._rest_for(signal.workspace_id), signal)
        where = f"drift run {signal.run_id} of workspace {signal.workspace_name}"
        try:
            metrics, info = self._rest_for(signal.workspace_id).metrics(signal.run_id)
        except RestError as exc:
            return _unavailable(where, _why(exc))
        except Exception as exc:  # connection failures, bad answers: never fail the flow over details
            return _unavailable(where, f"{type(exc).__name__}: {exc}")
        if not metrics:
            status = info.get("status") or "unknown"
            return _unavailable(where, f"the run (MLflow status {status}) logged no metrics")
        return DriftDetails(
            available=True,
            source=f"MLflow metrics of {where}",
            drift_coefficient=metrics.get(COEFFICIENT),
            threshold=next((metrics[k] for k in THRESHOLD_KEYS if k in metrics), None),
            rows_in_window=next((int(metrics[k]) for k in ROW_KEYS if k in metrics), None),
            features=per_feature(metrics),
        )


def per_feature(metrics: dict[str, float]) -> list[FeatureDrift]:
    """FeatureDrift rows from metric keys that name a known per-feature metric and a feature."""
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in metrics.items():
        parts = _SEP.split(key)
        if len(parts) < 2:
            continue
        if parts[-1] in FEATURE_METRICS:
            metric, feature = parts[-1], parts[-2]
        elif parts[0] in FEATURE_METRICS:
            metric, feature = parts[0], ".".join(parts[1:])
        else:
            continue
        rows[feature][metric] = value
    features = []
    for feature, values in sorted(rows.items()):
        fields = {FEATURE_METRICS[m]: v for m, v in values.items() if FEATURE_METRICS[m]}
        extra = {m: v for m, v in values.items() if not FEATURE_METRICS[m]}
        features.append(FeatureDrift(feature=feature, metrics=extra, **fields))  # type: ignore[arg-type]
    return features


def _why(exc: RestError) -> str:
    if exc.status_code == 404:
        return f"not found (HTTP 404: {exc.message})"
    if exc.status_code in (401, 403):
        return (
            f"not readable by this identity (HTTP {exc.status_code}: {exc.message}); it needs the "
            "AzureML Data Scientist role on the workspace"
        )
    return f"HTTP {exc.status_code}: {exc.message}"


def _unavailable(where: str, why: str) -> DriftDetails:
    return DriftDetails(available=False, source=f"no details for {where}: {why}; deciding on the event's own data")
