"""The drift-to-retrain flow: orchestration only. Each step is a task over a backend interface, so the
same flow runs on the embedded default and on Azure."""

from __future__ import annotations

import atexit
import gc
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn
from uuid import UUID

from prefect import flow, get_client, runtime
from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Completed

from drift_retrain.backends import build_backends
from drift_retrain.backends.base import EndCheck
from drift_retrain.concurrency import Slot, release_lease, retrain_slot
from drift_retrain.config import load_settings
from drift_retrain.lineage import lineage_tags
from drift_retrain.manual import requested_signal, target_choice, target_default
from drift_retrain.names import (
    COPY_STEP,
    MANUAL,
    RETRAIN_FLOW,
    flow_run_name,
    started_by,
    unrouted_run_name,
    with_decision_tag,
)
from drift_retrain.policy import after_copy, after_training
from drift_retrain.portal import retrain_links
from drift_retrain.results import CopyResult, RetrainOutcome
from drift_retrain.signals import DriftSignal
from drift_retrain.waiting import PAUSE_MARGIN, Decided, Waiting, adopt_kept_lease, resumed_wait, suspend
from tasks.copy_data import copy_window
from tasks.decide import current_champion, decide_retrain, redecide_in_slot
from tasks.drift_details import pull_drift_details
from tasks.register import register_model
from tasks.report import (
    decision_card,
    label_run,
    report_copy,
    report_decision,
    report_failure,
    report_model,
    report_training,
)
from tasks.train import train_model

#: The configured targets, a drop-down in the deployment's Run form (shown at once: a plain enum with a
#: default, not a nullable field the form hides behind a type toggle).
TargetName = target_choice()
FIRST_TARGET = target_default()

# A flow process ends (suspended or done) while its runner slot is still taken: Python's last garbage collection
# at exit walks the whole heap (Prefect, pydantic, the Azure SDKs), seconds of CPU on a loaded machine, for memory
# the OS takes back anyway. Frozen objects are skipped by every later collection
# (https://docs.python.org/3/library/gc.html#gc.freeze); atexit runs after Prefect's log and event workers have
# drained (prefect/_internal/concurrency/services.py registers them with threading._register_atexit).
atexit.register(gc.freeze)


def _signal_of(parameters: dict[str, Any]) -> DriftSignal:
    """The run's signal from its recorded parameters (naming the run, or reporting its failure)."""
    return requested_signal(
        load_settings(),
        parameters.get("signal"),
        parameters.get("target"),
        parameters.get("window_start"),
        parameters.get("window_end"),
    )


def _name_this_run() -> str:
    signal = _signal_of(runtime.flow_run.parameters)
    target = load_settings().target_for(signal)
    return flow_run_name(target, signal, started_by(runtime.flow_run.tags)) if target else unrouted_run_name(signal)


def _report_failure(flow: Any, flow_run: FlowRun, state: State) -> None:
    """Failure and crash hook: emit ``drift-retrain.retrain.failed`` with the error, for automations."""
    try:
        signal = _signal_of(flow_run.parameters)
        target = load_settings().target_for(signal)
    except Exception:  # the parameters themselves were the problem: still say the run failed
        signal, target = None, None
    report_failure(
        target.model_name if target else None, signal, str(flow_run.id), state.message or state.name or "failed"
    )


def _finish(outcome: RetrainOutcome) -> State[RetrainOutcome]:
    """The run's final state: Completed with the outcome as its message (the run list shows it) and as its
    result (persisted as JSON, what the demo and the tests read back), after tagging the run
    ``decision:<verdict>`` so the list filters by it. A flow that returns a State ends in it, its data
    persisted as the result (prefect/states.py ``return_value_to_state``)."""
    run_id = UUID(str(runtime.flow_run.id))
    with get_client(sync_client=True) as client:  # the tags as they are now: label_run may have added some
        tags = client.read_flow_run(run_id).tags
        client.update_flow_run(run_id, tags=with_decision_tag(tags, outcome.verdict))
    return Completed(message=outcome.message, data=outcome)


