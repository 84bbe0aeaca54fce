"""The in-memory steps keep the promises of backends.base that the flow relies on (so the fast flow tests
exercise the flow, not a looser stand-in): keyed starts reattach, failures raise StepFailed, registration is
idempotent per signal, and a concurrent reader can wait for the flow to read the history."""

from __future__ import annotations

import threading

import pytest

from drift_retrain.backends.base import StepFailed
from drift_retrain.names import SIGNAL_TAG
from drift_retrain.backends.memory import MemoryCopy, MemoryDriftDetails, MemoryRegistry, MemoryTraining
from drift_retrain.signals import DriftSignal, SignalKind

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def signal(run_id: str = "drift_1") -> DriftSignal:
    return DriftSignal(kind=SignalKind.DATASET_DRIFT, workspace_id=WS, monitor="m", run_id=run_id, event_id="e")


def copied(rows: int = 500):
    copy = MemoryCopy(rows=rows)
    return copy.wait(copy.start(signal()))


def test_a_second_start_of_the_same_signal_reattaches_to_the_first_run() -> None:
    copy, training = MemoryCopy(rows=500), MemoryTraining({"roc_auc": 0.9})
    first = copy.wait(copy.start(signal()))
    again = copy.wait(copy.start(signal()))
    assert (first.run_id, first.rows_copied, first.reattached) == (again.run_id, 500, False) and again.reattached
    assert copy.started == [first.run_id]
    job = training.wait(training.submit(signal(), first))
    assert job.metrics == {"roc_auc": 0.9} and not job.reattached
    assert training.wait(training.submit(signal(), first)).reattached and len(training.submitted) == 1


def test_a_binary_copy_reports_files_and_bytes_but_no_rows_and_training_still_runs_on_it() -> None:
    copy = MemoryCopy(rows=500, binary=True)
    result = copy.wait(copy.start(signal()))
    assert (result.rows_read, result.rows_copied, result.files_written, result.data_written) == (None, None, 1, 500 * 64)
    training = MemoryTraining({"roc_auc": 0.9})
    job = training.wait(training.submit(signal(), result))
    assert (job.status, job.rows_train, job.rows_test) == ("Completed", 0, 0)  # split sizes unknown without rows


def test_a_failed_run_raises_step_failed_with_the_message() -> None:
    copy = MemoryCopy(failure="sink unreachable")
    with pytest.raises(StepFailed, match="sink unreachable"):
        copy.wait(copy.start(signal()))
    training = MemoryTraining(failure="out of memory")
    with pytest.raises(StepFailed, match="out of memory"):
        training.wait(training.submit(signal(), copied()))


def test_details_of_an_unknown_drift_run_are_unavailable_not_an_error() -> None:
    details = MemoryDriftDetails()
    assert not details.fetch(signal("never-ran")).available and details.fetched == ["never-ran"]


def test_registration_is_idempotent_per_signal_and_numbers_versions() -> None:
    jobs = MemoryTraining()
    registry, training = MemoryRegistry(), jobs.wait(jobs.submit(signal(), copied()))
    v1 = registry.register("model", training, {SIGNAL_TAG: "a"})
    v2 = registry.register("model", training, {SIGNAL_TAG: "b"})
    again = registry.register("model", training, {SIGNAL_TAG: "a"})
    assert (v1.version, v2.version, again.version, again.already_registered) == (1, 2, 1, True)
    assert [v.version for v in registry.versions("model")] == [1, 2] and registry.versions("other") == []


def test_a_concurrent_reader_waits_until_the_history_was_read() -> None:
    registry = MemoryRegistry()
    assert not registry.wait_for_reads(1, timeout=0.05)
    threading.Timer(0.05, registry.versions, args=("model",)).start()
    assert registry.wait_for_reads(1, timeout=10)
