"""The sweep's catch-up on the azure backend: Azure ML v2 model-monitor breaches found in the workspace's runs.

The breach tag ``azureml_modelmonitor_threshold_breached`` is set by the signal's *evaluate-metrics-threshold*
step on its own run (Azure/azureml-assets assets/model_monitoring/components/src/
model_monitor_evaluate_metrics_threshold/evaluate_metrics_threshold.py ``send_email_for_breached``), a step of
the signal's sub-pipeline (components/data_drift/data_drift_signal_monitor/spec.yaml) under the monitor's
top-level pipeline job: two levels down. ARM Jobs - List returns top-level jobs only, so a tag-filtered list
finds nothing; the path azure-ai-ml takes is followed instead: ARM Jobs - List for the pipeline jobs, then each
one's children and grandchildren through run history (``monitor_runs.MonitorRuns.children``).

Each ended step run carrying the tag becomes the ``RunStatusChanged`` event Azure ML publishes for it (the
evaluate step's run id, experiment, tags, properties and status; its end as the event time), read by the same
parser as the webhook's, so its signal has the event's identity and a late real event is a duplicate.

Bounded: at most ``MAX_JOBS_LISTED`` top-level jobs and ``MAX_CHILD_RUNS`` child runs are read per sweep and
target; when a cap is hit, ``blind_spot`` says so in the sweep's table.

v1 data-drift runs (``DatasetDriftDetected``) are not v2 jobs: the Jobs API cannot tell them apart without
properties we would have to invent, so they are not caught up here (``blind_spot`` says so).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drift_retrain.backends.azure.mlclient import ml_client
from drift_retrain.backends.azure.monitor_runs import Budget, ChildRun, MonitorRuns
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.azure.workspace_rest import WorkspaceRest
from drift_retrain.config import AzureTarget
from drift_retrain.intake.parsing import InvalidEvent, to_drift_signal
from drift_retrain.signals import (
    DATASET_DRIFT_DETECTED,
    DEFAULT_LIMITS,
    MONITOR_BREACH_TAG,
    RUN_STATUS_CHANGED,
    DriftSignal,
    SignalLimits,
)
from drift_retrain.text import plain_name

if TYPE_CHECKING:
    from azure.ai.ml.entities import Job

#: The statuses a step run ends in (the RunStatusChanged the tag rides on is the step's end).
ENDED = frozenset({"Completed", "Failed"})
#: Top-level jobs read from ARM Jobs - List, and child runs read from run history, per sweep and target.
MAX_JOBS_LISTED = 500
MAX_CHILD_RUNS = 2000
#: The pipeline jobs' type on ARM Jobs - List (``jobType`` query parameter: azure-ai-ml
#: _restclient/arm_ml_service/operations/_operations.py ``build_jobs_list_request``).
PIPELINE = "Pipeline"

V1_BLIND_SPOT = "v1 DatasetDriftDetected runs are not listed by the v2 Jobs API; a lost v1 event is not caught up"


class AzureMonitorRuns:
    """The v2 model-monitor breaches in one target's workspace: ARM Jobs - List, then run-history children."""

    def __init__(self, session: AzureSession, target: AzureTarget, limits: SignalLimits = DEFAULT_LIMITS) -> None:
        self.session, self.target = session, target
        self.limits = limits  # the receiver's bounds: a caught-up signal is held to what its event would be
        self._v1_note = V1_BLIND_SPOT if _v1_only(target) else None
        self.blind_spot = self._v1_note

    def signals_since(self, since: datetime) -> list[DriftSignal]:
        """Ended, tagged evaluate steps of the pipeline jobs created since ``since``. The window is on the
        top-level job's creation: a monitor run lasts minutes, the sweep looks back hours."""
        self.blind_spot = self._v1_note
        jobs = ml_client(self.session, self.target.workspace).jobs.list(job_type=PIPELINE)
        runs = MonitorRuns(WorkspaceRest(self.session, self.target.workspace))
        budget, listed, skipped = Budget(MAX_CHILD_RUNS), 0, []
        signals: list[DriftSignal] = []
        for job in jobs:
            listed += 1
            if listed > MAX_JOBS_LISTED or budget.left <= 0:
                budget.exhausted = True
                break
            if job is None or _created(job) < since:
                continue
            for step in _tagged_descendants(runs, job.name, budget):
                try:
                    signals.append(
                        to_drift_signal(
                            run_status_changed(step, job.experiment_name, self.target.workspace), limits=self.limits
                        )
                    )
                except InvalidEvent as exc:  # a hostile run body: say so, keep catching up the others
                    skipped.append(str(exc))
        notes = [self._v1_note] if self._v1_note else []
        if budget.exhausted:
            notes.append(
                f"the catch-up read its cap ({MAX_JOBS_LISTED} jobs, {MAX_CHILD_RUNS} child runs); "
                "monitor runs beyond it were not looked at"
            )
        if skipped:
            notes.append(f"{len(skipped)} tagged runs could not be read as events: {skipped[0]}")
        self.blind_spot = "; ".join(notes) or None
        return signals


def _tagged_descendants(runs: MonitorRuns, job_name: str, budget: Budget) -> list[ChildRun]:
    """The job's children and grandchildren (signal pipelines and their steps) that ended carrying the tag."""
    found = []
    for child in runs.children(job_name, budget):
        for run in [child, *runs.children(child.run_id, budget)]:
            if MONITOR_BREACH_TAG in run.tags and run.status in ENDED:
                found.append(run)
    return found


def run_status_changed(run: ChildRun, experiment_name: str | None, workspace_id: str) -> dict[str, Any]:
    """The Event Grid ``RunStatusChanged`` event of an ended step run, in the documented shape
    (tests/fixtures/eventgrid/eg_RunStatusChanged.json; subject ``experiments/<id>/runs/<id>``); the event id
    says the sweep made it. Run history gives a child's experimentId but no experimentName (the recording's
    children), so the name is the top-level job's: the steps run in the pipeline's experiment."""
    moment = run.ended or run.created or datetime.now(UTC)
    return {
        "topic": workspace_id,
        "subject": f"experiments/{run.experiment_id}/runs/{run.run_id}",
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "id": f"sweep-{run.run_id}",
        "data": {
            "experimentId": run.experiment_id,
            "experimentName": plain_name(experiment_name),
            "runId": run.run_id,
            "runType": run.run_type,
            "runTags": dict(run.tags),
            "runProperties": dict(run.properties),
            "runStatus": run.status,
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def _created(job: Job) -> datetime:
    created = job.creation_context.created_at if job.creation_context else None
    if created is None:
        return datetime.min.replace(tzinfo=UTC)
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _v1_only(target: AzureTarget) -> bool:
    """Its Event Grid subscriptions let only DatasetDriftDetected through (v1 data drift, nothing v2)."""
    kinds = [[t.lower() for t in s.included_event_types] for s in target.subscriptions]
    return (
        bool(kinds)
        and all(k and RUN_STATUS_CHANGED.lower() not in k for k in kinds)
        and any(DATASET_DRIFT_DETECTED.lower() in k for k in kinds)
    )
