"""The copy step on Azure Data Factory (azure-mgmt-datafactory): start the configured pipeline with
parameters templated from the signal, wait for it, report what its Copy activities moved.

Never twice: the run id is written to the ledger the moment createRun returns, so a rerun reattaches;
createRun is never retried blindly (a lost response is resolved by looking for the run first), and a
run that failed is rerun from its failed activity at most once per wait when the config asks for it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from drift_retrain.backends.azure.arm import ArmId
from drift_retrain.backends.azure.copy_output import copy_stats
from drift_retrain.backends.azure.pipeline_durations import HISTORY, RunHistory
from drift_retrain.backends.azure.polling import ExpectedEnd, Poller, retry_after
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.base import RunLog, StepFailed
from drift_retrain.backends.ledger import RunLedger
from drift_retrain.config import AzureTarget
from drift_retrain.names import COPY_STEP, copy_run_key
from drift_retrain.results import CopyResult
from drift_retrain.signals import DriftSignal
from drift_retrain.templating import render, render_one, signal_fields

if TYPE_CHECKING:
    from azure.mgmt.datafactory import DataFactoryManagementClient
    from azure.mgmt.datafactory.models import PipelineRun

log = RunLog("drift_retrain.azure")  # in the run's log in the UI; this logger outside a run

STEP = COPY_STEP
#: Data Factory pipeline run statuses: Queued, InProgress and Canceling are still running.
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
RUNNING = frozenset({"Queued", "InProgress"})
#: createRun attempts when the call is throttled or its outcome is unknown (a 5xx, a lost response).
CREATE_ATTEMPTS = 4
#: How far our clock and Data Factory's may disagree when looking for a run whose createRun answer was lost.
CLOCK_SKEW = timedelta(minutes=2)
#: Margin around a run's start/end for the activity-run query (lastUpdated can trail runEnd).
ACTIVITY_WINDOW = timedelta(minutes=5)


class DataFactoryRunFailed(StepFailed):
    """The pipeline run ended Failed; carries Data Factory's message and the failing activity's error."""

    def __init__(self, run_id: str, message: str, activity: str | None = None, error_code: str | None = None) -> None:
        super().__init__(STEP, run_id, "Failed", message)
        self.activity, self.error_code = activity, error_code


class DataFactoryRunCancelled(StepFailed):
    """The pipeline run was cancelled outside this flow (in ADF Studio, by another tool)."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(STEP, run_id, "Cancelled", message or "cancelled outside this flow")


