"""The embedded default on one machine: a self-hosted Prefect server on SQLite (with its UI; on PostgreSQL and
Redis with ``up --database/--redis``), the runner serving prefect.yaml's deployments, and the webhook receiver,
each a supervised child process.

All state (Prefect's database and results, logs, data, registry) lives under the config's state_dir.
Ports come from DRIFT_RETRAIN_PREFECT_PORT (4200) and DRIFT_RETRAIN_WEBHOOK_PORT (8088). The server's
port is set with PREFECT_SERVER_API_PORT, not ``--port``, so the UI calls the right API.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from drift_retrain.config import Settings
from drift_retrain.devstack import processes, record
from drift_retrain.devstack.watchdog import Watchdog, stop_groups
from drift_retrain.names import RETRAIN_DEPLOYMENT
from drift_retrain.text import one_line

PREFECT_PORT_ENV = "DRIFT_RETRAIN_PREFECT_PORT"
WEBHOOK_PORT_ENV = "DRIFT_RETRAIN_WEBHOOK_PORT"
HOST = "127.0.0.1"
PROJECT_DIR = Path(__file__).resolve().parents[2]  # the checkout: prefect.yaml, flows/, tasks/, deployments/
# How long each part may take to come up. Each wait polls and ends early when the part is ready or its
# process exits, so a generous bound costs nothing on a quick machine and holds on a busy one (seconds
# each on a laptop; a minute and more on two cores shared with other test suites).
STARTUP_SECONDS = 240.0
# How a stop is bounded (docs/reliability.md, "Stopping the stack"): flow runs in flight get up to
# DRAIN_SECONDS to finish, then each part (receiver, runner, server) up to PART_SECONDS after SIGTERM before
# SIGKILL; a second Ctrl-C or SIGTERM cuts every wait left to HURRIED_SECONDS.
DRAIN_SECONDS = 30.0
PART_SECONDS = 10.0
HURRIED_SECONDS = 2.0
#: The most a stop takes: the drain, each part's grace, and reaping after SIGKILL.
STOP_SECONDS = DRAIN_SECONDS + 3 * PART_SECONDS + 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StackError(RuntimeError):
    """A part of the stack did not come up, or its ports or state dir are taken; the message says which
    and what to do (its first line; the rest is the part's log tail)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (``stop_on_signals``); the exit code a shell expects is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


def holder_of(port: int) -> str:
    """Who listens on ``port``, for a refusal: the drift-retrain stack of which state dir (from the
    listener's environment, which every process of a stack gets from ``Stack.env``), else its pid and
    command line, else "another process" (not ours to read)."""
    pid = processes.listener(port)
    if pid is None:
        return "another process (not one this user can see)"
    env = processes.environment(pid)
    if env.get("PREFECT_HOME") and env.get("DRIFT_RETRAIN_CONFIG"):
        state_dir = Path(env["PREFECT_HOME"]).parent
        down = f"`drift-retrain down -c {env['DRIFT_RETRAIN_CONFIG']}` stops it"
        found = record.read(state_dir)
        if found is not None and found.live():
            return f"the drift-retrain stack of {state_dir}, started by pid {found.pid} ({down})"
        return f"pid {pid}, left behind by the drift-retrain stack of {state_dir} ({down})"
    return f"pid {pid} ({one_line(processes.command_line(pid), 100)})"


def stop_on_signals() -> contextlib.AbstractContextManager[None]:
    """SIGINT (Ctrl-C) and SIGTERM (``timeout``, systemd, a cancelled CI job, ``drift-retrain down``) raise
    ``Interrupted`` in the main thread, wherever it is (starting, serving, waiting for a run), so the
    ``with Stack(...)`` around it stops what it started. Does nothing off the main thread."""
    return _signals_handled(_raise_interrupted)


def _raise_interrupted(signum: int) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_handled(on_signal: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM call ``on_signal``, then whatever handled them before
    does again; main thread only (elsewhere signals are not ours to handle)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _: on_signal(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block (a child started must be known before it can be stopped),
    then deliver the first one that came to whatever handled it before."""
    held: list[int] = []
    with _signals_handled(held.append):
        yield
    if held:
        signal.raise_signal(held[0])


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
        database_url: str | None = None,
        redis_url: str | None = None,
    ) -> None:
        self.settings = settings
        # `up --database/--redis` (docs/scale-out.md): Prefect's server on an existing PostgreSQL (and Redis);
        # validated by services.checked_database_url/checked_redis_url. Secrets: only the server's processes get them.
        self.database_url = database_url
        self.redis_url = redis_url
        self.prefect_port = prefect_port or int(os.environ.get(PREFECT_PORT_ENV, "4200"))
        self.webhook_port = webhook_port or int(os.environ.get(WEBHOOK_PORT_ENV, "8088"))
        self.project_dir = project_dir
        self.secret = local_secret(settings)
        self.logs = settings.state_dir / "logs"
        self.attached: record.StackRecord | None = None  # the stack of this state dir we attached to
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._lock: IO[bytes] | None = None
        self._record: record.StackRecord | None = None
        self._watchdog: Watchdog | None = None
        self._hurried_at: float | None = None

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

    def env(self, *, secret: bool = False, server: bool = False) -> dict[str, str]:
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
                "PYTHONUNBUFFERED": "1",
            }
        )
        if secret:
            env[self.settings.receiver.secret_env] = self.secret
        if server and self.database_url:
            from drift_retrain.devstack.services import server_env

            env.update(server_env(self.database_url, self.redis_url))
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
        """Start the parts, or attach to the stack a live supervisor runs on this state dir (its lock is
        taken); refuse ports held by anything else, naming what holds them."""
        self._lock = record.lock(self.settings.state_dir)
        if self._lock is None:
            self._attach()
            return
        self._refuse_busy_ports()
        self._record = record.StackRecord.of_this_process(
            self.settings.state_dir, self.settings.source_file, self.prefect_port, self.webhook_port
        )
        record.write(self._record)
        self._watchdog = Watchdog(self.project_dir, self.env())
        started = datetime.now(UTC)
        if self.database_url:  # the schema once, before the server starts (services.migrate_command)
            from drift_retrain.devstack.services import migrate_command

            migrate = self._spawn("prefect-migrate", migrate_command(), server=True)
            self._wait("database migration", migrate, lambda: False, timeout=STARTUP_SECONDS, exit_ok=True)
        server = self._spawn("prefect-server", [*_prefect_cli(), "server", "start"], server=True)
        self._wait("Prefect server", server, lambda: self._healthy(f"{self.api_url}/health"), timeout=STARTUP_SECONDS)
        self._free_orphaned_slots()
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
        self._set_phase("up")

    def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop children in reverse order: receiver first, then the runner, the server last; bounded by
        ``STOP_SECONDS`` in all, and a second SIGINT or SIGTERM meanwhile cuts every wait left short.

        The runner is stopped only once the flow-run processes it had when the stop began have exited (up
        to ``drain_seconds``): on shutdown Prefect's runner marks every run it still tracks Cancelled, even
        one whose flow has already reported Completed and is only flushing its results. Runs it picks up
        meanwhile (a queue) are not waited for.
        """
        if self._lock is None:
            return  # attached, or never started: nothing of ours runs
        with _signals_handled(self._hurry):  # a second signal hurries the stop, never cuts it short
            self._set_phase("stopping")
            for name, proc in reversed(self._procs):
                if name == "runner":
                    self._drain(proc.pid, drain_seconds)
                self._stop_part(proc)
            self._procs.clear()
            self._close_watchdog()
            record.remove(self.settings.state_dir, os.getpid())
            self._lock.close()
            self._lock = None

    # ------------------------------------------------------------------------------------------

    def _refuse_busy_ports(self) -> None:
        """StackError naming, per holder, the ports it holds and the variables that move them."""
        busy: dict[str, list[tuple[str, int, str]]] = {}
        for name, port, env_name in (
            ("prefect", self.prefect_port, PREFECT_PORT_ENV),
            ("webhook", self.webhook_port, WEBHOOK_PORT_ENV),
        ):
            if _port_in_use(port):
                busy.setdefault(holder_of(port), []).append((name, port, env_name))
        sentences = []
        for holder, held in busy.items():
            ports = " and ".join(f"{port} ({name})" for name, port, _ in held)
            plural = len(held) > 1
            sentences.append(
                f"port{'s' if plural else ''} {ports} {'are' if plural else 'is'} already in use by {holder}; "
                f"set {' and '.join(env for _, _, env in held)} to {'free ports' if plural else 'a free port'}"
            )
        if sentences:
            raise StackError("; ".join(sentences) + f" for the stack of {self.settings.state_dir}")

    def _attach(self) -> None:
        """Attach to the live supervisor of this state dir once it is up (waiting while it starts); if it
        ends meanwhile, start in its place."""
        state_dir = self.settings.state_dir
        deadline = time.monotonic() + 3 * STARTUP_SECONDS
        while time.monotonic() < deadline:
            found = record.read(state_dir)
            if found is not None and found.live():
                if found.phase == "stopping":
                    raise StackError(
                        f"the stack of {state_dir} (pid {found.pid}) is stopping; run this again once it has"
                    )
                self.prefect_port, self.webhook_port = found.prefect_port, found.webhook_port
                if found.phase == "up" and self._healthy(f"{self.api_url}/health") and self._healthy(self._healthz()):
                    self.attached = found
                    return
            elif (lock := record.lock(state_dir)) is not None:
                lock.close()  # its supervisor is gone: start afresh
                self.start()
                return
            time.sleep(0.25)
        raise StackError(f"the stack of {state_dir} did not come up within {3 * STARTUP_SECONDS:.0f} s")

    @property
    def attach_note(self) -> str:
        """What a command says when it attached instead of starting."""
        if self.attached is None:
            return ""
        return (
            f"attached to the stack of {self.settings.state_dir}, started by pid {self.attached.pid} at "
            f"{self.attached.since} (it keeps running; `drift-retrain down` stops it)"
        )

    def _set_phase(self, phase: record.Phase) -> None:
        if self._record is not None:
            self._record.phase = phase
            record.write(self._record)

    def _hurry(self, _: int) -> None:
        if self._hurried_at is None:
            self._hurried_at = time.monotonic()

    def _deadline(self, seconds: float) -> float:
        """When a wait of ``seconds`` from now ends, cut short by a second signal."""
        deadline = time.monotonic() + seconds
        if self._hurried_at is not None:
            deadline = min(deadline, self._hurried_at + HURRIED_SECONDS)
        return deadline

    def _free_orphaned_slots(self) -> None:
        """Without Redis the new server keeps slot leases in its memory: none exist yet, so a slot it still
        counts was held when it last stopped and nobody can release it (``concurrency.free_orphaned_slots``)."""
        if self.redis_url:
            return
        from drift_retrain.concurrency import free_orphaned_slots

        for name in free_orphaned_slots(self.api_url, self.settings):
            print(f"freed {name}: its slot was held when the server last stopped", file=sys.stderr, flush=True)

    def _drain(self, runner: int, seconds: float) -> None:
        in_flight = {pid: found.started for pid in processes.children(runner) if (found := processes.stat(pid))}
        until = time.monotonic() + seconds
        while any(processes.alive(pid, started) for pid, started in in_flight.items()):
            if time.monotonic() > min(until, self._deadline(seconds)):
                return
            time.sleep(0.2)

    def _stop_part(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the part's process group, SIGKILL what is left of it after ``PART_SECONDS``, reap it."""
        _signal_group(proc, signal.SIGTERM)
        until = time.monotonic() + PART_SECONDS
        while proc.poll() is None or processes.in_groups({proc.pid}):
            if time.monotonic() > min(until, self._deadline(PART_SECONDS)):
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
                break
            time.sleep(0.1)
        if self._watchdog is not None:
            self._watchdog.forget(proc.pid)

    def _close_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    # ------------------------------------------------------------------------------------------

    def _healthz(self) -> str:
        return f"http://{HOST}:{self.webhook_port}/healthz"

    def _spawn(
        self, name: str, command: list[str], *, secret: bool = False, server: bool = False
    ) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        env = self.env(secret=secret, server=server)
        with _signals_deferred():  # known to us, the record and the watchdog before it can be stopped
            proc = subprocess.Popen(
                command, cwd=self.project_dir, env=env, stdout=log, stderr=subprocess.STDOUT, **child_options()
            )
            self._procs.append((name, proc))
            if self._watchdog is not None:
                self._watchdog.watch(proc.pid)
            if self._record is not None:
                self._record.groups.append(proc.pid)
                record.write(self._record)
        log.close()
        return proc

    def _wait(
        self,
        what: str,
        proc: subprocess.Popen[bytes],
        ready: Callable[[], bool],
        timeout: float,
        *,
        exit_ok: bool = False,
    ) -> None:
        """Until ``ready()``; ``exit_ok``: a one-shot part, done once it exits with code 0."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if exit_ok and proc.poll() == 0:
                self._procs = [(n, p) for n, p in self._procs if p is not proc]
                if self._watchdog is not None:
                    self._watchdog.forget(proc.pid)
                return
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
    """Live process ids whose parent is ``pid`` (Linux /proc; empty where there is none)."""
    return processes.children(pid)


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
    """Block until Ctrl-C or SIGTERM, so a kept-up stack can be explored."""
    with contextlib.suppress(KeyboardInterrupt), stop_on_signals():
        while True:
            time.sleep(3600)


def stop_running_stack(settings: Settings) -> str:
    """`drift-retrain down`: SIGTERM the supervisor of this state dir's stack and wait for it (up to
    ``STOP_SECONDS``); if it is still there, SIGKILL it and its parts' process groups. Returns what was done."""
    state_dir = settings.state_dir
    found = record.read(state_dir)
    if found is None or not found.live():
        if found is not None:  # its supervisor was killed: its watchdog should have stopped the parts
            left = [g for g in found.groups if _of_state_dir(g, state_dir)]
            stop_groups(left, grace=HURRIED_SECONDS)
            record.record_path(state_dir).unlink(missing_ok=True)
            if left:
                return f"no stack of {state_dir} was running; stopped {len(left)} part(s) a killed one left"
        return f"no stack of {state_dir} is running"
    began = time.monotonic()
    os.kill(found.pid, signal.SIGTERM)
    while found.live() and time.monotonic() - began < STOP_SECONDS:
        time.sleep(0.2)
    if found.live():
        os.kill(found.pid, signal.SIGKILL)
        stop_groups([g for g in found.groups if _of_state_dir(g, state_dir)], grace=HURRIED_SECONDS)
        record.record_path(state_dir).unlink(missing_ok=True)
        return f"the stack of {state_dir} (pid {found.pid}) did not stop within {STOP_SECONDS:.0f} s: killed it"
    return f"stopped the stack of {state_dir} (pid {found.pid}) in {time.monotonic() - began:.1f} s"


def _of_state_dir(group: int, state_dir: Path) -> bool:
    """A process group still running a part of the stack of ``state_dir`` (not a reused number)."""
    home = str(state_dir / "prefect")
    return any(processes.environment(pid).get("PREFECT_HOME") == home for pid in processes.in_groups({group}))