@flow(
    name=RETRAIN_FLOW,
    flow_run_name=_name_this_run,
    description="Pull drift details, decide, copy the drift window, train, register with lineage, report.",
    persist_result=True,
    result_serializer="json",
    log_prints=True,
    on_failure=[_report_failure],
    on_crashed=[_report_failure],
)
def drift_to_retrain(
    signal: DriftSignal | None = None,
    target: TargetName = FIRST_TARGET,  # type: ignore[valid-type]
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    force: bool = False,
) -> State[RetrainOutcome]:
    """Retrain the model a drift signal is routed to, or the target a person picked, if the policy says so.

    Args:
        signal: The drift signal; the webhook receiver and the sweep fill this in. Leave it empty to
            retrain by hand.
        target: Retrain by hand: the configured target (model) to retrain. Ignored when a signal is given.
        window_start: Retrain by hand: start of the data window (UTC). Default: 7 days before window_end.
        window_end: Retrain by hand: end of the data window (UTC, exclusive). Default: the coming midnight
            UTC. The same target and window is the same request: it registers at most one model version.
        force: Retrain even below the drift threshold, under the row minimum or inside the cooldown.
    """
    settings = load_settings()
    run_id = runtime.flow_run.id
    signal = requested_signal(settings, signal, target, window_start, window_end, request_id=run_id)
    # from here on the target's whole configuration, and the monitor routing matched (a v2 breach names none)
    signal, target = settings.routed(signal)
    if started_by(runtime.flow_run.tags) == MANUAL:  # the receiver and the sweep tag their runs already
        label_run(run_id, list(runtime.flow_run.tags), target, signal)
    backends = build_backends(settings, target)
    outcome = partial(RetrainOutcome.of, signal.identity, target.name, target.model_name)

    # A resumed retrain runs again from here: it adopts the slot its suspension kept and goes on from what it
    # had decided (kept in its wait record), or decides again when the record kept nothing; it reattaches to its
    # external runs through the ledger (docs/waiting.md).
    resumed = resumed_wait(UUID(str(run_id)))
    kept_lease = adopt_kept_lease(resumed)
    settled = resumed.settled if resumed is not None else None
    if settled is not None:
        details, decision, card = settled.details, settled.decision, settled.card
    else:
        details = pull_drift_details(backends.details, signal)
        decision = decide_retrain(signal, details, target.policy, backends.registry, target.model_name, force)
        found = decision_card(UUID(str(run_id)), target.model_name) if resumed else None
        if found is None:  # preliminary when it says retrain
            card = report_decision(signal, details, decision, target.model_name)
        else:
            card = found
            if not decision.retrain:
                report_decision(signal, details, decision, target.model_name, card)
        if not decision.retrain:
            if kept_lease is not None:
                release_lease(kept_lease)
            return _finish(outcome(decision, details=details))

    # one retrain per model at a time, across suspensions too; a storm queues here
    with retrain_slot(target.model_name, adopt=kept_lease) as slot:
        if settled is None or not slot.adopted:  # a slot held throughout: no retrain can have finished meanwhile
            decision = redecide_in_slot(signal, decision, target.policy, backends.registry, target.model_name)
        if not decision.retrain:
            report_decision(signal, details, decision, target.model_name, card)
            return _finish(outcome(decision, details=details))
        in_slot = decision

        if settled is not None and settled.copy is not None:
            copy: CopyResult | Waiting = settled.copy  # finished before the training this run suspended on
        else:
            copy = copy_window(backends.copy, signal, target.model_name)
        if isinstance(copy, Waiting):
            _suspend(copy, target.name, slot, backends.copy, Decided(details, in_slot, card))
        if resumed is None or resumed.step == COPY_STEP:  # a resume during training reported the copy already
            report_copy(copy, target.model_name)
        decision = after_copy(decision, copy, target.policy)
        if not decision.retrain:
            report_decision(signal, details, decision, target.model_name, card)
            return _finish(outcome(decision, details=details, copy_result=copy))

        training = train_model(backends.training, signal, copy, target.model_name)
        if isinstance(training, Waiting):
            _suspend(training, target.name, slot, backends.training, Decided(details, in_slot, card, copy))
        champion = current_champion(backends.registry, target.model_name)
        report_training(training, target.model_name, champion)
        decision = after_training(decision, training, champion, target.gate)
        if not decision.retrain:
            report_decision(signal, details, decision, target.model_name, card)
            return _finish(outcome(decision, details=details, copy_result=copy, training=training))

        tags = lineage_tags(signal, target, decision, copy, training, run_id)
        model = register_model(backends.registry, target.model_name, training, tags)
    report_decision(signal, details, decision, target.model_name, card, announce=False)  # final: every rule
    links = retrain_links(settings, target, copy.run_id, training.job_id, model)
    report_model(signal, model, links, gate=decision.gate)  # promote acts only on a version that passed the gate
    return _finish(outcome(decision, details=details, copy_result=copy, training=training, model=model))


def _suspend(waiting: Waiting, target: str, slot: Slot, pipeline: object, decided: Decided) -> NoReturn:
    """Release this process while the external run goes on, keeping the model's slot until the resumed run
    adopts it (or the waiter releases it); the lease outlives the step deadline by the pause's margin. The
    resumed run goes on from ``decided``."""
    slot.keep((waiting.deadline - datetime.now(UTC) + PAUSE_MARGIN).total_seconds())
    ended = pipeline.ended if isinstance(pipeline, EndCheck) else None
    suspend(UUID(str(runtime.flow_run.id)), waiting, target, slot.lease_id, ended, decided)
