"""Reading Azure ML drift events into DriftSignals: both kinds, both envelopes, any key casing.

Azure sends two kinds of drift (v1 ``DatasetDriftDetected`` and a v2 model-monitor breach on
``RunStatusChanged``), in two envelopes (Event Grid schema and CloudEvents 1.0), with data keys in
PascalCase or camelCase depending on the source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drift_retrain.signals import (
    DATASET_DRIFT_DETECTED,
    MONITOR_BREACH_TAG,
    RUN_STATUS_CHANGED,
    DriftSignal,
    SignalKind,
)


class InvalidEvent(ValueError):
    """The event is a drift event but cannot be read; the message names what is wrong."""


class NotADriftSignal(Exception):
    """A well-formed event that carries no drift (acknowledged and ignored, never an error)."""

    def __init__(self, event_type: str, reason: str) -> None:
        super().__init__(reason)
        self.event_type = event_type
        self.reason = reason


class EventEnvelope(BaseModel):
    """The schema-independent part of one Event Grid or CloudEvents event."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    source: str  # Event Grid "topic", CloudEvents "source": the workspace's ARM id
    subject: str = ""
    time: datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    schema_name: str  # "eventgrid" or "cloudevents"


def _ci(mapping: Mapping[str, Any], *names: str) -> Any:
    """Case-insensitive lookup over several spellings; Azure mixes PascalCase and camelCase."""
    for name in names:  # the documented spelling is the usual one: found without lowering every key
        if name in mapping:
            return mapping[name]
    lowered = {str(k).lower(): v for k, v in mapping.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def parse_envelope(event: Mapping[str, Any]) -> EventEnvelope:
    """Read one event in Event Grid or CloudEvents 1.0 schema (``specversion`` in any casing)."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"an event must be a JSON object, got {type(event).__name__}")
    is_cloudevent = _ci(event, "specversion") is not None
    schema = "cloudevents" if is_cloudevent else "eventgrid"
    fields = {
        "id": _ci(event, "id"),
        "type": _ci(event, "type") if is_cloudevent else _ci(event, "eventType"),
        "source": _ci(event, "source") if is_cloudevent else _ci(event, "topic"),
        "subject": _ci(event, "subject") or "",
        "time": _ci(event, "time") if is_cloudevent else _ci(event, "eventTime"),
        "data": _ci(event, "data") or {},
    }
    required = ("id", "type", "source") if is_cloudevent else ("id", "eventType", "topic")
    missing = [name for name, key in zip(required, ("id", "type", "source"), strict=True) if not fields[key]]
    if missing:
        raise InvalidEvent(f"{schema} event is missing required field(s): {', '.join(missing)}")
    if not isinstance(fields["data"], Mapping):
        raise InvalidEvent(f"event {fields['id']}: 'data' must be a JSON object")
    try:
        return EventEnvelope(schema_name=schema, **fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InvalidEvent(f"event {fields['id']}: field '{where}': {problem['msg']}") from None


# --------------------------------------------------------------------------------------------
# Drift signals
# --------------------------------------------------------------------------------------------


def to_drift_signal(event: Mapping[str, Any], envelope: EventEnvelope | None = None) -> DriftSignal:
    """Normalise one event into a DriftSignal.

    Raises ``NotADriftSignal`` for well-formed events that carry no drift and ``InvalidEvent`` for
    drift events that cannot be read. ``envelope``: the event's already parsed envelope (the receiver
    has it), so it is not read twice.
    """
    envelope = envelope or parse_envelope(event)
    if envelope.type.lower() == DATASET_DRIFT_DETECTED.lower():
        return _from_dataset_drift(envelope, dict(event))
    if envelope.type.lower() == RUN_STATUS_CHANGED.lower():
        return _from_monitor_run(envelope, dict(event))
    raise NotADriftSignal(envelope.type, f"event type {envelope.type} carries no drift signal")


def _from_dataset_drift(envelope: EventEnvelope, raw: dict[str, Any]) -> DriftSignal:
    data = envelope.data
    run_id = _ci(data, "RunId")
    monitor = _ci(data, "DataDriftName")
    coefficient = _ci(data, "DriftCoefficient")
    missing = [name for name, value in (("RunId", run_id), ("DataDriftName", monitor)) if not value]
    if coefficient is None:
        missing.append("DriftCoefficient")
    if missing:
        raise InvalidEvent(f"DatasetDriftDetected event {envelope.id}: data is missing {', '.join(missing)}")
    return _build(
        envelope,
        raw,
        kind=SignalKind.DATASET_DRIFT,
        monitor=monitor,
        monitor_id=_ci(data, "DataDriftId"),
        run_id=run_id,
        window_start=_ci(data, "StartTime"),
        window_end=_ci(data, "EndTime"),
        drift_coefficient=coefficient,
        base_dataset_id=_ci(data, "BaseDatasetId"),
        target_dataset_id=_ci(data, "TargetDatasetId"),
    )


def _from_monitor_run(envelope: EventEnvelope, raw: dict[str, Any]) -> DriftSignal:
    data = envelope.data
    tags = _ci(data, "RunTags") or {}
    breach = _ci(tags, MONITOR_BREACH_TAG) if isinstance(tags, Mapping) else None
    if not breach:
        raise NotADriftSignal(envelope.type, f"run status change without a {MONITOR_BREACH_TAG} tag")
    run_id = _ci(data, "RunId")
    if not run_id:
        raise InvalidEvent(f"RunStatusChanged event {envelope.id}: data is missing RunId")
    monitor = _ci(tags, "azureml_modelmonitor_name") or _ci(data, "ExperimentName") or run_id
    return _build(
        envelope,
        raw,
        kind=SignalKind.MODEL_MONITOR,
        monitor=monitor,
        run_id=run_id,
        breached_metrics=_breached_metrics(str(breach)),
    )


def _breached_metrics(breach_text: str) -> list[str]:
    """The breach tag is prose; keep the message whole when no metric names can be read from it."""
    names = re.findall(r"\b([a-z]+(?:_[a-z]+)+)\b", breach_text)
    return sorted(set(names)) or [breach_text.strip()]


def _build(envelope: EventEnvelope, raw: dict[str, Any], **fields: Any) -> DriftSignal:
    try:
        return DriftSignal(
            workspace_id=envelope.source,
            event_id=envelope.id,
            event_time=envelope.time,
            raw_event=raw,
            **fields,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InvalidEvent(f"{envelope.type} event {envelope.id}: field '{where}': {problem['msg']}") from None
