"""Step 3: copy the drift window's data into the training store (Data Factory, or local)."""

from functools import partial

from prefect import task
from prefect.cache_policies import NO_CACHE

from drift_retrain.backends.base import CopyPipeline, StillRunning, run_to_end, suspendable
from drift_retrain.results import CopyResult
from drift_retrain.signals import DriftSignal
from drift_retrain.waiting import Waiting, can_suspend
from tasks.report import report_cancelled


@task(name="copy-window", cache_policy=NO_CACHE)
def copy_window(pipeline: CopyPipeline, signal: DriftSignal, model_name: str) -> CopyResult | Waiting:
    """Start (or reattach to) the signal's copy and wait for it; if the wait is interrupted, cancel it. A run
    still going after the hold is answered ``Waiting`` (a normal outcome: the retrain suspends on it)."""
    try:
        with suspendable(can_suspend()):
            return run_to_end(
                lambda: pipeline.start(signal),
                pipeline.wait,
                pipeline.cancel,
                partial(report_cancelled, "copy", model_name),
            )
    except StillRunning as going:
        return Waiting.of(going.step, going.run_id, going.status, going.next_check, going.deadline)
