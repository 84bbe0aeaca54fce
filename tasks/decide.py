"""Step 2: decide whether to retrain, with every reason."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from drift_retrain.backends.base import ModelRegistry
from drift_retrain.config import PolicyConfig
from drift_retrain.policy import champion, decide, in_slot
from drift_retrain.results import Decision, DriftDetails, ModelVersion
from drift_retrain.signals import DriftSignal


@task(name="decide", cache_policy=NO_CACHE)
def decide_retrain(
    signal: DriftSignal,
    details: DriftDetails,
    policy: PolicyConfig,
    registry: ModelRegistry,
    model_name: str,
    force: bool = False,
) -> Decision:
    """Read the model's history at decision time, so cooldown and "already handled" see the latest."""
    return decide(signal, details, policy, registry.versions(model_name), force=force)


@task(name="current-champion", cache_policy=NO_CACHE)
def current_champion(registry: ModelRegistry, model_name: str) -> ModelVersion | None:
    """The version the new model is compared with (the gate, the training report)."""
    return champion(registry.versions(model_name))


@task(name="re-decide-in-slot", cache_policy=NO_CACHE)
def redecide_in_slot(
    signal: DriftSignal, decision: Decision, policy: PolicyConfig, registry: ModelRegistry, model_name: str
) -> Decision:
    """Once the model's retrain slot is held: did a retrain that finished meanwhile cover this signal?"""
    return in_slot(decision, signal, policy, registry.versions(model_name))
