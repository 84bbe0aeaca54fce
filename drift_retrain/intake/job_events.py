"""Azure ML job events for our own training jobs: recognised, typed and bounded (pure, no I/O).

Azure ML sends ``RunStatusChanged`` (with ``runStatus``) and ``RunCompleted`` for every run of a workspace,
with ``runId`` the run's id (Microsoft's "Azure Machine Learning as an Event Grid source" schema:
MicrosoftDocs/azure-docs articles/event-grid/event-schema-machine-learning.md; the samples in
/work/shared/reference/azure/eventgrid/). A v2 job *is* its run: its name is its id (ARM Jobs - Get
``.../workspaces/{ws}/jobs/{id}``, "the name and identifier for the Job": learn.microsoft.com/dotnet/api/
azure.resourcemanager.machinelearning.machinelearningworkspaceresource.getmachinelearningjob), the id run
history and MLflow know it by (backends/azure/training.py reads a job's run and metrics by its name), so our
v2 training jobs are recognised by their deterministic names (``names.TRAINING_JOB_NAME``). A v1
published-pipeline run has a service-assigned GUID; it is recognised by the signal tag the submit puts on it
(``names.SIGNAL_TAG``, backends/azure/training.py ``tags``), and only confirmed, off the request path, by the
ledger record of that signal's training step naming this very run id (``job_wake``).

A model-monitoring breach is also a ``RunStatusChanged``: an event carrying the breach tag (in any casing), or
run tags that are no object, is never a job event here; it stays on the drift path (``parsing``), which
decides. Every value is hostile: names are matched whole against a fixed pattern, the status is read into a
closed set, anything else is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from drift_retrain.intake.parsing import EventEnvelope
from drift_retrain.names import SIGNAL_TAG, TRAINING_JOB_NAME, TRAINING_JOB_PREFIX, digest, job_resource
from drift_retrain.signals import MONITOR_BREACH_TAG, RUN_STATUS_CHANGED, workspace_name
from drift_retrain.text import one_line

RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
#: The Azure ML event types that say a run's status (event-schema-machine-learning.md, "Available event types").
JOB_EVENT_TYPES = frozenset({RUN_STATUS_CHANGED.lower(), RUN_COMPLETED.lower()})


class JobStatus(StrEnum):
    """An Azure ML job status: the service's JobStatus enum (azure-ai-ml 1.35.2
    azure/ai/ml/_restclient/arm_ml_service/models/_enums.py ``JobStatus``); anything else is ``UNKNOWN``."""

    NOT_STARTED = "NotStarted"
    STARTING = "Starting"
    PROVISIONING = "Provisioning"
    PREPARING = "Preparing"
    QUEUED = "Queued"
    RUNNING = "Running"
    FINALIZING = "Finalizing"
    CANCEL_REQUESTED = "CancelRequested"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_RESPONDING = "NotResponding"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"


#: Statuses a job never leaves: the waiting retrain is woken only by these. The same set as the training's own
#: wait (backends/azure/training.py ``TERMINAL``: NotResponding and Paused can still change, so they wake nothing).
TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})

_STATUSES = {status.value.lower(): status for status in JobStatus} | {"cancelled": JobStatus.CANCELED}
#: A v1 pipeline run id: the pipelines service's PipelineRunEntity ``Id``, a GUID.
V1_RUN_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Most characters of a signal identity read from a run tag (a workspace ARM id and a run id fit easily).
MAX_IDENTITY = 2048
#: Most characters of the service's own spelling of a status kept for the Prefect event's payload.
MAX_STATUS = 40


class JobKind(StrEnum):
    V2 = "v2"  # a v2 pipeline or batch-endpoint job, by its deterministic name
    V1 = "v1"  # a v1 published-pipeline run, by its GUID; confirmed through the ledger


@dataclass(frozen=True)
class JobEvent:
    """One status of one of our training jobs, as a delivery told it."""

    event_id: str
    job: str  # the v2 job name or the v1 run id: the ``azureml.job.<job>`` resource
    kind: JobKind
    status: JobStatus
    azure_status: str  # the event's own spelling, one line, bounded ("" when it had none)
    workspace_id: str
    event_time: datetime | None
    ledger_key: str | None = None  # v1: the training step's ledger key whose record must name ``job``

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def resource(self) -> str:
        return job_resource(self.job)

    @property
    def workspace(self) -> str:
        return workspace_name(self.workspace_id)

    def answer(self) -> dict[str, str]:
        """What the receiver's 200 says of it (every value is a pattern-checked id or a closed-set name)."""
        return {"event_id": self.event_id, "job": self.job, "kind": self.kind.value, "status": self.status.value}


