"""Training on Azure ML, three ways, one contract: submit (or reattach), wait, cancel.

- ``published_pipeline``: a v1 published pipeline / pipeline endpoint, submitted over REST on the
  workspace's regional host as azureml-pipeline-core 1.62.0 does (lowercase ``tags``, every parameter a
  string); the service assigns the run id, so it is written to the ledger right after the submit, before
  any wait, and only a throttled (429) submit is sent again. Status (``StatusCode``) and cancel
  (``DELETE .../Execution``) go through the pipelines service, as ``PipelineRun`` does; run history only
  gives a failed run's error message, as ``PipelineRun.wait_for_completion`` reads it.
- ``pipeline_job``: a v2 pipeline job (a YAML file or a registered pipeline component) created with
  azure-ai-ml under a name derived from the signal; a GET first finds the job an earlier attempt made.
- ``batch_endpoint``: ``batch_endpoints.invoke`` of a pipeline-component deployment, with the same
  deterministic job name (and a ledger record); the job is then an ordinary v2 job.

Waiting is one ``Poller`` over the job's status; every end but Completed raises ``MLJobFailed`` with
the service's own message. NotResponding and Paused are not ends: they are waited on up to the step
timeout, which cancels the run. A rerun reattaches to a running or completed attempt; one that an earlier
attempt gave up (timed out or interrupted: the ledger says so) or that is being cancelled is cancelled and
waited out before the next attempt starts, so two trainings of one signal never run at once.

Metrics come from MLflow ``runs/get`` of the job and of its step runs (run history's children, recursively):
metrics belong to the run that logged them, often a step, not the pipeline root. rows_train / rows_test
come from metrics of those names (0 when the pipeline logs none).
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Unpack

from drift_retrain.backends.azure.mlclient import ml_client
from drift_retrain.backends.azure.polling import Poller, PollTiming, is_transient, retry_after
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.azure.workspace_rest import (
    NO_ERROR_MESSAGE,
    SAFE_ID,
    RestError,
    WorkspaceRest,
    run_error_message,
)
from drift_retrain.backends.base import RunLog, StepFailed, TrainingPipeline
from drift_retrain.backends.ledger import RunLedger
from drift_retrain.config import AzureTarget, BatchEndpointConfig, PipelineJobConfig, PublishedPipelineConfig
from drift_retrain.job_end_events import job_end_events
from drift_retrain.names import COPY_RUN_TAG, SIGNAL_TAG, TARGET_TAG, TRAINING_STEP, training_job_name, training_run_key
from drift_retrain.results import CopyResult, TrainingResult
from drift_retrain.signals import DriftSignal
from drift_retrain.templating import Filled, fill, render, render_one, signal_fields

if typing.TYPE_CHECKING:  # azure-ai-ml is imported where it is used: importing it takes seconds
    from azure.ai.ml.entities import PipelineJob

log = RunLog("drift_retrain.azure")  # in the run's log in the UI; this logger outside a run

STEP = TRAINING_STEP
#: Azure ML job statuses a job never leaves; all but Completed are failures. The service's JobStatus enum
#: (azure-ai-ml 1.35.2 azure/ai/ml/_restclient/arm_ml_service/models/_enums.py, generated from its spec) says
#: "a run can go from NotResponding to any of the previous states" and Paused is "paused by users": neither
#: is final, though azure-ai-ml's own waits (_run_history_constants.py TERMINAL_STATUSES) stop on both.
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
SUCCEEDED = "Completed"
FAILED_ENDS = TERMINAL - {SUCCEEDED}
CANCELLING = "CancelRequested"  # JobStatus: "Cancellation has been requested for the job."
GONE = "(gone)"  # a recorded run the service no longer knows
#: Ledger flag: an attempt this step gave up on (its wait timed out or was interrupted, so it was cancelled).
GIVEN_UP = "given_up"
#: v1 submits sent when throttled (429: not processed, so safe to send again); any other error is not retried.
SUBMIT_ATTEMPTS = 4

#: The pipelines service's StatusCode in the job vocabulary above. PipelineRunStatus.status_code is one of
#: NotStarted, Running, Failed, Finished, Canceled (azureml-pipeline-core 1.62.0 _restclients/aeva/models/
#: pipeline_run_status.py); _aeva_provider.py ``_AevaPipelineRunProvider.get_status`` also maps the older
#: int codes '0'..'4' and reads a missing Status as NotStarted; PipelineRun.wait_for_completion waits on
#: NotStarted, Running, Queued and Unknown (run.py RUNNING_STATES). Any other value is not taken for an end:
#: it is waited on, up to the step timeout.
V1_STATUSES = {
    "notstarted": "NotStarted",
    "0": "NotStarted",
    "running": "Running",
    "1": "Running",
    "failed": "Failed",
    "2": "Failed",
    "finished": "Completed",
    "3": "Completed",
    "canceled": "Canceled",
    "4": "Canceled",
    "queued": "Queued",
    "unknown": "Unknown",
}
#: Step runs whose metrics are read: how deep into sub-pipelines, and how many runs at most.
MAX_STEP_DEPTH = 3
MAX_STEP_RUNS = 100
#: Tries of one metrics or children read that meets throttling or a 5xx (Retry-After honoured).
READ_ATTEMPTS = 3

T = typing.TypeVar("T")


class MLJobFailed(StepFailed):
    """The Azure ML job (or v1 pipeline run) ended Failed or Canceled, or its submit gave no usable run."""


def training_pipeline(
    session: AzureSession, target: AzureTarget, ledger: RunLedger, **timing: Unpack[PollTiming]
) -> TrainingPipeline:
    """The implementation for ``target.training.kind``; ``timing`` (sleep, clock, rng) drives its polling."""
    match target.training:
        case PublishedPipelineConfig():
            return PublishedPipelineTraining(session, target, ledger, **timing)
        case PipelineJobConfig():
            return PipelineJobTraining(session, target, ledger, **timing)
        case BatchEndpointConfig():
            return BatchEndpointTraining(session, target, ledger, **timing)


def job_status(job: Any) -> str:
    """A job's status as the service spells it (azure-ai-ml returns a str enum for some job types)."""
    status = getattr(job, "status", None)
    return str(getattr(status, "value", status) or "Unknown")


