"""The scheduled sweep: rerun retrains that failed, crashed or were cut off by a runner's shutdown, catch up
drift whose event never arrived, and say what it found and did in a table artifact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prefect import flow, get_client, get_run_logger, runtime
from prefect.artifacts import acreate_table_artifact
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Scheduled

from drift_retrain.config import load_settings
from drift_retrain.intake.handoff import PrefectHandoff
from drift_retrain.markdown import escape_cells
from drift_retrain.names import RETRAIN_FLOW, SWEEP, SWEEP_ARTIFACT, SWEEP_FLOW, model_of_run, sweep_run_name
from drift_retrain.sweep import RUNNER_SHUTDOWN, PastRun, SweepAction, missed_signals, plan_reruns


def _past(run: FlowRun) -> PastRun:
    state = run.state_type.value if run.state_type else ""
    return PastRun(run.id.hex, run.name, model_of_run(run.tags), state, run.start_time, run.run_count)


async def _runs(
    client: PrefectClient, since: datetime, states: list[StateType], message: str | None = None, page: int = 200
) -> list[PastRun]:
    """Every matching run (with that state message, when given), page by page: after a storm there are more
    than one answer holds."""
    runs: list[FlowRun] = []
    while True:
        batch = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[RETRAIN_FLOW])),
            flow_run_filter=FlowRunFilter(
                start_time=FlowRunFilterStartTime.model_validate(
                    {"after_": since}
                ),  # validated into Prefect's DateTime
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=page,
            offset=len(runs),
        )
        runs += batch
        if len(batch) < page:
            return [_past(r) for r in runs if message is None or (r.state is not None and r.state.message == message)]


def _name_this_sweep() -> str:
    """``sweep-2026-11-30T10:30Z``: when the schedule had it due (now, for a sweep started by hand), instead of
    Prefect's random ``arcane-capuchin``."""
    due = runtime.flow_run.scheduled_start_time
    return sweep_run_name(due if isinstance(due, datetime) else datetime.now(UTC))


@flow(
    name=SWEEP_FLOW,
    flow_run_name=_name_this_sweep,
    description="Rerun failed, crashed or interrupted retrains and catch up drift whose event never arrived.",
)
async def sweep(lookback_hours: float = 24.0, max_attempts: int = 3, catch_up: bool = True) -> list[dict[str, str]]:
    """Args:
    lookback_hours: How far back to look for failed retrains and for drift without a flow run.
    max_attempts: Runs a retrain gets in all (its first run included) before the sweep gives up on it.
    catch_up: Also hand off drift the monitors recorded whose event never became a flow run.
    """
    since = datetime.now(UTC) - timedelta(hours=lookback_hours)
    async with get_client() as client:
        failed = await _runs(client, since, [StateType.FAILED, StateType.CRASHED])
        failed += await _runs(client, since, [StateType.CANCELLED], message=RUNNER_SHUTDOWN)  # interrupted
        completed = await _runs(client, since, [StateType.COMPLETED])
        actions = plan_reruns(failed, completed, max_attempts)
        for action in actions:
            if action.action == "rerun":  # the same run again: same signal, reattaches to what it started
                await client.set_flow_run_state(
                    action.id, Scheduled(message=f"rerun by the sweep: {action.detail}"), force=True
                )
    if catch_up:
        actions += await _catch_up(since)

    rows = sweep_rows(actions)
    await acreate_table_artifact(
        sweep_table(actions),
        key=SWEEP_ARTIFACT,
        description=f"Failed or crashed retrains and missed drift in the last {lookback_hours:g} h",
    )
    log = get_run_logger()
    for a in actions:  # each action a line in the run's log too, in the flow's prose: "sweep: <action> <run>: <detail>"
        log.info("sweep: %s %s: %s", a.action, a.flow_run, a.detail)
    done = {
        kind: sum(a.action == kind for a in actions)
        for kind in ("rerun", "superseded", "gave up", "caught up", "catch-up failed")
    }
    log.info("sweep: over the last %g h: %s", lookback_hours, ", ".join(f"{n} {kind}" for kind, n in done.items()))
    return rows


def sweep_rows(actions: list[SweepAction]) -> list[dict[str, str]]:
    """One row per action, as the flow returns them: plain text."""
    return [
        {"flow_run": a.flow_run, "id": a.id, "state": a.state, "action": a.action, "detail": a.detail} for a in actions
    ]


def sweep_table(actions: list[SweepAction]) -> list[dict[str, object]]:
    """The table artifact's rows (one saying so when there is nothing to do), every cell escaped: run names and
    drift run ids are event text, and Prefect's V1 UI renders a cell as markdown (``drift_retrain.markdown``)."""
    nothing = {"flow_run": "", "id": "", "state": "", "action": "nothing to do", "detail": ""}
    return escape_cells(sweep_rows(actions) or [nothing])


async def _catch_up(since: datetime) -> list[SweepAction]:
    """Hand off every drift signal the monitors raised the webhook's way; the idempotency key finds those it made."""
    missed, unseen = await asyncio.to_thread(missed_signals, load_settings(), since)  # Azure calls block
    if not missed:
        return unseen
    async with PrefectHandoff() as handoff:
        runs = await handoff.hand_off_all(missed, started_by=SWEEP)
    return unseen + [
        SweepAction(
            run.flow_run_name,
            run.flow_run_id.hex,
            "SCHEDULED" if run.created else "",
            "caught up" if run.created else "already handed off",
            f"drift run {signal.run_id} of monitor {signal.monitor}",
        )
        for (signal, _), run in zip(missed, runs, strict=True)  # one run per signal, in order
    ]
