"""Fixtures for the Azure ML contract tests: one loopback fake for the session, a real
ClientSecretCredential against its token endpoint, and builders for targets, signals and copy results.

Imported by the ``test_ml_*`` modules (not a conftest, so it merges beside the Data Factory one).
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import pytest

from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.ledger import RunLedger
from drift_retrain.config import AzureConfig, PollingConfig, TargetConfig
from drift_retrain.fake_azure import CLIENT_ID, CLIENT_SECRET, TENANT, FakeAzure, RunScript
from drift_retrain.results import CopyResult
from drift_retrain.signals import DriftSignal, to_drift_signal
from tests.conftest import dataset_drift

WS = "/subscriptions/00000000-0000-0000-0000-00000000c0de/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws"
PIPELINE_YAML = Path(__file__).resolve().parent / "data" / "train_pipeline_job.yml"
SECRET_ENV = "DRIFT_RETRAIN_TEST_ML_SECRET"
FAST = PollingConfig(initial_interval=0.05, max_interval=0.2, jitter=0.0, timeout_minutes=1)


@pytest.fixture(scope="session")
def ml_fake() -> Iterator[FakeAzure]:
    with FakeAzure() as fake:
        yield fake


@pytest.fixture(scope="session")
def ml_session(ml_fake: FakeAzure) -> AzureSession:
    os.environ[SECRET_ENV] = CLIENT_SECRET
    config = AzureConfig.model_validate({
        "credential": {"kind": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID,
                       "client_secret_env": SECRET_ENV},
        "authority_host": ml_fake.url,
        "resource_manager": ml_fake.url,
        "ca_bundle": str(ml_fake.ca_path),
        "polling": FAST.model_dump(),
    })
    return AzureSession.from_config(config)


@pytest.fixture
def fake(ml_fake: FakeAzure) -> FakeAzure:
    """The session's fake with a clean slate: no jobs, models, scripts, faults or recorded requests."""
    ml = ml_fake.ml
    ml.jobs.clear()
    ml.models.clear()
    ml.drift_runs.clear()
    ml.components.clear()
    ml.batch_endpoints.clear()
    ml._scripts = deque()
    ml_fake.faults.throttle.clear()
    ml_fake.faults.errors.clear()
    ml_fake.requests.clear()
    return ml_fake


@pytest.fixture
def ledger(tmp_path: Path) -> RunLedger:
    return RunLedger(tmp_path / "ledger")


def target(training: dict[str, Any], registry: dict[str, Any] | None = None, model_name: str = "credit-default") -> TargetConfig:
    """An azure target on the fake's workspace with the given training section."""
    return TargetConfig.model_validate({
        "name": "credit-default",
        "backend": "azure",
        "workspace": WS,
        "monitors": ["credit-default-drift"],
        "model_name": model_name,
        "copy": {"kind": "data_factory",
                 "factory": "/subscriptions/00000000-0000-0000-0000-00000000c0de/resourceGroups/ml-rg/providers/Microsoft.DataFactory/factories/adf",
                 "pipeline": "copy-window",
                 "output_uri": "azureml://datastores/training/paths/credit-default/{window_end_date}/"},
        "training": {"polling": FAST.model_dump(), **training},
        "registry": registry or {"kind": "azure_ml", "model_type": "mlflow_model", "path": "model/"},
    })


def signal(run_id: str = "drift_1571590300380") -> DriftSignal:
    return to_drift_signal(dataset_drift(run_id, workspace=WS))


def copied(sig: DriftSignal) -> CopyResult:
    return CopyResult(
        run_id="adf-run-7", status="Succeeded", rows_read=1200, rows_copied=1200, data_read=90_000,
        data_written=90_000, files_read=3, files_written=3, copy_duration=12.0, throughput=7.5,
        output_uri=f"azureml://datastores/training/paths/credit-default/{sig.window_end.date() if sig.window_end else 'x'}/",
    )


def script(*steps: tuple[str, float], final: str | None = "Completed", message: str = "", never: bool = False) -> RunScript:
    return RunScript(steps=tuple(steps), final=final, message=message, never_finishes=never)


QUICK = script(("NotStarted", 0.05), ("Running", 0.15))
