"""The Data Factory copy step, through the real azure-mgmt-datafactory client, against the loopback fake.

Every assertion is on an outcome: what the step returned or raised, and what the fake Data Factory
received (runs created, their parameters and query flags, cancel and status calls).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from drift_retrain.backends.azure.datafactory import DataFactoryCopy, DataFactoryRunCancelled, DataFactoryRunFailed
from drift_retrain.backends.azure.polling import StepTimedOut
from drift_retrain.backends.azure.pipeline_durations import RunHistory
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.base import StepFailed, run_to_end
from drift_retrain.backends.ledger import FileRunLedger
from drift_retrain.config import AzureTarget, PolicyConfig
from drift_retrain.fake_azure import FakeAzure, RunScript
from drift_retrain.fake_azure.datafactory import BYTES_PER_ROW, RunPlan, copy_output
from drift_retrain.names import copy_run_key
from drift_retrain.policy import after_copy
from drift_retrain.results import Check, Decision
from drift_retrain.templating import signal_fields
from tests.contract.conftest import FACTORY, FAST_POLLING, PIPELINE, azure_settings, drift_signal
from tests.contract.conftest import FACTORY_NAME

#: azure-core's own retry backoff, shortened so a burst of 5xx costs milliseconds (Retry-After still wins).
FAST_SDK_RETRIES = {"retry_backoff_factor": 0.01}


class Sleeps:
    """Records every pause the step asks for and really sleeps it (the fake's runs move in real time);
    ``interrupt_after`` raises an exception from the n-th pause, as a cancelled flow run would."""

    def __init__(self, interrupt_after: int | None = None, error: BaseException | None = None) -> None:
        self.pauses: list[float] = []
        self.interrupt_after, self.error = interrupt_after, error

    def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if self.interrupt_after is not None and len(self.pauses) >= self.interrupt_after:
            raise self.error or KeyboardInterrupt()
        time.sleep(seconds)


_OPEN: list[DataFactoryCopy] = []


#: Unscripted runs here are brief (Queued 50 ms, InProgress 150 ms): most tests are not about duration.
BRIEF = RunScript(steps=(("Queued", 0.05), ("InProgress", 0.15)), final="Succeeded")


@pytest.fixture(autouse=True)
def _brief_runs_and_closed_clients(fake_azure: FakeAzure) -> Iterator[None]:
    """Brief default runs; SDK clients closed before the fake stops (idle keep-alives would hold it up)."""
    fake_azure.datafactory.default_plan = RunPlan(BRIEF)
    yield
    while _OPEN:
        copy = _OPEN.pop()
        copy.close()
        copy.session.credential.close()  # type: ignore[attr-defined]


def make_copy(
    tmp_path: Path,
    fake: FakeAzure,
    sleep: Callable[[float], None] = time.sleep,
    client_options: dict[str, Any] | None = None,
    history: RunHistory | None = None,
    **settings: Any,
) -> DataFactoryCopy:
    config = azure_settings(tmp_path, fake, **settings)
    target = config.targets[0]
    assert isinstance(target, AzureTarget)  # azure_settings configures an azure target
    copy = DataFactoryCopy(
        AzureSession.from_config(config.azure),
        target,
        FileRunLedger(config.state_dir / "runs" / "azure"),
        sleep=sleep,
        client_options=client_options or FAST_SDK_RETRIES,
        history=history or RunHistory(),  # a test's learned durations are its own
    )
    _OPEN.append(copy)
    return copy


def copy_once(copy: DataFactoryCopy, run_id: str = "credit-default-drift_1717000000000"):
    signal = drift_signal(run_id)
    return run_to_end(lambda: copy.start(signal), copy.wait, copy.cancel)


FOREVER = 3600.0


def is_history_query(request: Any) -> bool:
    """The wait's look-up of the pipeline's recent succeeded runs (not the search for a lost createRun's run)."""
    return "/queryPipelineRuns" in request.path and {"operand": "Status", "operator": "Equals", "values": ["Succeeded"]} in (
        request.body.get("filters") or []
    )


# -- every Data Factory status ------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Queued", "InProgress", "Canceling"])
def test_running_statuses_are_waited_on_and_an_interrupted_wait_cancels_the_run(
    tmp_path: Path, fake_azure: FakeAzure, status: str
) -> None:
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=((status, FOREVER),), never_finishes=True))
    sleeps = Sleeps(interrupt_after=4)
    copy = make_copy(tmp_path, fake_azure, sleep=sleeps)

    with pytest.raises(KeyboardInterrupt):
        copy_once(copy)

    [run] = fake_azure.datafactory.created(PIPELINE)
    assert run.status_calls == 4  # still polling after 4 polls: not taken for an end state
    assert len(fake_azure.sent("POST", f"pipelineruns/{run.run_id}/cancel?api-version=2018-06-01&isRecursive=true")) == 1


