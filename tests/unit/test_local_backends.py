"""The local backend's steps: monitor, details, copy, training, registry; each real, each idempotent."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import joblib
import numpy as np
import pytest

from drift_retrain.backends.base import StepFailed
from drift_retrain.backends.local import local_backends
from drift_retrain.backends.local.copy import LocalCopy
from drift_retrain.backends.local.monitor import drift_event, latest_window, monitor_store, run_monitor
from drift_retrain.backends.local.registry import FileModelRegistry
from drift_retrain.config import Settings
from drift_retrain.names import SIGNAL_TAG
from drift_retrain.results import TrainingResult
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import sample


#: Real scikit-learn drift statistics (and training) on seeded demo data: seconds each, so not in ``make test-fast``.
slow = pytest.mark.slow


@pytest.fixture
def monitored(demo_settings: Settings):
    run = run_monitor(demo_settings.local_monitors[0], demo_settings)
    return demo_settings, run, to_drift_signal(drift_event(run))


@slow
def test_monitor_detects_the_seeded_shift_and_records_the_run(monitored) -> None:
    settings, run, _ = monitored
    assert run.has_drift and run.drift_coefficient >= 0.3
    assert run.rows_in_window == 7 * 300
    assert {f.feature for f in run.features[:3]} == {"age", "income", "utilization"}  # the shifted ones
    assert "defaulted" not in {f.feature for f in run.features}  # the label is not a feature
    assert monitor_store(settings).load(run.monitor, run.run_id) == run


@slow
def test_monitor_run_id_is_deterministic_per_window(monitored) -> None:
    settings, run, _ = monitored
    again = run_monitor(settings.local_monitors[0], settings)
    assert again.run_id == run.run_id
    start, end = latest_window(settings.local_monitors[0], settings)
    assert run.run_id == f"{run.monitor_id}_{int(end.timestamp() * 1000)}"
    assert end - start == timedelta(days=7)


@slow
def test_drift_event_has_exactly_the_documented_shape(monitored) -> None:
    _, run, signal = monitored
    documented = sample("eg_DatasetDriftDetected.json")[0]
    event = drift_event(run)
    assert event.keys() == documented.keys()
    assert event["data"].keys() == documented["data"].keys()
    assert event["subject"] == f"datadrifts/{run.monitor_id}/runs/{run.run_id}"
    assert signal.run_id == run.run_id and signal.drift_coefficient == run.drift_coefficient


@slow
def test_details_come_from_the_monitor_record(monitored) -> None:
    settings, run, signal = monitored
    backends = local_backends(settings, settings.targets[0])
    details = backends.details.fetch(signal)
    assert details.available and details.rows_in_window == run.rows_in_window
    assert details.drift_coefficient == run.drift_coefficient
    unknown = signal.model_copy(update={"run_id": "never-ran"})
    missing = backends.details.fetch(unknown)
    assert not missing.available and "deciding on the event's own data" in missing.source


@slow
def test_copy_takes_the_window_reports_like_data_factory_and_reattaches(monitored) -> None:
    settings, run, signal = monitored
    target = settings.targets[0]
    source = settings.resolve(target.copy_step.source)
    outside = source / f"date={(run.window_start - timedelta(days=3)):%Y-%m-%d}"
    outside.mkdir()
    (outside / "part-0000.csv").write_text((source.iterdir().__next__() / "part-0000.csv").read_text())

    copy = local_backends(settings, target).copy
    result = copy.wait(copy.start(signal))
    assert (result.rows_read, result.rows_copied, result.files_written) == (2100, 2100, 7)
    assert result.data_written == sum(f.stat().st_size for f in source.rglob("*.csv")) - (outside / "part-0000.csv").stat().st_size
    assert not result.reattached
    copied = sorted(Path(result.output_uri).rglob("*.csv"))
    assert len(copied) == 7 and outside.name not in {p.parent.name for p in copied}

    fresh = local_backends(settings, target).copy  # a rerun in a new process
    again = fresh.wait(fresh.start(signal))
    assert again.reattached and again.run_id == result.run_id
    assert len(list((settings.resolve(target.copy_step.sink) / "increments").iterdir())) == 1


@slow
def test_copy_of_a_window_without_data_copies_nothing(monitored, tmp_path: Path) -> None:
    _, _, signal = monitored
    later = signal.model_copy(update={"run_id": "later", "window_start": datetime(2030, 1, 1, tzinfo=timezone.utc), "window_end": datetime(2030, 1, 8, tzinfo=timezone.utc)})
    copy = LocalCopy(source=tmp_path / "empty", sink=tmp_path / "sink", runs=tmp_path / "runs")
    result = copy.wait(copy.start(later))
    assert result.rows_copied == 0 and result.files_written == 0


def test_wait_on_an_unknown_run_fails_with_its_id(tmp_path: Path) -> None:
    copy = LocalCopy(source=tmp_path, sink=tmp_path, runs=tmp_path / "runs")
    with pytest.raises(StepFailed, match="copy run nope ended NotFound"):
        copy.wait("nope")


@slow
def test_training_is_real_and_reattaches(monitored) -> None:
    settings, _, signal = monitored
    backends = local_backends(settings, settings.targets[0])
    data = backends.copy.wait(backends.copy.start(signal))
    result = backends.training.wait(backends.training.submit(signal, data))
    assert result.status == "Completed"
    assert result.rows_train + result.rows_test == 5000 + 2100
    assert 0.7 < result.metrics["roc_auc"] <= 1
    assert set(result.metrics) == {"accuracy", "roc_auc", "f1", "window_roc_auc"}
    bundle = joblib.load(result.model_uri)
    assert bundle["features"] == ["age", "income", "debt_ratio", "credit_lines", "late_payments", "utilization"]
    assert set(bundle["model"].predict(np.array([[40, 50000, 0.3, 5, 0, 0.5]]))) <= {0, 1}

    rerun = local_backends(settings, settings.targets[0]).training
    again = rerun.wait(rerun.submit(signal, data))
    assert again.reattached and again.job_id == result.job_id and again.metrics == result.metrics


def _training(tmp_path: Path) -> TrainingResult:
    model = tmp_path / "model.joblib"
    model.write_bytes(b"model-bytes")
    return TrainingResult(job_id="j", status="Completed", metrics={"roc_auc": 0.9}, rows_train=1, rows_test=1, model_uri=str(model), duration=0)


def test_registry_versions_and_is_idempotent_per_signal(tmp_path: Path) -> None:
    registry = FileModelRegistry(tmp_path / "registry")
    training = _training(tmp_path)
    first = registry.register("m", training, {SIGNAL_TAG: "ws/runs/1", "drift.run_id": "1"})
    second = registry.register("m", training, {SIGNAL_TAG: "ws/runs/2"})
    repeat = registry.register("m", training, {SIGNAL_TAG: "ws/runs/1"})
    assert (first.version, second.version) == (1, 2)
    assert repeat.version == 1 and repeat.already_registered
    assert [v.version for v in registry.versions("m")] == [1, 2]
    assert registry.versions("m")[0].tags["drift.run_id"] == "1"
    assert Path(first.uri).read_bytes() == b"model-bytes"
    assert not [p for p in (tmp_path / "registry" / "m").iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_concurrent_registrations_never_share_a_version(tmp_path: Path) -> None:
    registry = FileModelRegistry(tmp_path / "registry")
    training = _training(tmp_path)
    results = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(registry.register("m", training, {SIGNAL_TAG: f"s{i % 10}"})))
        for i in range(30)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = registry.versions("m")
    assert sorted(v.version for v in versions) == list(range(1, 11))  # 10 distinct signals, 10 versions
    assert len({v.tags[SIGNAL_TAG] for v in versions}) == 10
    assert sum(not r.already_registered for r in results) == 10
