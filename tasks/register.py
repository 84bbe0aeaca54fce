"""Step 5: register the trained model with its lineage."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from drift_retrain.backends.base import ModelRegistry
from drift_retrain.results import ModelVersion, TrainingResult


@task(name="register-model", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def register_model(registry: ModelRegistry, name: str, training: TrainingResult, tags: dict[str, str]) -> ModelVersion:
    """Idempotent per signal, so the retries (and reruns) never add a second version."""
    return registry.register(name, training, tags)
