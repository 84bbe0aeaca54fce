"""The sweep's decisions over past runs: rerun, superseded, or given up."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from drift_retrain.sweep import PastRun, plan_reruns

T0 = datetime(2026, 11, 26, 6, 0, tzinfo=timezone.utc)


def run(name: str, model: str = "m", state: str = "FAILED", minutes: float = 0, run_count: int = 1) -> PastRun:
    return PastRun(id=name, name=name, model=model, state=state, started=T0 + timedelta(minutes=minutes), run_count=run_count)


def actions(failed, completed=(), max_attempts=3) -> dict[str, str]:
    return {a.flow_run: a.action for a in plan_reruns(list(failed), list(completed), max_attempts)}


def test_a_failed_and_a_crashed_run_are_rerun_with_their_attempt_number() -> None:
    (first, second) = plan_reruns([run("a"), run("b", state="CRASHED", run_count=2)], [], 3)
    assert (first.action, first.detail) == ("rerun", "attempt 2 of 3")
    assert (second.action, second.detail) == ("rerun", "attempt 3 of 3")


def test_a_newer_completed_signal_of_the_same_model_supersedes_it() -> None:
    assert actions([run("a", minutes=0)], [run("newer", state="COMPLETED", minutes=5)]) == {"a": "superseded"}


def test_an_older_completed_run_or_another_models_does_not_supersede_it() -> None:
    completed = [run("older", state="COMPLETED", minutes=-5), run("other", model="x", state="COMPLETED", minutes=5)]
    assert actions([run("a")], completed) == {"a": "rerun"}


def test_attempts_are_bounded() -> None:
    assert actions([run("a", run_count=3)], max_attempts=3) == {"a": "gave up"}
    assert actions([run("a", run_count=2)], max_attempts=3) == {"a": "rerun"}
