"""The lines a user needs reach the flow run's log, as the Prefect UI shows it (read back from ``/logs/filter``):
a step's state changes, an Azure wait's retry after a failed status call, the sweep's actions. Outside a run the
same lines go to the stdlib ``drift_retrain`` loggers."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prefect import flow, task

from drift_retrain.backends.azure.polling import Poller
from drift_retrain.backends.base import RunLog
from drift_retrain.backends.memory import MemoryCopy, memory_backends
from drift_retrain.config import PollingConfig
from tests.flow.conftest import logs, run_flow

FAST_POLLS = PollingConfig(initial_interval=0.01, max_interval=0.01, jitter=0, timeout_minutes=1)


def test_a_steps_state_changes_are_in_the_flow_runs_log_once_each(make_target, prefect_api) -> None:
    target = make_target()
    signal = target.signal("drift_logged")
    backends = memory_backends(copy=MemoryCopy(rows=2100))

    run = run_flow(backends, signal=signal)

    lines = logs(prefect_api, run.id, until=" registered from drift run ")
    (copy_run,) = backends.copy.started
    assert [line for line in lines if line.startswith(f"copy run {copy_run}: ")] == [
        f"copy run {copy_run}: (started) -> InProgress",
        f"copy run {copy_run}: InProgress -> Succeeded",
    ]
    assert f"{target.model} v1 registered from drift run drift_logged" in lines


@task
def wait_on_an_azure_run(run_id: str) -> str:
    """The azure backend's own wait (polling.Poller), on a status call that drops once, as a task does it."""
    answers: list[str | Exception] = [ConnectionError("connection reset by peer"), "Queued", "InProgress", "InProgress", "Succeeded"]

    def status() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return Poller(FAST_POLLS, "copy", sleep=lambda seconds: None).wait(run_id, status, lambda s: s, {"Succeeded"})


@flow(name="azure-wait-in-a-run")
def azure_wait_in_a_run(run_id: str) -> str:
    return wait_on_an_azure_run(run_id)


def test_an_azure_waits_retry_and_state_changes_reach_the_run_log(prefect_api) -> None:
    state = azure_wait_in_a_run("adf-run-7", return_state=True)
    assert state.result() == "Succeeded"

    lines = logs(prefect_api, str(state.state_details.flow_run_id), until="-> Succeeded")
    assert "copy: status call for run adf-run-7 failed (connection reset by peer); trying again in 0 s" in lines
    assert [line for line in lines if line.startswith("copy run adf-run-7: ")] == [
        "copy run adf-run-7: (started) -> Queued",
        "copy run adf-run-7: Queued -> InProgress",
        "copy run adf-run-7: InProgress -> Succeeded",
    ]


def test_the_sweep_says_what_it_did_in_its_log(make_target, prefect_api) -> None:
    """A retrain whose copy failed: the flow fails, and the sweep's rerun of it is a line in the sweep's log."""
    from flows.drift_to_retrain import drift_to_retrain
    from flows.sweep import sweep
    from drift_retrain.backends import backends_in_process

    target = make_target()
    backends = memory_backends(copy=MemoryCopy(failure="the sink refused the connection"))
    with backends_in_process(lambda settings, t: backends):
        failed = drift_to_retrain(signal=target.signal("drift_copy_fails"), return_state=True)
    assert failed.is_failed() and "the sink refused the connection" in (failed.message or "")
    failed_run = prefect_api.get(f"/flow_runs/{failed.state_details.flow_run_id}").json()

    state = asyncio.run(sweep(lookback_hours=1, catch_up=False, return_state=True))
    rows = {row["flow_run"]: row for row in state.result()}
    assert rows[failed_run["name"]]["action"] == "rerun"

    lines = logs(prefect_api, str(state.state_details.flow_run_id), until="sweep: over the last 1 h")
    assert f"sweep: rerun {failed_run['name']}: attempt 2 of 3" in lines
    assert any(line.startswith("sweep: over the last 1 h: 1 rerun, ") for line in lines), lines


def test_outside_a_run_the_lines_go_to_the_stdlib_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drift_retrain.azure")
    RunLog("drift_retrain.azure").info("copy: reattached to Data Factory run %s", "adf-1")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("drift_retrain.azure", "copy: reattached to Data Factory run adf-1")]
