"""Waits that hold no process: a retrain whose external run goes on past ``PollingConfig.hold_seconds`` is
suspended on Prefect's own state (Paused, named Suspended, rescheduled on resume), and resumed by the job
event (the receiver), by the waiter (its fallback pass, or a pass scheduled for the run's next check), or at
its step deadline. On resume the flow runs again from the top and reattaches through the ledger.

What a suspended retrain leaves behind is small and on the Prefect server: the tags ``names.WAITING_TAG`` and
``names.waiting_tag(resource)`` (what the receiver and the waiter find it by) and a wait record, one Prefect
Variable per suspended run (what it waits on, until when, and the lease of the model's slot it keeps).
docs/waiting.md tells the whole story.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID, uuid4

from drift_retrain.backends.base import EndCheck
from drift_retrain.concurrency import lease_seconds, release_lease, renew_lease
from drift_retrain.config import Settings
from drift_retrain.names import (
    COPY_STEP,
    PROJECT_TAG,
    WAITING_TAG,
    job_resource,
    pipeline_run_resource,
    waiting_tag,
)
from drift_retrain.results import CopyResult, Decision, DriftDetails
from drift_retrain.text import one_line

#: The waiter deployment, served by the local runner and declared in both prefect.yaml files.
WAITER_DEPLOYMENT = "waiter/waiter"
#: A suspension outlives the step deadline by this much before Prefect itself fails it (the waiter resumes the
#: run at the deadline, so the flow times the step out and cancels the external run; this is only a backstop:
#: prefect/server/services/pause_expirations.py fails a pause past its timeout).
PAUSE_MARGIN = timedelta(minutes=30)
WAIT_VARIABLE_PREFIX = "drift_retrain_wait"
#: Scheduled waiter passes are rounded up to this many seconds: 50 retrains suspending within a minute ask for
#: two or three passes, not fifty processes.
WAITER_BUCKET_SECONDS = 30
#: How much of an external run id a message or a name shows.
ID_LIMIT = 120


@dataclass(frozen=True)
class Waiting:
    """A step's answer when its external run goes on: what the retrain suspends on, and until when."""

    step: str
    run_id: str
    status: str
    next_check: datetime
    deadline: datetime

    @property
    def resource(self) -> str:
        """The Prefect resource of the external run (what a job event names, what the waiting tag carries)."""
        return pipeline_run_resource(self.run_id) if self.step == COPY_STEP else job_resource(self.run_id)

    @property
    def message(self) -> str:
        """The run page's state message."""
        shown = one_line(self.run_id, ID_LIMIT)
        what = f"Data Factory run {shown}" if self.step == COPY_STEP else f"ML job {shown}"
        return f"waiting for {what} (suspended)"

    @classmethod
    def of(cls, step: str, run_id: str, status: str, next_check: float, deadline: float) -> Waiting:
        now = datetime.now(UTC)
        return cls(step, run_id, status, now + timedelta(seconds=next_check), now + timedelta(seconds=deadline))


@dataclass(frozen=True)
class Decided:
    """What a retrain had settled before it suspended: its resumed run goes on from here instead of pulling the
    drift details, deciding, finding its card and re-checking in the slot again (each a call to a backend or to
    Prefect, and seconds of a resumed run before it reaches its wait). ``copy``: the finished copy, when the
    retrain suspended on its training (a resume during training reported the copy already)."""

    details: DriftDetails
    decision: Decision  # as it stood once the model's slot was held, before the copy's check
    card: UUID
    copy: CopyResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "details": self.details.model_dump(mode="json"),
            "decision": self.decision.model_dump(mode="json"),
            "card": str(self.card),
            "copy": self.copy.model_dump(mode="json") if self.copy is not None else None,
        }

    @classmethod
    def from_json(cls, value: Any) -> Decided | None:
        """None for a record without it (written before it was kept) or one that no longer validates: the
        resumed run then decides again, as it did before."""
        from pydantic import ValidationError

        try:
            copy = value.get("copy")
            return cls(
                DriftDetails.model_validate(value["details"]),
                Decision.model_validate(value["decision"]),
                UUID(value["card"]),
                CopyResult.model_validate(copy) if copy is not None else None,
            )
        except (AttributeError, KeyError, TypeError, ValueError, ValidationError):
            return None


@dataclass(frozen=True)
class WaitRecord:
    """What the waiter and the resumed run need to know of a suspended retrain."""

    step: str
    run_id: str
    resource: str
    target: str
    next_check: str  # ISO times: the record is a Prefect Variable (JSON)
    deadline: str
    lease_id: str | None
    decided: dict[str, Any] | None = None  # Decided.to_json()

    def due(self, now: datetime) -> bool:
        """The run's next check or its step deadline has come."""
        return now >= min(datetime.fromisoformat(self.next_check), datetime.fromisoformat(self.deadline))

    @property
    def settled(self) -> Decided | None:
        """What the retrain had decided before it suspended (None: decide again)."""
        return Decided.from_json(self.decided) if self.decided is not None else None

    @classmethod
    def from_json(cls, value: Any) -> WaitRecord | None:
        """None for what is not a record; a field it lacks takes its default (written before that field was kept),
        a field it has that we do not know is dropped (written by a newer release)."""
        try:
            return cls(**{k: v for k, v in value.items() if k in cls.__dataclass_fields__})
        except (AttributeError, TypeError):  # not a mapping, or a field without default missing
            return None


