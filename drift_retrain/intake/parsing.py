"""Reading Azure ML drift events into DriftSignals: both kinds, both envelopes, any key casing.

Azure sends two kinds of drift (v1 ``DatasetDriftDetected`` and a v2 model-monitor breach on
``RunStatusChanged``), in two envelopes (Event Grid schema and CloudEvents 1.0), with data keys in
PascalCase or camelCase depending on the source.

This is where an event's fields become typed, bounded values (every field is hostile): the envelope's here,
the signal's in ``DriftSignal``'s own types and validators, checked against the configured ``SignalLimits``.
The receiver, both sweeps' catch-up and the local monitor's events all come through ``to_drift_signal``; a
refused value is an ``InvalidEvent`` naming the field as the event spells it and the rule it broke (a 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from drift_retrain.breaches import parse_breach
from drift_retrain.signals import (
    DATASET_DRIFT_DETECTED,
    DEFAULT_LIMITS,
    MONITOR_BREACH_TAG,
    RUN_STATUS_CHANGED,
    DriftSignal,
    EventId,
    Id,
    Moment,
    ResourceText,
    SignalKind,
    SignalLimits,
    Text,
    describe_rows,
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

    id: EventId
    type: Text
    source: ResourceText  # Event Grid "topic", CloudEvents "source": the workspace's ARM id
    subject: ResourceText = ""
    time: Moment | None = None
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
        raise InvalidEvent(f"event {_shown(fields['id'])}: 'data' must be a JSON object")
    try:
        return EventEnvelope(schema_name=schema, **fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InvalidEvent(f"event {_shown(fields['id'])}: field '{where}': {_rule(problem)}") from None


def _shown(value: object) -> str:
    """A value that failed validation, shown bounded and with control characters escaped (``repr``)."""
    return repr(value if isinstance(value, str | int | float | None) else type(value).__name__)[:80]


def _rule(problem: ErrorDetails) -> str:
    """A pydantic error as the rule it states (``Value error, `` is the wrapping, not the rule)."""
    return problem["msg"].removeprefix("Value error, ")


# --------------------------------------------------------------------------------------------
# Drift signals
# --------------------------------------------------------------------------------------------


def to_drift_signal(
    event: Mapping[str, Any], envelope: EventEnvelope | None = None, limits: SignalLimits = DEFAULT_LIMITS
) -> DriftSignal:
    """Normalise one event into a DriftSignal.

    Raises ``NotADriftSignal`` for well-formed events that carry no drift and ``InvalidEvent`` for
    drift events that cannot be read or whose values break a rule. ``envelope``: the event's already parsed
    envelope (the receiver has it), so it is not read twice; ``limits``: the configured bounds on its times
    (``ReceiverConfig.signal_limits``).
    """
    envelope = envelope or parse_envelope(event)
    if envelope.type.lower() == DATASET_DRIFT_DETECTED.lower():
        return _from_dataset_drift(envelope, dict(event), limits)
    if envelope.type.lower() == RUN_STATUS_CHANGED.lower():
        return _from_monitor_run(envelope, dict(event), limits)
    raise NotADriftSignal(envelope.type, f"event type {envelope.type} carries no drift signal")


#: The event's own spelling of each signal field (WIRE.md §2; the docs' PascalCase), for error messages.
_V1_FIELDS = {
    "monitor": "data.DataDriftName",
    "monitor_id": "data.DataDriftId",
    "run_id": "data.RunId",
    "window_start": "data.StartTime",
    "window_end": "data.EndTime",
    "drift_coefficient": "data.DriftCoefficient",
    "base_dataset_id": "data.BaseDatasetId",
    "target_dataset_id": "data.TargetDatasetId",
}
_V2_FIELDS = {
    "monitor": "data.ExperimentName",
    "run_id": "data.RunId",
    "signal_name": f"data.RunTags.{MONITOR_BREACH_TAG}",
    "breached_metrics": f"data.RunTags.{MONITOR_BREACH_TAG}",
}


def _from_dataset_drift(envelope: EventEnvelope, raw: dict[str, Any], limits: SignalLimits) -> DriftSignal:
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
        limits,
        _V1_FIELDS,
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


def _from_monitor_run(envelope: EventEnvelope, raw: dict[str, Any], limits: SignalLimits) -> DriftSignal:
    """A v2 breach: the evaluate step's run, tagged with the breach text (``drift_retrain.breaches``).

    The tag's presence is the breach; its text names the signal and lists the breached rows, read here into
    ``signal_name``/``breached`` (``breach_unparsed`` says what could not be read). No tag names the monitor
    (Azure/azureml-assets .../model_monitor_evaluate_metrics_threshold/evaluate_metrics_threshold.py
    ``send_email_for_breached`` sets only the breach tag, on its own run), so ``monitor`` starts as the event's
    experiment name (run id when it has none); routing (``drift_retrain.routing``) replaces it with the configured
    monitor the signal belongs to."""
    data = envelope.data
    tags = _ci(data, "RunTags")
    if tags is None:
        tags = {}
    if not isinstance(tags, Mapping):
        raise InvalidEvent(f"RunStatusChanged event {envelope.id}: data.RunTags must be a JSON object")
    found, value = _ci_item(tags, MONITOR_BREACH_TAG)
    if not found:
        raise NotADriftSignal(envelope.type, f"run status change without a {MONITOR_BREACH_TAG} tag")
    run_id = _ci(data, "RunId")
    if not run_id:
        raise InvalidEvent(f"RunStatusChanged event {envelope.id}: data is missing RunId")
    if not isinstance(run_id, str):
        raise InvalidEvent(f"RunStatusChanged event {envelope.id}: data.RunId must be a string")
    breach = parse_breach(value)
    experiment = _experiment_name(envelope, data)
    return _build(
        envelope,
        raw,
        limits,
        _V2_FIELDS if experiment else {**_V2_FIELDS, "monitor": "data.RunId"},
        kind=SignalKind.MODEL_MONITOR,
        monitor=experiment or run_id,
        run_id=run_id,
        signal_name=breach.signal,
        breached=breach.rows,
        breach_unparsed=breach.unparsed,
        breached_metrics=describe_rows(breach.rows),
        monitor_run_id=_root_pipeline_run(data),
    )


#: A pipeline step run's property naming its top-level pipeline run: for an evaluate step, the monitor's run
#: (a real step run's properties in Azure/azure-sdk-assets' recorded run-history children answer,
#: tests/fixtures/machinelearning/history_children_recorded.json).
ROOT_PIPELINE_RUN = "azureml.rootpipelinerunid"
_ROOT_RUN = TypeAdapter(Id)  # the signal's own rule for a run id


def _root_pipeline_run(data: Mapping[str, Any]) -> str | None:
    """The monitor run the breached signal belongs to, when the event's run properties name it as a plain id
    (anything else is dropped: it only groups a monitor run's signals into one retrain)."""
    properties = _ci(data, "RunProperties")
    value = _ci(properties, ROOT_PIPELINE_RUN) if isinstance(properties, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        return _ROOT_RUN.validate_python(value)
    except ValidationError:
        return None


def _experiment_name(envelope: EventEnvelope, data: Mapping[str, Any]) -> str | None:
    """The event's experimentName, or None when it has none (the run id then stands in). A present name is an
    id like any other (``signals.Id``, checked when the signal is built): one that breaks the rule is refused,
    not dropped, though it is only the last routing rule and a label."""
    name = _ci(data, "ExperimentName")
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise InvalidEvent(f"RunStatusChanged event {envelope.id}: data.ExperimentName must be a string")
    return name


def _ci_item(mapping: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """Whether a key is present in any casing, and its value (a tag present with a null value is present)."""
    if name in mapping:
        return True, mapping[name]
    for key, value in mapping.items():
        if str(key).lower() == name.lower():
            return True, value
    return False, None


def _build(
    envelope: EventEnvelope, raw: dict[str, Any], limits: SignalLimits, spelled: dict[str, str], **fields: Any
) -> DriftSignal:
    """The signal, validated with the limits; a refused value names the event's field, the signal's, and the rule."""
    spelled = {
        "workspace_id": "source" if envelope.schema_name == "cloudevents" else "topic",
        "event_id": "id",
        "event_time": "time" if envelope.schema_name == "cloudevents" else "eventTime",
        **spelled,
    }
    try:
        return DriftSignal.model_validate(
            {
                "workspace_id": envelope.source,
                "event_id": envelope.id,
                "event_time": envelope.time,
                "raw_event": raw,
                **fields,
            },
            context=limits.context(),
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        named = f"{spelled[where]} ({where})" if where in spelled else where
        raise InvalidEvent(f"{envelope.type} event {envelope.id}: field {named}: {_rule(problem)}") from None