def test_succeeded_returns_the_copy_statistics_and_cancels_nothing(tmp_path: Path, fake_azure: FakeAzure) -> None:
    result = copy_once(make_copy(tmp_path, fake_azure))

    [run] = fake_azure.datafactory.created(PIPELINE)
    assert (result.run_id, result.status, result.rows_copied, result.reattached) == (run.run_id, "Succeeded", 1000, False)
    assert run.cancel_calls == 0
    sent = [r for r in fake_azure.sent(contains="/providers/Microsoft.DataFactory/") if not is_history_query(r)]
    assert [r.method for r in sent][:2] == ["POST", "GET"]


def test_failed_carries_data_factory_message_and_the_failing_activity_error(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(
        PIPELINE,
        RunScript(
            steps=(("Queued", 0.1), ("InProgress", 0.2)),
            final="Failed",
            message="ErrorCode=UserErrorSourceBlobNotExists,'The required Blob is missing. Folder path: landing/2019-07-04/.'",
        ),
        error_code="2200",
    )
    with pytest.raises(DataFactoryRunFailed) as failed:
        copy_once(make_copy(tmp_path, fake_azure))

    [run] = fake_azure.datafactory.created(PIPELINE)
    error = failed.value
    assert isinstance(error, StepFailed) and (error.step, error.run_id, error.status) == ("copy", run.run_id, "Failed")
    assert (error.activity, error.error_code) == ("CopyWindow", "2200")
    assert "Operation on target CopyWindow failed" in error.message  # the pipeline run's message
    # ... and the failing activity's own error, from queryActivityruns (the run's message does not name its code)
    assert "[activity CopyWindow (Copy): errorCode 2200: ErrorCode=UserErrorSourceBlobNotExists" in error.message
    assert "The required Blob is missing. Folder path: landing/2019-07-04/." in error.message  # the activity's
    assert run.cancel_calls == 0  # it ended by itself; nothing to cancel


def test_cancelled_outside_the_flow_fails_the_step(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("InProgress", 0.2),), final="Cancelled"))
    with pytest.raises(DataFactoryRunCancelled, match="ended Cancelled"):
        copy_once(make_copy(tmp_path, fake_azure))
    [run] = fake_azure.datafactory.created(PIPELINE)
    assert run.cancel_calls == 0


# -- cancellation -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["azure.polling", "copy.polling"])
def test_timeout_cancels_the_run(tmp_path: Path, fake_azure: FakeAzure, where: str) -> None:
    """The timeout of [azure.polling], or of the copy's own polling section, which overrides it."""
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("InProgress", FOREVER),), never_finishes=True))
    short = {**FAST_POLLING, "timeout_minutes": 0.01}
    if where == "azure.polling":
        copy = make_copy(tmp_path, fake_azure, polling=short)
    else:  # the shared polling would wait a minute
        copy = make_copy(tmp_path, fake_azure, polling=FAST_POLLING, copy={"polling": short})

    began = time.monotonic()
    with pytest.raises(StepTimedOut, match="still InProgress after 0.01 min; cancelling it"):
        copy_once(copy)

    # not before its 0.6 s; the message above already names which timeout applied, so the upper bound only
    # has to tell it from the shared polling's minute (a busy machine stretches every attempt)
    assert 0.6 <= time.monotonic() - began < 50
    [run] = fake_azure.datafactory.created(PIPELINE)
    assert run.cancel_calls == 1 and run.status() == "Canceling"
    time.sleep(run.run.CANCEL_SECONDS)
    assert run.status() == "Cancelled"


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), asyncio.CancelledError(), SystemExit(143)])
def test_flow_cancellation_during_the_wait_cancels_the_run(
    tmp_path: Path, fake_azure: FakeAzure, interruption: BaseException
) -> None:
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("Queued", 0.1), ("InProgress", FOREVER)), never_finishes=True))
    copy = make_copy(tmp_path, fake_azure, sleep=Sleeps(interrupt_after=3, error=interruption))

    with pytest.raises(type(interruption)):
        copy_once(copy)

    [run] = fake_azure.datafactory.created(PIPELINE)
    assert run.cancel_calls == 1


def test_cancelling_a_run_that_already_ended_is_not_an_error(tmp_path: Path, fake_azure: FakeAzure) -> None:
    copy = make_copy(tmp_path, fake_azure)
    result = copy_once(copy)
    copy.cancel(result.run_id)  # Data Factory answers 400 PipelineRunNotRunning
    assert fake_azure.datafactory.runs[result.run_id].cancel_calls == 1


# -- throttling, blips, never twice ------------------------------------------------------------


