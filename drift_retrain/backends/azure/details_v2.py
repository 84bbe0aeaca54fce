"""v2 drift details: every metric and threshold of a model-monitor signal, read from its MLflow metric runs.

The monitor's metric outputter keeps one MLflow run per (monitor, signal, metric, feature) in the pipeline's
experiment, tagged ``azureml.monitor_name``, ``azureml.signal_name``, ``azureml.metric_name`` and the feature
as ``azureml.feature_name`` (data/prediction drift, data quality, feature attribution) or ``azureml.group_0``,
``azureml.group_1`` (model performance, generation safety/quality), and appends ``value`` and ``threshold`` to
it on every monitor run at step ``int(monitor_current_time.timestamp())`` (Azure/azureml-assets
assets/model_monitoring/components/src/shared_utilities/run_metrics_utils.py, model_monitor_output_metrics/run.py,
model_monitor_metric_outputter/runmetric_client.py and run.py). Metric names are CamelCase
(src/shared_utilities/constants.py). The evaluate step's run, which the event names, logs no metrics.

Which point: of each run's ``value`` and ``threshold`` series, the one with the greatest step at or before the
breach (the event's time, in seconds; ties by timestamp); the monitor run that breached logged its point at
its own current time, before its evaluate step ended, and a later monitor run logs a later step. Without an
event time, the latest point. A run whose points all lie after the breach contributes nothing and is counted.

The experiment is the event's ``data.experimentId``; runs are searched by the signal's name (server-side only
when the name needs no quoting: MLflow's filter grammar unescapes nothing inside quotes, mlflow
utils/search_utils.py ``_strip_quotes``) and always matched exactly client-side, and narrowed to the signal's
monitor only when that name is among the runs' monitors. Anything that cannot be had is ``available=False``
with the reason; the breached rows of the tag stay the decision's basis then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drift_retrain.backends.azure.details_v1 import NO_DISTRIBUTIONS
from drift_retrain.backends.azure.monitor_runs import Budget, MetricRun, MonitorRuns, Point
from drift_retrain.backends.azure.unavailable import unavailable, why
from drift_retrain.backends.azure.workspace_rest import RestError, WorkspaceRest
from drift_retrain.intake.parsing import _ci
from drift_retrain.results import OVERALL, DriftDetails, FeatureDrift
from drift_retrain.signals import DriftSignal
from drift_retrain.text import plain_name

#: What the decision rests on when the metric runs cannot be read.
TAG_ROWS = "the breach tag's own rows"

MONITOR_TAG, SIGNAL_TAG, METRIC_TAG = "azureml.monitor_name", "azureml.signal_name", "azureml.metric_name"
FEATURE_TAG, GROUP_TAGS = "azureml.feature_name", ("azureml.group_0", "azureml.group_1")
#: The parent run's metric name (run_metrics_utils.py ``_get_or_create_parent_run_id``): not a metric.
PARENT_METRIC = "azureml.metrics"
#: The feature label of a metric computed on the whole data (no feature or group tag).

#: CamelCase metric -> the FeatureDrift field it fills. TwoSampleKolmogorovSmirnovTest is the test's p-value
#: (numerical_data_drift_metrics.py ``_ks2sample_pandas_impl``: ``ks_2samp(...).pvalue``);
#: NormalizedWassersteinDistance is in units of the baseline's std (``_normalized_wasserstein``).
TYPED_FIELDS = {
    "PopulationStabilityIndex": "psi",
    "TwoSampleKolmogorovSmirnovTest": "ks_pvalue",
    "NormalizedWassersteinDistance": "wasserstein",
}

#: Metric runs read per signal, and metric points read from histories (only for series logged past the breach).
MAX_RUNS = 5000
MAX_HISTORY_POINTS = 20000

_SAFE_VALUE = re.compile(r"^[^'\"`\\]+$")


@dataclass(frozen=True)
class _Reading:
    feature: str
    metric: str
    value: float
    threshold: float | None
    at: tuple[int, int]


def monitor_details(rest: WorkspaceRest, signal: DriftSignal) -> DriftDetails:
    """DriftDetails of a MODEL_MONITOR signal from its metric runs; never raises."""
    signal_name = signal.signal_name  # read from the breach tag by intake.parsing
    experiment = plain_name(_ci(_data(signal), "experimentId"))
    step = f"evaluate step run {signal.run_id}"
    where = f"signal '{signal_name}' ({step})" if signal_name else step
    if signal_name is None:
        return unavailable(where, "the breach tag names no signal, so its metric runs cannot be found", TAG_ROWS)
    if experiment is None:
        return unavailable(
            where, "the event carries no usable data.experimentId to search the metric runs in", TAG_ROWS
        )
    runs = MonitorRuns(rest)
    budget = Budget(MAX_RUNS)
    try:
        found = runs.search(experiment, _filter(signal_name), budget)
    except RestError as exc:
        return unavailable(where, why(exc), TAG_ROWS)
    except Exception as exc:  # connection failures, bad answers: never fail the flow over details
        return unavailable(where, f"{type(exc).__name__}: {exc}", TAG_ROWS)
    mine = [r for r in found if r.tags.get(SIGNAL_TAG) == signal_name and r.tags.get(METRIC_TAG) != PARENT_METRIC]
    monitors = {r.tags.get(MONITOR_TAG) for r in mine}
    if signal.monitor in monitors and len(monitors) > 1:
        mine = [r for r in mine if r.tags.get(MONITOR_TAG) == signal.monitor]
    if not mine:
        return unavailable(
            where,
            f"no MLflow metric runs tagged {SIGNAL_TAG} = '{signal_name}' in experiment {experiment}",
            TAG_ROWS,
        )
    cutoff = int(signal.event_time.timestamp()) if signal.event_time else None
    notes: list[str] = []
    try:
        readings = _readings(runs, mine, cutoff, notes)
    except RestError as exc:
        return unavailable(where, f"reading a metric history: {why(exc)}", TAG_ROWS)
    except Exception as exc:
        return unavailable(where, f"reading a metric history: {type(exc).__name__}: {exc}", TAG_ROWS)
    if budget.exhausted:
        notes.append(f"only the first {MAX_RUNS} metric runs were read")
    if not readings:
        return unavailable(where, f"its {len(mine)} metric runs hold no value at or before the breach", TAG_ROWS)
    when = f"at or before {_iso(signal.event_time)}" if signal.event_time else "latest"
    source = f"MLflow metric runs of {where} in experiment {experiment} ({len(mine)} runs, value and threshold {when})"
    return DriftDetails(
        available=True,
        source=source + "".join(f"; {note}" for note in notes),
        features=_features(readings),
        # a metric run holds a ``value`` and a ``threshold`` series, no distribution (run_metrics_utils.py, above)
        distributions_missing=NO_DISTRIBUTIONS,
    )


def _readings(runs: MonitorRuns, found: list[MetricRun], cutoff: int | None, notes: list[str]) -> list[_Reading]:
    """One reading per (feature, metric): of duplicate runs, the one whose value point is latest."""
    history = Budget(MAX_HISTORY_POINTS)
    chosen: dict[tuple[str, str], _Reading] = {}
    after, unnamed = 0, 0
    for run in found:
        metric, feature = plain_name(run.tags.get(METRIC_TAG)), _feature(run.tags)
        if metric is None or feature is None:
            unnamed += 1
            continue
        value = _point_at(runs, run, "value", cutoff, history)
        if value is None:
            after += 1
            continue
        threshold = _point_at(runs, run, "threshold", cutoff, history)
        reading = _Reading(
            feature, metric, value.value, threshold.value if threshold else None, (value.step, value.timestamp)
        )
        key = (feature, metric)
        if key not in chosen or reading.at > chosen[key].at:
            chosen[key] = reading
    if after:
        notes.append(f"{after} metric runs had no value at or before the breach")
    if unnamed:
        notes.append(f"{unnamed} metric runs had no readable metric or feature tag")
    if history.exhausted:
        notes.append(f"metric histories were read up to {MAX_HISTORY_POINTS} points")
    return list(chosen.values())


def _point_at(runs: MonitorRuns, run: MetricRun, key: str, cutoff: int | None, budget: Budget) -> Point | None:
    """The series' point with the greatest step at or before ``cutoff`` (ties: the latest timestamp). The
    search answer carries each series' latest point; the history is read only when that one is too late."""
    latest = run.latest.get(key)
    if latest is None or cutoff is None or latest.step <= cutoff:
        return latest
    if budget.left <= 0:
        budget.exhausted = True
        return None
    earlier = [p for p in runs.history(run.run_id, key, budget) if p.step <= cutoff]
    return max(earlier, key=lambda p: (p.step, p.timestamp), default=None)


