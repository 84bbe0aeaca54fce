"""Lineage: what a registered model version carries back to the drift that caused it (its run's names and
tags are in ``drift_retrain.names``)."""

from __future__ import annotations

import json

from drift_retrain.config import TargetConfig
from drift_retrain.names import (
    COPY_RUN_TAG,
    FLOW_RUN_TAG,
    MONITOR_RUN_TAG,
    SIGNAL_TAG,
    TARGET_TAG,
    TRAINING_JOB_TAG,
    WINDOW_END_TAG,
    WINDOW_START_TAG,
)
from drift_retrain.results import CopyResult, Decision, TrainingResult
from drift_retrain.signals import DriftSignal

#: A count the copy did not report (a binary copy counts no rows): a tag value, unlike an absent tag, says so.
NOT_REPORTED = "n/a"


def lineage_tags(
    signal: DriftSignal,
    target: TargetConfig,
    decision: Decision,
    copy: CopyResult,
    training: TrainingResult,
    flow_run_id: str | None,
) -> dict[str, str]:
    """Everything needed to trace a model version back to the drift that caused it. The keys code reads back
    (registration's idempotency, the policy's coverage, reattach checks) are ``names``' tags; the rest are
    for people reading the version in the registry."""
    return {
        SIGNAL_TAG: signal.identity,
        TARGET_TAG: target.name,
        "drift.workspace": signal.workspace_id,
        "drift.monitor": signal.monitor,
        "drift.monitor_id": signal.monitor_id or "",
        "drift.run_id": signal.run_id,
        "drift.event_id": signal.event_id,
        "drift.kind": signal.kind.value,
        "drift.coefficient": "" if signal.drift_coefficient is None else f"{signal.drift_coefficient:.6f}",
        "drift.breached_metrics": ",".join(signal.breached_metrics),
        MONITOR_RUN_TAG: signal.monitor_run_id or "",
        WINDOW_START_TAG: signal.window_start.isoformat() if signal.window_start else "",
        WINDOW_END_TAG: signal.window_end.isoformat() if signal.window_end else "",
        COPY_RUN_TAG: copy.run_id,
        "copy.rows_copied": NOT_REPORTED if copy.rows_copied is None else str(copy.rows_copied),
        "copy.data_written": str(copy.data_written),
        "copy.files_written": str(copy.files_written),
        TRAINING_JOB_TAG: training.job_id,
        FLOW_RUN_TAG: flow_run_id or "",
        "decision": decision.summary,
        "decision.checks": json.dumps([c.model_dump() for c in decision.checks]),
    }
