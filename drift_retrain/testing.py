"""What tests and benchmarks build on: the verbatim Azure samples turned into events for a workspace,
a config in a temporary state dir, a bare Prefect server (no runner, so created runs stay Scheduled and
cost nothing), an ASGI app under real uvicorn, and every step in memory (``drift_retrain.backends.memory``,
given to an in-process flow run with ``backends_in_process``). Needs a checkout (it reads tests/fixtures).

For a suite that holds on a busy machine: ``RetryWhileBusy`` (Prefect's 503 while SQLite is locked is "try
again"), ``spawn`` and ``stop_strays`` (no process a test started outlives the run). Event Grid's own
retries live with the sender: ``drift_retrain.devstack.sender.deliver_events``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from drift_retrain.backends import backends_in_process  # noqa: F401  (re-exported: the in-process seam)
from drift_retrain.backends.memory import (  # noqa: F401  (re-exported: every step in memory)
    MemoryCopy,
    MemoryDriftDetails,
    MemoryRegistry,
    MemoryTraining,
    memory_backends,
)
from drift_retrain.breaches import BREACH_TAG, breach_text
from drift_retrain.devstack.stack import (
    HOST,
    PROJECT_DIR,
    STARTUP_SECONDS,
    child_options,
    free_port,
    prefect_settings,
    stop_group,
)
from drift_retrain.names import RETRAIN_DEPLOYMENT_NAME, RETRAIN_FLOW
from drift_retrain.results import CopyResult, TrainingResult

ROOT = PROJECT_DIR  # the checkout: drift-retrain.toml, tests/fixtures
SAMPLES = ROOT / "tests" / "fixtures" / "eventgrid"
SAMPLE_WORKSPACE = (
    "/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}"
    "/providers/Microsoft.MachineLearningServices/workspaces/{workspace-name}"
)
DEMO_WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/drift-retrain-demo"
    "/providers/Microsoft.MachineLearningServices/workspaces/demo-workspace"
)


def sample(name: str) -> Any:
    """A verbatim Microsoft docs sample from tests/fixtures/eventgrid/."""
    return json.loads((SAMPLES / name).read_text())


def copy_result(**fields: Any) -> CopyResult:
    """A finished copy (one row, one file, one byte into ``abfss://x``) with the given fields overridden: the
    stand-in of tests and benchmarks where only some of a copy's figures matter."""
    base: dict[str, Any] = {
        "run_id": "adf-1",
        "status": "Succeeded",
        "rows_read": 1,
        "rows_copied": 1,
        "data_read": 1,
        "data_written": 1,
        "files_read": 1,
        "files_written": 1,
        "copy_duration": 1.0,
        "throughput": 1.0,
        "output_uri": "abfss://x",
    }
    return CopyResult(**(base | fields))


def training_result(**fields: Any) -> TrainingResult:
    """A finished training run (no metrics, one row each side) with the given fields overridden."""
    base: dict[str, Any] = {
        "job_id": "train-1",
        "status": "Completed",
        "metrics": {},
        "rows_train": 1,
        "rows_test": 1,
        "model_uri": "x",
        "duration": 1.0,
    }
    return TrainingResult(**(base | fields))


def dataset_drift(
    run_id: str, monitor: str = "credit-default-drift", workspace: str = DEMO_WORKSPACE, **data: Any
) -> dict:
    """The documented DatasetDriftDetected sample for our workspace and monitor, with a fresh event id
    (as a new publication would have) and any other data fields overridden."""
    event = sample("eg_DatasetDriftDetected.json")[0]
    event["topic"] = workspace
    event["id"] = str(uuid.uuid4())
    event["data"].update(RunId=run_id, DataDriftName=monitor, **data)
    return event


def write_config(directory: Path, extra: str = "", **replace: str) -> Path:
    """The shipped drift-retrain.toml with its state_dir moved into ``directory``, regex edits applied
    and ``extra`` TOML appended."""
    text = (ROOT / "drift-retrain.toml").read_text() + extra
    text = text.replace('state_dir = ".drift-retrain"', f'state_dir = "{directory / "state"}"')
    for pattern, value in replace.items():
        text, count = re.subn(pattern, value, text)
        assert count, f"config edit {pattern!r} matched nothing"
    path = directory / "drift-retrain.toml"
    path.write_text(text)
    return path


def demo_data_targets(models: list[str], policy: str, *, v2_monitor: bool = True) -> str:
    """Local targets that each read the demo's credit-default data (its landing folder and reference) under
    their own model name, with a v1 monitor ``<model>-drift`` and (``v2_monitor``) a v2 monitor
    ``<model>-monitor``: the storm and restart tests' many models."""
    return "".join(
        local_target(
            model,
            [f"{model}-drift", f"{model}-monitor"] if v2_monitor else [f"{model}-drift"],
            model_name=model,
            data=model,
            landing="credit-default",
            reference="data/training-store/credit-default/reference.csv",
            label="defaulted",
            policy=policy,
        )
        for model in models
    )


def local_target(
    name: str,
    monitors: list[str],
    workspace: str = DEMO_WORKSPACE,
    *,
    model_name: str | None = None,
    data: str | None = None,
    landing: str | None = None,
    reference: str | None = None,
    label: str = "y",
    policy: str = "",
    extra: str = "",
) -> str:
    """One ``[[targets]]`` block on the local backend, as TOML to append to a test config. ``data`` names
    its landing and training-store folders (``landing`` another landing folder); ``policy`` is an inline
    table body; ``extra`` follows the block (e.g. its ``[[targets.subscriptions]]``)."""
    data = data or name
    reference = reference or f"data/training-store/{data}/reference.csv"
    lines = [
        "",
        "[[targets]]",
        f'name = "{name}"',
        'backend = "local"',
        f'workspace = "{workspace}"',
        f"monitors = {json.dumps(monitors)}",
        f'model_name = "{model_name or name + "-model"}"',
        *([f"policy = {{ {policy} }}"] if policy else []),
        f'copy = {{ source = "data/landing/{landing or data}", sink = "data/training-store/{data}" }}',
        f'training = {{ reference = "{reference}", label = "{label}" }}',
    ]
    return "\n".join(lines) + "\n" + extra


# Targets for the intake tests: the docs samples' workspace (so every verbatim sample is routable) and
# a target behind a subscription filter in the demo workspace.
INTAKE_TARGETS = local_target(
    "docs-sample", ["myDriftMonitor", "docs-monitor"], SAMPLE_WORKSPACE, model_name="docs-model", data="docs"
) + local_target(
    "filtered",
    ["filtered-monitor"],
    extra="""
[[targets.subscriptions]]
name = "strong-drift-only"
included_event_types = ["Microsoft.MachineLearningServices.DatasetDriftDetected"]
subject_begins_with = "datadrifts/"
advanced_filters = [
  { operator = "NumberGreaterThanOrEquals", key = "data.DriftCoefficient", value = 0.5 },
  { operator = "StringIn", key = "data.DataDriftName", values = ["filtered-monitor"] },
]
""",
)

#: One breached row, as the evaluate step's metrics frame has it (column names from azureml-assets
#: .../src/shared_utilities/constants.py ``SIGNAL_METRICS_*``).
BREACH_ROWS: list[dict[str, Any]] = [
    {"metric_value": 0.31, "metric_name": "JensenShannonDistance", "threshold_value": 0.1, "group": "age"}
]


def monitor_breach(
    run_id: str,
    workspace: str = SAMPLE_WORKSPACE,
    monitor: str = "docs-monitor",
    cloudevents: bool = False,
    *,
    signal: str | None = None,
    rows: list[dict[str, Any]] | None = None,
    experiment: str | None = None,
    status: str = "Completed",
    monitor_run: str | None = None,
) -> dict:
    """The RunStatusChanged event of a v2 monitor signal's evaluate step that breached, as Azure ML sends it:
    the documented sample's shape (eg_/ce_RunStatusChanged.json) with ``runTags`` holding only the breach tag,
    its text built as the component builds it (``breaches.breach_text``); no tag names the monitor.

    ``signal`` defaults to ``<monitor>_data_drift``, Microsoft's naming convention for filtering per monitor
    (MicrosoftDocs/azure-ai-docs articles/machine-learning/how-to-monitor-model-performance.md); ``rows`` to
    ``BREACH_ROWS``; ``experiment`` to the sample's (no source says what a monitor run's experiment is
    called). ``status``: the step exits normally after tagging (azureml-assets
    .../model_monitor_evaluate_metrics_threshold/run.py), so its run completes."""
    event = sample("ce_RunStatusChanged.json" if cloudevents else "eg_RunStatusChanged.json")[0]
    event["source" if cloudevents else "topic"] = workspace
    event["id"] = str(uuid.uuid4())
    data = event["data"]
    if experiment is not None:
        data["experimentName"] = experiment
    data["runId"] = run_id
    data["runTags"] = {
        BREACH_TAG: breach_text(signal or f"{monitor}_data_drift", BREACH_ROWS if rows is None else rows)
    }
    # The sample's properties are an AutoML run's; a pipeline step run names its top-level pipeline run (the
    # monitor's run, ``monitor_run``) in azureml.rootpipelinerunid (a recorded step run's properties,
    # tests/fixtures/machinelearning/history_children_recorded.json).
    data["runProperties"] = {"azureml.rootpipelinerunid": monitor_run} if monitor_run else {}
    data["runStatus"] = status
    event["subject"] = f"experiments/{data['experimentId']}/runs/{run_id}"
    return event


class PrefectServer:
    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def start(self, timeout: float = STARTUP_SECONDS) -> None:
        """Start and wait until healthy; whatever ends the wait (an error, a timeout, Ctrl-C) stops the server."""
        env = dict(os.environ) | prefect_settings(self.home, self.port)
        log = open(self.home / "prefect-server.log", "ab")
        prefect = Path(sys.executable).with_name("prefect")
        self.proc = spawn([str(prefect), "server", "start"], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"prefect server exited: see {self.home / 'prefect-server.log'}")
                try:
                    if httpx.get(f"{self.api_url}/health", timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            raise RuntimeError(
                f"prefect server not healthy within {timeout:.0f} s: see {self.home / 'prefect-server.log'}"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc)
        self.proc = None

    @classmethod
    @contextlib.contextmanager
    def with_deployment(cls, home: Path) -> Iterator[PrefectServer]:
        """A started server with the retrain deployment registered (what a receiver test hands off to),
        stopped on the way out."""
        server = cls(home)
        server.start()
        try:
            server.register_deployment()
            yield server
        finally:
            server.stop()

    def register_deployment(self, flow: str = RETRAIN_FLOW, name: str = RETRAIN_DEPLOYMENT_NAME) -> str:
        """The deployment the receiver creates runs of, without a runner to execute them."""
        with httpx.Client(base_url=self.api_url, timeout=30, transport=RetryWhileBusy()) as api:
            flow_id = api.post("/flows/", json={"name": flow}).raise_for_status().json()["id"]
            body = {"name": name, "flow_id": flow_id, "enforce_parameter_schema": False}
            return api.post("/deployments/", json=body).raise_for_status().json()["id"]


class RetryWhileBusy(httpx.HTTPTransport):
    """Prefect on SQLite answers 503 ("database is locked", nothing written) while another writer holds the
    lock, for longer the busier the machine; Prefect's own client retries those, and so do the tests' calls:
    again after a growing pause, until ``deadline`` seconds have passed (then the 503 is the answer)."""

    def __init__(self, deadline: float = 120.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deadline = deadline

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        give_up = time.monotonic() + self.deadline
        pause = 0.1
        while True:
            response = super().handle_request(request)
            if response.status_code != 503 or time.monotonic() + pause > give_up:
                return response
            response.close()
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


# -- no process left behind -------------------------------------------------------------------------

_started: list[subprocess.Popen[bytes]] = []


def spawn(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start a process for a test: a process group of its own (stopped whole), SIGTERM should the test run
    die first (see ``child_options``), and on the list that ``stop_strays`` empties at the session's end."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(command, **child_options(), **kwargs)
    _started.append(proc)
    return proc


def stop_strays() -> list[int]:
    """The session's safety net: stop every process group ``spawn`` or ``PrefectServer`` started that still
    runs (a test that failed or was interrupted before its own clean-up); returns their pids."""
    strays = [proc for proc in _started if proc.poll() is None]
    for proc in strays:
        stop_group(proc, grace=5)
    _started.clear()
    return [proc.pid for proc in strays]


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve an ASGI app with real uvicorn on a free port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # polls: seconds on a quiet machine, longer on a busy one
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