def can_suspend() -> bool:
    """This flow run is one of a deployment: Prefect suspends no other (core_policy.py, "Cannot suspend flows
    without a deployment"), so a retrain run in-process (a script, tests/flow, a bare API run) waits in it."""
    from prefect import runtime

    return runtime.deployment.id is not None


def wait_variable(flow_run_id: UUID | str) -> str:
    """``drift_retrain_wait__<run id hex>``: Variable names take lowercase letters, digits, - and _."""
    return f"{WAIT_VARIABLE_PREFIX}__{UUID(str(flow_run_id)).hex}"


def read_record(flow_run_id: UUID | str) -> WaitRecord | None:
    from prefect.variables import Variable

    return WaitRecord.from_json(Variable.get(wait_variable(flow_run_id)))


def forget(flow_run_id: UUID | str) -> None:
    """Drop the wait record and the waiting tags (resumed, or cleaned up after a cancel)."""
    from prefect import get_client
    from prefect.variables import Variable

    Variable.unset(wait_variable(flow_run_id))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(flow_run_id)))
        kept = [t for t in run.tags if not is_waiting_tag(t)]
        if kept != run.tags:
            client.update_flow_run(run.id, tags=kept)


def is_waiting_tag(tag: str) -> bool:
    return tag == WAITING_TAG or tag.startswith(waiting_tag(""))


def suspend(
    flow_run_id: UUID,
    waiting: Waiting,
    target: str,
    lease_id: UUID | None,
    ended: Any = None,
    decided: Decided | None = None,
) -> NoReturn:
    """Suspend this retrain on ``waiting``: record it (with what it ``decided``, which its resumed run goes on
    from), tag it, propose Prefect's Suspended state with the run page's message, schedule the waiter for its
    next check, and leave the process (``Pause``, as ``prefect.flow_runs.suspend_flow_run`` does, which takes no
    message). ``ended()`` is asked once after the state is accepted: a run that ended meanwhile (its event came
    before the tags) is resumed at once."""
    from prefect import get_client
    from prefect.client.schemas.objects import State, StateType
    from prefect.exceptions import Pause
    from prefect.logging import get_run_logger
    from prefect.states import Suspended
    from prefect.utilities.engine import propose_state_sync
    from prefect.variables import Variable

    log = get_run_logger()
    record = WaitRecord(
        waiting.step,
        waiting.run_id,
        waiting.resource,
        target,
        waiting.next_check.isoformat(),
        waiting.deadline.isoformat(),
        str(lease_id) if lease_id else None,
        decided.to_json() if decided is not None else None,
    )
    Variable.set(wait_variable(flow_run_id), asdict(record), tags=[PROJECT_TAG, WAITING_TAG], overwrite=True)
    timeout = (waiting.deadline - datetime.now(UTC) + PAUSE_MARGIN).total_seconds()
    # A pause key fires once per run (core_policy.py HandlePausingFlows rejects a repeated one): a fresh one
    # per suspension, as suspend_flow_run makes for another run.
    state: State[Any] = Suspended(
        timeout_seconds=int(timeout), pause_key=f"{waiting.step}-{uuid4().hex}", message=waiting.message
    )
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        client.update_flow_run(
            flow_run_id,
            tags=[*run.tags, *(t for t in (WAITING_TAG, waiting_tag(waiting.resource)) if t not in run.tags)],
        )
        accepted = propose_state_sync(client, state, flow_run_id=flow_run_id)
        if accepted.type != StateType.PAUSED:
            raise RuntimeError(f"the retrain could not be suspended: the server answered {accepted.type.value}")
        log.info("%s; next check %s, step deadline %s", waiting.message, record.next_check, record.deadline)
        schedule_waiter(waiting.next_check)
        if ended is not None and _ended(ended, waiting.run_id):
            log.info(
                "%s run %s ended while suspending; resuming at once", waiting.step, one_line(waiting.run_id, ID_LIMIT)
            )
            client.resume_flow_run(flow_run_id)
    raise Pause(state=accepted)


def _ended(ended: Any, run_id: str) -> bool:
    if ended is None:
        return False
    try:
        return bool(ended(run_id))
    except Exception:  # the waiter looks again; a failed look must not leave the run half-suspended
        return False


def waiter_time(when: datetime) -> datetime:
    """``when`` rounded up to the next ``WAITER_BUCKET_SECONDS``: retrains suspending together share one pass."""
    bucket = math.ceil(when.timestamp() / WAITER_BUCKET_SECONDS) * WAITER_BUCKET_SECONDS
    return datetime.fromtimestamp(bucket, UTC)