def job_event(envelope: EventEnvelope) -> JobEvent | None:
    """The job event this envelope is, or None: not a run-status type, not one of our jobs, or a breach."""
    if envelope.type.lower() not in JOB_EVENT_TYPES:
        return None
    data = envelope.data
    tags = _ci(data, "runTags")
    if tags is not None and not isinstance(tags, Mapping):
        return None  # malformed run tags: the drift path decides (a RunStatusChanged's are refused there)
    tags = tags or {}
    if _has(tags, MONITOR_BREACH_TAG):
        return None  # a breach: drift, never a job
    run_id = _ci(data, "runId")
    if not isinstance(run_id, str):
        return None
    if TRAINING_JOB_NAME.fullmatch(run_id):
        kind, key = JobKind.V2, None
    else:
        kind, key = JobKind.V1, _v1_ledger_key(run_id, tags, envelope.source)
        if key is None:
            return None
    raw = _ci(data, "runStatus")
    completed = envelope.type.lower() == RUN_COMPLETED.lower()
    return JobEvent(
        event_id=envelope.id,
        job=run_id,
        kind=kind,
        status=JobStatus.COMPLETED if completed else status_of(raw),
        azure_status=one_line(raw, MAX_STATUS) if isinstance(raw, str) else "",
        workspace_id=envelope.source,
        event_time=envelope.time,
        ledger_key=key,
    )


def status_of(value: Any) -> JobStatus:
    """A ``runStatus`` in the closed set, read case-insensitively (the docs' sample says "failed", the SDK
    "Failed"); "Cancelled" is "Canceled"; anything else, of any type, is ``UNKNOWN``."""
    if not isinstance(value, str) or len(value) > MAX_STATUS:
        return JobStatus.UNKNOWN
    return _STATUSES.get(value.strip().lower(), JobStatus.UNKNOWN)


def _v1_ledger_key(run_id: str, tags: Mapping[str, Any], workspace_id: str) -> str | None:
    """The ledger key of the training step a v1 run was started by: the run id is a GUID and its signal tag
    names a signal of the event's own workspace (``names.signal_identity``: ``<workspace id>/runs/<run id>``);
    the key is that signal's ``names.training_run_key``. None when either does not hold."""
    if not V1_RUN_ID.fullmatch(run_id):
        return None
    identity = _ci(tags, SIGNAL_TAG)
    if not isinstance(identity, str) or len(identity) > MAX_IDENTITY:
        return None
    if not identity.startswith(f"{workspace_id.lower()}/runs/") or identity != one_line(identity):
        return None
    return f"{TRAINING_JOB_PREFIX}{digest(identity)}"


def _ci(mapping: Mapping[str, Any], name: str) -> Any:
    """A key in any casing (Azure's run events use camelCase in the docs, PascalCase elsewhere: WIRE.md §2)."""
    if name in mapping:
        return mapping[name]
    lowered = name.lower()
    return next((value for key, value in mapping.items() if str(key).lower() == lowered), None)


def _has(mapping: Mapping[str, Any], name: str) -> bool:
    lowered = name.lower()
    return any(str(key).lower() == lowered for key in mapping)
