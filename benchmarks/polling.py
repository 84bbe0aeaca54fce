"""Polling economy: status calls and completion-detection delay of the azure backend's waits, on the
loopback Azure with scripted run durations, against a fixed 60 s poll (Airflow's Data Factory operator
default), side by side in the same run.

The real SDK clients talk HTTPS to the fake; the poller and the fake's scripted runs share one virtual
clock that moves only when the poller sleeps, so a six-hour run replays in a moment. Each run is queued
for a random 0-30 s before it runs for its stated duration (seeded), so the poll's phase varies.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
from pathlib import Path
from typing import Any

from drift_retrain.backends.azure.datafactory import DataFactoryCopy
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.azure.training import training_pipeline
from drift_retrain.backends.ledger import FileRunLedger
from drift_retrain.config import AzureTarget, PollingConfig, Settings
from drift_retrain.fake_azure import CLIENT_ID, CLIENT_SECRET, TENANT, FakeAzure, RunScript
from drift_retrain.results import CopyResult
from drift_retrain.intake.parsing import to_drift_signal

from benchmarks.common import Figure, Row
from drift_retrain.testing import dataset_drift

DURATIONS = {"1 min": 60, "10 min": 600, "1 h": 3600, "6 h": 6 * 3600}
FIXED_60S = PollingConfig(initial_interval=60, max_interval=60, backoff=1, jitter=0, patience=0,
                          max_patient_interval=60, timeout_minutes=24 * 60)
DEFAULT = PollingConfig(timeout_minutes=24 * 60)  # the shipped defaults; only the timeout is lifted
SECRET_ENV = "DRIFT_RETRAIN_BENCH_CLIENT_SECRET"
WORKSPACE = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench/providers/"
             "Microsoft.MachineLearningServices/workspaces/bench-ws")
FACTORY = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/bench/providers/Microsoft.DataFactory/factories/bench-adf"
PIPELINE = "CopyDriftWindow"


class VirtualClock:
    """Seconds that pass only when someone sleeps; read by the poller and by the fake's scripted runs."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(seconds, 0.0)


def _settings(fake: FakeAzure, state: Path, polling: PollingConfig) -> Settings:
    return Settings.model_validate({
        "state_dir": str(state),
        "azure": {
            "credential": {"kind": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret_env": SECRET_ENV},
            "authority_host": fake.url, "resource_manager": fake.url, "ca_bundle": str(fake.ca_path),
            "polling": polling.model_dump(),
        },
        "targets": [{
            "name": "bench", "backend": "azure", "workspace": WORKSPACE, "monitors": ["bench-drift"],
            "model_name": "bench",
            "copy": {"kind": "data_factory", "factory": FACTORY, "pipeline": PIPELINE,
                     "output_uri": "abfss://training@bench.dfs.core.windows.net/{signal_key}"},
            "training": {"kind": "published_pipeline", "pipeline_id": "bench-pub"},
            "registry": {"kind": "azure_ml", "model_type": "mlflow_model", "path": "model/"},
        }],
    })


def _signal(n: int) -> Any:
    return to_drift_signal(dataset_drift(f"bench-drift_{1_700_000_000_000 + n}", workspace=WORKSPACE))


def measure(repeats: int = 11, seed: int = 6, durations: dict[str, float] = DURATIONS) -> list[Row]:
    os.environ[SECRET_ENV] = CLIENT_SECRET
    clock = VirtualClock()
    rng = random.Random(seed)
    results: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp, FakeAzure(workdir=Path(tmp) / "fake", clock=clock) as fake:
        n = 0
        for policy_name, policy in (("adaptive", DEFAULT), ("fixed 60 s", FIXED_60S)):
            settings = _settings(fake, Path(tmp) / policy_name.replace(" ", ""), policy)
            session = AzureSession.from_config(settings.azure)
            target = settings.targets[0]
            assert isinstance(target, AzureTarget)  # _settings configures an azure target
            ledger = FileRunLedger(Path(tmp) / "ledger" / policy_name.replace(" ", ""))
            timing = {"clock": clock, "sleep": clock.sleep, "rng": rng.random}
            copy = DataFactoryCopy(session, target, ledger, **timing)
            training = training_pipeline(session, target, ledger, **timing)
            for label, seconds in durations.items():
                for _ in range(repeats):
                    n += 1
                    queued = rng.uniform(0, 30)
                    signal = _signal(n)
                    calls, delay = _adf_run(fake, copy, signal, queued, seconds, clock)
                    _keep(results, ("Data Factory", label, policy_name), calls, delay)
                    calls, delay = _ml_run(fake, training, signal, queued, seconds, clock)
                    _keep(results, ("Azure ML", label, policy_name), calls, delay)
            copy.close()
    return _rows(results, repeats, durations)


def _keep(results: dict, key: tuple[str, str, str], calls: int, delay: float) -> None:
    found = results.setdefault(key, ([], []))
    found[0].append(calls)
    found[1].append(delay)


def _adf_run(fake: FakeAzure, copy: DataFactoryCopy, signal: Any, queued: float, seconds: float,
             clock: VirtualClock) -> tuple[int, float]:
    fake.datafactory.script(PIPELINE, RunScript(steps=(("Queued", queued), ("InProgress", seconds)), final="Succeeded"))
    run_id = copy.start(signal)
    copy.wait(run_id)
    run = fake.datafactory.runs[run_id].run
    return run.status_calls, clock() - (run.ended_at or clock())


def _ml_run(fake: FakeAzure, training: Any, signal: Any, queued: float, seconds: float,
            clock: VirtualClock) -> tuple[int, float]:
    fake.ml.script_next_job(RunScript(steps=(("NotStarted", queued), ("Running", seconds)), final="Completed"))
    data = CopyResult(run_id="adf", status="Succeeded", rows_read=1, rows_copied=1, data_read=1, data_written=1,
                      files_read=1, files_written=1, copy_duration=1.0, throughput=1.0, output_uri="abfss://x/y")
    job_id = training.submit(signal, data)
    training.wait(job_id)
    run = fake.ml.jobs[job_id].run
    return run.status_calls, clock() - (run.ended_at or clock())


def _rows(results: dict, repeats: int, durations: dict[str, float]) -> list[Row]:
    rows = []
    for service in ("Data Factory", "Azure ML"):
        for label, seconds in durations.items():
            calls, delays = results[(service, label, "adaptive")]
            fixed_calls, fixed_delays = results[(service, label, "fixed 60 s")]
            ours, theirs = Figure.of(calls), Figure.of(fixed_calls)
            delay, fixed_delay = Figure.of(delays), Figure.of(fixed_delays)
            ratio = ours.median / theirs.median
            if seconds >= 3600:
                target, met = "calls <= 1/2 of fixed", ratio <= 0.5
            else:
                target, met = "median delay <= 15 s", delay.median <= 15
            rows.append(Row(
                "polling", f"{service} run of {label}: status calls, detection delay s",
                f"{ours.show(0)} calls ({ratio:.2f}x); delay {delay.show(1)}",
                f"fixed 60 s: {theirs.show(0)} calls; delay {fixed_delay.show(1)}",
                target, met,
                {"calls": ours, "fixed_calls": theirs, "delay_s": delay, "fixed_delay_s": fixed_delay,
                 "calls_ratio": round(ratio, 3), "repeats": repeats},
            ))
    return rows


if __name__ == "__main__":
    for row in measure(repeats=int(__import__("sys").argv[1]) if len(__import__("sys").argv) > 1 else 3):
        print(row.what, "|", row.value, "|", row.reference, "|", row.target, row.met)
