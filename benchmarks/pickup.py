"""Event -> running and orchestration overhead, on the embedded default (``Stack``: Prefect server on
SQLite, the runner serving prefect.yaml, the receiver), as ``make demo`` runs it.

Event -> running: seconds from the webhook POST to the flow run reaching Running, split by the run's
own state history into: the receiver's acknowledgement (run recorded, Scheduled), the runner's pick-up
(Scheduled -> Pending: its polling), and the flow process's start (Pending -> Running: process spawn,
imports, loading the flow). Events go one at a time, each waited for to the end.

Orchestration overhead: the flow called in this process against the same server, with every backend
method timed; overhead = flow wall time - time inside the backends (local backend, forced retrain).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from drift_retrain.devstack.stack import Stack, free_port, prefect_settings

from benchmarks.common import Figure, Row, environment


def _states(api: httpx.Client, flow_run_id: str) -> dict[str, float]:
    """First time (epoch s) the run entered each state type."""
    states = api.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()
    first: dict[str, float] = {}
    for state in sorted(states, key=lambda s: s["timestamp"]):
        stamp = datetime.fromisoformat(state["timestamp"].replace("Z", "+00:00")).timestamp()
        first.setdefault(state["type"], stamp)
    return first


def _wait_final(api: httpx.Client, flow_run_id: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api.get(f"/flow_runs/{flow_run_id}").json().get("state") or {}
        if state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state["type"]
        time.sleep(0.2)
    return "TIMEOUT"


def event_to_running(stack: Stack, event: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    from drift_retrain.devstack.sender import post_events

    found: dict[str, list[float]] = {"total": [], "ack": [], "pickup": [], "start": [], "flow": []}
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        for i in range(repeats + 1):  # the first one warms the runner and the OS file cache; not counted
            sent = dict(event, id=str(uuid.uuid4()), data=dict(event["data"], RunId=f"{event['data']['RunId']}-b{uuid.uuid4().hex[:8]}"))
            posted = time.time()
            response = post_events(stack.webhook_url, [sent], stack.secret)
            acked = time.time()
            response.raise_for_status()
            flow_run_id = response.json()["accepted"][0]["flow_run_id"]
            end = _wait_final(api, flow_run_id)
            states = _states(api, flow_run_id)
            if i == 0 or "RUNNING" not in states:
                continue
            found["total"].append(states["RUNNING"] - posted)
            found["ack"].append(acked - posted)
            found["pickup"].append(states.get("PENDING", states["RUNNING"]) - states["SCHEDULED"])
            found["start"].append(states["RUNNING"] - states.get("PENDING", states["RUNNING"]))
            if end == "COMPLETED" and "COMPLETED" in states:
                found["flow"].append(states["COMPLETED"] - states["RUNNING"])
    return found


def import_seconds(repeats: int = 3) -> dict[str, Figure]:
    """What a fresh flow process pays before the flow starts: the interpreter with prefect, and our flow."""
    out: dict[str, Figure] = {}
    for label, code in (("python", "pass"), ("import prefect", "import prefect"),
                        ("import the flow", "import flows.drift_to_retrain")):
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)
            times.append(time.perf_counter() - began)
        out[label] = Figure.of(times)
    return out


class _Timed:
    """Forwards every call to the backend and adds its duration to ``spent``."""

    def __init__(self, inner: Any, spent: list[float]) -> None:
        self._inner, self._spent = inner, spent

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._spent.append(time.perf_counter() - began)

        return timed


def orchestration_overhead(stack: Stack, event: dict[str, Any], repeats: int) -> tuple[list[float], list[float], list[float]]:
    """(overhead, wall, backend) seconds per forced retrain, the flow run in this process against the
    stack's Prefect server."""
    import prefect.settings
    from prefect.settings import temporary_settings

    stack_env = prefect_settings(stack.settings.state_dir, stack.prefect_port)
    with environment(**stack_env, DRIFT_RETRAIN_CONFIG=str(stack.settings.source_file)), \
            temporary_settings({getattr(prefect.settings, name): value for name, value in stack_env.items()}):
        return _timed_retrains(stack, event, repeats)


