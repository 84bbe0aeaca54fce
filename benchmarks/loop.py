"""Event-loop responsiveness under big batches: how long ``GET /metrics`` takes while 4 clients post 4 MB
batches (5,000 drift events each, every one a routed signal) as fast as the receiver answers.

Measured on the receiver as served (a large delivery's parse, routing, audit lines and answer in a worker
thread, ``receiver``) and on the same receiver doing all of it on the event loop (``receiver-inline``, what
it did before), each in its own process, in alternating rounds of the same run. Hand-off goes to a no-op
sink, as in the intake benchmark.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from benchmarks.common import Figure, Row
from benchmarks.intake import SECRET, bench_config, serving

CLIENTS = 4
EVENTS = 5000  # Event Grid's largest batch; with these events just under the 4 MiB body limit


def big_batch(events: int = EVENTS) -> bytes:
    from drift_retrain.testing import dataset_drift

    return json.dumps([dataset_drift(f"credit-default-drift_{i}") for i in range(events)]).encode()


def metrics_latency(url: str, body: bytes, seconds: float) -> dict[str, object]:
    """Poll ``/metrics`` every 50 ms while ``CLIENTS`` threads post ``body`` back to back; latencies in ms."""
    base = url.split("/api/eventgrid")[0]
    stop = threading.Event()
    statuses: list[int] = []

    def post_loop() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                response = http.post(url, content=body, headers={"content-type": "application/json"})
                statuses.append(response.status_code)

    latencies: list[float] = []
    with ThreadPoolExecutor(CLIENTS) as pool, httpx.Client(timeout=120) as probe:
        posters = [pool.submit(post_loop) for _ in range(CLIENTS)]
        time.sleep(0.5)  # the posts are under way
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            began = time.perf_counter()
            probe.get(f"{base}/metrics").raise_for_status()
            latencies.append((time.perf_counter() - began) * 1000)
            time.sleep(0.05)
        stop.set()
        for poster in posters:
            poster.result()
    return {"latencies_ms": latencies, "statuses": sorted(set(statuses)), "deliveries": len(statuses)}


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) >= 2 else values[0]


def measure(rounds: int = 3, seconds: float = 10) -> list[Row]:
    body = big_batch()
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        directory = Path(tmp)
        config = bench_config(directory)
        runs: dict[str, list[dict[str, object]]] = {"receiver": [], "receiver-inline": []}
        with serving("receiver", config, directory) as threaded, serving("receiver-inline", config, directory) as inline:
            for _ in range(rounds):
                runs["receiver-inline"].append(metrics_latency(inline, body, seconds))
                runs["receiver"].append(metrics_latency(threaded, body, seconds))

    def figures(name: str) -> tuple[Figure, Figure]:
        p95 = [_p95(r["latencies_ms"]) for r in runs[name]]  # type: ignore[arg-type]
        worst = [max(r["latencies_ms"]) for r in runs[name]]  # type: ignore[type-var]
        return Figure.of(p95), Figure.of(worst)

    after_p95, after_max = figures("receiver")
    before_p95, before_max = figures("receiver-inline")
    ratio = Figure.of(_p95(a["latencies_ms"]) / _p95(b["latencies_ms"])  # type: ignore[arg-type]
                      for a, b in zip(runs["receiver"], runs["receiver-inline"], strict=True))
    statuses = {name: sorted({s for r in found for s in r["statuses"]}) for name, found in runs.items()}  # type: ignore[attr-defined]
    deliveries = {name: sum(r["deliveries"] for r in found) for name, found in runs.items()}  # type: ignore[misc]
    return [Row(
        "loop", f"GET /metrics while {CLIENTS} clients post {len(body) / 1e6:.1f} MB batches ({EVENTS:,} signals): "
        "p95 ms, large deliveries worked off the event loop",
        f"{after_p95.show(0)} ms (max {after_max.show(0)}); {ratio.show(3)}x of all on the loop",
        f"all on the event loop: {before_p95.show(0)} ms (max {before_max.show(0)})",
        "<= 0.25x", ratio.median <= 0.25,
        {"after_p95_ms": after_p95, "after_max_ms": after_max, "before_p95_ms": before_p95,
         "before_max_ms": before_max, "ratio": ratio, "statuses": statuses, "deliveries": deliveries,
         "load": f"{CLIENTS} clients x {seconds:g} s x {rounds} alternating rounds; secret {SECRET!r}"},
    )]


if __name__ == "__main__":
    for row in measure(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 1, seconds=8):
        print(row.as_json())
