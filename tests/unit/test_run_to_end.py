"""An interrupted wait cancels the external run it started; a run that failed by itself is not cancelled."""

from __future__ import annotations

import pytest

from drift_retrain.backends.base import StepFailed, run_to_end


class Run:
    def __init__(self, outcome: BaseException | None = None) -> None:
        self.outcome = outcome
        self.cancelled: list[str] = []

    def wait(self, run_id: str) -> str:
        if self.outcome:
            raise self.outcome
        return f"done {run_id}"

    def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)


def test_success_returns_the_result_and_cancels_nothing() -> None:
    run = Run()
    assert run_to_end(lambda: "r1", run.wait, run.cancel) == "done r1"
    assert run.cancelled == []


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), TimeoutError("flow timed out"), SystemExit(143)])
def test_interruption_cancels_the_run_and_propagates(interruption: BaseException) -> None:
    run = Run(interruption)
    with pytest.raises(type(interruption)):
        run_to_end(lambda: "r2", run.wait, run.cancel)
    assert run.cancelled == ["r2"]


def test_failed_run_is_not_cancelled() -> None:
    run = Run(StepFailed("copy", "r3", "Failed", "sink unreachable"))
    with pytest.raises(StepFailed, match="copy run r3 ended Failed: sink unreachable"):
        run_to_end(lambda: "r3", run.wait, run.cancel)
    assert run.cancelled == []


def test_a_cancel_that_fails_is_logged_and_the_interruption_still_propagates(caplog: pytest.LogCaptureFixture) -> None:
    """The reason the wait ended (a timeout, a cancelled flow run) is what the run must fail with; a cancel
    the service refused is logged with the run id, so the run left behind can be found."""

    def refuse(run_id: str) -> None:
        raise ConnectionError("cancel call failed")

    with pytest.raises(TimeoutError, match="still InProgress"):
        run_to_end(lambda: "r4", Run(TimeoutError("copy run r4 still InProgress")).wait, refuse)
    assert "could not cancel run r4" in caplog.text and "cancel call failed" in caplog.text


def test_the_report_hears_of_every_cancellation_and_of_a_cancel_that_failed() -> None:
    heard: list[tuple[str, str, str]] = []
    run = Run(TimeoutError("copy run r5 still Queued"))
    with pytest.raises(TimeoutError):
        run_to_end(lambda: "r5", run.wait, run.cancel, lambda *told: heard.append(told))

    def refuse(run_id: str) -> None:
        raise ConnectionError("cancel call failed")

    with pytest.raises(KeyboardInterrupt):
        run_to_end(lambda: "r6", Run(KeyboardInterrupt()).wait, refuse, lambda *told: heard.append(told))
    assert heard == [
        ("r5", "TimeoutError: copy run r5 still Queued", "cancel requested"),
        ("r6", "KeyboardInterrupt", "could not cancel (it may still be running): cancel call failed"),
    ]
    assert run_to_end(lambda: "r7", Run().wait, run.cancel, lambda *told: heard.append(told)) == "done r7"
    assert len(heard) == 2  # a run that ended by itself is nobody's cancellation
