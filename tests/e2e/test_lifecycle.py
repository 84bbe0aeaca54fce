"""The stack's life, driven as a person or a service manager drives it: `drift-retrain up` and `demo` as real
processes, stopped with SIGTERM (``timeout``, systemd, a cancelled CI job), SIGINT (Ctrl-C) or SIGKILL while the
Prefect server is coming up, once the stack is up, and while a flow run is in flight. Each stop must end with
nothing listening on either port and no process of the stack left (its parts, their flow-run processes, the
watchdog), within the documented bound (``STOP_SECONDS``; after SIGKILL the watchdog's). Also: a second `up`
on the same state dir attaches and says so, another state dir is refused by name, `down` stops a stack
started elsewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drift_retrain.backends.local.monitor import drift_event, run_monitor
from drift_retrain.config import Settings, load_settings
from drift_retrain.devstack import demo_data, processes, record
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.devstack.stack import (
    HURRIED_SECONDS,
    PREFECT_PORT_ENV,
    PROJECT_DIR,
    STARTUP_SECONDS,
    STOP_SECONDS,
    WEBHOOK_PORT_ENV,
    _port_in_use,
    free_port,
    local_secret,
)
from drift_retrain.devstack.watchdog import GRACE_SECONDS
from drift_retrain.testing import spawn, write_config

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the stack's lock and watchdog are Linux's"),
]

#: Slack on top of a documented bound for what is not the stop itself: the supervisor's own exit, reaping,
#: and a scheduler on two shared cores.
SLACK = 15.0
#: After SIGKILL the watchdog stops the three parts one after another, each within its grace.
KILLED_SECONDS = 3 * GRACE_SECONDS


class Supervisor:
    """`drift-retrain <command>` in a process of its own, on its own ports and state dir."""

    def __init__(self, tmp_path: Path, command: str, *args: str) -> None:
        self.command = command
        self.config = write_config(tmp_path)
        self.settings: Settings = load_settings(self.config)
        self.ports = {PREFECT_PORT_ENV: free_port(), WEBHOOK_PORT_ENV: free_port()}
        self.output = tmp_path / f"{command}.out"
        env = dict(os.environ) | {name: str(port) for name, port in self.ports.items()}
        env.pop("PREFECT_API_URL", None)
        with self.output.open("wb") as out:
            self.proc = spawn(
                [sys.executable, "-m", "drift_retrain.cli", command, "-c", str(self.config), *args],
                cwd=PROJECT_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def home(self) -> str:
        return str(self.settings.state_dir / "prefect")

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def record(self) -> record.StackRecord | None:
        found = record.read(self.settings.state_dir)
        return found if found is not None and found.pid == self.proc.pid else None

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 3 * STARTUP_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"{what}: exited {self.proc.returncode}\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s\n{self.text()[-3000:]}"
            time.sleep(0.1)

    def in_flight(self) -> bool:
        """The runner has a flow-run process."""
        found = self.record()
        return found is not None and len(found.groups) >= 2 and bool(processes.children(found.groups[1]))

    def left(self) -> list[str]:
        """Processes of this stack still running: started with its PREFECT_HOME (every part, flow run and
        the watchdog gets it), or the supervisor itself."""
        pids = [pid for pid in _all_pids() if processes.alive(pid)]
        mine = [pid for pid in pids if processes.environment(pid).get("PREFECT_HOME") == self.home]
        return [f"{pid} {processes.command_line(pid)[:120]}" for pid in mine]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        deadline = time.monotonic() + KILLED_SECONDS + SLACK
        while self.left() and time.monotonic() < deadline:
            time.sleep(0.2)


def _all_pids() -> list[int]:
    return [int(p.name) for p in processes.PROC.iterdir() if p.name.isdigit()]


def _post_drift(supervisor: Supervisor) -> None:
    """One drift event to the stack's receiver: a flow run the runner picks up."""
    settings = supervisor.settings
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    url = f"http://127.0.0.1:{supervisor.ports[WEBHOOK_PORT_ENV]}/api/eventgrid"
    response = deliver_events(url, [drift_event(run_monitor(monitor, settings))], local_secret(settings))
    assert response.status_code == 200, response.text


def _reach(supervisor: Supervisor, stage: str) -> None:
    if stage == "starting":  # the server is spawned, the runner not yet serving
        supervisor.wait_for(lambda: (r := supervisor.record()) is not None and len(r.groups) >= 1, "server spawned")
        assert supervisor.record().phase == "starting"  # type: ignore[union-attr]
        return
    supervisor.wait_for(lambda: (r := supervisor.record()) is not None and r.phase == "up", "stack up")
    if stage == "in flight":
        if supervisor.command == "up":
            _post_drift(supervisor)
        supervisor.wait_for(supervisor.in_flight, "a flow run in flight")


