"""One retrain per model at a time: a Prefect global concurrency limit of 1 per model.

The project creates the limits (the runner at start, and ``drift-retrain limits`` for a scale-out deploy),
and the flow takes its slot with strict semantics: a missing limit is an error, never a retrain that
silently runs unguarded beside another one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from drift_retrain.config import Settings
from drift_retrain.names import limit_name

LEASE_ENV = "DRIFT_RETRAIN_SLOT_LEASE_SECONDS"


def lease_seconds() -> float:
    """The slot's lease, renewed while its holder lives: a killed holder frees the slot within this
    (plus the Prefect server's repossessor interval). 60 s, Prefect's minimum, unless
    $DRIFT_RETRAIN_SLOT_LEASE_SECONDS says more."""
    return float(os.environ.get(LEASE_ENV, "60"))


def model_limits(settings: Settings) -> list[str]:
    """One limit per model, however many targets retrain it."""
    return sorted({limit_name(t.model_name) for t in settings.targets})


def ensure_limits(settings: Settings) -> list[str]:
    """Create (or reset to 1) every model's limit on the Prefect server ``PREFECT_API_URL`` names; refuses
    (``ApiUrlMissing``) when none is named rather than fill a throwaway server's database."""
    from prefect import get_client

    from drift_retrain.prefect_api import require_api_url

    require_api_url()
    names = model_limits(settings)
    with get_client(sync_client=True) as client:
        for name in names:
            client.upsert_global_concurrency_limit_by_name(name, limit=1)
    return names


@contextmanager
def retrain_slot(model_name: str) -> Iterator[None]:
    """Hold the model's slot for the copy, training and registration; waits while another retrain holds it.

    The slot is a lease the holding process renews; if that process is killed, the lease expires and the
    slot frees itself. A missing limit raises ``ConcurrencySlotAcquisitionError`` at once (run
    ``drift-retrain limits``); Prefect answering 5xx while it is asked for the slot (SQLite busy in a
    storm) is tried again, a few times, before the run fails.
    """
    from prefect.concurrency.sync import concurrency

    held = ExitStack()
    for pause in (*ACQUIRE_PAUSES, None):
        try:
            held.enter_context(
                concurrency(limit_name(model_name), occupy=1, lease_duration=lease_seconds(), strict=True)
            )
            break
        except Exception as exc:
            if pause is None or not _prefect_unavailable(exc):
                raise
            time.sleep(pause)
    with held:
        yield


ACQUIRE_PAUSES = (0.5, 1, 2, 4, 8, 15)


def _prefect_unavailable(exc: BaseException) -> bool:
    """The acquisition failed on Prefect's side (5xx, a dropped connection), not on a missing limit."""
    import httpx

    cause = exc.__cause__
    if isinstance(cause, httpx.HTTPStatusError):
        return cause.response.status_code >= 500
    return isinstance(cause, httpx.TransportError)
