"""Step 4: run the training pipeline on the copied data."""

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE

from drift_retrain.backends.base import StillRunning, TrainingPipeline, run_to_end, suspendable
from drift_retrain.results import CopyResult, TrainingResult
from drift_retrain.signals import DriftSignal
from drift_retrain.waiting import Waiting, can_suspend
from tasks.report import report_cancelled


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(
    pipeline: TrainingPipeline, signal: DriftSignal, data: CopyResult, model_name: str
) -> TrainingResult | Waiting:
    """Submit (or reattach to) the signal's training job and wait for it; if the wait is interrupted, cancel it.
    A job still going after the hold is answered ``Waiting`` (a normal outcome: the retrain suspends on it)."""
    try:
        with suspendable(can_suspend()):
            return run_to_end(
                lambda: pipeline.submit(signal, data),
                pipeline.wait,
                pipeline.cancel,
                partial(report_cancelled, "training", model_name),
            )
    except StillRunning as going:
        return Waiting.of(going.step, going.run_id, going.status, going.next_check, going.deadline)
