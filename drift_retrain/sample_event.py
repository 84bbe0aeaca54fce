"""Ready drift events for a configured monitor, in the shapes Azure ML publishes: what `drift-retrain sample-event`
prints for `send-event`, and what `drift-retrain check` passes through the receiver's own reading to find routing
dead ends. Nothing here is read from an event: every value is made from the config.

v1 is ``DatasetDriftDetected`` (MicrosoftDocs/azure-docs ``articles/event-grid/event-schema-machine-learning.md``,
"Microsoft.MachineLearningServices.DatasetDriftDetected event"); v2 is the ``RunStatusChanged`` of a monitor
signal's evaluate step, its breach tag built as the component builds it (``breaches.breach_text``; Azure/azureml-assets
``assets/model_monitoring/components/src/model_monitor_evaluate_metrics_threshold/evaluate_metrics_threshold.py``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

from drift_retrain.breaches import BREACH_TAG, breach_text
from drift_retrain.config import Settings, TargetConfig
from drift_retrain.signals import DATASET_DRIFT_DETECTED, RUN_STATUS_CHANGED

if TYPE_CHECKING:
    from drift_retrain.intake.delivery import Routed

Schema = Literal["v2", "v1"]
#: The largest drift a v1 event can report: a filter that drops even this drops every drift of the monitor.
FULL_DRIFT = 1.0
#: One breached row, with the columns the evaluate step's metrics frame has (azureml-assets
#: .../src/shared_utilities/constants.py ``SIGNAL_METRICS_*``).
SAMPLE_ROWS = [{"metric_value": 0.31, "metric_name": "JensenShannonDistance", "threshold_value": 0.1, "group": "age"}]


class NoSuchMonitor(ValueError):
    """The monitor asked for is in no target's ``monitors``."""


def monitor_target(settings: Settings, monitor: str | None) -> tuple[str, TargetConfig]:
    """The monitor (default: the first target's first) and the target whose ``monitors`` list it."""
    for target in settings.targets:
        for name in target.monitors:
            if monitor is None or name == monitor:
                return name, target
    known = ", ".join(m for t in settings.targets for m in t.monitors)
    raise NoSuchMonitor(f"{settings.source_file}: no target's monitors name '{monitor}' (configured: {known})")


def signal_name(target: TargetConfig, monitor: str) -> str:
    """The name of a v2 signal of ``monitor``: one configured under ``signals``, else Microsoft's convention
    ``<monitor-name>_<signal-description>`` (MicrosoftDocs/azure-ai-docs
    ``articles/machine-learning/how-to-monitor-model-performance.md``), which routing matches by containment."""
    configured = target.signals.get(monitor)
    return configured[0] if configured else f"{monitor}_data_drift"


def last_week(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The seven whole UTC days before today: a v1 monitor run's window."""
    end = datetime.combine((now or datetime.now(UTC)).date(), time(), tzinfo=UTC)
    return end - timedelta(days=7), end


def v1_event(workspace: str, monitor: str, *, coefficient: float = FULL_DRIFT, now: datetime | None = None) -> dict:
    """A ``DatasetDriftDetected`` event of ``monitor`` over the last week, with fresh run and event ids."""
    start, end = last_week(now)
    drift_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{workspace.lower()}/datadrifts/{monitor}"))
    run_id = f"{drift_id}_{int(end.timestamp() * 1000)}"
    return _envelope(
        workspace,
        f"datadrifts/{drift_id}/runs/{run_id}",
        DATASET_DRIFT_DETECTED,
        now,
        {
            "DataDriftId": drift_id,
            "DataDriftName": monitor,
            "RunId": run_id,
            "BaseDatasetId": str(uuid.uuid4()),
            "TargetDatasetId": str(uuid.uuid4()),
            "DriftCoefficient": coefficient,
            "StartTime": start.isoformat(),
            "EndTime": end.isoformat(),
        },
    )


def v2_event(workspace: str, monitor: str, signal: str, *, now: datetime | None = None) -> dict:
    """The ``RunStatusChanged`` of a breached signal's evaluate step: the breach tag is its only tag (no tag
    names the monitor), and the step run names its monitor run in ``azureml.rootpipelinerunid``."""
    run_id, experiment_id = str(uuid.uuid4()), str(uuid.uuid5(uuid.NAMESPACE_URL, f"{workspace.lower()}/{monitor}"))
    return _envelope(
        workspace,
        f"experiments/{experiment_id}/runs/{run_id}",
        RUN_STATUS_CHANGED,
        now,
        {
            "experimentId": experiment_id,
            "experimentName": monitor,  # no source names a monitor run's experiment; routing reads the signal name
            "runId": run_id,
            "runType": None,
            "runTags": {BREACH_TAG: breach_text(signal, SAMPLE_ROWS)},
            "runProperties": {"azureml.rootpipelinerunid": str(uuid.uuid4())},
            "runStatus": "Completed",
        },
    )


def _envelope(topic: str, subject: str, event_type: str, now: datetime | None, data: dict[str, Any]) -> dict:
    """The Event Grid schema around an event's data, with a fresh event id (learn.microsoft.com/azure/event-grid/event-schema)."""
    return {
        "topic": topic,
        "subject": subject,
        "eventType": event_type,
        "eventTime": _now_text(now),
        "id": str(uuid.uuid4()),
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def sample_events(settings: Settings, monitor: str | None = None, schema: Schema = "v2") -> list[dict[str, Any]]:
    """An Event Grid delivery (a JSON array of one event) of ``monitor`` for its target's workspace."""
    name, target = monitor_target(settings, monitor)
    if schema == "v1":
        return [v1_event(target.workspace, name)]
    return [v2_event(target.workspace, name, signal_name(target, name))]


def receive(settings: Settings, event: dict[str, Any]) -> Routed | str:
    """What the receiver does with ``event``: the target it routes to, or why it refuses or ignores it."""
    from drift_retrain.intake.delivery import Rejected, read_delivery

    try:
        delivery = read_delivery(json.dumps([event]).encode(), settings)
    except Rejected as exc:
        return f"the receiver refuses it ({exc.status}: {exc})"
    if delivery.signals:
        return delivery.signals[0]
    return "the receiver ignores it: " + "; ".join(i.reason for i in delivery.ignored)


def reaches(found: Routed | str, target: TargetConfig, monitor: str) -> str | None:
    """None when ``found`` is ``monitor`` of ``target``; else what happened instead."""
    if isinstance(found, str):
        return found
    if found.target.name == target.name and found.signal.monitor == monitor:
        return None
    return f"it routes to monitor '{found.signal.monitor}' of target '{found.target.name}'"


def _now_text(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
