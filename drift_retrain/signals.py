"""One typed DriftSignal, normalised from every shape Azure ML drift arrives in.

Azure sends two kinds of drift (v1 ``DatasetDriftDetected`` and a v2 model-monitor breach on
``RunStatusChanged``); ``drift_retrain.intake.parsing`` reads every envelope and key casing into this one
type, and everything downstream sees only ``DriftSignal``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)

from drift_retrain import names
from drift_retrain.breaches import BREACH_TAG, MAX_NAME, BreachRow

DATASET_DRIFT_DETECTED = "Microsoft.MachineLearningServices.DatasetDriftDetected"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
SUBSCRIPTION_DELETION = "Microsoft.EventGrid.SubscriptionDeletionEvent"

#: The run tag Azure ML v2 model monitoring sets on a signal's evaluate step run that breached (``breaches``).
MONITOR_BREACH_TAG = BREACH_TAG

_WORKSPACE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/([^/]+)$",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------------------------
# Every event field is hostile: the typed, bounded values a signal is made of
# --------------------------------------------------------------------------------------------

#: Longest id: Azure ML run history's own bound on a run id, ``^[a-zA-Z0-9][\w-]{0,255}$`` (azure-ai-ml 1.35.2
#: azure/ai/ml/_restclient/runhistory/operations/_runs_operations.py, the runId path parameter).
MAX_ID = 256
#: Event ids may carry the prefix the project adds to an id (``sweep-<run id>``, ``manual:<request id>``).
MAX_EVENT_ID = MAX_ID + 64
#: An ARM id is a handful of names; none of Azure's resource names comes near this.
MAX_RESOURCE_ID = 1024

#: Ids as Azure writes them: run history's run id charset plus '.', which configured monitor names (and so
#: manual run ids) may contain. Real ones: GUIDs (DataDriftId, dataset ids, v2 step run ids) and
#: ``<DataDriftId>_<epoch-ms>`` / ``AutoML_<guid>_5`` run ids (tests/fixtures/eventgrid/eg_DatasetDriftDetected.json,
#: eg_RunStatusChanged.json, eg_RunStatusChanged_model_monitor_breaches.json).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Event Grid event ids are GUIDs in every sample (tests/fixtures/eventgrid/*.json); ':' is the project's own
#: ``manual:<request id>``.
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _token(pattern: re.Pattern[str], allowed: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(
                f"must be {allowed}, starting with a letter or digit (no whitespace, control characters, '/' or '\\')"
            )
        if ".." in value:
            raise ValueError("must not contain '..'")
        return value

    return check


#: A run id, monitor name, DataDriftId, dataset id or experiment name.
Id = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID),
    AfterValidator(_token(_ID, "letters, digits, '_', '-' and '.'")),
]
EventId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_EVENT_ID),
    AfterValidator(_token(_EVENT_ID, "letters, digits, '_', '-', '.' and ':'")),
]


def _text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


#: Free text read from an event (a v2 signal name, a breached row's description): printable and bounded.
Text = Annotated[str, Field(max_length=MAX_NAME * 4), AfterValidator(_text)]
#: An envelope's source (an ARM id) or subject: printable and as bounded as an ARM id.
ResourceText = Annotated[str, Field(max_length=MAX_RESOURCE_ID), AfterValidator(_text)]


def _workspace(value: str) -> str:
    if not _WORKSPACE_ID.fullmatch(value) or any(c.isspace() or c == "\\" for c in value) or _CONTROL.search(value):
        raise ValueError(
            "must be an Azure ML workspace ARM id: /subscriptions/<id>/resourceGroups/<rg>/providers/"
            "Microsoft.MachineLearningServices/workspaces/<name>, without whitespace, control characters or '\\'"
        )
    if ".." in value.split("/"):
        raise ValueError("must not contain a '..' segment")
    return value


WorkspaceId = Annotated[str, Field(max_length=MAX_RESOURCE_ID), AfterValidator(_workspace)]


def _iso_text(value: object) -> object:
    """Times arrive as ISO 8601 text (WIRE.md §2); a number or bare digits would be read as a Unix time."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("must be an ISO 8601 date-time text, e.g. 2019-07-04T00:00:00+00:00")
    return value


