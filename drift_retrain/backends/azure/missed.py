"""The sweep's catch-up on the azure backend: Azure ML v2 model-monitor breaches listed from the workspace.

ARM "Jobs - List" (``MLClient.jobs.list``, filtered server-side on the breach tag key) gives every monitor
run that carries ``azureml_modelmonitor_threshold_breached``. Each ended one becomes the
``RunStatusChanged`` event Azure ML would have published for it, read by the same parser as the webhook's,
so its signal has the same identity and idempotency key as the event's.

v1 data-drift runs (``DatasetDriftDetected``) are not v2 jobs: the Jobs API cannot tell them apart without
properties we would have to invent, so they are not caught up here (``blind_spot`` says so).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drift_retrain.backends.azure.mlclient import ml_client
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.config import AzureTarget
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.signals import DATASET_DRIFT_DETECTED, MONITOR_BREACH_TAG, RUN_STATUS_CHANGED, DriftSignal

if TYPE_CHECKING:
    from azure.ai.ml.entities import Job

#: The statuses a model-monitor run ends in: Failed when a threshold was breached, Completed otherwise.
ENDED = frozenset({"Completed", "Failed"})

V1_BLIND_SPOT = "v1 DatasetDriftDetected runs are not listed by the v2 Jobs API; a lost v1 event is not caught up"


class AzureMonitorRuns:
    """The v2 model-monitor breaches in one target's workspace, listed through azure-ai-ml."""

    def __init__(self, session: AzureSession, target: AzureTarget) -> None:
        self.session, self.target = session, target
        self.blind_spot = V1_BLIND_SPOT if _v1_only(target) else None

    def signals_since(self, since: datetime) -> list[DriftSignal]:
        """Breached monitor runs created since ``since`` that have ended. The job body carries no end time,
        so the window is on creation: a monitor run lasts minutes, the sweep looks back hours."""
        jobs = ml_client(self.session, self.target.workspace).jobs.list(tag=MONITOR_BREACH_TAG)
        return [
            to_drift_signal(run_status_changed(job, self.target.workspace))
            for job in jobs
            if job is not None and job.status in ENDED and _created(job) >= since
        ]


def run_status_changed(job: Job, workspace_id: str) -> dict[str, Any]:
    """The Event Grid ``RunStatusChanged`` event of an ended job, in the documented shape
    (reference/azure/eventgrid/eg_RunStatusChanged.json); the event id says the sweep made it."""
    return {
        "topic": workspace_id,
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "id": f"sweep-{job.name}",
        "data": {
            "experimentName": job.experiment_name,
            "runId": job.name,
            "runType": None,
            "runTags": dict(job.tags or {}),
            "runProperties": dict(job.properties or {}),
            "runStatus": job.status,
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
