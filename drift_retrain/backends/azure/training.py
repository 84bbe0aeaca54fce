"""Training on Azure ML, three ways, one contract: submit (or reattach), wait, cancel.

- ``published_pipeline``: a v1 published pipeline / pipeline endpoint, submitted over REST on the
  workspace's regional host; the service assigns the run id, so it is written to the ledger right
  after the submit, before any wait, and only a throttled (429) submit is sent again. Status and cancel
  go through run history.
- ``pipeline_job``: a v2 pipeline job (a YAML file or a registered pipeline component) created with
  azure-ai-ml under a name derived from the signal; a GET first finds the job an earlier attempt made.
- ``batch_endpoint``: ``batch_endpoints.invoke`` of a pipeline-component deployment, with the same
  deterministic job name (and a ledger record); the job is then an ordinary v2 job.

Waiting is one ``Poller`` over the job's status; every end but Completed raises ``MLJobFailed`` with
the service's own message. Metrics come from MLflow ``runs/get`` of the job; rows_train / rows_test
from metrics of those names (0 when the pipeline logs none).
"""

from __future__ import annotations

import time
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Unpack

from drift_retrain.backends.azure.mlclient import ml_client
from drift_retrain.backends.azure.polling import Poller, PollTiming, retry_after
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.azure.workspace_rest import RestError, WorkspaceRest, run_error_message
from drift_retrain.backends.base import RunLog, StepFailed, TrainingPipeline
from drift_retrain.backends.ledger import RunLedger
from drift_retrain.config import AzureTarget, BatchEndpointConfig, PipelineJobConfig, PublishedPipelineConfig
from drift_retrain.names import COPY_RUN_TAG, SIGNAL_TAG, TARGET_TAG, TRAINING_STEP, training_job_name, training_run_key
from drift_retrain.results import CopyResult, TrainingResult
from drift_retrain.signals import DriftSignal
from drift_retrain.templating import render, render_one, signal_fields

if typing.TYPE_CHECKING:  # azure-ai-ml is imported where it is used: importing it takes seconds
    from azure.ai.ml.entities import PipelineJob

log = RunLog("drift_retrain.azure")  # in the run's log in the UI; this logger outside a run

STEP = TRAINING_STEP
#: Azure ML job statuses a job never leaves (azure-ai-ml's RunHistoryConstants.TERMINAL_STATUSES, Azure/azure-sdk-for-python
#: sdk/ml/azure-ai-ml/azure/ai/ml/operations/_run_history_constants.py); all but Completed are failures.
TERMINAL = frozenset({"Completed", "Failed", "Canceled", "NotResponding", "Paused"})
SUCCEEDED = "Completed"
FAILED_ENDS = TERMINAL - {SUCCEEDED}
GONE = "(gone)"  # a recorded run the service no longer knows
#: v1 submits sent when throttled (429: not processed, so safe to send again); any other error is not retried.
SUBMIT_ATTEMPTS = 4


class MLJobFailed(StepFailed):
    """The Azure ML job (or v1 pipeline run) ended Failed, Canceled, NotResponding or Paused."""


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


class _AzureMLTraining:
    """What the three kinds share: rendering, model URI, metrics, the wait and the failure message."""

    config: PublishedPipelineConfig | PipelineJobConfig | BatchEndpointConfig

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

    def poller(self) -> Poller[Any]:
        return Poller(self.policy, STEP, **self._timing)

    def failure_message(self, job_id: str) -> str:
        """The service's error for a failed run, from run history (ARM job bodies carry none)."""
        try:
            return run_error_message(self.rest.run(job_id))
        except Exception as exc:  # the failure itself is what matters; say why there is no message
            return f"(no error message: run history answered {type(exc).__name__}: {exc})"

    def result(self, job_id: str, status: str, started: datetime | None, ended: datetime | None) -> TrainingResult:
        if status != SUCCEEDED:
            raise MLJobFailed(STEP, job_id, status, self.failure_message(job_id))
        try:
            metrics, _ = self.rest.metrics(job_id)
        except Exception as exc:
            log.warning("training: metrics of job %s could not be read (%s); registering without them", job_id, exc)
            metrics = {}
        duration = ((ended or datetime.now(UTC)) - started).total_seconds() if started else 0.0
        return TrainingResult(
            job_id=job_id,
            status=status,
            metrics=metrics,
            rows_train=int(metrics.get("rows_train", 0)),
            rows_test=int(metrics.get("rows_test", 0)),
            model_uri=self.model_uri(job_id),
            duration=max(0.0, duration),
            reattached=job_id in self._reattached,
        )


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
        """(job name, attempt, reattached) for this signal. An attempt that is running or completed is
        reattached; one that ended in failure (Failed, Canceled, NotResponding, Paused) makes way for the
        next, so a rerun after a failure or a timeout trains again instead of repeating the old end."""
        recorded = self.ledger.get(STEP, training_run_key(signal))
        attempt = int(recorded.get("attempt", 1)) if recorded else 1
        while True:
            name = training_job_name(signal, attempt)
            job = self.existing(name)
            if job is None:
                return name, attempt, False
            status = job_status(job)
            if status not in FAILED_ENDS:
                self._reattached.add(name)
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
        self.ledger.put(STEP, training_run_key(signal), job_name, **details, attempt=attempt)
        return job_name

    def create(self, name: str, signal: DriftSignal, data: CopyResult) -> tuple[str, dict[str, Any]]:
        """Create the job ``name``; its name as the service answered and what the ledger records of it."""
        raise NotImplementedError

    def wait(self, job_id: str) -> TrainingResult:
        job = self.poller().wait(job_id, lambda: self.ml.jobs.get(job_id), job_status, TERMINAL)
        created = getattr(getattr(job, "creation_context", None), "created_at", None)
        return self.result(job_id, job_status(job), _aware(created), None)

    def cancel(self, job_id: str) -> None:
        """Ask the service to cancel; the poller is not waited on (the service takes its time)."""
        log.warning("training: cancelling job %s", job_id)
        self.ml.jobs.begin_cancel(job_id)


