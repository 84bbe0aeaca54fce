"""In-memory implementations of every step's protocol (``backends.base``), for running the flow in-process
in the fast tests: no files, no Azure, no scikit-learn, and each one keeps what was asked of it.

They behave as the protocols promise: starts are keyed by the signal (a second start reattaches), a failed
run raises ``StepFailed``, registration is idempotent per signal, and state changes are logged once each
through ``log_state_change``, as the local and azure backends log them.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Generic, TypeVar

from drift_retrain.backends.base import Backends, StepFailed, log_state_change
from drift_retrain.names import copy_run_key, signal_of, training_run_key
from drift_retrain.results import CopyResult, DriftDetails, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal

Result = TypeVar("Result", CopyResult, TrainingResult)


class MemoryDriftDetails:
    """Details by drift run id; a run it was not told about has none (the decision falls back to the event)."""

    def __init__(self, details: dict[str, DriftDetails] | None = None) -> None:
        self.details = dict(details or {})
        self.fetched: list[str] = []

    def fetch(self, signal: DriftSignal) -> DriftDetails:
        self.fetched.append(signal.run_id)
        return self.details.get(signal.run_id) or DriftDetails(
            available=False,
            source=f"no details of drift run {signal.run_id} in memory; deciding on the event's own data",
        )


class _MemoryRuns(Generic[Result]):
    """What the copy and the training share: runs kept by id (a second start of a signal reattaches), a wait
    that raises ``StepFailed`` for a run that did not succeed, and the cancels asked for."""

    step: str
    succeeded: str

    def __init__(self, failure: str | None) -> None:
        self.failure = failure
        self.runs: dict[str, Result] = {}
        self.cancelled: list[str] = []
        self._reattached: set[str] = set()

    def _reattach(self, run_id: str) -> bool:
        if run_id in self.runs:
            self._reattached.add(run_id)
            return True
        return False

    def wait(self, run_id: str) -> Result:
        result = self.runs.get(run_id)
        if result is None:
            raise StepFailed(self.step, run_id, "NotFound", f"no {self.step} run {run_id} in memory")
        if result.status != self.succeeded:
            raise StepFailed(self.step, run_id, result.status, self.failure or "failed")
        return result.model_copy(update={"reattached": run_id in self._reattached})

    def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)


class MemoryCopy(_MemoryRuns[CopyResult]):
    """A copy that moves ``rows`` rows at once; ``failure`` makes every run end Failed with that message;
    ``binary`` reports it as Data Factory reports an as-is file copy: files and bytes, no row counts."""

    step, succeeded = "copy", "Succeeded"

    def __init__(
        self, rows: int = 1000, bytes_per_row: int = 64, failure: str | None = None, binary: bool = False
    ) -> None:
        super().__init__(failure)
        self.rows, self.bytes_per_row, self.binary = rows, bytes_per_row, binary
        self.started: list[str] = []  # run ids, once per start that was not a reattach

    def start(self, signal: DriftSignal) -> str:
        run_id = copy_run_key(signal)
        if self._reattach(run_id):
            return run_id  # this signal's copy already ran
        log_state_change("copy", run_id, None, "InProgress")
        status = "Failed" if self.failure else "Succeeded"
        size = self.rows * self.bytes_per_row
        self.runs[run_id] = CopyResult(
            run_id=run_id,
            status=status,
            rows_read=None if self.binary else self.rows,
            rows_copied=None if self.binary else 0 if self.failure else self.rows,
            data_read=size,
            data_written=0 if self.failure else size,
            files_read=1 if self.rows else 0,
            files_written=1 if self.rows and not self.failure else 0,
            copy_duration=0.001,
            throughput=round(size / 1024 / 0.001, 1),
            output_uri=f"memory://training-store/increments/{run_id}",
        )
        log_state_change("copy", run_id, "InProgress", status)
        self.started.append(run_id)
        return run_id


class MemoryTraining(_MemoryRuns[TrainingResult]):
    """A training job that reports ``metrics`` at once; ``failure`` makes every job end Failed."""

    step, succeeded = "training", "Completed"

    def __init__(self, metrics: dict[str, float] | None = None, failure: str | None = None) -> None:
        super().__init__(failure)
        self.metrics = dict(metrics if metrics is not None else {"accuracy": 0.9, "roc_auc": 0.9, "f1": 0.8})
        self.submitted: list[tuple[str, str]] = []  # (job id, the copy run it trained on)

    def submit(self, signal: DriftSignal, data: CopyResult) -> str:
        job_id = training_run_key(signal)
        if self._reattach(job_id):
            return job_id  # already trained for this signal
        log_state_change("training", job_id, None, "Running")
        status = "Failed" if self.failure else "Completed"
        rows = data.rows_copied or 0  # a binary copy counts no rows: the split's sizes are then unknown, 0
        self.runs[job_id] = TrainingResult(
            job_id=job_id,
            status=status,
            metrics={} if self.failure else self.metrics,
            rows_train=int(rows * 0.75),
            rows_test=rows - int(rows * 0.75),
            model_uri=f"memory://jobs/{job_id}/model.joblib",
            duration=0.001,
        )
        log_state_change("training", job_id, "Running", status)
        self.submitted.append((job_id, data.run_id))
        return job_id


class MemoryRegistry:
    """Versions per model name, numbered from 1; safe to share between a flow and another thread (the
    tests play a concurrent retrain with it), which can wait until the flow has read the history."""

    def __init__(self, versions: list[ModelVersion] | None = None) -> None:
        self._versions: dict[str, list[ModelVersion]] = {}
        self._changed = threading.Condition()
        self.reads = 0  # calls of ``versions``: the flow reads the history to decide, re-decide, pick a champion
        for version in versions or []:
            self.add(version)

    def add(self, version: ModelVersion) -> ModelVersion:
        """Put a version in as it is (an earlier retrain, or one that finished meanwhile)."""
        with self._changed:
            self._versions.setdefault(version.name, []).append(version)
            self._changed.notify_all()
        return version

    def versions(self, name: str) -> list[ModelVersion]:
        with self._changed:
            self.reads += 1
            self._changed.notify_all()
            return sorted(self._versions.get(name, []), key=lambda v: v.version)

    def register(self, name: str, training: TrainingResult, tags: dict[str, str]) -> ModelVersion:
        with self._changed:
            existing = self._versions.get(name, [])
            signal = signal_of(tags)
            for version in existing:
                if signal and signal_of(version.tags) == signal:
                    return version.model_copy(update={"already_registered": True})
            number = max((v.version for v in existing), default=0) + 1
            version = ModelVersion(
                name=name,
                version=number,
                uri=f"memory://registry/{name}/{number}/model.joblib",
                created_at=datetime.now(UTC),
                tags=tags,
                metrics=training.metrics,
            )
            return self.add(version)

    def wait_for_reads(self, count: int, timeout: float = 60) -> bool:
        """Block until ``versions`` was called ``count`` times in all; False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.reads < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


def memory_backends(
    details: MemoryDriftDetails | None = None,
    copy: MemoryCopy | None = None,
    training: MemoryTraining | None = None,
    registry: MemoryRegistry | None = None,
) -> Backends:
    """Every step in memory; pass the ones a test configures or inspects."""
    return Backends(
        details=details or MemoryDriftDetails(),
        copy=copy or MemoryCopy(),
        training=training or MemoryTraining(),
        registry=registry or MemoryRegistry(),
    )
