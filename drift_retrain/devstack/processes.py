"""What the process table says, read from Linux's /proc (proc(5): https://man7.org/linux/man-pages/man5/proc.5.html):
a process's parent, group and start time, its live children, who listens on a port, and the environment it
was started with. Elsewhere every answer is "nothing known" (empty, None), never an error."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """Fields of /proc/<pid>/stat: state (Z for a zombie), parent, process group, start time (clock ticks
    since boot: a pid reused by a new process has another)."""

    state: str
    parent: int
    group: int
    started: int


def stat(pid: int) -> ProcStat | None:
    """The process's stat, None once it is gone (a zombie still has one: check ``state``)."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return ProcStat(state=fields[0], parent=int(fields[1]), group=int(fields[2]), started=int(fields[19]))


def alive(pid: int, started: int | None = None) -> bool:
    """The process runs (not a zombie) and, when ``started`` is given, is the one that started then."""
    found = stat(pid)
    return found is not None and found.state != "Z" and (started is None or found.started == started)


def _table() -> dict[int, ProcStat]:
    table = {}
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if entry.name.isdigit() and (found := stat(int(entry.name))) is not None:
            table[int(entry.name)] = found
    return table


def children(pid: int) -> list[int]:
    """Live process ids whose parent is ``pid``; zombies have exited already and do not count."""
    return [child for child, found in _table().items() if found.parent == pid and found.state != "Z"]


def descendants(pid: int) -> list[int]:
    """Every live process under ``pid``, children first."""
    table = _table()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop(0)
        below = [p for p, s in table.items() if s.parent == parent and s.state != "Z" and p not in found]
        found += below
        frontier += below
    return found


def in_groups(groups: set[int]) -> list[int]:
    """Live processes whose process group is one of ``groups``."""
    return [pid for pid, found in _table().items() if found.group in groups and found.state != "Z"]


def signal_groups(groups: set[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each process group that still has a member."""
    for group in groups:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass


def environment(pid: int) -> dict[str, str]:
    """The environment the process was started with (empty when unreadable: another user's process)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def command_line(pid: int) -> str:
    """The process's command line, arguments joined by spaces ('' when unreadable)."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def listener(port: int) -> int | None:
    """The process listening on TCP ``port`` (IPv4 or IPv6), when the process table tells: the socket's inode
    from /proc/net/tcp{,6}, then the process holding it among /proc/<pid>/fd (only our own user's are readable)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEX_IP:HEX_PORT, st 0A is LISTEN (include/net/tcp_states.h)
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None
