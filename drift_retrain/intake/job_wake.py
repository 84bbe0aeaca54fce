"""What the receiver does with a job event once the delivery is acknowledged: a Prefect event for the job, and,
when the job has ended, Prefect's own resume of every retrain suspended waiting on it.

Best effort and never in the delivery's way: the receiver queues the events after its answer is out and one
task here works the queue, one Prefect call at a time. A failure is logged (once per job event) and counted,
never raised. Polling stays the retrain's fallback (the waiter), so a lost event costs minutes, not correctness.

Per job event, in order:
1. a v1 run is confirmed first: the ledger record of its training step (one Prefect Variable,
   ``names.ledger_variable_name``) must name this run id, or the event is not for a run we wait on;
2. only for an end (``job_events.TERMINAL``): the flow runs in state type PAUSED tagged
   ``names.waiting_tag(names.job_resource(job))`` are resumed (``PrefectClient.resume_flow_run``, Prefect's
   ``POST /flow_runs/{id}/resume``: a Suspended run goes to Scheduled "Resuming" and its runner or worker starts
   it again; prefect/server/api/flow_runs.py ``resume_flow_run``). A run no longer paused is refused by Prefect
   (ABORT): nothing to do. Running after Completed, or a duplicate, resumes nothing: only paused runs are read,
   and the woken retrain confirms the status itself with one GET;
3. the Prefect event ``azureml.job.<status>`` (``azureml.job.completed``...) on the resource ``azureml.job.<job>``,
   related to each flow run it resumed. Its id derives from the Azure event's, so a redelivery's copy is dropped
   by Prefect's de-duplication.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect.events import Event

from drift_retrain.intake.job_events import JobEvent, JobKind
from drift_retrain.logsafe import log_value
from drift_retrain.names import (
    ID,
    NAME,
    TRAINING_STEP,
    WORKSPACE_ID_LABEL,
    flow_run_related,
    label,
    ledger_variable_name,
    waiting_tag,
)

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun

log = logging.getLogger("drift_retrain.intake.job_wake")

#: ``azureml.job.<status>``, the status in lowercase: ``azureml.job.completed``, ``azureml.job.running``...
JOB_EVENT_PREFIX = "azureml.job."
#: Most suspended runs one job event resumes (one signal has one retrain; more would be a pile of duplicates).
MAX_WOKEN = 50
_EVENT_NAMESPACE = uuid.UUID("0b7f8a52-6f0e-4d8c-9a3e-5c2d7e1f4b90")


def job_event_name(job: JobEvent) -> str:
    return f"{JOB_EVENT_PREFIX}{job.status.value.lower()}"


def prefect_job_event(job: JobEvent, woken: list[FlowRun], received: datetime) -> Event:
    """The Prefect event of one job status: the job is the resource (its workspace as a label), the runs it
    resumed are related. Every value is a pattern-checked id, a closed-set name or bounded one-line text."""
    return Event.model_validate(
        {
            "id": uuid.uuid5(_EVENT_NAMESPACE, f"{job.event_id}/{job.job}/{job.status.value}"),
            "occurred": received,  # Azure's own event time is in the payload
            "event": job_event_name(job),
            "resource": {ID: job.resource, NAME: job.job, WORKSPACE_ID_LABEL: label(job.workspace_id, 1024)},
            "related": [flow_run_related(run.id, label(run.name)) for run in woken],
            "payload": {
                "status": job.status.value,
                "azure_status": job.azure_status,
                "kind": job.kind.value,
                "event_id": job.event_id,
                "event_time": job.event_time.isoformat() if job.event_time else None,
                "resumed": [str(run.id) for run in woken],
            },
        }
    )


class NullWaker:
    """No Prefect to wake (tests of the HTTP contract, or a receiver built with its own hand-off)."""

    def __init__(self) -> None:
        self.count: Callable[[str, int], None] = lambda outcome, n: None

    async def __aenter__(self) -> NullWaker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def wake(self, jobs: list[JobEvent]) -> None:
        pass


class PrefectJobWaker:
    """Works the queue of job events against the Prefect API (``$PREFECT_API_URL`` unless ``api_url``)."""

    def __init__(
        self,
        api_url: str | None = None,
        max_pending: int = 1000,
        shutdown_grace: float = 5.0,
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.api_url = api_url
        self.shutdown_grace = shutdown_grace
        self.count: Callable[[str, int], None] = count or (lambda outcome, n: None)
        self._queue: asyncio.Queue[tuple[JobEvent, datetime]] = asyncio.Queue(max_pending)
        self._client: PrefectClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PrefectJobWaker:
        from prefect.client.orchestration import PrefectClient
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

        url = self.api_url or PREFECT_API_URL.value()
        if not url:  # never Prefect's ephemeral in-process server: the runs to wake are on the real one
            raise RuntimeError("PREFECT_API_URL is not set: the job-event waker has no Prefect server to talk to")
        client = PrefectClient(url, auth_string=PREFECT_API_AUTH_STRING.value(), api_key=PREFECT_API_KEY.value())
        self._client = await client.__aenter__()
        self._task = asyncio.create_task(self._work_forever(), name="job-event-waker")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            try:  # let queued job events finish on a clean shutdown, then stop
                await asyncio.wait_for(self._queue.join(), self.shutdown_grace)
            except TimeoutError:
                log.warning(
                    "%d job event(s) not processed at shutdown (the waiter's polling covers them)", self._queue.qsize()
                )
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._client is not None:
            await self._client.__aexit__(None, None, None)

    def wake(self, jobs: list[JobEvent]) -> None:
        """Queue without waiting; a full queue drops (and counts) the job event."""
        received = datetime.now(UTC)
        for job in jobs:
            try:
                self._queue.put_nowait((job, received))
            except asyncio.QueueFull:
                self.count("dropped", 1)
                log.warning("job event queue full, dropped %s %s", job.job, job.status.value)

    async def _work_forever(self) -> None:
        while True:
            job, received = await self._queue.get()
            try:
                await self.handle(job, received)
            except Exception as exc:  # never let the worker die: later job events would pile up unhandled
                self.count("failed", 1)
                log.warning(
                    "job event %s for %s (%s) not handled (best effort; polling covers it): %s",
                    log_value(job.event_id),
                    job.job,
                    job.status.value,
                    log_value(f"{type(exc).__name__}: {exc}", 300),
                )
            finally:
                self._queue.task_done()

    async def handle(self, job: JobEvent, received: datetime) -> list[FlowRun]:
        """Confirm (v1), resume the waiting runs (an end only), emit the Prefect event; the runs resumed."""
        assert self._client is not None, "entered first"
        if job.kind == JobKind.V1:
            recorded = await self._recorded_v1_run(job)
            if recorded is None:
                log.info(
                    "job event %s: run %s is no training run the ledger recorded", log_value(job.event_id), job.job
                )
                self.count("unconfirmed", 1)
                return []
            job = replace(job, job=recorded)  # as the ledger spells it: the spelling the retrain's tag uses
        woken = await self._resume_waiting(job) if job.terminal else []
        event = prefect_job_event(job, woken, received)
        response = await self._client.request("POST", "/events", json=[event.model_dump(mode="json")])
        response.raise_for_status()
        self.count("emitted", 1)
        log.info(
            "job event %s: %s %s, resumed %d suspended run(s)%s",
            log_value(job.event_id),
            job.job,
            job.status.value,
            len(woken),
            "".join(f" {run.id}" for run in woken),
        )
        return woken

    async def _recorded_v1_run(self, job: JobEvent) -> str | None:
        """The run id the ledger recorded for the job's training step, when it is this job's (any casing)."""
        assert self._client is not None and job.ledger_key is not None
        variable = await self._client.read_variable_by_name(ledger_variable_name(TRAINING_STEP, job.ledger_key))
        value: Any = variable.value if variable is not None else None
        run_id = value.get("run_id") if isinstance(value, dict) else None
        return run_id if isinstance(run_id, str) and run_id.lower() == job.job.lower() else None

    async def _resume_waiting(self, job: JobEvent) -> list[FlowRun]:
        """Resume every flow run suspended waiting on the job; the ones Prefect resumed."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.responses import SetStateStatus

        assert self._client is not None
        waiting = await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[waiting_tag(job.resource)]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            ),
            limit=MAX_WOKEN,
        )
        woken = []
        for run in waiting:
            try:
                result = await self._client.resume_flow_run(run.id)
            except Exception as exc:  # one run's refusal must not keep the others asleep
                self.count("failed", 1)
                log.warning("could not resume flow run %s for job %s: %s", run.id, job.job, log_value(exc, 300))
                continue
            if result.status == SetStateStatus.ACCEPT:
                woken.append(run)
            else:  # no longer paused (resumed by the waiter, cancelled...): nothing to do
                log.info("flow run %s not resumed for job %s: %s", run.id, job.job, result.status.value)
        self.count("resumed", len(woken))
        return woken
