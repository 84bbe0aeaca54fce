"""The CI tier on PostgreSQL + Redis: a fleet on one machine, every part a process of its own.

Throwaway PostgreSQL and redis-server (drift_retrain/devstack/services.py); Prefect's self-hosted layout on them
(the schema migrated once, one API process with ``--no-services``, the background services apart, Redis for
messaging, ordering, leases and the docket); the ``drift-retrain`` process work pool with the project's
deployments made by ``prefect deploy --all``; two process workers; two webhook receivers; the retrain limits
from ``drift-retrain limits``. Nothing is patched: the tests talk HTTP to the receivers and read Prefect's API,
PostgreSQL and the loopback Azure.

The deployments' pull step: the shipped prefect.yaml sets the working directory to the image's /opt/drift-retrain,
which does not exist here. The tier deploys a copy of prefect.yaml whose pull step names this checkout instead
(the same-path variant of docs/scale-out.md): every other line is the shipped file's, and the workers run each
flow run from that directory as a worker in the image would from /opt/drift-retrain.

Skipped, saying what is missing, where the binaries (or prefect-redis) are absent; DRIFT_RETRAIN_REQUIRE_SCALE=1
(.ci/run sets it) turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drift_retrain.backends.local.monitor import latest_window
from drift_retrain.config import Settings, load_settings
from drift_retrain.devstack import demo_data, processes, services
from drift_retrain.devstack.stack import HOST, PROJECT_DIR, free_port, stop_group
from drift_retrain.fake_azure import CLIENT_ID, CLIENT_SECRET, TENANT, FakeAzure
from drift_retrain.testing import DEMO_WORKSPACE, demo_data_targets, spawn, write_config
from tests.e2e.conftest import AZURE_FACTORY, AZURE_TARGET, Api

REQUIRE_ENV = "DRIFT_RETRAIN_REQUIRE_SCALE"
READY_SECONDS = 240.0
WORKER_LIMIT = 3  # flow runs per worker at once (`prefect worker start --limit`): two cores, two workers
HEARTBEAT_SECONDS = 30  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY's minimum (prefect/settings/models/flows.py)
ZOMBIE_SECONDS = 75  # no heartbeat for this long: the run is marked Crashed (`drift-retrain limits`)

# The storm's models (tests/scale/test_storm.py): each takes a v1 monitor and a v2 monitor.
STORM_MODELS = [f"scale-{i:02d}" for i in range(10)]
STORM_TARGETS = demo_data_targets(STORM_MODELS, "cooldown_minutes = 60, min_rows = 100")
# The restart tests' models: their signals are below the drift threshold (each run decides and skips).
QUIET_MODELS = [f"quiet-{i:02d}" for i in range(4)]
QUIET_TARGETS = demo_data_targets(QUIET_MODELS, "cooldown_minutes = 0, min_rows = 100", v2_monitor=False)
# The worker-kill tests' azure targets (loopback Azure, scripted durations), one model per kill point.
KILL_CASES = ["mid-copy", "mid-training"]
AZURE_SECRET_ENV = "DRIFT_RETRAIN_SCALE_AZURE_SECRET"


def _missing() -> list[str]:
    missing = services.missing_binaries()
    if importlib.util.find_spec("prefect_redis") is None:
        missing.append("prefect-redis (pip install -e '.[redis]'; `make test` installs it)")
    return missing


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is marked ``scale`` (``-m "not scale"`` leaves the tier out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.scale)


@pytest.fixture(autouse=True, scope="session")
def _scale_requirements() -> None:
    """Without the binaries (or prefect-redis) every test here is skipped, saying what is missing; with
    DRIFT_RETRAIN_REQUIRE_SCALE=1 (.ci/run) each fails instead, so CI never passes without the tier."""
    missing = _missing()
    if not missing:
        return
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but the scale tier needs {', '.join(missing)}", pytrace=False)
    pytest.skip(f"the scale tier needs {', '.join(missing)}; not installed")


class Part:
    """One process of the fleet: its command and environment, so it can be killed and started again."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = spawn(self.command, cwd=PROJECT_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL the process and every process under it at once: a host gone. A worker's flow runs are
        sessions of their own (prefect/runner/_starter_engine.py, ``isolate_process_group``), so its process
        group alone would leave them running (and cleaning up after themselves) as orphans."""
        assert self.proc is not None
        tree = [self.proc.pid, *processes.descendants(self.proc.pid)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)  # frozen first: none can notice the others die or start a child
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc, grace=20)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout:.0f} s\n{self.tail()}")
            time.sleep(0.25)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


class Fleet:
    """The running fleet: services, Prefect's API and services, two workers, two receivers."""

    def __init__(self, root: Path, settings: Settings, postgres: services.Postgres, redis: services.Redis) -> None:
        self.root, self.settings, self.postgres, self.redis = root, settings, postgres, redis
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.api_url = f"http://{HOST}:{self.api_port}/api"
        self.secret = "scale-tier-secret"
        self.client_env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(settings.state_dir / "prefect"),  # results shared by both workers (one disk)
            "PREFECT_LOCAL_STORAGE_PATH": str(settings.state_dir / "prefect" / "storage"),
            "PREFECT_LOGGING_COLORS": "false",
            "DRIFT_RETRAIN_CONFIG": str(settings.source_file),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            AZURE_SECRET_ENV: CLIENT_SECRET,
        }
        self.client_env.pop(settings.receiver.secret_env, None)
        self.server_env = {
            **self.client_env,
            **services.server_env(postgres.url, redis.url),
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_SERVER_API_PORT": str(self.api_port),
            # A killed flow's slot lease is repossessed within a second of expiring (15 s by default).
            "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "1",
        }
        self.api = Part("prefect-api", services.api_command(self.api_port), self.server_env, self.logs)
        self.services = Part("prefect-services", services.services_command(), self.server_env, self.logs)
        worker_env = {
            **self.client_env,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        }
        self.worker_ports = [free_port(), free_port()]
        self.workers = [
            Part(
                f"worker-{i}",
                [
                    *services._prefect_cli(),
                    "worker",
                    "start",
                    "--pool",
                    "drift-retrain",
                    "--type",
                    "process",
                    "--name",
                    f"scale-worker-{i}",
                    "--limit",
                    str(WORKER_LIMIT),
                    "--with-healthcheck",
                ],
                {**worker_env, "PREFECT_WORKER_WEBSERVER_PORT": str(port)},
                self.logs,
            )
            for i, port in enumerate(self.worker_ports)
        ]
        self.receiver_ports = [free_port(), free_port()]
        self.receivers = [
            Part(
                f"receiver-{i}",
                [sys.executable, "-m", "drift_retrain.cli", "webhook", "--host", HOST, "--port", str(port)],
                {**self.client_env, settings.receiver.secret_env: self.secret},
                self.logs,
            )
            for i, port in enumerate(self.receiver_ports)
        ]

    def webhook_url(self, replica: int) -> str:
        return f"http://{HOST}:{self.receiver_ports[replica]}/api/eventgrid"

    def run(self, *command: str, timeout: float = 300) -> str:
        result = subprocess.run(
            command, cwd=PROJECT_DIR, env=self.client_env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    def start(self) -> None:
        migrate = subprocess.run(
            services.migrate_command(),
            env=self.server_env,
            capture_output=True,
            text=True,
            timeout=READY_SECONDS,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        self.api.start()
        self.api.wait_ready(lambda: healthy(f"{self.api_url}/health"))
        self.services.start()
        self.run(*services._prefect_cli(), "work-pool", "create", "drift-retrain", "--type", "process", "--overwrite")
        self.run(*services._prefect_cli(), "--no-prompt", "deploy", "--all", "--prefect-file", str(self.prefect_file()))
        # the slots and the zombie-run automation (drift_retrain/zombies.py), as the recipe's step 4 does
        self.run(sys.executable, "-m", "drift_retrain.cli", "limits", "--heartbeat-window", str(ZOMBIE_SECONDS))
        for worker, port in zip(self.workers, self.worker_ports, strict=True):
            worker.start()
            worker.wait_ready(lambda port=port: healthy(f"http://{HOST}:{port}/health"))
        for receiver, port in zip(self.receivers, self.receiver_ports, strict=True):
            receiver.start()
            receiver.wait_ready(lambda port=port: healthy(f"http://{HOST}:{port}/healthz"))

    def prefect_file(self) -> Path:
        """prefect.yaml as shipped but for the pull step's directory: this checkout stands in for the image's."""
        text = (PROJECT_DIR / "prefect.yaml").read_text()
        assert text.count("directory: /opt/drift-retrain") == 1
        path = self.root / "prefect.yaml"
        path.write_text(text.replace("directory: /opt/drift-retrain", f"directory: {PROJECT_DIR}"))
        return path

    def revive_workers(self) -> list[str]:
        """Start again every worker that exited, as its supervisor would (compose's restart policy, Kubernetes,
        systemd): a worker exits once its polls keep failing (four rounds of three consecutive errors:
        prefect/workers/base.py ``critical_service_loop(..., backoff=4)``, prefect/utilities/services.py).
        Returns the names of those it started."""
        revived = []
        for worker, port in zip(self.workers, self.worker_ports, strict=True):
            if worker.proc is not None and worker.proc.poll() is not None:
                worker.start()
                worker.wait_ready(lambda port=port: healthy(f"http://{HOST}:{port}/health"))
                revived.append(worker.name)
        return revived

    def stop(self) -> None:
        for part in [*self.receivers, *self.workers, self.services, self.api]:
            part.stop()


@pytest.fixture(scope="session")
def scale_azure() -> Iterator[FakeAzure]:
    with FakeAzure() as fake:
        yield fake


@pytest.fixture(scope="session")
def scale_settings(tmp_path_factory: pytest.TempPathFactory, scale_azure: FakeAzure) -> Settings:
    directory = tmp_path_factory.mktemp("scale")
    block = AZURE_TARGET[AZURE_TARGET.index("[[targets]]") :]
    kill_targets = "".join(
        block.replace('name = "azure-credit"', f'name = "azure-{case}"')
        .replace('monitors = ["azure-credit-drift", "azure-stuck-drift"]', f'monitors = ["azure-{case}-drift"]')
        .replace('model_name = "azure-credit"', f'model_name = "azure-{case}"')
        for case in KILL_CASES
    )
    azure = (AZURE_TARGET[: AZURE_TARGET.index("[[targets]]")] + kill_targets).format(
        url=scale_azure.url,
        ca=scale_azure.ca_path,
        tenant=TENANT,
        client=CLIENT_ID,
        secret_env=AZURE_SECRET_ENV,
        workspace=DEMO_WORKSPACE,
        factory=AZURE_FACTORY,
    )
    settings = load_settings(write_config(directory, extra=STORM_TARGETS + QUIET_TARGETS + azure))
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    return settings


@pytest.fixture(scope="session")
def fleet(scale_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    with services.Postgres(root / "postgres") as postgres, services.Redis(root / "redis") as redis:
        running = Fleet(root, scale_settings, postgres, redis)
        try:
            began = time.monotonic()
            running.start()
            print(f"\nscale fleet up in {time.monotonic() - began:.0f} s (logs: {running.logs})")
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="session")
def scale_api(fleet: Fleet) -> Api:
    return Api(fleet.api_url)


@pytest.fixture(scope="session")
def window(scale_settings: Settings) -> tuple[Any, Any]:
    return latest_window(scale_settings.local_monitors[0], scale_settings)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 300, pause: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(pause)
    return found
