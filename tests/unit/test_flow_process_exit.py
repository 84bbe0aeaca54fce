"""A flow process leaves at once once its run is suspended or done: Python's last garbage collection at exit
(seconds of CPU over Prefect's, pydantic's and the Azure SDKs' objects on a loaded machine, while the runner's
slot stays taken) finds the heap frozen and skips it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Registered before the flow module is imported, so it runs after the flow's own exit hook (atexit is LIFO).
PROBE = """
import atexit, gc, sys
atexit.register(lambda: print(gc.get_freeze_count(), file=sys.stderr))
import flows.drift_to_retrain
from drift_retrain.backends.azure import mlclient  # what a retrain on Azure holds too
gc.collect()
print(len(gc.get_objects()), file=sys.stderr)
"""


def test_the_flow_process_heap_is_frozen_at_exit_so_the_final_collection_skips_it() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    tracked, frozen = (int(line) for line in done.stderr.split()[-2:])
    assert tracked > 10_000 and frozen >= 0.9 * tracked, done.stderr