def test_throttled_status_calls_wait_at_least_retry_after(tmp_path: Path, fake_azure: FakeAzure) -> None:
    """azure-core's retry policy honours Retry-After on the status call by itself."""
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("Queued", 0.0),), final="Succeeded"))
    fake_azure.faults.retry_after = 0.4
    copy = make_copy(tmp_path, fake_azure)
    run_id = copy.start(drift_signal())
    fake_azure.faults.throttle["/pipelineruns/"] = 2

    began = time.monotonic()
    result = copy.wait(run_id)

    assert result.status == "Succeeded"
    assert time.monotonic() - began >= 0.8  # two 429s, each with Retry-After: 0.4
    assert fake_azure.faults.throttle["/pipelineruns/"] == 0


def test_poller_honours_retry_after_when_the_sdk_does_not_retry(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("Queued", 0.0),), final="Succeeded"))
    fake_azure.faults.retry_after = 0.5
    sleeps = Sleeps()
    copy = make_copy(tmp_path, fake_azure, sleep=sleeps, client_options={"retry_total": 0})
    run_id = copy.start(drift_signal())
    fake_azure.faults.throttle[f"/pipelineruns/{run_id}?"] = 1

    assert copy.wait(run_id).status == "Succeeded"
    assert sleeps.pauses and sleeps.pauses[0] >= 0.5  # the Poller's pause after the 429


def test_a_burst_of_5xx_on_status_calls_is_survived(tmp_path: Path, fake_azure: FakeAzure) -> None:
    copy = make_copy(tmp_path, fake_azure)
    run_id = copy.start(drift_signal())
    fake_azure.faults.errors[f"/pipelineruns/{run_id}?"] = 9  # more than azure-core's 3 status retries

    result = copy.wait(run_id)

    assert result.status == "Succeeded" and fake_azure.faults.errors[f"/pipelineruns/{run_id}?"] == 0
    assert fake_azure.datafactory.runs[run_id].status_calls >= 1
    assert len(fake_azure.sent("GET", f"/pipelineruns/{run_id}?")) >= 10


def test_throttled_create_run_is_asked_again_after_retry_after_and_starts_one_run(
    tmp_path: Path, fake_azure: FakeAzure
) -> None:
    fake_azure.faults.retry_after = 0.3
    fake_azure.faults.throttle["/createRun"] = 1
    sleeps = Sleeps()
    copy = make_copy(tmp_path, fake_azure, sleep=sleeps)

    result = copy_once(copy)

    assert len(fake_azure.sent("POST", "/createRun")) == 2
    assert [r.run_id for r in fake_azure.datafactory.created()] == [result.run_id]
    assert sleeps.pauses[0] >= 0.3


