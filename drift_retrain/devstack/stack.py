"""The embedded default on one machine: a self-hosted Prefect server on SQLite (with its UI), the runner
serving prefect.yaml's deployments, and the webhook receiver, each a supervised child process.

All state (Prefect's database and results, logs, data, registry) lives under the config's state_dir.
Ports come from DRIFT_RETRAIN_PREFECT_PORT (4200) and DRIFT_RETRAIN_WEBHOOK_PORT (8088). The server's
port is set with PREFECT_SERVER_API_PORT, not ``--port``, so the UI calls the right API.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from drift_retrain.config import Settings
from drift_retrain.names import RETRAIN_DEPLOYMENT

PREFECT_PORT_ENV = "DRIFT_RETRAIN_PREFECT_PORT"
WEBHOOK_PORT_ENV = "DRIFT_RETRAIN_WEBHOOK_PORT"
HOST = "127.0.0.1"
PROJECT_DIR = Path(__file__).resolve().parents[2]  # the checkout: prefect.yaml, flows/, tasks/, deployments/
# How long each part may take to come up. Each wait polls and ends early when the part is ready or its
# process exits, so a generous bound costs nothing on a quick machine and holds on a busy one (seconds
# each on a laptop; a minute and more on two cores shared with other test suites).
STARTUP_SECONDS = 240.0


class StackError(RuntimeError):
    """A part of the stack did not come up; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_options() -> dict[str, Any]:
    """Popen keywords for a process we supervise: a session (so a process group) of its own, stopped as a
    whole with ``os.killpg``; and on Linux, when started from the main thread, SIGTERM once we die without
    stopping it (a supervisor or a test run killed with SIGKILL leaves no server holding its port). Main
    thread only: the kernel sends the signal when the *thread* that started the child ends."""
    options: dict[str, Any] = {"start_new_session": True}
    if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
        options["preexec_fn"] = _die_with(os.getpid())
    return options


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec_fn (runs in the child between fork and exec): ask for SIGTERM when the parent dies, and
    exit at once if it already has (it died between the fork and the prctl). Resolved before the fork."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def local_secret(settings: Settings) -> str:
    """The webhook secret: from its environment variable, else one generated once for this state dir."""
    if settings.receiver.secret():
        return settings.receiver.secret()  # type: ignore[return-value]
    path = settings.state_dir / "webhook-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def prefect_settings(state_dir: Path, port: int) -> dict[str, str]:
    """The Prefect settings every process of the stack shares (server, runner, flows, receiver, CLI)."""
    home = state_dir / "prefect"
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://{HOST}:{port}/api",
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # pick-up within ~1 s instead of 10 s
        "PREFECT_LOGGING_COLORS": "false",
    }


