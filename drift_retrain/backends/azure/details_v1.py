"""Drift details of a v1 data drift run (``DatasetDriftDetected``) from the datadrift service.

v1 drift results are not MLflow metrics of the drift run: azureml-datadrift 1.62.0 keeps them with the
monitor. Its rest client (``azureml/datadrift/_restclient/rest_client.py``) reads them with
``GET {history}/datadrift/v1.0{workspace}/datadrifts/{DataDriftId}/metrics`` (query ``runId``,
``startDateString``, ``endDateString``, ``apiVersion``), on the run history host
(``datadrift_client.py``: ``_get_run_history_url()``), answering a list of DataDriftMetricDto
(``models/data_drift_metric_dto.py``: name, value, metricType, columnName, startDate, endDate,
pipelineStartTime, ...); the monitor itself (``GET .../datadrifts/{id}``, a DataDriftDto) carries
``driftThreshold``. (``DataDriftDetector.get_output()`` in the same package reads the same results from
JSON files under ``datadrift/metrics/{id}/`` in the workspace's default datastore instead; that needs storage
access this identity does not otherwise need, so the service's endpoint is used.)

Metric names (the package's ``_utils/constants.py``; ``get_output()`` documents the shapes): dataset-level
``datadrift_coefficient``; per column ``datadrift_contribution``, ``wasserstein_distance``,
``energy_distance``. Results written by older versions say ``ds_mcc_test`` and ``ds_feature_importance``
for the first two (``_result_handler.py`` ``_get_metrics`` renames them so).

Every record is hostile: one that is not a named finite number is left out and counted. When the details
cannot be had (no DataDriftId, no such monitor or run, no permission, the service down, nothing usable),
they are ``available=False`` with the reason, and the policy decides on the event's own data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from drift_retrain.backends.azure.unavailable import unavailable, why
from drift_retrain.backends.azure.workspace_rest import RestError, WorkspaceRest, safe_id
from drift_retrain.results import DriftDetails, FeatureDrift
from drift_retrain.signals import DriftSignal

#: rest_client.py ``get_metrics``' default api_version (DataDriftClient.get_metrics passes none), sent as ``apiVersion``.
METRICS_API_VERSION = "2019-05-15-preview"
#: api_versions.py GAPREVIEW, DataDriftClient.get's default, sent as ``api-version`` (rest_client.py ``get``).
DETECTOR_API_VERSION = "2020-06-30-preview"
#: What the drift table says where the local monitor shows the reference's and the window's summaries.
NO_DISTRIBUTIONS = "not available from Azure ML"
#: Dataset-level names of the drift coefficient (current, and as older results spell it).
COEFFICIENT_NAMES = frozenset({"datadrift_coefficient", "ds_mcc_test"})
#: Per-column names and the FeatureDrift field each fills (None: kept in FeatureDrift.metrics as energy_distance).
COLUMN_FIELDS: dict[str, str | None] = {
    "datadrift_contribution": "contribution",
    "ds_feature_importance": "contribution",
    "wasserstein_distance": "wasserstein",
    "energy_distance": None,
}
MAX_RECORDS = 5000
NAME_MAX = 256


@dataclass(frozen=True)
class MetricRecord:
    """One validated DataDriftMetricDto."""

    name: str
    value: float
    column: str | None
    start: datetime | None
    pipeline_start: datetime | None


def fetch_v1(rest: WorkspaceRest, signal: DriftSignal) -> DriftDetails:
    """The v1 drift run's details from the datadrift service; never raises (unavailable, with the reason)."""
    where = f"drift run {signal.run_id} of workspace {signal.workspace_name}"
    if not signal.monitor_id:
        return unavailable(where, "the event named no DataDriftId to ask the datadrift service about")
    try:
        base = (
            f"{rest.endpoints().run_history}/datadrift/v1.0{rest.workspace_id}"
            f"/datadrifts/{safe_id(signal.monitor_id, 'DataDriftId')}"
        )
        params = {"runId": safe_id(signal.run_id, "drift run id"), "apiVersion": METRICS_API_VERSION}
        if signal.window_start and signal.window_end:  # DataDriftClient.get_metrics sends both as isoformat()
            params |= {
                "startDateString": signal.window_start.isoformat(),
                "endDateString": signal.window_end.isoformat(),
            }
        answer = rest.request("GET", f"{base}/metrics", params=params)
    except RestError as exc:
        return unavailable(where, why(exc))
    except Exception as exc:  # connection failures, bad ids, bad answers: never fail the flow over details
        return unavailable(where, f"{type(exc).__name__}: {exc}")
    if not isinstance(answer, list):
        return unavailable(where, f"the datadrift service answered {type(answer).__name__}, not a list of metrics")
    records = [r for r in map(_record, answer[:MAX_RECORDS]) if r is not None]
    left_out = len(answer) - len(records)  # malformed, or past MAX_RECORDS
    records = _this_run(records, signal)
    coefficient = next((r.value for r in records if r.column is None and r.name in COEFFICIENT_NAMES), None)
    features = _features(records)
    if coefficient is None and not features:
        return unavailable(where, f"the datadrift service has no drift metrics for the run ({len(answer)} records)")
    note = f"; {left_out} malformed or excess records left out" if left_out else ""
    return DriftDetails(
        available=True,
        source=f"datadrift service metrics of {where}{note}",
        drift_coefficient=coefficient,
        threshold=_threshold(rest, base),
        rows_in_window=None,  # DataDriftMetricDto carries no row counts
        features=features,
        # nor distributions: its per-column metrics are contribution, Wasserstein and energy distance only
        # (azureml-datadrift 1.62.0 ``_utils/constants.py``, see the module's docstring)
        distributions_missing=NO_DISTRIBUTIONS,
    )