def schedule_waiter(when: datetime) -> None:
    """A waiter pass at the run's next check (Data Factory's history-aware schedule, or the fallback). One pass
    looks at every suspended retrain, so one is created per time bucket, whichever retrain asks first (the
    idempotency key: the server answers the existing run for a key it has seen); the waiter's own schedule
    remains the fallback if this fails."""
    from prefect.deployments import run_deployment
    from prefect.logging import get_run_logger

    at = waiter_time(when)
    try:
        run_deployment(
            WAITER_DEPLOYMENT,
            scheduled_time=at,
            timeout=0,
            as_subflow=False,
            idempotency_key=f"waiter-at-{at.isoformat()}",
            tags=[PROJECT_TAG],
        )
    except Exception as exc:
        get_run_logger().warning("could not schedule the waiter for %s (%s); its own schedule checks", when, exc)


def resumed_wait(flow_run_id: UUID) -> WaitRecord | None:
    """At the top of a retrain: the wait it was suspended on (then forgotten: tags and record), or None."""
    record = read_record(flow_run_id)
    if record is not None:
        forget(flow_run_id)
    return record


def adopt_kept_lease(record: WaitRecord | None) -> UUID | None:
    """The slot lease the suspension kept, cut back at once to the lease a live holder renews: the record is
    gone now, so were this run killed before it takes the slot, the slot frees itself within that lease rather
    than at the end of the long one. None when there was none or it expired (the slot is then taken again)."""
    lease = lease_of(record)
    return renew_lease(lease, lease_seconds()) if lease is not None else None


def lease_of(record: WaitRecord | None) -> UUID | None:
    try:
        return UUID(record.lease_id) if record and record.lease_id else None
    except ValueError:
        return None


# -- the waiter's pass ---------------------------------------------------------------------------------


@dataclass
class WaiterPass:
    """What one waiter pass did, by flow run: what the waiter's log and final message say."""

    resumed: list[str]
    cleaned: list[str]
    waiting: list[str]

    @property
    def summary(self) -> str:
        return f"{len(self.resumed)} resumed, {len(self.cleaned)} cleaned up, {len(self.waiting)} still waiting"


def waiter_pass(settings: Settings, now: datetime | None = None) -> WaiterPass:
    """Look at every retrain tagged ``waiting``. Suspended: resumed when its next check or step deadline has
    come, else its kept slot's lease is renewed; no status call for a run whose check is not due (its event
    and the pass scheduled for its next check cover it: a status call per pass would be six an hour). Ended while suspended
    (cancelled from the UI, which goes straight to Cancelled with no process to run hooks: core_policy.py
    BypassCancellingFlowRunsWithNoInfra; or failed by the pause's timeout): its external run is cancelled,
    its slot released, its tags and record dropped."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.logging import get_run_logger

    log = get_run_logger()
    now = now or datetime.now(UTC)
    done = WaiterPass([], [], [])
    pipelines: dict[tuple[str, str], Any] = {}
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[WAITING_TAG])))
        for run in runs:
            state = run.state
            if state is None or not (state.is_paused() or state.is_final()):
                continue  # resumed and not yet running again: its own run drops the tags
            record = read_record(run.id)
            name = one_line(run.name, ID_LIMIT)
            if state.is_paused():
                if record is None or record.due(now):
                    client.resume_flow_run(run.id)
                    log.info("resumed %s (%s)", name, "its check is due" if record else "no record")
                    done.resumed.append(str(run.id))
                else:
                    lease = lease_of(record)
                    if lease is not None:
                        renew_lease(
                            lease, (datetime.fromisoformat(record.deadline) - now + PAUSE_MARGIN).total_seconds()
                        )
                    done.waiting.append(str(run.id))
                continue
            if record is not None:
                cancel = _pipeline(settings, record, pipelines, "cancel")
                if cancel is not None:
                    try:
                        cancel(record.run_id)
                        log.warning(
                            "%s ended %s while suspended: cancel requested for %s run %s",
                            name,
                            state.type.value,
                            record.step,
                            one_line(record.run_id, ID_LIMIT),
                        )
                    except Exception as exc:
                        log.error(
                            "could not cancel %s run %s of %s: %s",
                            record.step,
                            one_line(record.run_id, ID_LIMIT),
                            name,
                            exc,
                        )
                        continue  # the next pass tries again
                lease = lease_of(record)
                if lease is not None:
                    release_lease(lease)
            forget(run.id)
            done.cleaned.append(str(run.id))
    log.info("waiter: %s", done.summary)
    return done


def _pipeline(settings: Settings, record: WaitRecord, cache: dict[tuple[str, str], Any], what: str) -> Any:
    """``ended`` or ``cancel`` of the step's pipeline for the record's target; None when the target is gone."""
    from drift_retrain.backends import build_backends

    key = (record.target, record.step)
    if key not in cache:
        target = next((t for t in settings.targets if t.name == record.target), None)
        if target is None:
            cache[key] = None
        else:
            backends = build_backends(settings, target)
            cache[key] = backends.copy if record.step == COPY_STEP else backends.training
    pipeline = cache[key]
    if pipeline is None or (what == "ended" and not isinstance(pipeline, EndCheck)):
        return None
    return getattr(pipeline, what)