def _features(readings: list[_Reading]) -> list[FeatureDrift]:
    by_feature: dict[str, list[_Reading]] = {}
    for reading in readings:
        by_feature.setdefault(reading.feature, []).append(reading)
    features = []
    for feature, rows in sorted(by_feature.items()):
        metrics = {r.metric: r.value for r in sorted(rows, key=lambda r: r.metric)}
        thresholds = {r.metric: r.threshold for r in sorted(rows, key=lambda r: r.metric) if r.threshold is not None}
        typed: dict[str, Any] = {TYPED_FIELDS[m]: v for m, v in metrics.items() if m in TYPED_FIELDS}
        features.append(FeatureDrift(feature=feature, metrics=metrics, thresholds=thresholds, **typed))
    return features


def _feature(tags: Mapping[str, str]) -> str | None:
    """The run's feature: ``azureml.feature_name``, or ``group_0`` (with ``group_1`` when set), or OVERALL."""
    if FEATURE_TAG in tags:
        return plain_name(tags[FEATURE_TAG])
    groups = [tags[g] for g in GROUP_TAGS if g in tags]
    if not groups:
        return OVERALL
    clean = [plain_name(g) for g in groups]
    if any(g is None for g in clean):
        return None
    return clean[0] if len(clean) == 1 else f"{clean[0]} ({clean[1]})"


def _filter(signal_name: str) -> str:
    """The server-side filter, in the form the components send (run_metrics_utils.py ``_create_filter_query``);
    empty (the whole experiment, matched client-side) when the name would need quoting."""
    return f"tags.{SIGNAL_TAG} = '{signal_name}'" if _SAFE_VALUE.match(signal_name) else ""


def _data(signal: DriftSignal) -> Mapping[str, Any]:
    data = _ci(signal.raw_event, "data")
    return data if isinstance(data, Mapping) else {}


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "?"
