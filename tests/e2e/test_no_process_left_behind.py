"""No process left behind: a test run that starts a Prefect server and then fails, is interrupted (Ctrl-C,
also while the server is still coming up), is terminated (SIGTERM) or is killed outright (SIGKILL) leaves
no process of its own running and nothing listening on the server's port.

Each case is a real pytest run in a subprocess, on a tiny test file that uses ``PrefectServer`` the way the
suite's fixtures do, with this suite's plugin (tests/conftest.py) loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drift_retrain.devstack.stack import PROJECT_DIR, STARTUP_SECONDS, _port_in_use, free_port
from drift_retrain.testing import spawn

pytestmark = pytest.mark.e2e

INNER = '''
import json, os, time
from pathlib import Path

import pytest

from drift_retrain.testing import PrefectServer

MARKS = Path(os.environ["MARKS"])


def mark(what: str) -> None:
    with MARKS.open("a") as marks:
        marks.write(what + "\\n")


@pytest.fixture
def server(tmp_path):
    server = PrefectServer(tmp_path, port=int(os.environ["PORT"]))
    server.start()
    mark("up")
    yield server
    server.stop()
    mark("torn down")


def test_fails(server):
    assert False, "a test that fails with a Prefect server up"


def test_waits(server):
    time.sleep(600)


def test_starts(tmp_path):
    server = PrefectServer(tmp_path, port=int(os.environ["PORT"]))
    try:
        server.start()
    finally:
        mark("start stopped it" if server.proc is None else "start left it")
'''

# case: (inner test, signal sent to the pytest process, when, its exit code, the marks it leaves)
CASES = {
    "fails": ("test_fails", None, "up", 1, ["up", "torn down"]),
    "ctrl-c": ("test_waits", signal.SIGINT, "up", 2, ["up", "torn down"]),
    "ctrl-c-while-starting": ("test_starts", signal.SIGINT, "starting", 2, ["start stopped it"]),
    "sigterm": ("test_waits", signal.SIGTERM, "up", 2, ["up", "torn down"]),
    "sigkill": ("test_waits", signal.SIGKILL, "up", -signal.SIGKILL, ["up"]),  # nothing runs: the kernel's death signal
}


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process under ``root`` (by parent pid), with its start time (so a reused pid does not count)."""
    table = {int(p.name): _stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, stat in table.items():
            if stat and stat[0] == parent and stat[1] != "Z" and pid not in found:
                found[pid] = stat[2]
                frontier.append(pid)
    return found


def alive(processes: dict[int, int]) -> list[int]:
    return [pid for pid, started in processes.items() if (stat := _stat(pid)) and stat[2] == started and stat[1] != "Z"]


def wait_for(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the death signal is Linux's")
@pytest.mark.parametrize("case", list(CASES))
def test_a_failed_or_interrupted_run_leaves_no_process_and_no_listener(case: str, tmp_path: Path) -> None:
    test, sig, when, exit_code, expected_marks = CASES[case]
    (tmp_path / "test_inner.py").write_text(INNER)
    marks, port = tmp_path / "marks", free_port()
    env = dict(os.environ) | {"MARKS": str(marks), "PORT": str(port)}
    command = [sys.executable, "-m", "pytest", f"{tmp_path / 'test_inner.py'}::{test}", "-p", "tests.conftest",
               "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-q", "-s"]
    run = spawn(command, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            if run.poll() is not None:
                return True
            if when == "up":
                return marks.exists() and "up" in marks.read_text().split()
            return any("prefect" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                       for pid in descendants(run.pid) if Path(f"/proc/{pid}/cmdline").exists())

        wait_for(ready, f"the inner run never got its server {when}", STARTUP_SECONDS)
        assert run.poll() is None or sig is None, run.communicate()[0].decode(errors="replace")[-3000:]
        started = descendants(run.pid)
        assert started, "the inner run has no child process to leave behind"
        if sig is not None:
            os.kill(run.pid, sig)
        output = run.communicate(timeout=180)[0].decode(errors="replace")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)

    try:
        assert run.returncode == exit_code, output[-3000:]
        assert marks.read_text().split("\n")[:-1] == expected_marks, output[-3000:]
        wait_for(lambda: not alive(started), f"left running: {alive(started)}\n{output[-2000:]}", 60)
        wait_for(lambda: not _port_in_use(port), f"something still listens on {port}", 60)
    finally:  # this test leaves nothing behind either, when it fails
        for pid in alive(started):
            os.kill(pid, signal.SIGKILL)
