"""One retrain per model at a time: a Prefect global concurrency limit of 1 per model.

The project creates the limits (the runner at start, and ``drift-retrain limits`` for a scale-out deploy),
and the flow takes its slot with strict semantics: a missing limit is an error, never a retrain that
silently runs unguarded beside another one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

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


def free_orphaned_slots(api_url: str, settings: Settings) -> list[str]:
    """Zero the models' slots a Prefect server still counts but nobody can release: the names freed.

    Prefect keeps concurrency leases in server memory unless told otherwise (server.concurrency.lease_storage,
    prefect/settings/models/server/concurrency.py), while the slots they hold are counted in the database; a
    lease lost with a restart cannot be released (decrement-with-lease finds none and does nothing:
    prefect/server/api/concurrency_limits_v2.py) nor expire, so the model would never retrain again. Call it
    only on a server just started with in-memory leases (the one-machine stack without Redis): no lease can
    exist there yet, so every counted slot is an orphan. A suspended retrain whose kept lease went this way
    takes its slot again when it resumes (``waiting.adopt_kept_lease``)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    freed = []
    with SyncPrefectClient(api_url) as client:
        for name in model_limits(settings):
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                continue  # made by the runner in a moment
            if limit.active_slots:
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))
                freed.append(name)
    return freed


#: The longest lease Prefect grants (prefect/server/api/concurrency_limits_v2.py: lease_duration le=1 day).
MAX_LEASE_SECONDS = 24 * 60 * 60


@dataclass
class Slot:
    """The model's slot as held by this run: its lease, and whether it is kept across a suspension."""

    lease_id: UUID
    adopted: bool = False
    kept_for: float | None = None

    def keep(self, seconds: float) -> None:
        """Do not release the slot on leaving the block: renew its lease for ``seconds`` instead (the retrain is
        suspending; its resumed run adopts the lease, the waiter renews or releases it)."""
        self.kept_for = min(MAX_LEASE_SECONDS, max(60.0, seconds))


@contextmanager
def retrain_slot(model_name: str, adopt: UUID | None = None) -> Iterator[Slot]:
    """Hold the model's slot for the copy, training and registration; waits while another retrain holds it.

    The slot is a lease the holding process renews; if that process is killed, the lease expires and the
    slot frees itself. A missing limit raises ``ConcurrencySlotAcquisitionError`` at once (run
    ``drift-retrain limits``); Prefect answering 5xx while it is asked for the slot (SQLite busy in a
    storm) is tried again, a few times, before the run fails. ``adopt``: the lease a suspended run of this
    retrain kept (``Slot.keep``); taken over while it is still valid, else the slot is taken again.
    """
    # prefect.concurrency.sync.concurrency() always releases on exit; its parts (prefect/concurrency/_sync.py,
    # _leases.py) let the lease outlive a suspension.
    from prefect.concurrency._leases import maintain_concurrency_lease

    lease = renew_lease(adopt, lease_seconds()) if adopt is not None else None
    slot = Slot(lease, adopted=True) if lease is not None else Slot(_acquire(model_name))
    try:
        with maintain_concurrency_lease(slot.lease_id, lease_seconds(), raise_on_lease_renewal_failure=True):
            yield slot
    finally:
        if slot.kept_for is None:
            release_lease(slot.lease_id)
        else:
            _keep(slot)


def _acquire(model_name: str) -> UUID:
    from prefect.concurrency._sync import acquire_concurrency_slots_with_lease

    for pause in (*ACQUIRE_PAUSES, None):
        try:
            response = acquire_concurrency_slots_with_lease(
                [limit_name(model_name)], 1, lease_duration=lease_seconds(), strict=True
            )
            return response.lease_id
        except Exception as exc:
            if pause is None or not _prefect_unavailable(exc):
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def _keep(slot: Slot) -> None:
    """Renew the kept lease for the suspension, and take it off the flow engine's clean-up list, which releases
    every lease still listed when the run's ConcurrencyContext exits (prefect/concurrency/context.py)."""
    from prefect.concurrency._asyncio import _discard_cleanup_lease

    renew_lease(slot.lease_id, slot.kept_for or lease_seconds())
    _discard_cleanup_lease(slot.lease_id)


def renew_lease(lease_id: UUID, seconds: float) -> UUID | None:
    """Renew a slot's lease for ``seconds``; None when it is gone (expired, released, repossessed: 410/404)."""
    import httpx
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            client.renew_concurrency_lease(lease_id, min(MAX_LEASE_SECONDS, max(60.0, seconds)))
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code in (404, 410):
            return None
        raise
    return lease_id


def release_lease(lease_id: UUID) -> None:
    """Free the slot a lease holds (one already gone is fine)."""
    import httpx
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease_id)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code not in (404, 410):
            raise


ACQUIRE_PAUSES = (0.5, 1, 2, 4, 8, 15)


def _prefect_unavailable(exc: BaseException) -> bool:
    """The acquisition failed on Prefect's side (5xx, a dropped connection), not on a missing limit."""
    import httpx

    cause = exc.__cause__
    if isinstance(cause, httpx.HTTPStatusError):
        return cause.response.status_code >= 500
    return isinstance(cause, httpx.TransportError)
