"""Which external run each signal's step started: written the moment a run is started, before any wait.

Azure assigns Data Factory run ids and v1 pipeline run ids itself, so a rerun can only reattach if the id
was recorded, and the rerun may land on another worker than the first attempt. So the ledger the flow
uses lives on the Prefect server every worker talks to (one Prefect Variable per step and signal);
``FileRunLedger`` keeps the same records in a folder, for code that runs without a Prefect server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from drift_retrain.atomic import read_json, write_json
from drift_retrain.names import ledger_variable_name, ledger_variable_tags
from drift_retrain.safepath import under


class RunLedger(Protocol):
    def get(self, step: str, key: str) -> dict[str, Any] | None:
        """The record of the run this step started for ``key``, or None if it never started one."""
        ...

    def put(self, step: str, key: str, run_id: str, **details: Any) -> dict[str, Any]:
        """Record (or replace) the run this step started for ``key``; durable when it returns."""
        ...


def _record(run_id: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run_id, "recorded_at": datetime.now(UTC).isoformat(), **details}


class FileRunLedger:
    """One small JSON file per (step, key), written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, step: str, key: str) -> Path:
        return under(self.root, step, f"{key}.json")

    def get(self, step: str, key: str) -> dict[str, Any] | None:
        path = self._path(step, key)
        return read_json(path) if path.exists() else None

    def put(self, step: str, key: str, run_id: str, **details: Any) -> dict[str, Any]:
        record = _record(run_id, details)
        write_json(self._path(step, key), record)
        return record


class PrefectVariableLedger:
    """The ledger on the Prefect server: every worker (and every rerun) sees what any attempt recorded."""

    def get(self, step: str, key: str) -> dict[str, Any] | None:
        from prefect.variables import Variable

        value = Variable.get(ledger_variable_name(step, key))  # None when there is none
        return dict(value) if isinstance(value, dict) else None

    def put(self, step: str, key: str, run_id: str, **details: Any) -> dict[str, Any]:
        from prefect.variables import Variable

        record = _record(run_id, {k: _jsonable(v) for k, v in details.items()})
        Variable.set(ledger_variable_name(step, key), record, tags=ledger_variable_tags(step), overwrite=True)
        return record


def _jsonable(value: Any) -> Any:
    """Variables hold JSON; ledger details are ids, names and small parameter maps."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