# (command, stage, signal, exit code); "in flight twice": a second SIGTERM a second after the first.
CASES = [
    ("up", "starting", signal.SIGTERM, 143),
    ("up", "starting", signal.SIGINT, 130),
    ("up", "starting", signal.SIGKILL, -9),
    ("up", "up", signal.SIGTERM, 0),
    ("up", "up", signal.SIGINT, 0),
    ("up", "up", signal.SIGKILL, -9),
    ("up", "in flight", signal.SIGTERM, 0),
    ("up", "in flight", signal.SIGINT, 0),
    ("up", "in flight", signal.SIGKILL, -9),
    ("up", "in flight twice", signal.SIGTERM, 0),
    ("demo", "starting", signal.SIGTERM, 143),
    ("demo", "starting", signal.SIGINT, 130),
    ("demo", "starting", signal.SIGKILL, -9),
    ("demo", "in flight", signal.SIGTERM, 143),
    ("demo", "in flight", signal.SIGINT, 130),
    ("demo", "in flight", signal.SIGKILL, -9),
]


@pytest.mark.parametrize(
    "command,stage,sig,exit_code", CASES, ids=[f"{c}-{s.replace(' ', '-')}-{g.name}" for c, s, g, _ in CASES]
)
def test_a_signal_at_any_stage_stops_everything_within_the_bound(
    tmp_path: Path, command: str, stage: str, sig: signal.Signals, exit_code: int
) -> None:
    supervisor = Supervisor(tmp_path, command)
    try:
        _reach(supervisor, stage.removesuffix(" twice"))
        tree = processes.descendants(supervisor.proc.pid)
        assert tree, "nothing started to leave behind"
        began = time.monotonic()
        supervisor.proc.send_signal(sig)
        if stage.endswith("twice"):
            time.sleep(1)
            supervisor.proc.send_signal(sig)
        bound = {
            signal.SIGKILL: KILLED_SECONDS,
            signal.SIGTERM: 3 * HURRIED_SECONDS if stage.endswith("twice") else STOP_SECONDS,
        }.get(sig, STOP_SECONDS)
        supervisor.proc.wait(timeout=bound + SLACK + 60)  # measured below against the bound itself
        exited = time.monotonic() - began
        if sig != signal.SIGKILL:
            assert exited < bound + SLACK, f"stopped in {exited:.1f} s, bound {bound:.0f} s\n{supervisor.text()}"
        deadline = began + bound + SLACK
        while (supervisor.left() or any(map(_port_in_use, supervisor.ports.values()))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert supervisor.left() == [], f"left running after {time.monotonic() - began:.1f} s\n{supervisor.text()}"
        assert [pid for pid in tree if processes.alive(pid)] == []
        assert not any(map(_port_in_use, supervisor.ports.values()))
        assert supervisor.proc.returncode == exit_code, supervisor.text()
        assert "Traceback" not in supervisor.text()
        if sig != signal.SIGKILL:  # removed on the way out; a killed one's is stale (its pid is gone)
            assert record.read(supervisor.settings.state_dir) is None
    finally:
        supervisor.stop()


def test_up_twice_attaches_another_state_dir_is_refused_and_down_stops_it(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Supervisor(tmp_path / "a", "up")
    try:
        _reach(first, "up")
        env = dict(os.environ) | {name: str(port) for name, port in first.ports.items()}
        cli = [sys.executable, "-m", "drift_retrain.cli"]

        again = subprocess.run([*cli, "up", "-c", str(first.config)], env=env, cwd=PROJECT_DIR,
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        state_dir = first.settings.state_dir
        assert f"attached to the stack of {state_dir}, started by pid {first.proc.pid}" in again.stdout
        assert first.proc.poll() is None

        other = write_config(tmp_path / "b")
        refused = subprocess.run([*cli, "demo", "-c", str(other)], env=env, cwd=PROJECT_DIR,
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert (f"ports {first.ports[PREFECT_PORT_ENV]} (prefect) and {first.ports[WEBHOOK_PORT_ENV]} (webhook) "
                f"are already in use by the drift-retrain stack of {state_dir}, started by pid {first.proc.pid}"
                in refused.stderr), refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 2

        began = time.monotonic()
        down = subprocess.run([*cli, "down", "-c", str(first.config)], env=env, cwd=PROJECT_DIR,
                              capture_output=True, text=True, timeout=STOP_SECONDS + 120)
        assert down.returncode == 0 and f"stopped the stack of {state_dir} (pid {first.proc.pid})" in down.stdout
        assert time.monotonic() - began < STOP_SECONDS + SLACK
        assert first.proc.wait(timeout=30) == 0
        assert first.left() == [] and not any(map(_port_in_use, first.ports.values()))
        assert "no stack of" in subprocess.run([*cli, "down", "-c", str(first.config)], env=env, cwd=PROJECT_DIR,
                                               capture_output=True, text=True, timeout=120).stdout
    finally:
        first.stop()

