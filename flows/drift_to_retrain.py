"""The drift-to-retrain flow: orchestration only. Each step is a task over a backend interface, so the
same flow runs on the embedded default and on Azure."""

from __future__ import annotations

from functools import partial

from prefect import flow, runtime

from drift_retrain.backends import build_backends
from drift_retrain.concurrency import retrain_slot
from drift_retrain.config import load_settings
from drift_retrain.lineage import flow_run_name, lineage_tags
from drift_retrain.policy import after_copy, after_training
from drift_retrain.results import RetrainOutcome
from drift_retrain.signals import DriftSignal
from tasks.copy_data import copy_window
from tasks.decide import current_champion, decide_retrain, redecide_in_slot
from tasks.drift_details import pull_drift_details
from tasks.register import register_model
from tasks.report import report_copy, report_decision, report_model, report_training
from tasks.train import train_model


def _name_this_run() -> str:
    signal = runtime.flow_run.parameters["signal"]
    signal = signal if isinstance(signal, DriftSignal) else DriftSignal.model_validate(signal)
    target = load_settings().target_for(signal)
    return flow_run_name(target, signal) if target else f"unrouted-{signal.run_id}"


@flow(
    name="drift-to-retrain",
    flow_run_name=_name_this_run,
    description="Pull drift details, decide, copy the drift window, train, register with lineage, report.",
    persist_result=True,
    result_serializer="json",
    log_prints=True,
)
def drift_to_retrain(signal: DriftSignal, force: bool = False) -> RetrainOutcome:
    """Retrain the model a drift signal is routed to, if the policy says so.

    Args:
        signal: The normalised drift signal (the webhook receiver fills this in).
        force: Retrain even below the drift threshold, under the row minimum or inside the cooldown.
    """
    settings = load_settings()
    target = settings.route(signal)
    backends = build_backends(settings, target)
    outcome = partial(RetrainOutcome.of, signal.identity, target.name, target.model_name)

    details = pull_drift_details(backends.details, signal)
    decision = decide_retrain(signal, details, target.policy, backends.registry, target.model_name, force)
    report_decision(signal, details, decision, target.model_name)
    if not decision.retrain:
        return outcome(decision, details=details)

    with retrain_slot(target.model_name):  # one retrain per model at a time; a storm queues here
        decision = redecide_in_slot(signal, decision, target.policy, backends.registry, target.model_name)
        if not decision.retrain:
            report_decision(signal, details, decision, target.model_name)
            return outcome(decision, details=details)

        copy = copy_window(backends.copy, signal, target.model_name)
        report_copy(copy, target.model_name)
        decision = after_copy(decision, copy.rows_copied, target.policy)
        if not decision.retrain:
            report_decision(signal, details, decision, target.model_name)
            return outcome(decision, details=details, copy_result=copy)

        training = train_model(backends.training, signal, copy, target.model_name)
        champion = current_champion(backends.registry, target.model_name)
        report_training(training, target.model_name, champion)
        decision = after_training(decision, training, champion, target.gate)
        if not decision.retrain:
            report_decision(signal, details, decision, target.model_name)
            return outcome(decision, details=details, copy_result=copy, training=training)

        tags = lineage_tags(signal, target, decision, copy, training, runtime.flow_run.id)
        model = register_model(backends.registry, target.model_name, training, tags)
    report_model(signal, model)
    return outcome(decision, details=details, copy_result=copy, training=training, model=model)
