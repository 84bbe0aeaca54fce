"""Pieces of the one-machine stack that need no server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drift_retrain.config import load_settings
from drift_retrain.devstack import processes, record
from drift_retrain.devstack import stack as stack_module
from drift_retrain.devstack.stack import HURRIED_SECONDS, holder_of, stop_running_stack
from drift_retrain.devstack.watchdog import watch
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


# -- the stack's life: record and lock, watchdog, bounded stop -------------------------------------------------

def test_the_lock_admits_one_supervisor_per_state_dir(tmp_path: Path) -> None:
    first = record.lock(tmp_path)
    assert first is not None
    assert record.lock(tmp_path) is None  # another open of the file: flock refuses it while the first holds it
    first.close()  # as the kernel does when its process dies, however it dies
    again = record.lock(tmp_path)
    assert again is not None
    again.close()


def test_a_record_is_stale_once_its_process_is_gone(tmp_path: Path) -> None:
    mine = record.StackRecord.of_this_process(tmp_path, tmp_path / "c.toml", 1, 2)
    record.write(mine)
    assert record.read(tmp_path) == mine and mine.live()
    assert not record.StackRecord(**{**mine.__dict__, "started": mine.started + 1}).live()  # a reused pid
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not record.StackRecord(**{**mine.__dict__, "pid": gone.pid}).live()
    record.remove(tmp_path, pid=gone.pid)  # not its record: kept
    assert record.read(tmp_path) == mine
    record.remove(tmp_path, pid=os.getpid())
    assert record.read(tmp_path) is None


def test_down_without_a_running_stack_says_so(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    assert stop_running_stack(settings) == f"no stack of {settings.state_dir} is running"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_busy_port_names_the_process_that_holds_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert holder_of(busy.getsockname()[1]).startswith(f"pid {os.getpid()} (")


def _group_with_a_grandchild() -> tuple[subprocess.Popen[bytes], int]:
    """A process leading its own group with a child of its own in that group (as the runner and its flow
    runs are); returns it and the grandchild's pid."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time; c = subprocess.Popen(['sleep', '120']); print(c.pid, flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    return parent, int(parent.stdout.readline())  # type: ignore[union-attr]


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_watchdog_stops_the_groups_it_was_told_of_and_forgets_stopped_ones() -> None:
    kept, kept_grandchild = _group_with_a_grandchild()
    stopped, stopped_grandchild = _group_with_a_grandchild()
    try:
        watch([f"+{kept.pid}\n", f"+{stopped.pid}\n", f"-{kept.pid}\n"])  # end of input: the supervisor is gone
        assert stopped.wait(timeout=30) is not None
        _wait_until(lambda: not processes.alive(stopped_grandchild), "the grandchild outlived the watchdog")
        assert kept.poll() is None and processes.alive(kept_grandchild)
    finally:
        for proc in (kept, stopped):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_supervisor_killed_outright_leaves_no_grandchild_behind() -> None:
    """What the death signal alone misses: a part's own children. The watchdog's end of input comes
    however the supervisor ends."""
    code = (
        "import subprocess, sys\n"
        "watchdog = subprocess.Popen([sys.executable, '-m', 'drift_retrain.devstack.watchdog'], stdin=subprocess.PIPE, start_new_session=True)\n"
        "part = subprocess.Popen([sys.executable, '-c', \"import subprocess, time; c = subprocess.Popen(['sleep', '120']); print(c.pid, flush=True); time.sleep(120)\"], stdout=subprocess.PIPE, start_new_session=True)\n"
        "watchdog.stdin.write(f'+{part.pid}\\n'.encode()); watchdog.stdin.flush()\n"
        "print(part.pid, int(part.stdout.readline()), watchdog.pid, flush=True)\n"
        "import time; time.sleep(120)\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=stack_module.PROJECT_DIR)
    part = grandchild = watchdog = 0
    try:
        part, grandchild, watchdog = map(int, supervisor.stdout.readline().split())  # type: ignore[union-attr]
        supervisor.kill()
        supervisor.wait(timeout=30)
        for pid in (part, grandchild, watchdog):
            _wait_until(lambda: not processes.alive(pid), f"{pid} outlived its supervisor")
    finally:
        supervisor.kill()
        supervisor.wait(timeout=30)
        for pid in (part, grandchild, watchdog):
            if pid and processes.alive(pid):
                os.kill(pid, signal.SIGKILL)


def _stack_with_a_part(tmp_path: Path, name: str, code: str) -> tuple[Stack, subprocess.Popen[bytes]]:
    """A Stack that owns its state dir and one part running ``code`` (which prints 'ready' when set)."""
    settings = load_settings(write_config(tmp_path))
    stack = Stack(settings, prefect_port=free_port(), webhook_port=free_port())
    stack._lock = record.lock(settings.state_dir)
    part = stack._spawn(name, [sys.executable, "-c", code])
    _wait_until(lambda: "ready" in (stack.logs / f"{name}.log").read_text(), "the part never got ready")
    return stack, part


STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_part_deaf_to_sigterm_is_killed_after_its_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_module, "PART_SECONDS", 3.0)
    stack, part = _stack_with_a_part(tmp_path, "webhook", STUBBORN)
    began = time.monotonic()
    stack.stop()
    assert part.poll() == -signal.SIGKILL
    assert 3.0 <= time.monotonic() - began < 3.0 + 10


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_second_signal_during_the_stop_cuts_its_waits_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_module, "PART_SECONDS", 120.0)
    stack, part = _stack_with_a_part(tmp_path, "webhook", STUBBORN)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()  # "Ctrl-C again"
    began = time.monotonic()
    stack.stop()  # neither interrupted by it (the part would be left) nor waiting the part's 120 s
    assert part.poll() == -signal.SIGKILL
    assert time.monotonic() - began < 0.5 + HURRIED_SECONDS + 10


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_drain_waits_for_runs_in_flight_not_for_the_queue(tmp_path: Path) -> None:
    # A runner whose run in flight ends after 2 s, then picks up the next one (60 s) from its queue.
    runner = ("import subprocess; print('ready', flush=True); "
              "subprocess.Popen(['sleep', '2']).wait(); subprocess.Popen(['sleep', '60']).wait()")
    stack, part = _stack_with_a_part(tmp_path, "runner", runner)
    _wait_until(lambda: bool(processes.children(part.pid)), "no run in flight")
    began = time.monotonic()
    stack.stop(drain_seconds=45)
    assert 1.0 < time.monotonic() - began < 25  # the run in flight finished; the queued one was not waited for
    assert part.poll() is not None and not processes.in_groups({part.pid})


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_docs_give_the_bounds_and_the_attach_line_the_code_has(tmp_path: Path) -> None:
    from drift_retrain.devstack.watchdog import GRACE_SECONDS

    section = (stack_module.PROJECT_DIR / "docs" / "reliability.md").read_text().split("## Stopping the stack")[1]
    bounds = {
        "drain": f"up to {stack_module.DRAIN_SECONDS:.0f} s to finish",
        "part": f"SIGKILL {stack_module.PART_SECONDS:.0f} s later",
        "total": f"{stack_module.STOP_SECONDS:.0f} s in all (`STOP_SECONDS`",
        "hurried": f"cut to {HURRIED_SECONDS:.0f} s",
        "killed": f"SIGKILLs it {GRACE_SECONDS:.0f} s later (the direct children also get SIGTERM from Linux's "
        f"parent-death signal) | {3 * GRACE_SECONDS:.0f} s |",
    }
    assert [name for name, text in bounds.items() if text not in " ".join(section.split())] == []
    stack = Stack(load_settings(write_config(tmp_path)), prefect_port=1, webhook_port=2)
    stack.attached = record.StackRecord(123, 0, str(stack.settings.state_dir), "", 1, 2, "up", "<time>")
    shown = stack.attach_note.replace(str(stack.settings.state_dir), "<state_dir>").replace("123", "<n>")
    assert f"`{shown.split(' (')[0]}`" in " ".join(section.split())
