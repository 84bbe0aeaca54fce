"""What the scheduled sweep decides: which failed retrains to rerun, and which drift signals the
monitors raised (each target's ``MissedDriftSource``: local records, Azure ML monitor runs) to hand off
again, in case their event was lost.

A rerun is the same flow run scheduled again, so it keeps its parameters and reattaches to whatever
its first attempt started (every external step is keyed by the signal). A caught-up signal is handed
off exactly as the webhook would (same idempotency key), so a late event and the sweep never both run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from drift_retrain.backends import missed_drift_sources
from drift_retrain.config import Settings, TargetConfig
from drift_retrain.routing import Route
from drift_retrain.signals import DriftSignal

#: The message Prefect's runner cancels every run it still runs with when it stops (the one-machine stack's
#: ``down``/Ctrl-C past the drain): prefect/runner/_cancellation_manager.py ``cancel_all`` state_msg. Such a run
#: was interrupted, not called off by a person: the sweep reruns it like a crashed one.
RUNNER_SHUTDOWN = "Runner is shutting down."


@dataclass(frozen=True)
class PastRun:
    """What the sweep needs to know of one drift-to-retrain flow run."""

    id: str
    name: str
    model: str
    state: str  # Prefect state type: COMPLETED, FAILED, CRASHED, ...
    started: datetime | None
    run_count: int


@dataclass(frozen=True)
class SweepAction:
    flow_run: str
    id: str
    state: str
    action: (
        str  # "rerun", "superseded", "gave up", "caught up", "already handed off", "not caught up", "catch-up failed"
    )
    detail: str


def plan_reruns(failed: list[PastRun], completed: list[PastRun], max_attempts: int) -> list[SweepAction]:
    """A failed or crashed retrain is rerun unless a newer signal of the same model has completed since
    (its outcome supersedes this one: the model was retrained, or judged on newer data), and at most
    ``max_attempts`` runs in all, so a retrain that cannot succeed stops costing money."""
    actions = []
    for run in failed:
        newer = [c for c in completed if c.model == run.model and _after(c.started, run.started)]
        if newer:
            latest = max(newer, key=lambda c: c.started or datetime.min.replace(tzinfo=UTC))  # aware, like the others
            action = SweepAction(run.name, run.id, run.state, "superseded", f"newer signal completed: {latest.name}")
        elif run.run_count >= max_attempts:
            action = SweepAction(
                run.name, run.id, run.state, "gave up", f"{run.run_count} of {max_attempts} attempt(s) used"
            )
        else:
            action = SweepAction(run.name, run.id, run.state, "rerun", f"attempt {run.run_count + 1} of {max_attempts}")
        actions.append(action)
    return actions


def _after(later: datetime | None, earlier: datetime | None) -> bool:
    return later is not None and (earlier is None or later > earlier)


def missed_signals(
    settings: Settings, since: datetime
) -> tuple[list[tuple[DriftSignal, TargetConfig]], list[SweepAction]]:
    """Every target's drift raised since ``since`` (each signal paired with the target it routes to; a monitor
    no target takes is ignored), and a row for each target whose drift could not all be looked at.
    Whether a signal already has a flow run is the hand-off's idempotency key to say."""
    found, unseen = [], []
    for target, source in missed_drift_sources(settings):
        failed, signals = None, []
        try:
            signals = source.signals_since(since)
        except Exception as exc:  # one unreachable workspace must not stop the others' catch-up
            failed = f"{type(exc).__name__}: {next(iter(str(exc).splitlines()), '')}"
        if source.blind_spot:  # read after looking: a source may meet a limit (a cap) while it looks
            unseen.append(SweepAction(f"target {target.name}", "", "", "not caught up", source.blind_spot))
        if failed is not None:
            unseen.append(SweepAction(f"target {target.name}", "", "", "catch-up failed", failed))
            continue
        routes = (settings.routing(s) for s in signals)  # as the receiver routes: monitor set to the configured one
        found += [(r.signal, r.target) for r in routes if isinstance(r, Route) and r.target.name == target.name]
    return found, unseen
