"""Naming and lineage: how a retrain is labelled in Prefect and what a model version carries."""

from __future__ import annotations

import json

from drift_retrain.backends.base import SIGNAL_TAG
from drift_retrain.config import TargetConfig
from drift_retrain.results import CopyResult, Decision, TrainingResult
from drift_retrain.signals import DriftSignal


#: Who started a run, as its ``via:`` tag says: the Event Grid receiver, the scheduled sweep, or a person.
WEBHOOK, SWEEP, MANUAL = "webhook", "sweep", "manual"


def flow_run_name(target: TargetConfig, signal: DriftSignal, started_by: str = WEBHOOK) -> str:
    """``<model>-<drift run>``: says what happened to what, in every Prefect list. A run the sweep caught up
    (its event never arrived) ends in ``-sweep``, so it stands apart from webhook-started runs; a manual
    run's drift run id already begins with ``manual-``."""
    name = f"{target.model_name}-{signal.run_id}"
    return f"{name}-{SWEEP}" if started_by == SWEEP else name


def started_by(tags: list[str]) -> str:
    """Read back who started a run from its ``via:`` tag; a run without one was started by hand."""
    return next((tag.removeprefix("via:") for tag in tags if tag.startswith("via:")), MANUAL)


def flow_run_tags(target: TargetConfig, signal: DriftSignal, started_by: str) -> list[str]:
    return [
        f"model:{target.model_name}",
        f"target:{target.name}",
        f"workspace:{signal.workspace_name}",
        f"monitor:{signal.monitor}",
        f"kind:{signal.kind.value}",
        f"backend:{target.backend}",
        f"via:{started_by}",
    ]


def lineage_tags(
    signal: DriftSignal,
    target: TargetConfig,
    decision: Decision,
    copy: CopyResult,
    training: TrainingResult,
    flow_run_id: str | None,
) -> dict[str, str]:
    """Everything needed to trace a model version back to the drift that caused it."""
    return {
        SIGNAL_TAG: signal.identity,
        "drift_retrain.target": target.name,
        "drift.workspace": signal.workspace_id,
        "drift.monitor": signal.monitor,
        "drift.monitor_id": signal.monitor_id or "",
        "drift.run_id": signal.run_id,
        "drift.event_id": signal.event_id,
        "drift.kind": signal.kind.value,
        "drift.coefficient": "" if signal.drift_coefficient is None else f"{signal.drift_coefficient:.6f}",
        "drift.breached_metrics": ",".join(signal.breached_metrics),
        "drift.window_start": signal.window_start.isoformat() if signal.window_start else "",
        "drift.window_end": signal.window_end.isoformat() if signal.window_end else "",
        "copy.run_id": copy.run_id,
        "copy.rows_copied": str(copy.rows_copied),
        "copy.data_written": str(copy.data_written),
        "copy.files_written": str(copy.files_written),
        "training.job_id": training.job_id,
        "prefect.flow_run_id": flow_run_id or "",
        "decision": decision.summary,
        "decision.checks": json.dumps([c.model_dump() for c in decision.checks]),
    }
