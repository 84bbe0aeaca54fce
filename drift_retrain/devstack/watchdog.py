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

import signal
import sys
import time

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
    groups: list[int] = []
    for line in lines:  # type: ignore[attr-defined]
        line = line.strip()
        if line[:1] == "+" and line[1:].isdigit():
            groups.append(int(line[1:]))
        elif line[:1] == "-" and line[1:].isdigit() and int(line[1:]) in groups:
            groups.remove(int(line[1:]))
    stop_groups(groups)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the supervisor's to handle, not ours
    watch()