def test_create_run_503_is_not_blindly_retried_it_looks_for_the_run_first(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.faults.errors["/createRun"] = 2  # refused before a run was made
    copy = make_copy(tmp_path, fake_azure)

    result = copy_once(copy)

    assert len(fake_azure.sent("POST", "/createRun")) == 3  # azure-core would have retried by itself; we asked
    finds = [r for r in fake_azure.sent("POST", "/queryPipelineRuns") if not is_history_query(r)]
    assert len(finds) == 2  # ... only after finding no run
    assert [r.run_id for r in fake_azure.datafactory.created()] == [result.run_id]


def test_a_create_run_whose_answer_was_lost_is_found_not_started_twice(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.lose_create_responses = 1  # the run is made, the answer is a 500
    copy = make_copy(tmp_path, fake_azure)

    result = copy_once(copy)

    assert len(fake_azure.sent("POST", "/createRun")) == 1
    [run] = fake_azure.datafactory.created()
    assert result.run_id == run.run_id and result.status == "Succeeded"


# -- rerun from failure, reattach ---------------------------------------------------------------


def _failing() -> RunScript:
    return RunScript(steps=(("InProgress", 0.2),), final="Failed", message="ErrorCode=SqlFailedToConnect,'Cannot connect to SQL Database.'")


def test_recovery_reruns_from_the_failed_activity_and_uses_its_result(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, _failing())
    fake_azure.datafactory.script(PIPELINE, rows=777)
    copy = make_copy(tmp_path, fake_azure, copy={"recover_from_failure": True})
    signal = drift_signal()

    result = run_to_end(lambda: copy.start(signal), copy.wait, copy.cancel)

    first, recovery = fake_azure.datafactory.created(PIPELINE)
    assert first.status() == "Failed"
    assert recovery.query == {"referencePipelineRunId": first.run_id, "isRecovery": "true", "startFromFailure": "true"}
    assert (result.run_id, result.rows_copied) == (recovery.run_id, 777)
    assert copy.ledger.get("copy", copy_run_key(signal))["run_id"] == recovery.run_id

    again = make_copy(tmp_path, fake_azure, copy={"recover_from_failure": True})  # a rerun of the flow
    assert run_to_end(lambda: again.start(signal), again.wait, again.cancel).reattached
    assert len(fake_azure.datafactory.created()) == 2


def test_a_recovery_run_that_fails_too_raises(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, _failing())
    fake_azure.datafactory.script(PIPELINE, _failing())
    copy = make_copy(tmp_path, fake_azure, copy={"recover_from_failure": True})

    with pytest.raises(DataFactoryRunFailed, match="Cannot connect to SQL Database") as failed:
        copy_once(copy)

    first, recovery = fake_azure.datafactory.created(PIPELINE)
    assert failed.value.run_id == recovery.run_id and len(fake_azure.datafactory.created()) == 2


def test_a_rerun_that_recovers_a_recorded_failed_run_recovers_it_once(tmp_path: Path, fake_azure: FakeAzure) -> None:
    """A rerun (recovery now configured) reruns the recorded failed run from its failed activity; when that
    recovery run fails too, the step fails: a recovery run is never itself recovered."""
    fake_azure.datafactory.script(PIPELINE, _failing())
    with pytest.raises(DataFactoryRunFailed):
        copy_once(make_copy(tmp_path, fake_azure))
    fake_azure.datafactory.script(PIPELINE, _failing())

    with pytest.raises(DataFactoryRunFailed, match="Cannot connect to SQL Database") as failed:
        copy_once(make_copy(tmp_path, fake_azure, copy={"recover_from_failure": True}))

    first, recovery = fake_azure.datafactory.created(PIPELINE)
    assert recovery.query["referencePipelineRunId"] == first.run_id
    assert failed.value.run_id == recovery.run_id


def test_without_recovery_a_failure_starts_nothing_more(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, _failing())
    with pytest.raises(DataFactoryRunFailed):
        copy_once(make_copy(tmp_path, fake_azure))
    assert len(fake_azure.datafactory.created()) == 1


def test_a_rerun_reattaches_to_the_recorded_run_without_a_second_create_run(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("Queued", 0.2), ("InProgress", 1.0)), final="Succeeded"))
    signal = drift_signal()
    started = make_copy(tmp_path, fake_azure).start(signal)  # then the process is killed: no wait, no cancel

    rerun = make_copy(tmp_path, fake_azure)
    result = rerun.wait(rerun.start(signal))

    assert len(fake_azure.sent("POST", "/createRun")) == 1
    assert (result.run_id, result.reattached, result.status) == (started, True, "Succeeded")


def test_a_rerun_after_the_run_was_cancelled_starts_a_new_run(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("InProgress", FOREVER),), never_finishes=True))
    with pytest.raises(KeyboardInterrupt):
        copy_once(make_copy(tmp_path, fake_azure, sleep=Sleeps(interrupt_after=1)))
    [cancelled] = fake_azure.datafactory.created()
    time.sleep(cancelled.run.CANCEL_SECONDS)

    result = copy_once(make_copy(tmp_path, fake_azure))

    assert cancelled.status() == "Cancelled"
    assert result.run_id != cancelled.run_id and not result.reattached and len(fake_azure.datafactory.created()) == 2


# -- what is sent and what is reported ----------------------------------------------------------


def test_pipeline_parameters_are_templated_from_the_signal(tmp_path: Path, fake_azure: FakeAzure) -> None:
    copy = make_copy(tmp_path, fake_azure)
    signal = drift_signal()
    key = signal_fields(signal, "credit-default", "credit-default")["signal_key"]

    result = run_to_end(lambda: copy.start(signal), copy.wait, copy.cancel)

    [create] = fake_azure.sent("POST", f"/factories/drift-retrain-adf/pipelines/{PIPELINE}/createRun")
    assert create.path.endswith("/createRun?api-version=2018-06-01")
    assert create.body == {
        "windowStart": signal.window_start.date().isoformat(),
        "windowEnd": signal.window_end.date().isoformat(),
        "sinkFolder": f"increments/credit-default/{key}",
        "maxRows": 100000,
        "overwrite": True,
    }
    assert result.output_uri == f"abfss://training@driftretrain.dfs.core.windows.net/increments/credit-default/{key}"


def test_copy_statistics_are_summed_over_the_copy_activities(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, rows=(1200, 300, 0))  # plus a Lookup activity, not a copy

    result = copy_once(make_copy(tmp_path, fake_azure))

    [run] = fake_azure.datafactory.created()
    outputs = [a["output"] for a in run.activities() if a["activityType"] == "Copy"]
    assert (result.rows_read, result.rows_copied) == (1500, 1500)
    assert (result.data_read, result.data_written) == (150_000, 150_000)
    assert (result.files_read, result.files_written) == (2, 2)
    assert result.copy_duration == sum(o["copyDuration"] for o in outputs)
    assert result.throughput == pytest.approx(150_000 / 1024 / result.copy_duration, rel=1e-3)
    [query] = fake_azure.sent("POST", "/queryActivityruns")
    assert set(query.body) == {"lastUpdatedAfter", "lastUpdatedBefore"}


