"""A retrain started by hand from the deployment's Run form, turned into a DriftSignal like any other.

A manual request has no drift run, so it gets one: ``manual-<target>-<window start>-<window end>``.
The identity (workspace + that run id) is deterministic, so asking twice for the same target and window
is one signal: its copy and training reattach, and it registers at most one model version, with the same
lineage tags as a drift-started retrain. The default window is the last 7 days up to the coming midnight
UTC, so repeated clicks on one day are the same request.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from drift_retrain.config import ConfigError, Name, Settings, TargetConfig, load_settings
from drift_retrain.names import manual_event_id, manual_run_id
from drift_retrain.signals import DEFAULT_LIMITS, DriftSignal, SignalKind, SignalLimits

DEFAULT_WINDOW = timedelta(days=7)
_WHEN = TypeAdapter(datetime | None)  # the form and the API send ISO 8601 strings


class InvalidRequest(ValueError):
    """The run's parameters do not describe one retrain; the message says which parameter is wrong."""


def target_choice() -> Any:
    """A target name whose schema lists the configured targets inline (``enum``): the Run form shows a
    drop-down (even for a single target, where a ``Literal`` would be a fixed ``const``) and the server
    refuses other names. The flow checks the name again against the configuration it runs with. Give it a
    default (``target_default``), not ``| None``: a nullable field is an ``anyOf`` with null, which the Run
    form shows as "Property is type None" behind a type toggle, the drop-down only after a click."""
    try:
        targets = load_settings().targets
    except ConfigError:
        return Name
    return Annotated[str, Field(json_schema_extra={"enum": [target.name for target in targets]})]


def target_default() -> str | None:
    """The first configured target: the drop-down's preselected choice (None without a configuration)."""
    try:
        return load_settings().targets[0].name
    except (ConfigError, IndexError):
        return None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def default_window(now: datetime) -> tuple[datetime, datetime]:
    end = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), tzinfo=UTC)
    return end - DEFAULT_WINDOW, end


def manual_signal(
    target: TargetConfig,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    *,
    now: datetime | None = None,
    request_id: str = "",
    limits: SignalLimits = DEFAULT_LIMITS,
) -> DriftSignal:
    """The signal of a by-hand retrain of ``target`` over [window_start, window_end) (UTC), within ``limits``
    like any signal (``receiver.max_window_days`` and the others)."""
    now = now or datetime.now(UTC)
    end = _utc(window_end) if window_end else default_window(now)[1]
    start = _utc(window_start) if window_start else end - DEFAULT_WINDOW
    if start >= end:
        raise InvalidRequest(f"window_start {start.isoformat()} must be before window_end {end.isoformat()}")
    run_id = manual_run_id(target.name, start, end)
    fields = {
        "kind": SignalKind.MANUAL,
        "workspace_id": target.workspace,
        "monitor": target.monitors[0],
        "run_id": run_id,
        "event_id": manual_event_id(request_id or run_id),
        "event_time": now,
        "window_start": start,
        "window_end": end,
    }
    return _validated(fields, replace(limits, clock=lambda: now), "the requested retrain")  # ahead of the request


def requested_signal(
    settings: Settings,
    signal: DriftSignal | dict[str, Any] | None,
    target: str | None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    *,
    request_id: str = "",
) -> DriftSignal:
    """The signal a run is about: the one the receiver or sweep passed, or a manual one from the form.
    ``target`` is ignored when a signal is given (the form always has one selected: the signal routes itself);
    a window is not (it would be silently dropped)."""
    if signal is not None:
        if window_start is not None or window_end is not None:
            raise InvalidRequest(
                "give either 'signal' (set by the webhook receiver and the sweep) or a 'target' with an optional "
                "window (a retrain by hand), not both"
            )
        given = signal.model_dump() if isinstance(signal, DriftSignal) else signal
        return _validated(given, settings.receiver.signal_limits, "the 'signal' parameter")
    if target is None:
        known = ", ".join(t.name for t in settings.targets)
        raise InvalidRequest(f"nothing to retrain: choose a 'target' ({known}) or pass a drift 'signal'")
    start, end = _WHEN.validate_python(window_start), _WHEN.validate_python(window_end)
    return manual_signal(
        settings.target(target), start, end, request_id=request_id, limits=settings.receiver.signal_limits
    )


def _validated(fields: Any, limits: SignalLimits, what: str) -> DriftSignal:
    """A signal checked against the configured limits, like one the receiver or the sweep makes: a parameter
    anyone with access to the Prefect API can set gets no easier path."""
    try:
        return DriftSignal.model_validate(fields, context=limits.context())
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "signal"
        rule = problem["msg"].removeprefix("Value error, ")
        raise InvalidRequest(f"{what} is refused: {where}: {rule}") from None