class DataFactoryCopy:
    """``CopyPipeline`` on a Data Factory pipeline. ``sleep``/``clock``/``rng`` drive the polling (tests
    inject them); ``client_options`` go to the SDK client (azure-core's retry_total, retry_backoff_factor...);
    ``history``: where the pipeline's usual duration is learned and cached (the process's, by default)."""

    def __init__(
        self,
        session: AzureSession,
        target: AzureTarget,
        ledger: RunLedger,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        client_options: Mapping[str, Any] | None = None,
        history: RunHistory | None = None,
    ) -> None:
        self.session, self.target, self.ledger = session, target, ledger
        self.config = target.copy_step
        factory = ArmId.parse(self.config.factory)
        self.resource_group, self.factory = factory.resource_group, factory.name
        self.policy = self.config.polling or session.config.polling
        self._sleep, self._clock, self._rng = sleep, clock, rng
        self._client_options = dict(client_options or {})
        self._subscription = factory.subscription
        self._client: DataFactoryManagementClient | None = None
        self._fields: dict[str, dict[str, str]] = {}  # run id -> template fields of its signal
        self._keys: dict[str, str] = {}  # run id -> ledger key
        self._reattached: set[str] = set()
        self._successor: dict[str, str] = {}  # run id -> the recovery run now standing in for it
        self._recoveries: set[str] = set()  # runs rerun from a failed activity: shorter than a whole run
        self._started: dict[str, float] = {}  # run id -> when the ledger recorded it (epoch s): a resumed wait's age
        self.history = history or HISTORY

    @property
    def client(self) -> DataFactoryManagementClient:
        if self._client is None:
            from azure.mgmt.datafactory import DataFactoryManagementClient

            self._client = DataFactoryManagementClient(
                self.session.credential,
                self._subscription,
                base_url=self.session.config.resource_manager,
                credential_scopes=[self.session.arm_scope],
                **self.session.sdk_kwargs(),
                **self._client_options,
            )
        return self._client

    def close(self) -> None:
        """Close the SDK client's connections (the session's credential belongs to the session)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- CopyPipeline -------------------------------------------------------------------------

    def start(self, signal: DriftSignal) -> str:
        """Reattach to this signal's recorded run while it is running or succeeded; otherwise start one
        (from the failed activity of a recorded failed run when ``recover_from_failure``)."""
        key = copy_run_key(signal)
        fields = signal_fields(signal, self.target.model_name, self.target.name)
        record = self.ledger.get(STEP, key)
        if record is not None:
            previous = record["run_id"]
            status = self._status_or_none(previous)
            if status in RUNNING or status == "Succeeded":
                log.info("copy: reattached to Data Factory run %s (%s) of %s", previous, status, signal.identity)
                self._remember(previous, key, fields)
                self._started[previous] = _recorded_at(record)
                self._reattached.add(previous)
                return previous
            if status == "Failed" and self.config.recover_from_failure:
                run_id = self._create({}, reference=previous)
                self._recoveries.add(run_id)
                self.ledger.put(STEP, key, run_id, pipeline=self.config.pipeline, recovery_of=previous)
                self._remember(run_id, key, fields)
                return run_id
            log.info("copy: recorded run %s is %s; starting a new run", previous, status or "gone")
        parameters = render(self.config.parameters, fields)
        run_id = self._create(parameters)
        self.ledger.put(
            STEP, key, run_id, pipeline=self.config.pipeline, factory=self.config.factory, parameters=parameters
        )
        self._remember(run_id, key, fields)
        return run_id

    def wait(self, run_id: str) -> CopyResult:
        """Poll until the run ends. Succeeded: the Copy activities' statistics. Failed: one recovery run
        when configured (recorded in the ledger), else ``DataFactoryRunFailed``."""
        current = self._successor.get(run_id, run_id)
        run = self._poll(current)
        if run.status == "Failed" and self.config.recover_from_failure and not _is_recovery(run):
            failure = self._failure(run)
            log.warning(
                "copy: Data Factory run %s failed (%s); rerunning it from the failed activity", current, failure.message
            )
            recovery = self._create({}, reference=current)
            self._recoveries.add(recovery)
            if current in self._keys:
                self.ledger.put(STEP, self._keys[current], recovery, pipeline=self.config.pipeline, recovery_of=current)
                self._remember(recovery, self._keys[current], self._fields[current])
            self._successor[run_id] = recovery
            current = recovery
            run = self._poll(current)
        if run.status == "Failed":
            raise self._failure(run)
        if run.status == "Cancelled":
            raise DataFactoryRunCancelled(current, run.message or "")
        return self._result(run, reattached=run_id in self._reattached, fields=self._fields.get(run_id, {}))

    def cancel(self, run_id: str) -> None:
        """Cancel the run (and its recovery run, and child pipelines); one that already ended is fine."""
        for rid in dict.fromkeys(filter(None, (self._successor.get(run_id), run_id))):
            try:
                self.client.pipeline_runs.cancel(self.resource_group, self.factory, rid, is_recursive=True)
                log.info("copy: cancel requested for Data Factory run %s", rid)
            except HttpResponseError as exc:
                code = getattr(exc.error, "code", None)
                if code == "PipelineRunNotRunning" or exc.status_code == 404:
                    log.info(
                        "copy: nothing to cancel, Data Factory run %s is not running (%s)", rid, code or exc.status_code
                    )
                    continue
                raise

    # -- the pieces ---------------------------------------------------------------------------

    def _remember(self, run_id: str, key: str, fields: dict[str, str]) -> None:
        self._keys[run_id], self._fields[run_id] = key, fields
        self._started[run_id] = time.time()

    def ended(self, run_id: str) -> bool:
        """One status call: has the run ended (any way)? A run Data Factory no longer knows has."""
        status = self._status_or_none(run_id)
        return status is None or status in TERMINAL

    def _status_or_none(self, run_id: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.client.pipeline_runs.get(self.resource_group, self.factory, run_id).status
        except ResourceNotFoundError:
            return None  # Data Factory keeps run history for 45 days

    def _poll(self, run_id: str) -> PipelineRun:
        began = self._started.get(run_id)
        poller: Poller[PipelineRun] = Poller(
            self.policy,
            STEP,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
            expected=self._expected(run_id),
            elapsed=max(0.0, time.time() - began) if began is not None else 0.0,
        )
        return poller.wait(
            run_id,
            fetch=lambda: self.client.pipeline_runs.get(self.resource_group, self.factory, run_id),
            status_of=lambda run: run.status or "Unknown",
            terminal=TERMINAL,
        )

    def _expected(self, run_id: str) -> ExpectedEnd | None:
        """When a run should end, from the pipeline's recent runs, counted from when the ledger recorded it (so a
        reattached run, a resumed retrain's included, keeps its schedule). Not for a rerun from a failed activity
        (it does only part of the work)."""
        if run_id in self._recoveries or run_id not in self._started:
            return None
        key = (self._subscription, self.resource_group, self.factory, self.config.pipeline)
        return self.history.expected(self.client, key, self.policy)

    def _create(self, parameters: dict[str, object], reference: str | None = None) -> str:
        """POST createRun without azure-core's retries: a 5xx or lost answer may mean the run exists, so
        look for it (same pipeline, same parameters, started since we asked) before asking again."""
        extra: dict[str, Any] = {}
        if reference is not None:
            extra = {"reference_pipeline_run_id": reference, "is_recovery": True, "start_from_failure": True}
        asked = datetime.now(UTC)
        error: Exception | None = None
        for attempt in range(CREATE_ATTEMPTS):
            if attempt:  # every earlier attempt that did not return or raise recorded its error
                assert error is not None
                self._sleep(max(self.policy.initial_interval * 2**attempt, retry_after(error) or 0.0))
            try:
                response = self.client.pipelines.create_run(
                    self.resource_group,
                    self.factory,
                    self.config.pipeline,
                    parameters=parameters or None,
                    retry_total=0,
                    **extra,
                )
            except HttpResponseError as exc:
                if exc.status_code == 429:
                    error = exc  # throttled: the request was not processed
                    continue
                if exc.status_code is None or exc.status_code < 500:
                    raise
                error = exc
            except ServiceRequestError as exc:
                error = exc  # never reached the service
                continue
            except ServiceResponseError as exc:
                error = exc  # sent, but no answer: the run may exist
            else:
                log.info("copy: started Data Factory run %s of pipeline %s", response.run_id, self.config.pipeline)
                return str(response.run_id)
            found = self._find_started(parameters, since=asked, exclude=reference)
            if found is not None:
                log.warning("copy: createRun answered %s but run %s had started; using it", error, found)
                return found
            log.warning("copy: createRun failed (%s) and no run was started; asking again", error)
        assert error is not None
        raise error

    def _find_started(self, parameters: dict[str, object], since: datetime, exclude: str | None) -> str | None:
        """The run of our pipeline with our parameters started since ``since`` (our createRun whose
        answer was lost), if Data Factory lists one."""
        from azure.mgmt.datafactory.models import RunFilterParameters, RunQueryFilter

        now = datetime.now(UTC)
        query = RunFilterParameters(
            last_updated_after=since - CLOCK_SKEW,
            last_updated_before=now + CLOCK_SKEW,
            filters=[RunQueryFilter(operand="PipelineName", operator="Equals", values_property=[self.config.pipeline])],
        )
        wanted = {k: _as_adf_string(v) for k, v in parameters.items()}
        candidates = []
        for run in _pages(
            lambda token: self.client.pipeline_runs.query_by_factory(
                self.resource_group, self.factory, _with_token(query, token)
            )
        ):
            if run.run_id == exclude or run.run_start is None or run.run_start < since - CLOCK_SKEW:
                continue
            if exclude is not None and run.run_group_id != exclude:
                continue  # a recovery run is grouped with the run it recovers
            if exclude is None and dict(run.parameters or {}) != wanted:
                continue
            candidates.append(run)
        candidates.sort(key=lambda r: r.run_start)
        return str(candidates[0].run_id) if candidates else None

    def _activities(self, run: PipelineRun) -> list[Any]:
        from azure.mgmt.datafactory.models import RunFilterParameters

        now = datetime.now(UTC)
        query = RunFilterParameters(
            last_updated_after=(run.run_start or now) - ACTIVITY_WINDOW,
            last_updated_before=(run.run_end or now) + ACTIVITY_WINDOW,
        )
        return list(
            _pages(
                lambda token: self.client.activity_runs.query_by_pipeline_run(
                    self.resource_group, self.factory, str(run.run_id), _with_token(query, token)
                )
            )
        )

    def _failure(self, run: PipelineRun) -> DataFactoryRunFailed:
        failed = [a for a in self._activities(run) if a.status == "Failed"]
        message = run.message or "the pipeline run failed"
        if not failed:
            return DataFactoryRunFailed(str(run.run_id), message)
        activity = failed[0]
        error = activity.error if isinstance(activity.error, dict) else {}
        code = error.get("errorCode") or None
        detail = error.get("message") or ""
        text = f"{message} [activity {activity.activity_name} ({activity.activity_type}): errorCode {code}: {detail}]"
        return DataFactoryRunFailed(str(run.run_id), text, activity=activity.activity_name, error_code=code)

    def _result(self, run: PipelineRun, reattached: bool, fields: dict[str, str]) -> CopyResult:
        """The Copy activities' statistics, summed (``copy_output`` checks every field of their outputs)."""
        # activityType "Copy" with an output object: Azure/azure-rest-api-specs specification/datafactory/
        # resource-manager/Microsoft.DataFactory/stable/2018-06-01/examples/ActivityRuns_QueryByPipelineRun.json
        outputs = [
            (str(a.activity_name), a.output)
            for a in self._activities(run)
            if a.activity_type == "Copy" and isinstance(a.output, dict)
        ]
        stats = copy_stats(outputs)
        run_id = str(run.run_id)
        for problem in stats.problems:
            log.warning("copy: Data Factory run %s reported %s", run_id, problem)
        if outputs and stats.rows_copied is None:
            log.info("copy: Data Factory run %s counted no rows (a binary, as-is copy)", run_id)
        return CopyResult(
            run_id=run_id,
            status=str(run.status),
            rows_read=stats.rows_read,
            rows_copied=stats.rows_copied,
            data_read=stats.data_read,
            data_written=stats.data_written,
            files_read=stats.files_read,
            files_written=stats.files_written,
            copy_duration=stats.copy_duration,
            throughput=stats.throughput,
            output_uri=render_one(self.config.output_uri, {**fields, "copy_run_id": run_id}) if fields else "",
            reattached=reattached,
        )


def _recorded_at(record: Mapping[str, Any]) -> float:
    """When the ledger recorded a run (epoch s), now when it does not say."""
    try:
        return datetime.fromisoformat(str(record["recorded_at"])).timestamp()
    except (KeyError, ValueError):
        return time.time()


def _is_recovery(run: PipelineRun) -> bool:
    """A rerun from failure belongs to the run group of the run it recovers."""
    return bool(run.run_group_id) and run.run_group_id != run.run_id


def _as_adf_string(value: object) -> str:
    """Data Factory reports parameter values as strings: text as is, anything else JSON-encoded."""
    return value if isinstance(value, str) else json.dumps(value)


def _with_token(query: Any, token: str | None) -> Any:
    query.continuation_token = token
    return query


def _pages(fetch: Callable[[str | None], Any]) -> Iterable[Any]:
    """Every item of a continuation-token query (runs and activity runs come back in pages)."""
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page.value or []
        token = page.continuation_token
        if not token:
            return