def test_a_copy_of_zero_rows_reports_zero_and_the_policy_then_skips_training(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, rows=0)

    result = copy_once(make_copy(tmp_path, fake_azure))

    assert result.status == "Succeeded" and result.rows_copied == 0 and result.data_written == 0
    assert after_copy(DRIFTED, result, PolicyConfig(min_rows=100)).retrain is False


# -- binary copies and what a Copy activity's output may hold -----------------------------------

#: A decision to retrain, as it stands when the copy ends.
DRIFTED = Decision(retrain=True, checks=[Check(rule="drift", passed=True, detail="drift 0.8 >= 0.3")])
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datafactory"


def _docs_sample_output() -> dict[str, Any]:
    """MicrosoftDocs/azure-docs articles/data-factory/copy-activity-monitoring.md's example output (S3 to ADLS Gen2, files)."""
    return json.loads((FIXTURES / "doc-sample_copy_activity_output.json").read_text(encoding="utf-8"))["output"]


def _spec_example_output() -> dict[str, Any]:
    """The Copy activity's output in the REST spec example ActivityRuns_QueryByPipelineRun.json."""
    example = json.loads((FIXTURES / "spec-example_ActivityRuns_QueryByPipelineRun.json").read_text(encoding="utf-8"))
    [copy] = [a for a in example["responses"]["200"]["body"]["value"] if a["activityType"] == "Copy"]
    return copy["output"]


def test_a_binary_copy_counts_files_and_bytes_but_no_rows_and_the_policy_retrains(
    tmp_path: Path, fake_azure: FakeAzure, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")
    fake_azure.datafactory.script(PIPELINE, rows=2100, binary=True)

    result = copy_once(make_copy(tmp_path, fake_azure))

    [run] = fake_azure.datafactory.created()
    [copy] = [a for a in run.activities() if a["activityType"] == "Copy"]
    assert "rowsCopied" not in copy["output"] and copy["input"]["source"]["type"] == "BinarySource"
    assert (result.rows_read, result.rows_copied) == (None, None)
    assert (result.files_written, result.data_written) == (1, 2100 * BYTES_PER_ROW)
    decision = after_copy(DRIFTED, result, PolicyConfig(min_rows=100))
    assert decision.retrain and decision.checks[-1].rule == "data_copied"
    assert decision.checks[-1].detail == (
        f"binary copy: 1 files, {2100 * BYTES_PER_ROW} bytes written (rows not reported by the copy)"
    )
    assert f"copy: Data Factory run {run.run_id} counted no rows (a binary, as-is copy)" in caplog.messages


@pytest.mark.parametrize("sample", [_docs_sample_output, _spec_example_output], ids=["docs-sample", "spec-example"])
def test_a_real_copy_output_without_rows_is_read_through_the_sdk_and_retrains(
    tmp_path: Path, fake_azure: FakeAzure, sample: Callable[[], dict[str, Any]]
) -> None:
    output = sample()
    fake_azure.datafactory.script(PIPELINE, outputs=[output])

    result = copy_once(make_copy(tmp_path, fake_azure))

    assert (result.rows_read, result.rows_copied) == (None, None)
    assert (result.files_read, result.files_written) == (output["filesRead"], output["filesWritten"])
    assert (result.data_read, result.data_written) == (output["dataRead"], output["dataWritten"])
    assert (result.copy_duration, result.throughput) == (output["copyDuration"], output["throughput"])
    assert after_copy(DRIFTED, result, PolicyConfig(min_rows=500)).retrain


def test_a_copy_that_reports_rows_below_the_minimum_still_skips_whatever_it_wrote(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, rows=50)

    result = copy_once(make_copy(tmp_path, fake_azure))

    assert (result.rows_copied, result.files_written) == (50, 1)
    decision = after_copy(DRIFTED, result, PolicyConfig(min_rows=100))
    assert not decision.retrain and decision.summary == "skip: 50 rows copied < minimum 100"


def test_a_binary_copy_that_wrote_nothing_skips(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, rows=0, binary=True)

    result = copy_once(make_copy(tmp_path, fake_azure))

    assert (result.rows_copied, result.files_written, result.data_written) == (None, 0, 0)
    decision = after_copy(DRIFTED, result, PolicyConfig(min_rows=100))
    assert not decision.retrain
    assert decision.summary == "skip: binary copy: 0 files, 0 bytes written (rows not reported by the copy)"


def test_rows_are_summed_over_the_copy_activities_that_count_them(tmp_path: Path, fake_azure: FakeAzure) -> None:
    """A pipeline with a tabular copy and an as-is copy: rows are the tabular copy's, bytes and files both's."""
    fake_azure.datafactory.script(PIPELINE, outputs=[copy_output(1200, 3), copy_output(300, 2, binary=True)])

    result = copy_once(make_copy(tmp_path, fake_azure))

    assert (result.rows_read, result.rows_copied) == (1200, 1200)
    assert (result.files_written, result.data_written) == (2, 1500 * BYTES_PER_ROW)
    assert result.copy_duration == 5


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("rowsCopied", "1200", "'1200' is not a number"),
        ("rowsCopied", -5, "-5 is negative"),
        ("rowsCopied", math.nan, "nan is not a finite number"),
        ("rowsCopied", True, "True is not a number"),
        ("rowsCopied", 12.5, "12.5 is not a whole number"),
        ("rowsCopied", {"value": 1}, "{'value': 1} is not a number"),
        ("dataWritten", math.inf, "inf is not a finite number"),
        ("filesWritten", 2**64, f"{2**64} is larger than {2**63 - 1}"),
        ("copyDuration", "x" * 10_000, "'" + "x" * 36 + "... is not a number"),  # quoted, not all of it
        ("throughput", -1.5, "-1.5 is negative"),
    ],
)
def test_a_hostile_output_value_is_taken_as_not_reported_with_the_reason(
    tmp_path: Path, fake_azure: FakeAzure, caplog: pytest.LogCaptureFixture, field: str, value: Any, why: str
) -> None:
    caplog.set_level(logging.WARNING, logger="drift_retrain.azure")
    output = {**copy_output(1000, 4), field: value}
    fake_azure.datafactory.script(PIPELINE, outputs=[output])

    result = copy_once(make_copy(tmp_path, fake_azure))

    read = {
        "rowsCopied": result.rows_copied, "dataWritten": result.data_written, "filesWritten": result.files_written,
        "copyDuration": result.copy_duration,
    }
    expected = {name: output[name] for name in read}  # every other field as the activity reported it ...
    if field in read:
        expected[field] = {"rowsCopied": None, "dataWritten": 0, "filesWritten": 0, "copyDuration": 0.0}[field]
    assert read == expected  # ... and the hostile one as not reported
    if field == "throughput":  # a single activity's KB/s is its own unless unusable: then recomputed
        assert result.throughput == pytest.approx(1000 * BYTES_PER_ROW / 1024 / 4, rel=1e-3)
    assert f"reported CopyWindow: {field} {why}; taken as not reported" in " ".join(caplog.messages)


