"""Step 4: run the training pipeline on the copied data."""

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE

from drift_retrain.backends.base import TrainingPipeline, run_to_end
from drift_retrain.results import CopyResult, TrainingResult
from drift_retrain.signals import DriftSignal
from tasks.report import report_cancelled


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(pipeline: TrainingPipeline, signal: DriftSignal, data: CopyResult, model_name: str) -> TrainingResult:
    """Submit (or reattach to) the signal's training job and wait for it; if the wait is interrupted, cancel it."""
    return run_to_end(
        lambda: pipeline.submit(signal, data),
        pipeline.wait,
        pipeline.cancel,
        partial(report_cancelled, "training", model_name),
    )