@dataclass(frozen=True)
class StepRun:
    """A step (child) run of a training job, as run history lists it."""

    run_id: str
    name: str
    ended: datetime | None


class _AzureMLTraining:
    """What the three kinds share: rendering, model URI, metrics, the wait, giving a run up, the failure message."""

    config: PublishedPipelineConfig | PipelineJobConfig | BatchEndpointConfig
    #: A suspended wait on any kind's run can be woken by its job event: Azure ML publishes run state changes to
    #: Event Grid (Microsoft.MachineLearningServices.RunStatusChanged, learn.microsoft.com/azure/machine-learning/
    #: how-to-use-event-grid); the receiver recognises v2 jobs by name (``names.TRAINING_JOB_NAME``) and v1 runs
    #: by the ledger record naming them (drift_retrain/intake/job_wake.py).
    push = True

    def __init__(
        self, session: AzureSession, target: AzureTarget, ledger: RunLedger, **timing: Unpack[PollTiming]
    ) -> None:
        self.session, self.target, self.ledger = session, target, ledger
        self._timing = timing
        self.config = target.training  # the subclass's kind: training_pipeline picked the class by it
        self.policy = self.config.polling or session.config.polling
        self.model_path = target.registry.path
        regional = getattr(self.config, "regional_host", None)
        self.rest = WorkspaceRest(session, target.workspace, regional)
        self._reattached: set[str] = set()
        self._records: dict[str, tuple[str, dict[str, Any]]] = {}  # run id -> (ledger key, its ledger details)
        self._started: dict[str, float] = {}  # run id -> when it was recorded (epoch s): a resumed wait's age

    # -- shared pieces ----------------------------------------------------------------------------

    def fields(self, signal: DriftSignal, data: CopyResult) -> dict[str, str]:
        return signal_fields(
            signal, self.target.model_name, self.target.name, copy_output_uri=data.output_uri, copy_run_id=data.run_id
        )

    def tags(self, signal: DriftSignal, data: CopyResult) -> dict[str, str]:
        """Tags on the job: the signal's identity (what a human or a sweep finds it by) and lineage."""
        return {SIGNAL_TAG: signal.identity, TARGET_TAG: self.target.name, COPY_RUN_TAG: data.run_id}

    def model_uri(self, job_id: str) -> str:
        uri = f"azureml://jobs/{job_id}/outputs/{self.config.model_output}"
        return f"{uri}/paths/{self.model_path}" if self.model_path else uri

    def poller(self, job_id: str | None = None) -> Poller[Any]:
        """The wait on ``job_id`` (its age counted from when the ledger recorded it, so a resumed retrain keeps
        its step timeout); without one, a wait that ends in-process (waiting out a cancel)."""
        if job_id is None:
            return Poller(self.policy, STEP, holdable=False, **self._timing)
        elapsed = max(0.0, time.time() - self._started[job_id]) if job_id in self._started else 0.0
        listen = job_end_events if self.push else None  # the hold waits for the job's end event, not polling
        return Poller(self.policy, STEP, elapsed=elapsed, push=self.push, listen=listen, **self._timing)

    def ended(self, job_id: str) -> bool:
        """One status call: has the job ended (any way)?"""
        raise NotImplementedError

    def failure_message(self, job_id: str, fallback: str | None = None) -> str:
        """The service's error for a failed run, from run history (ARM job bodies and v1 pipeline run bodies
        carry none; ``PipelineRun.wait_for_completion`` reads it from ``get_details()["error"]`` too)."""
        try:
            message = run_error_message(self.rest.run(job_id))
        except Exception as exc:  # the failure itself is what matters; say why there is no message
            message = f"(no error message: run history answered {type(exc).__name__}: {exc})"
        if fallback and (message == NO_ERROR_MESSAGE or message.startswith("(no error message")):
            return fallback
        return message

    # -- records, giving up, making way -------------------------------------------------------------

    def record(self, key: str, run_id: str, details: dict[str, Any]) -> None:
        """Write the attempt to the ledger (before any wait) and remember it for ``cancel``."""
        self.ledger.put(STEP, key, run_id, **details)
        self._records[run_id] = (key, details)
        self._started[run_id] = time.time()

    def remember(self, key: str, run_id: str, recorded: dict[str, Any] | None, attempt: int) -> None:
        """Remember a reattached attempt's ledger record, so ``cancel`` can mark it given up."""
        same = recorded is not None and recorded.get("run_id") == run_id
        details = {k: v for k, v in (recorded or {}).items() if k not in ("run_id", "recorded_at", GIVEN_UP)}
        self._records[run_id] = (key, details if same else {"attempt": attempt})
        began = _parse_time(recorded.get("recorded_at")) if same and recorded else None
        if began is not None:
            self._started[run_id] = began.timestamp()

    def cancel(self, job_id: str) -> None:
        """Give the run up: the ledger says so first (a rerun then cancels it if it still runs instead of
        reattaching to it), then the service is asked to cancel; the cancel is not waited on."""
        log.warning("training: cancelling run %s", job_id)
        if job_id in self._records:
            key, details = self._records[job_id]
            try:
                self.ledger.put(STEP, key, job_id, **details, **{GIVEN_UP: True})
            except Exception as exc:  # the cancel matters more than the note
                log.warning("training: could not record that run %s was given up (%s)", job_id, exc)
        self.request_cancel(job_id)

    def request_cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def make_way(
        self, run_id: str, status: str, given_up: bool, fetch: Callable[[], Any], status_of: Callable[[Any], str]
    ) -> str:
        """The status a rerun decides on for a recorded attempt. One that still runs but was given up (by an
        earlier attempt's timeout or interruption) or is being cancelled is cancelled and waited on until it
        has ended (up to the step timeout), so the next attempt never trains beside it."""
        if status in TERMINAL or status == GONE or not (given_up or status == CANCELLING):
            return status
        if status == CANCELLING:
            log.info("training: run %s is being cancelled; waiting for it to end before the next attempt", run_id)
        else:
            log.warning(
                "training: run %s (%s) was given up by an earlier attempt; cancelling it before the next",
                run_id,
                status,
            )
            self.request_cancel(run_id)
        return status_of(self.poller().wait(run_id, fetch, status_of, TERMINAL))

    # -- the result ---------------------------------------------------------------------------------

    def result(self, job_id: str, status: str, started: datetime | None, ended: datetime | None) -> TrainingResult:
        if status != SUCCEEDED:
            raise MLJobFailed(STEP, job_id, status, self.failure_message(job_id))
        metrics = self.metrics(job_id)
        duration = ((ended or datetime.now(UTC)) - started).total_seconds() if started else 0.0
        return TrainingResult(
            job_id=job_id,
            status=status,
            metrics=metrics,
            rows_train=_count(metrics.get("rows_train")),
            rows_test=_count(metrics.get("rows_test")),
            model_uri=self.model_uri(job_id),
            duration=max(0.0, duration),
            reattached=job_id in self._reattached,
        )

    def metrics(self, job_id: str) -> dict[str, float]:
        """The job's metrics wherever they were logged: the root run's, then its step runs' for the names the
        root lacks. "Metrics belong to the child run that logged them" (Azure/azure-sdk-for-python#39198)."""
        try:
            root, _ = self.read(lambda: self.rest.metrics(job_id))
        except Exception as exc:
            log.warning("training: metrics of job %s could not be read (%s); registering without them", job_id, exc)
            root = {}
        found: list[tuple[StepRun, dict[str, float]]] = []
        for step in self.step_runs(job_id):
            try:
                logged, _ = self.read(partial(self.rest.metrics, step.run_id))
            except Exception as exc:
                log.warning("training: metrics of step %s (run %s) could not be read (%s)", step.name, step.run_id, exc)
                continue
            if logged:
                found.append((step, logged))
        return merge_metrics(root, found)

    def read(self, call: Callable[[], T]) -> T:
        """One read after the run ended, tried again on throttling, 5xx and connection failures."""
        sleep = self._timing.get("sleep", time.sleep)
        for attempt in range(READ_ATTEMPTS):
            try:
                return call()
            except Exception as exc:
                if attempt == READ_ATTEMPTS - 1 or not is_transient(exc):
                    raise
                sleep(retry_after(exc) or self.policy.initial_interval * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def step_runs(self, job_id: str) -> list[StepRun]:
        """The job's step runs, sub-pipelines' steps included (at most ``MAX_STEP_DEPTH`` deep and
        ``MAX_STEP_RUNS`` runs); a listing that fails leaves out what it would have found, with a warning."""
        steps: list[StepRun] = []
        level, seen = [job_id], {job_id}
        for _ in range(MAX_STEP_DEPTH):
            below: list[str] = []
            for parent in level:
                try:
                    children = self.read(partial(self.rest.children, parent))
                except Exception as exc:
                    log.warning("training: the steps of run %s could not be listed (%s)", parent, exc)
                    continue
                for body in children:
                    step = _step_run(body)
                    if step is None or step.run_id in seen:
                        continue
                    if len(steps) >= MAX_STEP_RUNS:
                        log.warning("training: job %s has over %d step runs; reading the first", job_id, MAX_STEP_RUNS)
                        return steps
                    seen.add(step.run_id)
                    steps.append(step)
                    below.append(step.run_id)
            if not below:
                break
            level = below
        return steps


def merge_metrics(root: dict[str, float], steps: list[tuple[StepRun, dict[str, float]]]) -> dict[str, float]:
    """Root first; a step's metric fills a name the root lacks. When several steps logged one name, the step
    that ended last wins (then the step name, then the run id, so the choice never depends on listing order),
    and the log says which."""
    merged = dict(root)
    offers: dict[str, list[tuple[StepRun, float]]] = {}
    for step, logged in steps:
        for name, value in logged.items():
            if name not in root:
                offers.setdefault(name, []).append((step, value))
    for name, found in sorted(offers.items()):
        chosen, value = max(found, key=lambda offer: _step_order(offer[0]))
        merged[name] = value
        if len(found) > 1:
            others = ", ".join(f"{s.name} (run {s.run_id}) = {v:g}" for s, v in found if s is not chosen)
            log.info(
                "training: metric %r was logged by %d steps; using %s (run %s) = %g, the step that ended last (also: %s)",
                name,
                len(found),
                chosen.name,
                chosen.run_id,
                value,
                others,
            )
    return merged


def _step_order(step: StepRun) -> tuple[datetime, str, str]:
    return (step.ended or datetime.min.replace(tzinfo=UTC), step.name, step.run_id)


def _step_run(body: dict[str, Any]) -> StepRun | None:
    """A StepRun from a run-history run body (runId, displayName, endTimeUtc, as in the recorded children answer);
    None when its id is not usable."""
    run_id = body.get("runId")
    if not isinstance(run_id, str) or not SAFE_ID.fullmatch(run_id):
        return None
    name = body.get("displayName") or body.get("name")
    label = name[:100] if isinstance(name, str) and name.isprintable() else run_id
    return StepRun(run_id=run_id, name=label, ended=_parse_time(body.get("endTimeUtc")))


def _count(value: float | None) -> int:
    """A row count from a metric: a non-negative int, 0 when the pipeline logged none."""
    return max(0, int(value)) if value is not None else 0


class _V2JobTraining(_AzureMLTraining):
    """Waiting on and cancelling a v2 job through azure-ai-ml (pipeline jobs and batch endpoint jobs)."""

    @property
    def ml(self) -> Any:
        return ml_client(self.session, self.target.workspace)

    def existing(self, name: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.ml.jobs.get(name)
        except ResourceNotFoundError:
            return None

    def current_attempt(self, signal: DriftSignal) -> tuple[str, int, bool]:
        """(job name, attempt, reattached) for this signal. An attempt that is running (NotResponding and
        Paused included) or completed is reattached; one that ended in failure (Failed, Canceled) makes way
        for the next, so a rerun after a failure or a timeout trains again instead of repeating the old end;
        one given up or being cancelled is cancelled and waited out first (``make_way``)."""
        key = training_run_key(signal)
        recorded = self.ledger.get(STEP, key)
        attempt = int(recorded.get("attempt", 1)) if recorded else 1
        while True:
            name = training_job_name(signal, attempt)
            job = self.existing(name)
            if job is None:
                return name, attempt, False
            given_up = bool(recorded and recorded.get("run_id") == name and recorded.get(GIVEN_UP))
            status = self.make_way(name, job_status(job), given_up, partial(self.ml.jobs.get, name), job_status)
            if status not in FAILED_ENDS:
                self._reattached.add(name)
                self.remember(key, name, recorded, attempt)
                log.info("training: reattached to job %s (%s) of this signal", name, status)
                return name, attempt, True
            log.info("training: job %s ended %s; this rerun starts attempt %d", name, status, attempt + 1)
            attempt += 1

    def submit(self, signal: DriftSignal, data: CopyResult) -> str:
        """Reattach to this signal's running or completed attempt, else create the next attempt under its
        deterministic name and record it."""
        name, attempt, reattached = self.current_attempt(signal)
        if reattached:
            return name
        job_name, details = self.create(name, signal, data)
        self.record(training_run_key(signal), job_name, {**details, "attempt": attempt})
        return job_name

    def create(self, name: str, signal: DriftSignal, data: CopyResult) -> tuple[str, dict[str, Any]]:
        """Create the job ``name``; its name as the service answered and what the ledger records of it."""
        raise NotImplementedError

    def ended(self, job_id: str) -> bool:
        return job_status(self.ml.jobs.get(job_id)) in TERMINAL

    def wait(self, job_id: str) -> TrainingResult:
        job = self.poller(job_id).wait(job_id, lambda: self.ml.jobs.get(job_id), job_status, TERMINAL)
        created = getattr(getattr(job, "creation_context", None), "created_at", None)
        return self.result(job_id, job_status(job), _aware(created), None)

    def request_cancel(self, job_id: str) -> None:
        """Ask the service to cancel (azure-ai-ml ``jobs.begin_cancel``); its poller is not waited on."""
        self.ml.jobs.begin_cancel(job_id)


class PipelineJobTraining(_V2JobTraining):
    config: PipelineJobConfig

    def create(self, name: str, signal: DriftSignal, data: CopyResult) -> tuple[str, dict[str, Any]]:
        fields = self.fields(signal, data)
        job = self._build(name, fill(self.config.inputs, fields))
        job.name = name
        job.tags = {**(job.tags or {}), **self.tags(signal, data)}
        if self.config.compute:
            # azure-ai-ml types the getter Optional, but it never returns None: it makes default settings.
            job.settings.default_compute = self.config.compute  # type: ignore[union-attr]
        self.ml.jobs.create_or_update(job, experiment_name=render_one(self.config.experiment_name, fields))
        return name, {"kind": "pipeline_job"}

    def _build(self, name: str, inputs: dict[str, Filled]) -> PipelineJob:
        if self.config.yaml is not None:
            return self._from_yaml(self.config.yaml, inputs)
        return self._from_component(str(self.config.component), name, inputs)

    def _from_yaml(self, path: Path, inputs: dict[str, Filled]) -> PipelineJob:
        from azure.ai.ml import load_job
        from azure.ai.ml.entities import PipelineJob

        job = load_job(source=path)
        if not isinstance(job, PipelineJob):
            raise ValueError(
                f"{path}: a pipeline_job target needs a pipeline job YAML (type: pipeline), not type: {job.type}"
            )
        for key, value in inputs.items():
            declared = getattr(getattr(job.inputs.get(key), "_data", None), "type", None)
            setattr(job.inputs, key, _input(value, declared))
        return job

    def _from_component(self, reference: str, name: str, inputs: dict[str, Filled]) -> PipelineJob:
        from azure.ai.ml.dsl import pipeline

        component_name, _, version = reference.partition(":")
        component = (
            self.ml.components.get(component_name, version)
            if version
            else self.ml.components.get(component_name, label="latest")
        )
        declared = {key: getattr(port, "type", None) for key, port in component.inputs.items()}
        arguments = {key: _input(value, declared.get(key)) for key, value in inputs.items()}
        output = self.config.model_output

        @pipeline(None, name=name, display_name=name)  # None spelled out: the decorator form's overload wants it
        def retrain() -> dict[str, Any]:
            node = component(**arguments)
            return {output: node.outputs[output]}

        return retrain()


class BatchEndpointTraining(_V2JobTraining):
    config: BatchEndpointConfig

    def create(self, name: str, signal: DriftSignal, data: CopyResult) -> tuple[str, dict[str, Any]]:
        fields = self.fields(signal, data)
        inputs = {k: _batch_input(v) for k, v in fill(self.config.inputs, fields).items()}
        job = self.ml.batch_endpoints.invoke(
            endpoint_name=self.config.endpoint,
            deployment_name=self.config.deployment or self._default_deployment(),
            inputs=inputs,
            job_name=name,
            experiment_name=render_one(self.config.experiment_name, fields),
        )
        return str(job.name), {"kind": "batch_endpoint", "endpoint": self.config.endpoint}

    def _default_deployment(self) -> str | None:
        """The endpoint's default deployment, named explicitly: azure-ai-ml 1.35.2 keeps the deployment
        header of an earlier ``invoke`` in a module-level dict, so an invoke without ``deployment_name``
        can silently go to the deployment a previous call named."""
        endpoint = self.ml.batch_endpoints.get(self.config.endpoint)
        defaults = getattr(endpoint, "defaults", None)
        return getattr(defaults, "deployment_name", None)


class PublishedPipelineTraining(_AzureMLTraining):
    config: PublishedPipelineConfig

    def __init__(
        self, session: AzureSession, target: AzureTarget, ledger: RunLedger, **timing: Unpack[PollTiming]
    ) -> None:
        super().__init__(session, target, ledger, **timing)
        self._unrecognised: set[str] = set()

    def submit(self, signal: DriftSignal, data: CopyResult) -> str:
        key = training_run_key(signal)
        recorded = self.ledger.get(STEP, key)
        attempt = 1
        if recorded is not None:
            run_id, attempt = str(recorded["run_id"]), int(recorded.get("attempt", 1))
            status = self.make_way(
                run_id,
                self._status_of_recorded(run_id),
                bool(recorded.get(GIVEN_UP)),
                lambda: self.rest.pipeline_run(run_id),
                self.status_of,
            )
            if status not in FAILED_ENDS | {GONE}:
                self._reattached.add(run_id)
                self.remember(key, run_id, recorded, attempt)
                log.info("training: reattached to pipeline run %s (%s) of this signal", run_id, status)
                return run_id
            log.info("training: pipeline run %s ended %s; this rerun submits attempt %d", run_id, status, attempt + 1)
            attempt += 1
        fields = self.fields(signal, data)
        experiment = render_one(self.config.experiment_name, fields)
        # PipelineSubmissionInfo's wire names (azureml-pipeline-core 1.62.0 _restclients/aeva/models/
        # pipeline_submission_info.py _attribute_map): ExperimentName, Description, ParameterAssignments ({str}),
        # DataPathAssignments, and "tags" in lowercase.
        body = {
            "ExperimentName": experiment,
            "ParameterAssignments": {k: _parameter(v) for k, v in render(self.config.inputs, fields).items()},
            "DataPathAssignments": {},
            "Description": f"drift-retrain {self.target.name}: drift run {signal.run_id} of {signal.monitor}",
            "tags": self.tags(signal, data),
        }
        run_id = self._run_id(self._submit(body))
        self.record(key, run_id, {"kind": "published_pipeline", "experiment": experiment, "attempt": attempt})
        return run_id

    def _run_id(self, answer: Any) -> str:
        """The submitted run's id: PipelineRunEntity ``Id`` (pipeline_run_entity.py: 'id': {'key': 'Id'}), which
        ``published_pipeline.submit`` returns (_aeva_provider.py ``created_pipeline_run.id``)."""
        run_id = answer.get("Id") if isinstance(answer, dict) else None
        if not isinstance(run_id, str) or not SAFE_ID.fullmatch(run_id):
            raise MLJobFailed(
                STEP,
                "(unknown)",
                "Unknown",
                f"the pipelines service accepted the submit but answered no usable run Id ({str(run_id)[:80]!r}); "
                "find the run in Studio under the experiment and cancel it if it should not run",
            )
        return run_id

    def status_of(self, run: Any) -> str:
        """A PipelineRunEntity's status in the job vocabulary; an unrecognised StatusCode is "Unknown" (waited on)
        and said once in the log."""
        status = v1_status(run)
        if status is not None:
            return status
        code = (
            run.get("Status", {}).get("StatusCode")
            if isinstance(run, dict) and isinstance(run.get("Status"), dict)
            else None
        )
        shown = repr(code)[:60]
        if shown not in self._unrecognised:
            self._unrecognised.add(shown)
            log.warning("training: the pipelines service reported StatusCode %s; not an end, waiting on", shown)
        return "Unknown"

    def _status_of_recorded(self, run_id: str) -> str:
        """A recorded run's status; one the pipelines service no longer knows counts as gone (a new attempt)."""
        try:
            return self.status_of(self.rest.pipeline_run(run_id))
        except RestError as exc:
            if exc.status_code == 404:
                return GONE
            raise

    def _submit(self, body: dict[str, Any]) -> Any:
        """POST the submit; a 429 is sent again after Retry-After. A 5xx or a lost answer is not: the
        service may have started the run, and only its answer carries the run id."""
        sleep = self._timing.get("sleep", time.sleep)
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                return self.rest.submit_pipeline(self.config.pipeline_id, self.config.pipeline_endpoint_id, body)
            except RestError as exc:
                if exc.status_code != 429 or attempt == SUBMIT_ATTEMPTS - 1:
                    raise
                wait = retry_after(exc) or self.policy.initial_interval * 2**attempt
                log.warning("training: pipeline submit throttled (%s); sending it again in %.1f s", exc.message, wait)
                sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def ended(self, job_id: str) -> bool:
        return self.status_of(self.rest.pipeline_run(job_id)) in TERMINAL

    def wait(self, job_id: str) -> TrainingResult:
        run = self.poller(job_id).wait(job_id, lambda: self.rest.pipeline_run(job_id), self.status_of, TERMINAL)
        status = self.status_of(run)
        times = run.get("Status") if isinstance(run.get("Status"), dict) else {}
        if status != SUCCEEDED:
            detail = times.get("StatusDetail")
            fallback = detail.strip()[:2000] if isinstance(detail, str) and detail.strip() else None
            raise MLJobFailed(STEP, job_id, status, self.failure_message(job_id, fallback))
        return self.result(job_id, status, _parse_time(times.get("CreationTime")), _parse_time(times.get("EndTime")))

    def request_cancel(self, job_id: str) -> None:
        """``PipelineRun.cancel``: DELETE .../PipelineRuns/{id}/Execution on the pipelines service."""
        self.rest.cancel_pipeline_run(job_id)


def v1_status(run: object) -> str | None:
    """A PipelineRunEntity's ``Status.StatusCode`` in the job vocabulary (``V1_STATUSES``); None when it is
    not one the pipelines service documents."""
    status = run.get("Status") if isinstance(run, dict) else None
    if status is None:
        return "NotStarted" if isinstance(run, dict) else None
    code = status.get("StatusCode") if isinstance(status, dict) else None
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    return V1_STATUSES.get(code.strip().lower()) if isinstance(code, str) and len(code) <= 64 else None


def _parameter(value: object) -> str:
    """A pipeline parameter as the SDK sends it: ``str(value)`` for str, int, float and bool
    (azureml-pipeline-core 1.62.0 _aeva_provider.py ``_AevaGraphProvider._get_parameter_assignments``)."""
    return str(value)


#: The v2 input types that are data (a path), not literals.
DATA_TYPES = ("uri_folder", "uri_file", "mltable")


def _input(filled: Filled, declared: str | None) -> object:
    """A data input when the configuration makes it one, a literal otherwise; never because of what the event put
    in the value. The pipeline's declared type wins; an input it does not type is a uri_folder when its template
    is a URI by its own text or a trusted placeholder (``templating.configured_uri``: ``{copy_output_uri}``)."""
    from azure.ai.ml import Input

    value = filled.value
    if isinstance(value, str) and (declared in DATA_TYPES or (declared is None and filled.uri)):
        return Input(type=declared if declared in DATA_TYPES else "uri_folder", path=value)
    return value


def _batch_input(filled: Filled) -> object:
    """``batch_endpoints.invoke`` takes only ``Input`` objects; literals are typed inputs with a default
    (Microsoft's batch pipeline-component samples pass ``Input(type="string", default=...)``)."""
    from azure.ai.ml import Input

    data = _input(filled, None)
    if isinstance(data, Input):
        return data
    value = filled.value
    kind = (
        "boolean"
        if isinstance(value, bool)
        else "integer"
        if isinstance(value, int)
        else ("number" if isinstance(value, float) else "string")
    )
    return Input(type=kind, default=value)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


__all__ = [
    "TERMINAL",
    "BatchEndpointTraining",
    "MLJobFailed",
    "PipelineJobTraining",
    "PublishedPipelineTraining",
    "training_pipeline",
]