def _as_utc(value: datetime) -> datetime:
    """A time without an offset is UTC, as the date partitions read it (``backends.local.partitions.utc_day``)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Moment = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_as_utc)]
#: v1 DatasetDriftDetected's DriftCoefficient: a JSON number in [0, 1] ("0 indicates identical datasets and 100
#: indicates [they] can completely tell the two datasets apart", shown as a percentage: MicrosoftDocs/azure-ai-docs
#: articles/machine-learning/v1/how-to-monitor-datasets.md, "Understand data drift results"). Strict: no "0.95",
#: no true; finite: no NaN, Infinity or 1e999.
Coefficient = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]

#: Dataset monitors date from 2019 (a preview then: MicrosoftDocs/azure-docs articles/machine-learning/service/
#: how-to-monitor-datasets.md, ms.date 10/12/2019), but a backfill analyses older data (the v1 article's example
#: backfills from 2019-01-01): 2000 leaves decades of history and still refuses 0001-01-01.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
#: A window may end up to a day after the receiver's clock: the default manual window ends at the coming midnight
#: UTC (``drift_retrain.manual``), and a day absorbs clock skew between Azure and this machine.
MAX_AHEAD = timedelta(days=1)
#: One v1 monitor run compares one complete day, week or month ("Daily / Weekly / Monthly: compare most recent
#: complete ...": MicrosoftDocs/azure-ai-docs articles/machine-learning/v1/how-to-monitor-datasets.md, monitor
#: settings), so a window longer than the longest month is not one monitor run.
MAX_WINDOW = timedelta(days=31)
#: The validation context key the limits travel under (``DriftSignal.model_validate(..., context=...)``).
LIMITS = "limits"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SignalLimits:
    """The configurable bounds on a signal's times (``receiver.earliest_time``, ``receiver.max_future_hours``,
    ``receiver.max_window_days``). Validation applies them only when given in the context: a signal a flow run
    receives as a parameter was checked when it was made, and is checked again against the run's own settings
    (``manual.requested_signal``)."""

    earliest: datetime = EARLIEST
    ahead: timedelta = MAX_AHEAD
    max_window: timedelta = MAX_WINDOW
    clock: Callable[[], datetime] = field(default=_utc_now, compare=False)

    def context(self) -> dict[str, SignalLimits]:
        return {LIMITS: self}

    def check_moment(self, value: datetime) -> None:
        if value < self.earliest:
            raise ValueError(f"must not be before {self.earliest.isoformat()} (receiver.earliest_time)")
        latest = self.clock() + self.ahead
        if value > latest:
            hours = self.ahead.total_seconds() / 3600
            raise ValueError(
                f"must not be more than {hours:g} h ahead of the receiver's clock, {latest.isoformat()} at the latest "
                "(receiver.max_future_hours)"
            )

    def check_window(self, start: datetime, end: datetime) -> None:
        if end - start > self.max_window:
            raise ValueError(
                f"the window [{start.isoformat()}, {end.isoformat()}) spans more than {self.max_window.days} days "
                "(receiver.max_window_days)"
            )


DEFAULT_LIMITS = SignalLimits()

#: Row descriptions kept in ``breached_metrics`` and shown in a decision; the rows themselves stay whole.
MAX_DESCRIBED = 20


def _limits(info: ValidationInfo) -> SignalLimits | None:
    found = info.context.get(LIMITS) if isinstance(info.context, dict) else None
    return found if isinstance(found, SignalLimits) else None


class SignalKind(StrEnum):
    """Which Azure ML feature raised the drift."""

    DATASET_DRIFT = "dataset_drift"  # v1 data drift monitor, DatasetDriftDetected
    MODEL_MONITOR = "model_monitor"  # v2 model monitoring, RunStatusChanged with a breach tag
    MANUAL = "manual"  # a person asked for a retrain from the deployment's Run form (no drift run)


class DriftSignal(BaseModel):
    """A drift alert, whatever its Azure shape. Its ``identity`` keys dedupe everywhere downstream."""

    model_config = ConfigDict(frozen=True)

    kind: SignalKind = Field(description="v1 dataset drift or v2 model-monitor breach")
    workspace_id: WorkspaceId = Field(description="ARM id of the Azure ML workspace that raised the drift")
    monitor: Id = Field(
        description="Drift monitor name: v1 DataDriftName; v2 the configured monitor routing matched (before "
        "routing, the event's experiment name, or its run id)"
    )
    monitor_id: Id | None = Field(default=None, description="v1 DataDriftId")
    run_id: Id = Field(description="The drift (monitor) run that detected the drift")
    event_id: EventId = Field(description="Event Grid event id of the delivery that carried the signal")
    event_time: Moment | None = None
    window_start: Moment | None = Field(default=None, description="Start of the drifted data window")
    window_end: Moment | None = Field(default=None, validate_default=True, description="End of the drifted data window")
    drift_coefficient: Coefficient | None = Field(default=None, description="v1 dataset-level drift, 0..1")
    breached_metrics: list[Text] = Field(
        default_factory=list,
        max_length=MAX_DESCRIBED + 1,
        description="v2 breached rows, described: 'age: JensenShannonDistance 0.31 > 0.1'",
    )
    signal_name: Text | None = Field(default=None, description="v2 monitor signal's name, read from the breach tag")
    breached: list[BreachRow] = Field(default_factory=list, description="v2 breached rows read from the breach tag")
    monitor_run_id: Id | None = Field(
        default=None,
        description="v2: the monitor's pipeline run the breached signal belongs to (its signals retrain once)",
    )
    breach_unparsed: str | None = Field(default=None, description="v2: why the breach tag's rows could not be read")
    base_dataset_id: Id | None = None
    target_dataset_id: Id | None = None
    raw_event: dict[str, Any] = Field(default_factory=dict, description="The event as delivered")

    @field_validator("event_time", "window_start", "window_end")
    @classmethod
    def _in_time_limits(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        limits = _limits(info)
        if value is not None and limits is not None:
            limits.check_moment(value)
        return value

    @field_validator("window_end")
    @classmethod
    def _one_window(cls, end: datetime | None, info: ValidationInfo) -> datetime | None:
        """Both ends or neither (one end alone would copy everything up to now, or since the beginning), the start
        first, and no longer than the limits allow."""
        if "window_start" not in info.data:
            return end  # the start was refused: that error says what is wrong
        start = info.data["window_start"]
        if (start is None) != (end is None):
            raise ValueError("window_start and window_end come together: the event gives only one")
        if start is None or end is None:
            return end
        if start >= end:
            raise ValueError(f"must be after window_start ({start.isoformat()} to {end.isoformat()})")
        limits = _limits(info)
        if limits is not None:
            limits.check_window(start, end)
        return end

    @property
    def workspace_name(self) -> str:
        return workspace_name(self.workspace_id)

    @property
    def identity(self) -> str:
        """Workspace + drift run: the same drift is the same signal, however often it is delivered."""
        return names.signal_identity(self.workspace_id, self.run_id)

    @property
    def digest(self) -> str:
        """The identity's fixed-length fingerprint (``names.digest``): run keys, job names, ``{signal_key}``."""
        return names.digest(self.identity)

    @property
    def idempotency_key(self) -> str:
        """Prefect's per-flow idempotency key (``names.idempotency_key``)."""
        return names.idempotency_key(self)


def describe_rows(rows: list[BreachRow]) -> list[str]:
    """``["age: JensenShannonDistance 0.31 > 0.1", ...]``: at most ``MAX_DESCRIBED``, then a count of the rest."""
    described = [row.describe() for row in rows[:MAX_DESCRIBED]]
    if len(rows) > MAX_DESCRIBED:
        described.append(f"and {len(rows) - MAX_DESCRIBED} more rows")
    return described


def workspace_name(workspace_id: str) -> str:
    match = _WORKSPACE_ID.match(workspace_id.strip())
    return match.group(1) if match else workspace_id.rstrip("/").rsplit("/", 1)[-1]


def is_workspace_id(value: str) -> bool:
    return bool(_WORKSPACE_ID.match(value.strip()))
