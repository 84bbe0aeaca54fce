"""Step 1: pull the drift run's details."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from drift_retrain.backends.base import DriftDetailsSource
from drift_retrain.results import DriftDetails
from drift_retrain.signals import DriftSignal


@task(name="pull-drift-details", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def pull_drift_details(source: DriftDetailsSource, signal: DriftSignal) -> DriftDetails:
    """Details are best-effort: the source says so, and the decision falls back to the event's data."""
    return source.fetch(signal)