def test_whole_number_floats_are_counts(tmp_path: Path, fake_azure: FakeAzure) -> None:
    """JSON has one number type: 1000.0 rows is 1000 rows."""
    fake_azure.datafactory.script(PIPELINE, outputs=[{**copy_output(1000, 4), "rowsCopied": 1000.0}])
    assert copy_once(make_copy(tmp_path, fake_azure)).rows_copied == 1000


def test_a_rerun_after_a_failed_run_starts_a_new_run_or_recovers_it_when_configured(
    tmp_path: Path, fake_azure: FakeAzure
) -> None:
    fake_azure.datafactory.script(PIPELINE, _failing())
    with pytest.raises(DataFactoryRunFailed):
        copy_once(make_copy(tmp_path, fake_azure))
    [failed] = fake_azure.datafactory.created()

    fresh = copy_once(make_copy(tmp_path, fake_azure))  # the scheduled sweep reruns the flow
    assert fake_azure.datafactory.runs[fresh.run_id].query == {}  # a new run, not a recovery

    fake_azure.datafactory.script(PIPELINE, _failing())
    with pytest.raises(DataFactoryRunFailed):
        copy_once(make_copy(tmp_path, fake_azure), run_id="credit-default-drift_1717000099999")
    again = copy_once(make_copy(tmp_path, fake_azure, copy={"recover_from_failure": True}), run_id="credit-default-drift_1717000099999")
    assert fake_azure.datafactory.runs[again.run_id].query["isRecovery"] == "true"
    assert failed.run_id != fresh.run_id and len(fake_azure.datafactory.created()) == 4


def test_each_status_change_is_logged_once_with_the_run_id(
    tmp_path: Path, fake_azure: FakeAzure, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")
    # 0.6 s in each status: the first poll must see Queued even when createRun's answer and the ledger write
    # are slow on a loaded machine (the fake's default 0.2 s of Queued left little room)
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("Queued", 0.6), ("InProgress", 0.6)), final="Succeeded"))
    result = copy_once(make_copy(tmp_path, fake_azure))

    run = fake_azure.datafactory.runs[result.run_id]
    changes = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    assert changes == [
        f"copy run {run.run_id}: (started) -> Queued",
        f"copy run {run.run_id}: Queued -> InProgress",
        f"copy run {run.run_id}: InProgress -> Succeeded",
    ]
    assert run.status_calls > len(changes)  # polled more often than it changed


