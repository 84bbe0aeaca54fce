"""The layout benchmark (``benchmarks/scale.py``) runs: its balancer spreads requests, its servers carry
drift-to-retrain as deployed, and one tiny pass over the three layouts fills every row. Figures and targets
are ``make bench``'s business, never asserted here; only that each cell converged (one run per signal)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from benchmarks import __main__ as bench
from benchmarks import scale
from drift_retrain.devstack import services
from drift_retrain.devstack.stack import HOST, free_port
from drift_retrain.testing import running

MISSING = services.missing_binaries()
needs_services = pytest.mark.skipif(bool(MISSING), reason=f"the scale benchmark needs {', '.join(MISSING)}")


def _named(name: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-backend", name.encode())]})
        await send({"type": "http.response.body", "body": name.encode()})

    return app


def test_the_balancer_takes_turns_per_request_on_one_connection() -> None:
    with running(_named("a")) as a, running(_named("b")) as b:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(scale.balance_app([a, b]), host=HOST, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10) as client:  # one keep-alive connection
                for _ in range(200):
                    if server.started:
                        break
                    threading.Event().wait(0.05)
                answers = Counter(client.post("/api/anything?x=1", content=b"{}").text for _ in range(6))
        finally:
            server.should_exit = True
            thread.join(10)
    assert answers == {"a": 3, "b": 3}


@pytest.mark.slow
def test_the_layout_carries_the_deployment_as_prefect_yaml_declares_it(tmp_path: Path) -> None:
    from benchmarks.storm import fifty_models

    config = fifty_models(tmp_path)
    with scale.layout("sqlite", tmp_path / "servers", config) as running_layout:
        deployment = httpx.get(
            f"{running_layout.api_url}/deployments/{running_layout.deployment_id}", timeout=30
        ).json()
    assert deployment["name"] == "drift-to-retrain"
    assert deployment["enforce_parameter_schema"] is True
    assert "DriftSignal" in json.dumps(deployment["parameter_openapi_schema"])


@pytest.mark.slow
@needs_services
def test_one_tiny_pass_over_the_three_layouts_fills_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    levels = (1, 32)
    monkeypatch.setattr(
        bench,
        "_suites",
        lambda quick: {"scale": lambda: scale.measure(levels=levels, per_level=6, storm_events=100, side=False)},
    )
    out = tmp_path / "results.json"
    assert bench.main(["--only", "scale", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert not [r for r in rows if "could not run" in r["what"]], rows
    cells = [r["data"] for r in rows if "concurrent: signals/s" in r["what"] and "side by side" not in r["what"]]
    assert sorted((c["layout"], c["replicas"], c["concurrency"]) for c in cells) == sorted(
        (layout, replicas, level) for layout in scale.LAYOUTS for replicas in scale.REPLICAS for level in levels
    )
    assert all(c["lost"] == 0 and c["duplicate_runs"] == 0 and c["prefect_cpu_s"] > 0 for c in cells), cells
    storms = [r["data"] for r in rows if r["what"].startswith("scale, storm")]
    assert len(storms) == len(scale.LAYOUTS) * len(scale.REPLICAS)
    assert all(s["lost"] == 0 and s["duplicates"] == 0 for s in storms), storms
    assert sum("CPU per signal" in r["what"] for r in rows) == len(scale.LAYOUTS)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@needs_services
def test_the_compared_layouts_side_by_side_fill_the_ratio_rows_and_the_503_burst_converges(tmp_path: Path) -> None:
    with scale.side_by_side(tmp_path) as running:
        turns = scale.compare(running, levels=(32, 128), rounds=1, per_level=6)
        burst = scale.disrupted_burst(running["redis"], count=64)
    rows = [r.as_json() for r in scale.compare_rows(turns)] + [scale.disrupted_row(burst, "redis").as_json()]
    side = [r["data"] for r in rows if "side by side" in r["what"] and "signals/s" in r["what"]]
    assert sorted((c["layout"], c["concurrency"]) for c in side) == sorted(
        (layout, level) for layout in scale.COMPARED for level in (32, 128)
    )
    assert all(
        c["lost"] == 0 and c["duplicate_runs"] == 0 and c["cpu_ms_per_signal"]["api"]["median"] > 0 for c in side
    ), side
    ratios = [r for r in rows if "side by side" in r["what"] and " vs " in r["what"]]
    assert [r["data"]["layouts"] for r in ratios] == [
        ["redis", "postgres"],
        ["redis1", "postgres"],
        ["redis", "redis1"],
    ] * 2
    (burst_row,) = [r["data"] for r in rows if "mid-burst" in r["what"]]
    assert burst_row["statuses"].get(503, 0) > 0 and burst_row["runs_per_signal"] == {1: 64}, burst_row
