"""The flow in-process: one ``prefect_test_harness`` (a real, ephemeral Prefect server on SQLite) for the whole
session, each test's own target (so its model's artifacts, limit and registry are its own) and in-memory steps
given to the flow through ``backends_in_process``. What a test asserts it reads back from the Prefect API."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from drift_retrain.backends import backends_in_process
from drift_retrain.backends.base import Backends
from drift_retrain.concurrency import ensure_limits
from drift_retrain.config import CONFIG_ENV, Settings, load_settings
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.results import RetrainOutcome
from drift_retrain.signals import DriftSignal
from drift_retrain.testing import DEMO_WORKSPACE, RetryWhileBusy, dataset_drift, local_target, write_config

WINDOW_END = datetime(2026, 11, 23, tzinfo=timezone.utc)


@pytest.fixture(scope="package")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The one Prefect server of these tests; an HTTP client on its API (what the UI reads too). Package-scoped:
    the harness points this whole process at its server, so it ends with tests/flow, before any other test runs."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    quiet = {
        PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("prefect-results"),  # the flow persists its result
        PREFECT_SERVER_ANALYTICS_ENABLED: False,  # its first write races the harness's own and logs a lock error
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL: 0.25,  # the run's log lines reach the server sooner than every 2 s
    }
    with temporary_settings(quiet), prefect_test_harness(server_startup_timeout=120):
        # SQLite's 503 while another writer holds the lock is tried again, as Prefect's own client does
        with httpx.Client(base_url=PREFECT_API_URL.value(), timeout=30, transport=RetryWhileBusy()) as client:
            yield client


@dataclass
class Target:
    """One test's target: its own monitor and model, in a config file the flow loads ($DRIFT_RETRAIN_CONFIG)."""

    settings: Settings
    name: str
    monitor: str
    model: str

    def signal(self, run_id: str, coefficient: float = 0.6, days: int = 7, end: datetime = WINDOW_END) -> DriftSignal:
        """A DatasetDriftDetected for this target's monitor over ``days`` days ending ``end``."""
        event = dataset_drift(
            run_id, monitor=self.monitor, workspace=DEMO_WORKSPACE, DriftCoefficient=coefficient,
            StartTime=(end - timedelta(days=days)).isoformat(), EndTime=end.isoformat(),
        )
        return to_drift_signal(event)


@pytest.fixture
def make_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_api: httpx.Client) -> Callable[..., Target]:
    """``make_target(policy="...", gate="...")``: write the config, point the flow at it, create the model's
    concurrency limit on the server (as the runner does at start; the flow's slot is strict)."""

    def make(policy: str = "min_rows = 100, cooldown_minutes = 60", gate: str = "") -> Target:
        name = f"fast-{uuid.uuid4().hex[:8]}"
        extra = f"[targets.gate]\n{gate}\n" if gate else ""
        block = local_target(name, [f"{name}-drift"], model_name=f"{name}-model", policy=policy, extra=extra)
        monkeypatch.setenv(CONFIG_ENV, str(write_config(tmp_path, extra=block)))
        settings = load_settings()
        ensure_limits(settings)
        return Target(settings, name, f"{name}-drift", f"{name}-model")

    return make


@dataclass
class Run:
    """A finished flow run: what the flow returned and its id on the server."""

    outcome: RetrainOutcome
    id: str


def run_flow(backends: Backends, **parameters: Any) -> Run:
    """``drift_to_retrain`` called in this process, its steps from ``backends``."""
    from flows.drift_to_retrain import drift_to_retrain

    with backends_in_process(lambda settings, target: backends):
        state = drift_to_retrain(**parameters, return_state=True)
    assert state.is_completed(), state.message
    return Run(state.result(), str(state.state_details.flow_run_id))


def artifacts(api: httpx.Client, flow_run_id: str) -> dict[str, dict[str, Any]]:
    """The run's artifacts by key, the latest of each; a table's rows parsed."""
    found = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "CREATED_DESC"})
    found.raise_for_status()
    latest = {a["key"]: a for a in reversed(found.json()) if a["key"]}  # keyless: the persisted result
    for artifact in latest.values():
        if artifact["type"] == "table" and isinstance(artifact["data"], str):
            artifact["data"] = json.loads(artifact["data"])
    return latest


def logs(api: httpx.Client, flow_run_id: str, until: str, timeout: float = 20) -> list[str]:
    """The run's log lines, oldest first; lines reach the server in batches, so wait until one contains ``until``."""
    deadline = time.monotonic() + timeout
    while True:
        query = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        response = api.post("/logs/filter", json=query)
        response.raise_for_status()
        lines = [log["message"] for log in response.json()]
        if any(until in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.25)