class PipelineJobTraining(_V2JobTraining):
    config: PipelineJobConfig

    def create(self, name: str, signal: DriftSignal, data: CopyResult) -> tuple[str, dict[str, Any]]:
        fields = self.fields(signal, data)
        job = self._build(name, render(self.config.inputs, fields))
        job.name = name
        job.tags = {**(job.tags or {}), **self.tags(signal, data)}
        if self.config.compute:
            # azure-ai-ml types the getter Optional, but it never returns None: it makes default settings.
            job.settings.default_compute = self.config.compute  # type: ignore[union-attr]
        self.ml.jobs.create_or_update(job, experiment_name=render_one(self.config.experiment_name, fields))
        return name, {"kind": "pipeline_job"}

    def _build(self, name: str, inputs: dict[str, object]) -> PipelineJob:
        if self.config.yaml is not None:
            return self._from_yaml(self.config.yaml, inputs)
        return self._from_component(str(self.config.component), name, inputs)

    def _from_yaml(self, path: Path, inputs: dict[str, object]) -> PipelineJob:
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

    def _from_component(self, reference: str, name: str, inputs: dict[str, object]) -> PipelineJob:
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
        inputs = {k: _batch_input(v) for k, v in render(self.config.inputs, fields).items()}
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

    def submit(self, signal: DriftSignal, data: CopyResult) -> str:
        key = training_run_key(signal)
        recorded = self.ledger.get(STEP, key)
        attempt = 1
        if recorded is not None:
            run_id, attempt = str(recorded["run_id"]), int(recorded.get("attempt", 1))
            status = self._status_of_recorded(run_id)
            if status not in FAILED_ENDS | {GONE}:
                self._reattached.add(run_id)
                log.info("training: reattached to pipeline run %s (%s) of this signal", run_id, status)
                return run_id
            log.info("training: pipeline run %s ended %s; this rerun submits attempt %d", run_id, status, attempt + 1)
            attempt += 1
        fields = self.fields(signal, data)
        experiment = render_one(self.config.experiment_name, fields)
        body = {
            "ExperimentName": experiment,
            "ParameterAssignments": render(self.config.inputs, fields),
            "DataPathAssignments": {},
            "Description": f"drift-retrain {self.target.name}: drift run {signal.run_id} of {signal.monitor}",
            "Tags": self.tags(signal, data),
        }
        run = self._submit(body)
        run_id = str(run["Id"])
        self.ledger.put(STEP, key, run_id, kind="published_pipeline", experiment=experiment, attempt=attempt)
        return run_id

    def _status_of_recorded(self, run_id: str) -> str:
        """A recorded run's status; one run history no longer knows counts as gone (a new attempt)."""
        try:
            return str(self.rest.run(run_id).get("status"))
        except RestError as exc:
            if exc.status_code == 404:
                return GONE
            raise

    def _submit(self, body: dict[str, Any]) -> Any:
        """POST the submit; a 429 is sent again after Retry-After. A 5xx or a lost answer is not: the
        service may have started the run, and only its answer carries the run id."""
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                return self.rest.request("POST", self.submit_url(), json=body)
            except RestError as exc:
                if exc.status_code != 429 or attempt == SUBMIT_ATTEMPTS - 1:
                    raise
                wait = retry_after(exc) or self.policy.initial_interval * 2**attempt
                log.warning("training: pipeline submit throttled (%s); sending it again in %.1f s", exc.message, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def submit_url(self) -> str:
        base = f"{self.rest.endpoints().api}/pipelines/v1.0{self.target.workspace}/PipelineRuns"
        if self.config.pipeline_id:
            return f"{base}/PipelineSubmit/{self.config.pipeline_id}"
        return f"{base}/PipelineEndpointSubmit/Id/{self.config.pipeline_endpoint_id}"

    def wait(self, job_id: str) -> TrainingResult:
        run = self.poller().wait(job_id, lambda: self.rest.run(job_id), lambda r: str(r.get("status")), TERMINAL)
        status = str(run.get("status"))
        if status != SUCCEEDED:
            raise MLJobFailed(STEP, job_id, status, run_error_message(run))
        return self.result(job_id, status, _parse_time(run.get("startTimeUtc")), _parse_time(run.get("endTimeUtc")))

    def cancel(self, job_id: str) -> None:
        log.warning("training: cancelling pipeline run %s", job_id)
        self.rest.cancel_run(job_id)


def _input(value: object, declared: str | None) -> object:
    """A data input for URIs (typed as the pipeline declares it, uri_folder by default), literals otherwise."""
    from azure.ai.ml import Input

    if isinstance(value, str) and (
        declared in ("uri_folder", "uri_file", "mltable") or "://" in value or value.startswith("azureml:")
    ):
        return Input(type=declared if declared in ("uri_folder", "uri_file", "mltable") else "uri_folder", path=value)
    return value


def _batch_input(value: object) -> object:
    """``batch_endpoints.invoke`` takes only ``Input`` objects; literals are typed inputs with a default
    (Microsoft's batch pipeline-component samples pass ``Input(type="string", default=...)``)."""
    from azure.ai.ml import Input

    data = _input(value, None)
    if isinstance(data, Input):
        return data
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
