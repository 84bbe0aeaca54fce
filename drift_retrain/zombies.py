"""Runs whose process died: Prefect's zombie-detection automation, made safe for waits that hold no process.

Prefect marks nothing Crashed when a worker host disappears: its flow runs stay Running. Prefect's recipe is an
automation that crashes a run whose heartbeats stop (docs.prefect.io/v3/advanced/detect-zombie-flows, "Create
the automation"), after which the sweep reruns it and it reattaches to its Azure runs. The recipe as written
expects a heartbeat or a final state after each heartbeat, so it would also crash every retrain that suspends
while its Azure run goes on (a Suspended run has no process, hence no heartbeat): ours expects Paused and
Suspended too. ``drift-retrain limits`` creates it beside the slots' limits (the scale-out recipe, compose).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.automations import Automation

ZOMBIE_AUTOMATION = "drift-retrain: crash runs whose heartbeats stopped"
#: A run is a zombie after this many heartbeats missed in a row.
MISSED_HEARTBEATS = 3
#: Prefect's flows.heartbeat_frequency when unset (prefect/settings/models/flows.py: default 180, ge=30).
PREFECT_HEARTBEAT_SECONDS = 180
#: What ends the wait for the next heartbeat: another heartbeat, a final state (Prefect's recipe), or a pause:
#: Prefect emits ``prefect.flow-run.<state name>`` on every transition (docs.prefect.io/v3/api-ref/events/
#: flow-run-events: Paused and Suspended are state names of type PAUSED).
ENDS_HEARTBEATS = frozenset(
    {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
        "prefect.flow-run.Cancelled",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.Paused",
        "prefect.flow-run.Suspended",
    }
)


def default_window_seconds() -> float:
    """``MISSED_HEARTBEATS`` heartbeats at this process's PREFECT_FLOWS_HEARTBEAT_FREQUENCY: run ``limits``
    with the workers' value (90 s at the recipe's 30 s; 540 s at Prefect's default), or a window shorter than
    one heartbeat would crash every healthy run."""
    from prefect.settings import Settings

    every = Settings().flows.heartbeat_frequency or PREFECT_HEARTBEAT_SECONDS  # read now: env and profile
    return float(MISSED_HEARTBEATS * every)


def zombie_automation(window_seconds: float) -> Automation:
    """No heartbeat, final state or pause within ``window_seconds`` of a heartbeat: the run is Crashed."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=ZOMBIE_AUTOMATION,
        description="Prefect's zombie-flow recipe; a suspended retrain (no process, no heartbeat) is left alone.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect=set(ENDS_HEARTBEATS),
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                name=None, state=StateType.CRASHED, message="no heartbeat: its process is gone", force=False
            )
        ],
    )


def ensure_zombie_automation(window_seconds: float) -> str:
    """Create the automation, or bring the one of that name up to date: "created" or "updated"."""
    from prefect import get_client
    from prefect.events.schemas.automations import AutomationCore

    wanted = AutomationCore(**zombie_automation(window_seconds).model_dump(exclude={"id", "owner_resource"}))
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        if not existing:
            client.create_automation(wanted)
            return "created"
        client.update_automation(existing[0].id, wanted)
        for extra in existing[1:]:  # two `limits` racing made two: keep one
            client.delete_automation(extra.id)
        return "updated"
