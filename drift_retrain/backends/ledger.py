"""Which external run each signal's step started: written the moment a run is started, before any wait.

Azure assigns Data Factory run ids and v1 pipeline run ids itself, so a rerun can only reattach if the id
was recorded. The ledger is one small JSON file per (step, signal) under the state dir, written
atomically; a rerun that finds it reattaches instead of starting a second run.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drift_retrain.atomic import read_json, write_json


class RunLedger:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, step: str, key: str) -> Path:
        return self.root / step / f"{key}.json"

    def get(self, step: str, key: str) -> dict[str, Any] | None:
        """The record of the run this step started for ``key``, or None if it never started one."""
        path = self._path(step, key)
        return read_json(path) if path.exists() else None

    def put(self, step: str, key: str, run_id: str, **details: Any) -> dict[str, Any]:
        record = {"run_id": run_id, "recorded_at": datetime.now(timezone.utc).isoformat(), **details}
        write_json(self._path(step, key), record)
        return record