def _record(entry: object) -> MetricRecord | None:
    if not isinstance(entry, dict):
        return None
    name, value, column = entry.get("name"), entry.get("value"), entry.get("columnName")
    if not _text(name) or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if column is not None and not _text(column):
        return None
    kind = entry.get("metricType")
    if isinstance(kind, str) and kind.lower() == "column" and not column:
        return None  # a column metric that names no column
    return MetricRecord(
        name=str(name),
        value=float(value),
        column=str(column) if column else None,
        start=_time(entry.get("startDate")),
        pipeline_start=_time(entry.get("pipelineStartTime")),
    )


def _this_run(records: list[MetricRecord], signal: DriftSignal) -> list[MetricRecord]:
    """The records of the event's window, from the latest computation of it: a run can hold results for
    several target dates, and ``_result_handler._get_metrics`` keeps, per date, only the results with the
    latest pipeline start time."""
    if signal.window_start is not None:
        day = signal.window_start.date()
        same_day = [r for r in records if r.start is not None and r.start.date() == day]
        records = same_day or records
    if not records:
        return records
    latest = max(_stamp(r.pipeline_start) for r in records)
    return [r for r in records if _stamp(r.pipeline_start) == latest]


def _features(records: list[MetricRecord]) -> list[FeatureDrift]:
    values: dict[str, dict[str, float]] = {}
    for r in records:
        if r.column is not None:
            values.setdefault(r.column, {}).setdefault(r.name, r.value)
    rows = []
    for column, metrics in sorted(values.items()):
        fields = {f: v for m, v in metrics.items() if (f := COLUMN_FIELDS.get(m))}
        extra = {m: v for m, v in metrics.items() if m not in COLUMN_FIELDS or COLUMN_FIELDS[m] is None}
        rows.append(FeatureDrift.model_validate({"feature": column, "metrics": extra, **fields}))
    return rows


def _threshold(rest: WorkspaceRest, base: str) -> float | None:
    """The monitor's ``driftThreshold`` (DataDriftDto; 0..1, ParameterValidator.validate_drift_threshold), or
    None when the monitor cannot be read: the metrics are the details, the threshold only a note beside them."""
    try:
        detector = rest.request("GET", base, params={"api-version": DETECTOR_API_VERSION})
    except Exception:
        return None
    value = detector.get("driftThreshold") if isinstance(detector, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        return None
    return float(value)


def _text(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= NAME_MAX and value.isprintable()


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stamp(value: datetime | None) -> datetime:
    return value or datetime.min.replace(tzinfo=UTC)
