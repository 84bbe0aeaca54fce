"""Run one existing drift-to-retrain flow run in this process, the way a worker does; with ``--kill-after
STEP`` the process SIGKILLs itself the moment that step's task completes: a crash exactly at that step
boundary, nothing flushed, nothing cleaned up.

    python -m tests.e2e.crash_run <flow run id> [--kill-after register-model]
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from prefect import get_client
from prefect.flow_engine import run_flow
from prefect.tasks import Task

import flows.drift_to_retrain as module


def _die(*_: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_after(step: str) -> None:
    """Give the flow's task named ``step`` a completion hook that kills this process."""
    found = [name for name, obj in vars(module).items() if isinstance(obj, Task) and obj.name == step]
    if not found:
        raise SystemExit(f"the flow has no task named {step!r}")
    for name in found:
        setattr(module, name, getattr(module, name).with_options(on_completion=[_die]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("flow_run_id")
    parser.add_argument("--kill-after")
    args = parser.parse_args()
    if args.kill_after:
        kill_after(args.kill_after)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(args.flow_run_id)
    run_flow(module.drift_to_retrain, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")


if __name__ == "__main__":
    main()
