"""Pieces of the one-machine stack that need no server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drift_retrain.config import load_settings
from drift_retrain.devstack.stack import Stack, StackError, _children, _wait_for_children, child_options, free_port, local_secret
from drift_retrain.testing import write_config


def test_waits_for_child_processes_to_exit() -> None:
    # A parent that starts a short child and never reaps it: the exited child lingers as a zombie.
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time; subprocess.Popen(['sleep', '0.6']); time.sleep(60)"]
    )
    try:
        deadline = time.monotonic() + 10
        while not _children(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _children(parent.pid), "the child never started"
        began = time.monotonic()
        _wait_for_children(parent.pid, timeout=10)
        assert _children(parent.pid) == []
        assert time.monotonic() - began < 5
    finally:
        parent.kill()
        parent.wait()


def test_local_secret_is_generated_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    settings = load_settings(write_config(tmp_path))
    first = local_secret(settings)
    assert len(first) >= 32 and local_secret(settings) == first
    assert (settings.state_dir / "webhook-secret").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", "from-env")
    assert local_secret(settings) == "from-env"


def test_a_busy_port_is_named_with_the_variable_to_change(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} \\(prefect\\) is already in use .* DRIFT_RETRAIN_PREFECT_PORT"):
            Stack(settings, prefect_port=port, webhook_port=free_port()).start()


def test_a_child_gets_a_group_of_its_own_and_a_death_signal_only_from_the_main_thread() -> None:
    assert child_options()["start_new_session"] is True
    assert ("preexec_fn" in child_options()) == (sys.platform == "linux")
    from_a_thread: list[dict] = []
    thread = threading.Thread(target=lambda: from_a_thread.append(child_options()))
    thread.start()
    thread.join()
    assert "preexec_fn" not in from_a_thread[0]  # the kernel would signal the child when that thread ends


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_supervisor_killed_outright_takes_its_children_with_it() -> None:
    code = ("import subprocess, sys, time; from drift_retrain.devstack.stack import child_options; "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], **child_options()); "
            "print(child.pid, flush=True); time.sleep(120)")
    supervisor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    child = 0
    try:
        child = int(supervisor.stdout.readline())
        supervisor.kill()  # SIGKILL: no clean-up of its own runs
        supervisor.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _running(child):
            assert time.monotonic() < deadline, "the child outlived its supervisor"
            time.sleep(0.05)
    finally:
        supervisor.kill()
        supervisor.wait(timeout=30)
        if child and _running(child):
            os.kill(child, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
