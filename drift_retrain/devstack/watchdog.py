"""The stack's watchdog: stops the supervisor's process groups when the supervisor dies without doing so
(SIGKILL, a crash, an OOM kill), grandchildren included.

    python -m drift_retrain.devstack.watchdog < pipe from the supervisor

The supervisor (``Stack``) starts it first, in a session of its own, and writes ``+<group>`` when it starts a
child (the child leads its own process group, which the child's children join: Prefect's flow-run processes
stay in the runner's group) and ``-<group>`` once it has stopped one. End of input, which the kernel delivers
however the supervisor ends, with groups still listed means the supervisor is gone: each listed group gets
SIGTERM, newest first, and SIGKILL after ``GRACE_SECONDS``. Stdlib only, so it is up in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from drift_retrain.devstack.processes import in_groups, signal_groups

GRACE_SECONDS = 10.0


def stop_groups(groups: list[int], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM each group, newest first (receiver and runner before the server they report to), and SIGKILL
    what is left of it after ``grace`` seconds."""
    for group in reversed(groups):
        signal_groups({group}, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while in_groups({group}) and time.monotonic() < deadline:
            time.sleep(0.1)
        signal_groups({group}, signal.SIGKILL)


def watch(lines: object = sys.stdin) -> None:
    """Follow the supervisor's ``+<group>`` and ``-<group>`` lines; at their end, stop the groups still listed.
    A group is a positive pid above 1: ``killpg`` of 0 would be the watchdog's own, of 1 init's."""
    groups: list[int] = []
    for line in lines:  # type: ignore[attr-defined]
        sign, number = line[:1], line[1:].strip()
        if not number.isdigit() or int(number) <= 1:
            continue
        if sign == "+":
            groups.append(int(number))
        elif sign == "-" and int(number) in groups:
            groups.remove(int(number))
    stop_groups(groups)


class Watchdog:
    """The supervisor's end: starts the watchdog and tells it which groups to stop should the supervisor die."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "drift_retrain.devstack.watchdog"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            start_new_session=True,  # outlives the supervisor; a Ctrl-C in its terminal does not reach it
        )

    def watch(self, group: int) -> None:
        self._tell(f"+{group}")

    def forget(self, group: int) -> None:
        self._tell(f"-{group}")

    def close(self) -> None:
        """End of input with nothing listed: the watchdog exits without stopping anything."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _tell(self, line: str) -> None:
        if self._proc.stdin is None:
            return
        with contextlib.suppress(OSError):  # it died: nothing to tell (and nothing it could do)
            self._proc.stdin.write(f"{line}\n".encode())
            self._proc.stdin.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the supervisor's to handle, not ours
    watch()
