"""The one-machine runner: serves every deployment declared in prefect.yaml from this process.

    python -m deployments.runner [path/to/prefect.yaml]      (or: drift-retrain runner)

On one machine this replaces a work pool and worker (``prefect deploy`` + ``prefect worker start``).
The runner itself lives in ``drift_retrain.devstack.runner``.
"""

import sys
from pathlib import Path

from drift_retrain.devstack.runner import run

if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("prefect.yaml"))