def test_interrupting_the_wait_on_a_recovery_run_cancels_the_recovery_run(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.script(PIPELINE, _failing())
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("InProgress", FOREVER),), never_finishes=True))

    def sleep(seconds: float) -> None:
        recovering = len(fake_azure.datafactory.created()) == 2
        if recovering and fake_azure.datafactory.created()[1].status_calls >= 2:
            raise KeyboardInterrupt
        time.sleep(seconds)

    with pytest.raises(KeyboardInterrupt):
        copy_once(make_copy(tmp_path, fake_azure, sleep=sleep, copy={"recover_from_failure": True}))

    failed, recovery = fake_azure.datafactory.created()
    assert recovery.cancel_calls == 1 and recovery.status() == "Canceling"
    assert failed.status() == "Failed"  # its cancel was answered PipelineRunNotRunning, and tolerated


def test_a_recorded_run_data_factory_no_longer_knows_is_replaced_by_a_new_run(tmp_path: Path, fake_azure: FakeAzure) -> None:
    """Data Factory keeps run history for 45 days: a ledger record older than that (404) starts a new run."""
    copy = make_copy(tmp_path, fake_azure)
    signal = drift_signal()
    copy.ledger.put("copy", copy_run_key(signal), "6a1b2c3d-0000-4000-8000-00000000dead", pipeline=PIPELINE)

    result = run_to_end(lambda: copy.start(signal), copy.wait, copy.cancel)

    [run] = fake_azure.datafactory.created()
    assert (result.run_id, result.status, result.reattached) == (run.run_id, "Succeeded", False)
    assert fake_azure.sent("GET", "/pipelineruns/6a1b2c3d-0000-4000-8000-00000000dead?")  # it looked first
    assert copy.ledger.get("copy", copy_run_key(signal))["run_id"] == run.run_id


# -- waiting on what the pipeline's recent runs took (queryPipelineRuns) ------------------------------

#: Polling where the pipeline's history matters within seconds: bands of 0.2 s around runs of about 2 s.
HISTORY_POLLING = {**FAST_POLLING, "timeout_minutes": 1}
#: A run that goes on until the test interrupts the wait (which cancels it): the pauses, not the clock, are checked.
ENDLESS = RunScript(steps=(("InProgress", FOREVER),), never_finishes=True)
PAUSES = 12
SPEC_EXAMPLE_RUNS = FIXTURES / "spec-example_PipelineRuns_QueryByFactory.json"


def history_queries(fake: FakeAzure) -> list[Any]:
    return [r for r in fake.sent("POST", "/queryPipelineRuns") if is_history_query(r)]


def test_the_history_query_is_sent_with_the_documented_filter_body_and_thins_the_early_polls(
    tmp_path: Path, fake_azure: FakeAzure
) -> None:
    fake_azure.datafactory.add_history(FACTORY, PIPELINE, [2.0, 1.9, 2.1, 2.0, 2.2])
    fake_azure.datafactory.add_history(FACTORY, "AnotherPipeline", [600.0] * 5)
    fake_azure.datafactory.script(PIPELINE, ENDLESS)
    sleeps = Sleeps(interrupt_after=PAUSES)
    copy = make_copy(tmp_path, fake_azure, sleep=sleeps, polling=HISTORY_POLLING)

    with pytest.raises(KeyboardInterrupt):  # the wait goes on (never fails for want of history) until interrupted
        copy_once(copy)

    [query] = history_queries(fake_azure)
    assert query.path.endswith(f"/factories/{FACTORY_NAME}/queryPipelineRuns?api-version=2018-06-01")
    assert query.body["filters"] == [
        {"operand": "PipelineName", "operator": "Equals", "values": [PIPELINE]},
        {"operand": "Status", "operator": "Equals", "values": ["Succeeded"]},
    ]
    assert query.body["orderBy"] == [{"orderBy": "RunEnd", "order": "DESC"}]
    after, before = (datetime.fromisoformat(query.body[k].replace("Z", "+00:00")) for k in ("lastUpdatedAfter", "lastUpdatedBefore"))
    assert before - after == timedelta(days=30) and "continuationToken" not in query.body
    # learned about 2 s: pauses longer than max_interval (0.2 s) while the run is young, which today's
    # schedule never makes in its first ten minutes
    assert max(sleeps.pauses) > 0.2 * 1.1
    [run] = fake_azure.datafactory.created(PIPELINE)
    assert run.cancel_calls == 1  # an interrupted wait still cancels the run


