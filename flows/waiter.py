"""The waiter: resumes suspended retrains whose external run ended (or whose next check or step deadline came),
and cleans up after retrains cancelled while suspended (cancels their external run, frees their model's slot).

Light on purpose: one process per pass, no status call for a retrain whose check is not due, no training code
imported. It runs on its schedule (the fallback for a lost job event: prefect.yaml), at the next check a
suspending retrain asked for, and on every cancellation of a run tagged ``waiting`` (its trigger). docs/waiting.md.
"""

from __future__ import annotations

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed

from drift_retrain.config import load_settings
from drift_retrain.waiting import WaiterPass, waiter_pass


@flow(name="waiter", description="Resume suspended retrains whose run ended; clean up after cancelled ones.")
def waiter() -> State[WaiterPass]:
    """One pass over the retrains tagged ``waiting``; its message says how many were resumed and cleaned up."""
    done = waiter_pass(load_settings())
    return Completed(message=done.summary, data=done)