def _timed_retrains(stack: Stack, event: dict[str, Any], repeats: int) -> tuple[list[float], list[float], list[float]]:
    if str(stack.project_dir) not in sys.path:
        sys.path.insert(0, str(stack.project_dir))
    import flows.drift_to_retrain as module
    from drift_retrain.backends.base import Backends
    from drift_retrain.intake.parsing import to_drift_signal

    real_build = module.build_backends
    spent: list[float] = []

    def timed_backends(settings: Any, target: Any) -> Backends:
        b = real_build(settings, target)
        return Backends(_Timed(b.details, spent), _Timed(b.copy, spent), _Timed(b.training, spent), _Timed(b.registry, spent))

    module.build_backends = timed_backends
    overhead, walls, inside = [], [], []
    try:
        for i in range(repeats + 1):  # the first warms the flow's imports and Prefect's client; not counted
            sent = dict(event, data=dict(event["data"], RunId=f"{event['data']['RunId']}-o{uuid.uuid4().hex[:8]}"))
            signal = to_drift_signal(sent)
            spent.clear()
            began = time.perf_counter()
            module.drift_to_retrain(signal=signal, force=True)
            wall = time.perf_counter() - began
            if i:
                walls.append(wall)
                inside.append(sum(spent))
                overhead.append(wall - sum(spent))
    finally:
        module.build_backends = real_build
    return overhead, walls, inside


def measure(repeats: int = 7) -> list[Row]:
    from drift_retrain.devstack import demo_data
    from drift_retrain.backends.local.monitor import drift_event, run_monitor
    from drift_retrain.config import load_settings
    from drift_retrain.testing import write_config

    with tempfile.TemporaryDirectory(prefix="bench-pickup-") as tmp:
        settings = load_settings(write_config(Path(tmp)))
        monitor = settings.local_monitors[0]
        demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
        with Stack(settings, prefect_port=free_port(), webhook_port=free_port()) as stack:
            event = drift_event(run_monitor(monitor, settings))
            found = event_to_running(stack, event, repeats)
            overhead, walls, inside = orchestration_overhead(stack, event, max(3, repeats // 2))
    imports = import_seconds()
    total = Figure.of(found["total"])
    p95 = _percentile(found["total"], 0.95)
    parts = {k: Figure.of(v) for k, v in found.items()}
    rows = [Row(
        "pickup", "event -> running (webhook POST to flow run Running), s",
        f"p50 {total.median:.2f}, p95 {p95:.2f} (min {total.low:.2f}, max {total.high:.2f})",
        f"ack {parts['ack'].show(2)} + pick-up {parts['pickup'].show(2)} + process start {parts['start'].show(2)}; "
        f"imports: python {imports['python'].show(2)}, prefect {imports['import prefect'].show(2)}, "
        f"flow {imports['import the flow'].show(2)}",
        "p95 <= 2 s", p95 <= 2,
        {"total_s": total, "p95_s": p95, **{f"{k}_s": v for k, v in parts.items() if k != "total"},
         "imports_s": imports, "runs": len(found["total"])},
    )]
    over = Figure.of(overhead)
    rows.append(Row(
        "overhead", "orchestration overhead per retrain (flow wall - time in backends), s",
        over.show(2), f"flow wall {Figure.of(walls).show(2)} s, in backends {Figure.of(inside).show(2)} s",
        "<= 1 s", over.median <= 1,
        {"overhead_s": over, "wall_s": Figure.of(walls), "backends_s": Figure.of(inside)},
    ))
    return rows


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = share * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


if __name__ == "__main__":
    for row in measure(repeats=int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(json.dumps(row.as_json(), indent=1, default=str))
