"""The scheduled sweep: find drift signals whose retrain failed or crashed.

In this version it only lists what it would rerun (a table artifact); rerunning and catching up
missed events come with the reliability work.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow, get_client
from prefect.artifacts import acreate_table_artifact
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType


@flow(name="sweep", description="List drift-to-retrain runs that failed or crashed and would be rerun.", log_prints=True)
async def sweep(lookback_hours: float = 24.0) -> list[dict[str, str]]:
    """Args:
    lookback_hours: How far back to look for failed or crashed retrains.
    """
    since = datetime.now(timezone.utc) - timedelta(hours=lookback_hours)
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["drift-to-retrain"])),
            flow_run_filter=FlowRunFilter(
                start_time=FlowRunFilterStartTime(after_=since),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])),
            ),
        )
    rows = [
        {"flow_run": run.name, "id": str(run.id), "state": run.state_name or "", "would": "rerun"}
        for run in runs
    ]
    await acreate_table_artifact(
        rows or [{"flow_run": "", "id": "", "state": "", "would": "nothing to rerun"}],
        key="sweep",
        description=f"Failed or crashed retrains in the last {lookback_hours:g} h",
    )
    print(f"sweep: {len(rows)} failed or crashed retrain(s) in the last {lookback_hours:g} h")
    return rows
