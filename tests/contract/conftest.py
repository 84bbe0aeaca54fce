"""Contract tests: the real Azure SDK clients against the loopback HTTPS fake of Azure.

Data Factory: ``fake_azure`` is a started ``FakeAzure``; ``azure_settings`` builds Settings whose one target
runs on the azure backend (Data Factory copy) against it, signing in with a real ClientSecretCredential.
Azure ML: ``ml_fake`` is one fake for the session, ``fake`` the same with a clean slate per test,
``ml_session`` an AzureSession signed in against it (builders in ``ml_fixtures``).
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any, Iterator

import pytest

from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.backends.ledger import FileRunLedger, RunLedger
from drift_retrain.config import AzureConfig, Settings
from drift_retrain.fake_azure import CLIENT_ID, CLIENT_SECRET, TENANT, FakeAzure
from drift_retrain.signals import DriftSignal
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import DEMO_WORKSPACE, dataset_drift
from tests.contract.ml_fixtures import FAST

SECRET_ENV = "DRIFT_RETRAIN_TEST_CLIENT_SECRET"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "drift-retrain-demo"
FACTORY_NAME = "drift-retrain-adf"
FACTORY = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.DataFactory/factories/{FACTORY_NAME}"
PIPELINE = "CopyDriftWindow"
#: Short polls so a scripted run of about a second is watched closely.
FAST_POLLING = {"initial_interval": 0.05, "max_interval": 0.2, "backoff": 1.5, "jitter": 0.1, "timeout_minutes": 1}


@pytest.fixture
def fake_azure() -> Iterator[FakeAzure]:
    with FakeAzure() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _client_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)


def azure_settings(
    tmp_path: Path,
    fake: FakeAzure,
    copy: dict[str, Any] | None = None,
    polling: dict[str, Any] | None = None,
    credential: dict[str, Any] | None = None,
) -> Settings:
    """Settings with one azure target whose copy is the fake's Data Factory pipeline."""
    copy_section = {
        "kind": "data_factory",
        "factory": FACTORY,
        "pipeline": PIPELINE,
        "parameters": {
            "windowStart": "{window_start_date}",
            "windowEnd": "{window_end_date}",
            "sinkFolder": "increments/{model_name}/{signal_key}",
            "maxRows": 100000,
            "overwrite": True,
        },
        "output_uri": "abfss://training@driftretrain.dfs.core.windows.net/increments/{model_name}/{signal_key}",
        **(copy or {}),
    }
    return Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "azure": {
                "credential": credential
                or {"kind": "client_secret", "tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret_env": SECRET_ENV},
                "authority_host": fake.url,
                "resource_manager": fake.url,
                "ca_bundle": str(fake.ca_path),
                "polling": polling or FAST_POLLING,
            },
            "targets": [
                {
                    "name": "credit-default",
                    "backend": "azure",
                    "workspace": DEMO_WORKSPACE,
                    "monitors": ["credit-default-drift"],
                    "model_name": "credit-default",
                    "copy": copy_section,
                    "training": {"kind": "pipeline_job", "component": "train_pipeline:1"},
                }
            ],
        }
    )


def drift_signal(run_id: str = "credit-default-drift_1717000000000") -> DriftSignal:
    """A v1 DatasetDriftDetected signal from the documented sample, for the demo workspace."""
    return to_drift_signal(dataset_drift(run_id))


__all__ = ["FACTORY", "FAST_POLLING", "PIPELINE", "SECRET_ENV", "azure_settings", "drift_signal"]


# -- Azure ML: one fake for the session, reset per test -------------------------------------------


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
    ml.monitoring.reset()
    ml.components.clear()
    ml.batch_endpoints.clear()
    ml.datadrift.reset()
    ml.steps.reset()
    ml._scripts = deque()
    ml.regional_host = None
    ml.forbidden = False
    ml_fake.faults.throttle.clear()
    ml_fake.faults.errors.clear()
    ml_fake.faults.retry_after = 1.0
    ml_fake.requests.clear()
    return ml_fake


@pytest.fixture
def ledger(tmp_path: Path) -> RunLedger:
    return FileRunLedger(tmp_path / "ledger")
