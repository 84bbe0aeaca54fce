"""Which stack runs on a state dir: a lock the supervisor holds while it lives, and a record of it.

``<state_dir>/stack.lock`` is held with ``flock`` by the supervisor (``drift-retrain up`` or ``demo``) for its
whole life; the kernel releases it however that process ends, SIGKILL included (flock(2):
https://man7.org/linux/man-pages/man2/flock.2.html), so a second supervisor on the same state dir knows at
once whether the first one is alive. ``<state_dir>/stack.json`` says who it is: its pid and start time, the
ports, its config, its phase and its children's process groups; written atomically, removed on exit, and
stale (ignored) once that pid is gone. A port alone says nothing about whose stack answers on it.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from drift_retrain.devstack import processes

Phase = Literal["starting", "up", "stopping"]


@dataclass
class StackRecord:
    pid: int
    started: int  # the supervisor's start time in clock ticks (/proc/<pid>/stat): a reused pid is not it
    state_dir: str
    config: str
    prefect_port: int
    webhook_port: int
    phase: Phase = "starting"
    since: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    groups: list[int] = field(default_factory=list)

    @classmethod
    def of_this_process(cls, state_dir: Path, config: Path | None, prefect_port: int, webhook_port: int) -> StackRecord:
        me = processes.stat(os.getpid())
        return cls(os.getpid(), me.started if me else 0, str(state_dir), str(config or ""), prefect_port, webhook_port)

    def live(self) -> bool:
        """Its supervisor still runs (without a process table to tell a reused pid: its pid exists)."""
        if processes.PROC.is_dir():
            return processes.alive(self.pid, self.started or None)
        return _exists(self.pid)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record_path(state_dir: Path) -> Path:
    return state_dir / "stack.json"


def read(state_dir: Path) -> StackRecord | None:
    """The record on the state dir, None when there is none or it cannot be read."""
    try:
        return StackRecord(**json.loads(record_path(state_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def write(record: StackRecord) -> None:
    """Replace the record whole (a reader never sees half of one)."""
    path = record_path(Path(record.state_dir))
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(record)), encoding="utf-8")
    os.replace(temporary, path)


def remove(state_dir: Path, pid: int) -> None:
    """Remove the record if it is ``pid``'s (never another supervisor's)."""
    found = read(state_dir)
    if found is not None and found.pid == pid:
        record_path(state_dir).unlink(missing_ok=True)


def lock(state_dir: Path) -> IO[bytes] | None:
    """Take the state dir's lock for this process's life; None when a live supervisor holds it. The file
    stays open (closing it releases the lock) and is not inherited by children (Python's default)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / "stack.lock", "ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