class Stack:
    """Start with ``with Stack(settings) as stack:``; stops what it started on exit."""

    def __init__(
        self,
        settings: Settings,
        *,
        prefect_port: int | None = None,
        webhook_port: int | None = None,
        project_dir: Path = PROJECT_DIR,
    ) -> None:
        self.settings = settings
        self.prefect_port = prefect_port or int(os.environ.get(PREFECT_PORT_ENV, "4200"))
        self.webhook_port = webhook_port or int(os.environ.get(WEBHOOK_PORT_ENV, "8088"))
        self.project_dir = project_dir
        self.secret = local_secret(settings)
        self.logs = settings.state_dir / "logs"
        self.attached = False
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}"

    @property
    def webhook_url(self) -> str:
        return f"http://{HOST}:{self.webhook_port}/api/eventgrid"

    def flow_run_url(self, flow_run_id: object) -> str:
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}"

    def env(self, *, secret: bool = False) -> dict[str, str]:
        """The environment of a process of the stack. Only the receiver needs the webhook secret
        (``secret=True``); every other process (the Prefect server, the runner and so each flow run, which
        inherits the runner's environment: prefect/runner/_starter_engine.py ``env.update(os.environ)``) gets
        none, even when ours holds it."""
        env = dict(os.environ)
        env.pop(self.settings.receiver.secret_env, None)
        env.update(prefect_settings(self.settings.state_dir, self.prefect_port))
        env.update(
            {
                "DRIFT_RETRAIN_CONFIG": str(self.settings.source_file),
                "DRIFT_RETRAIN_PROJECT_DIR": str(self.project_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if secret:
            env[self.settings.receiver.secret_env] = self.secret
        return env

    # ------------------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        in_use = {
            name: _port_in_use(port) for name, port in (("prefect", self.prefect_port), ("webhook", self.webhook_port))
        }
        if all(in_use.values()) and self._healthy(f"{self.api_url}/health") and self._healthy(self._healthz()):
            self.attached = True  # a stack from `drift-retrain up` is already serving this config
            return
        for name, busy in in_use.items():
            if busy:
                env_name = PREFECT_PORT_ENV if name == "prefect" else WEBHOOK_PORT_ENV
                port = self.prefect_port if name == "prefect" else self.webhook_port
                raise StackError(
                    f"port {port} ({name}) is already in use by something else; set {env_name} to a free port"
                )
        started = datetime.now(UTC)
        server = self._spawn("prefect-server", [*_prefect_cli(), "server", "start"])
        self._wait("Prefect server", server, lambda: self._healthy(f"{self.api_url}/health"), timeout=STARTUP_SECONDS)
        runner = self._spawn(
            "runner", [sys.executable, "-m", "deployments.runner", str(self.project_dir / "prefect.yaml")]
        )
        self._wait("runner", runner, lambda: self._deployment_served_since(started), timeout=STARTUP_SECONDS)
        receiver = self._spawn(
            "webhook",
            [sys.executable, "-m", "drift_retrain.cli", "webhook", "--host", HOST, "--port", str(self.webhook_port)],
            secret=True,
        )
        self._wait("webhook receiver", receiver, lambda: self._healthy(self._healthz()), timeout=STARTUP_SECONDS)

    def stop(self, drain_seconds: float = 60) -> None:
        """Stop children in reverse order: receiver and runner first, the server last.

        The runner is stopped only once its flow-run processes have exited (up to ``drain_seconds``):
        on shutdown Prefect's runner marks every run it still tracks Cancelled, even one whose flow has
        already reported Completed and is only flushing its results.
        """
        for name, proc in reversed(self._procs):
            if name == "runner":
                _wait_for_children(proc.pid, drain_seconds)
            if proc.poll() is None:
                stop_group(proc)
        self._procs.clear()

    # ------------------------------------------------------------------------------------------

    def _healthz(self) -> str:
        return f"http://{HOST}:{self.webhook_port}/healthz"

    def _spawn(self, name: str, command: list[str], *, secret: bool = False) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        env = self.env(secret=secret)
        proc = subprocess.Popen(
            command, cwd=self.project_dir, env=env, stdout=log, stderr=subprocess.STDOUT, **child_options()
        )
        log.close()
        self._procs.append((name, proc))
        return proc

    def _wait(self, what: str, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"{what} exited with code {proc.returncode}; see {self._log_of(proc)}\n{self._tail(proc)}"
                )
            if ready():
                return
            time.sleep(0.25)
        raise StackError(f"{what} was not ready within {timeout:.0f} s; see {self._log_of(proc)}\n{self._tail(proc)}")

    def _log_of(self, proc: subprocess.Popen[bytes]) -> Path:
        name = next(n for n, p in self._procs if p is proc)
        return self.logs / f"{name}.log"

    def _tail(self, proc: subprocess.Popen[bytes], lines: int = 20) -> str:
        try:
            return "\n".join(self._log_of(proc).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _deployment_served_since(self, started: datetime) -> bool:
        """The runner (re)applies its deployments at start: ready once they are updated after our start."""
        try:
            response = httpx.get(f"{self.api_url}/deployments/name/{RETRAIN_DEPLOYMENT}", timeout=2)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        updated = datetime.fromisoformat(response.json()["updated"].replace("Z", "+00:00"))
        return updated >= started


def _children(pid: int) -> list[int]:
    """Live process ids whose parent is ``pid`` (Linux /proc; empty where there is none). Zombies
    have exited already and do not count."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_name = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(after_name[1]) == pid and after_name[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _wait_for_children(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _children(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def _prefect_cli() -> list[str]:
    script = Path(sys.executable).with_name("prefect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop_group(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM the process's group (see ``child_options``), SIGKILL it after ``grace`` seconds, and reap it;
    a group that outlives SIGKILL by 10 s raises ``subprocess.TimeoutExpired``."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_until_interrupted() -> None:
    """Block until Ctrl-C (or SIGTERM), so a kept-up stack can be explored."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt
