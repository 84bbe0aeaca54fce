"""One typed DriftSignal, normalised from every shape Azure ML drift arrives in.

Azure sends two kinds of drift (v1 ``DatasetDriftDetected`` and a v2 model-monitor breach on
``RunStatusChanged``); ``drift_retrain.intake.parsing`` reads every envelope and key casing into this one
type, and everything downstream sees only ``DriftSignal``.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from drift_retrain import names
from drift_retrain.breaches import BREACH_TAG, BreachRow

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


class SignalKind(StrEnum):
    """Which Azure ML feature raised the drift."""

    DATASET_DRIFT = "dataset_drift"  # v1 data drift monitor, DatasetDriftDetected
    MODEL_MONITOR = "model_monitor"  # v2 model monitoring, RunStatusChanged with a breach tag
    MANUAL = "manual"  # a person asked for a retrain from the deployment's Run form (no drift run)


class DriftSignal(BaseModel):
    """A drift alert, whatever its Azure shape. Its ``identity`` keys dedupe everywhere downstream."""

    model_config = ConfigDict(frozen=True)

    kind: SignalKind = Field(description="v1 dataset drift or v2 model-monitor breach")
    workspace_id: str = Field(description="ARM id of the Azure ML workspace that raised the drift")
    monitor: str = Field(
        description="Drift monitor name: v1 DataDriftName; v2 the configured monitor routing matched (before "
        "routing, the event's experiment name, or its run id)"
    )
    monitor_id: str | None = Field(default=None, description="v1 DataDriftId")
    run_id: str = Field(description="The drift (monitor) run that detected the drift")
    event_id: str = Field(description="Event Grid event id of the delivery that carried the signal")
    event_time: datetime | None = None
    window_start: datetime | None = Field(default=None, description="Start of the drifted data window")
    window_end: datetime | None = Field(default=None, description="End of the drifted data window")
    drift_coefficient: float | None = Field(default=None, description="v1 dataset-level drift, 0..1")
    breached_metrics: list[str] = Field(
        default_factory=list, description="v2 breached rows, described: 'age: JensenShannonDistance 0.31 > 0.1'"
    )
    signal_name: str | None = Field(default=None, description="v2 monitor signal's name, read from the breach tag")
    breached: list[BreachRow] = Field(default_factory=list, description="v2 breached rows read from the breach tag")
    monitor_run_id: str | None = Field(
        default=None,
        description="v2: the monitor's pipeline run the breached signal belongs to (its signals retrain once)",
    )
    breach_unparsed: str | None = Field(default=None, description="v2: why the breach tag's rows could not be read")
    base_dataset_id: str | None = None
    target_dataset_id: str | None = None
    raw_event: dict[str, Any] = Field(default_factory=dict, description="The event as delivered")

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


#: Row descriptions kept in ``breached_metrics`` and shown in a decision; the rows themselves stay whole.
MAX_DESCRIBED = 20


def describe_rows(rows: list[BreachRow]) -> list[str]:
    """``["age: JensenShannonDistance 0.31 > 0.1", ...]``: at most ``MAX_DESCRIBED``, then a count of the rest."""
    described = [row.describe() for row in rows[:MAX_DESCRIBED]]
    if len(rows) > MAX_DESCRIBED:
        described.append(f"... and {len(rows) - MAX_DESCRIBED} more")
    return described


def workspace_name(workspace_id: str) -> str:
    match = _WORKSPACE_ID.match(workspace_id.strip())
    return match.group(1) if match else workspace_id.rstrip("/").rsplit("/", 1)[-1]


def is_workspace_id(value: str) -> bool:
    return bool(_WORKSPACE_ID.match(value.strip()))