def test_a_second_wait_on_the_pipeline_reuses_what_the_first_learned(tmp_path: Path, fake_azure: FakeAzure) -> None:
    fake_azure.datafactory.add_history(FACTORY, PIPELINE, [0.3, 0.3, 0.3])
    copy = make_copy(tmp_path, fake_azure, polling=HISTORY_POLLING)

    copy_once(copy, "credit-default-drift_1717000000000")
    copy_once(copy, "credit-default-drift_1717000000001")

    assert len(fake_azure.datafactory.created(PIPELINE)) == 2 and len(history_queries(fake_azure)) == 1


def test_the_spec_example_answer_is_read_through_the_sdk(tmp_path: Path, fake_azure: FakeAzure) -> None:
    from drift_retrain.backends.azure.pipeline_durations import durations, history_query

    example = json.loads(SPEC_EXAMPLE_RUNS.read_text(encoding="utf-8"))
    fake_azure.datafactory.query_runs_body = json.dumps(example["responses"]["200"]["body"])
    copy = make_copy(tmp_path, fake_azure)

    page = copy.client.pipeline_runs.query_by_factory(
        copy.resource_group, copy.factory, history_query("examplePipeline", datetime.now(UTC), 30)
    )

    assert durations(page.get("value"), "examplePipeline", longest=60) == [28.105]  # the Cancelled run has none


@pytest.mark.parametrize(
    "answer",
    ["503", "not json {", '{"value": "runs"}', '{"value": [{"runId": "r", "pipelineName": "CopyDriftWindow", '
     '"status": "Succeeded", "durationInMs": "soon"}]}'],
    ids=["503s", "not-json", "value-not-a-list", "duration-not-a-number"],
)
def test_a_failed_or_garbled_history_answer_falls_back_to_todays_schedule_and_the_wait_goes_on(
    tmp_path: Path, fake_azure: FakeAzure, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")
    if answer == "503":
        fake_azure.faults.errors["/queryPipelineRuns"] = 10
    else:
        fake_azure.datafactory.query_runs_body = answer
    fake_azure.datafactory.script(PIPELINE, ENDLESS)
    sleeps = Sleeps(interrupt_after=PAUSES)
    copy = make_copy(tmp_path, fake_azure, sleep=sleeps, polling=HISTORY_POLLING)

    with pytest.raises(KeyboardInterrupt):  # the wait goes on (never fails for want of history) until interrupted
        copy_once(copy)

    [run] = fake_azure.datafactory.created(PIPELINE)
    assert run.status_calls == PAUSES
    assert max(sleeps.pauses) <= 0.2 * 1.1  # today's young-run ceiling: max_interval plus jitter
    said = [m for m in caplog.messages if f"pipeline {PIPELINE}" in m and "default schedule" in m]
    assert len(said) == 1, caplog.messages
    if answer == "503":
        assert len(history_queries(fake_azure)) == 2  # one blip ridden out (retry_total=1), then given up


def test_a_reattached_run_waits_with_history_from_its_start_and_a_rerun_from_failure_without(tmp_path: Path, fake_azure: FakeAzure) -> None:
    """A reattached run (a resumed retrain's, docs/waiting.md) keeps the history-aware schedule, counted from when
    the ledger recorded its start; a rerun from a failed activity does part of the work: the pipeline's usual
    duration says nothing of when it ends, so no look-up and today's schedule."""
    fake_azure.datafactory.add_history(FACTORY, PIPELINE, [0.3, 0.3, 0.3])
    fake_azure.datafactory.script(PIPELINE, RunScript(steps=(("InProgress", 0.3),), final="Succeeded"))
    signal = drift_signal()
    started = make_copy(tmp_path, fake_azure).start(signal)  # then the process is killed: no wait
    rerun = make_copy(tmp_path, fake_azure, polling=HISTORY_POLLING)
    assert rerun.wait(rerun.start(signal)).run_id == started

    fake_azure.datafactory.script(PIPELINE, _failing())
    fake_azure.datafactory.script(PIPELINE, _failing())
    no_reuse = {**HISTORY_POLLING, "history_ttl_minutes": 0}  # every wait that may look up does
    recovering = make_copy(tmp_path, fake_azure, polling=no_reuse, copy={"recover_from_failure": True})
    with pytest.raises(DataFactoryRunFailed):
        copy_once(recovering, "credit-default-drift_1717000000009")

    assert len(fake_azure.datafactory.created(PIPELINE)) == 3  # the reattached run, a failed run, its recovery
    assert len(history_queries(fake_azure)) == 2  # the reattached run's wait and the failed run's, not the recovery's
