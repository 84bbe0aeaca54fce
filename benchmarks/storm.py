"""Storm absorption: 10,000 Event Grid events in batches of 100 for 50 models, every drift signal
delivered several times (redeliveries, duplicate subscriptions), 8 deliveries at a time, a 503 retried
as Event Grid retries it. Reports the seconds until every delivery was accepted and the receiver's peak
RSS, then checks Prefect: one run per signal, none lost, none twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from benchmarks.common import Figure, Row

MODELS = 50
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/drift-retrain-demo"
    "/providers/Microsoft.MachineLearningServices/workspaces/demo-workspace"
)


def fifty_models(directory: Path) -> Path:
    """The shipped config plus 49 more targets on the same workspace, one monitor each."""
    from drift_retrain.testing import write_config

    extra = "".join(
        f"""
[[targets]]
name = "model-{i}"
backend = "local"
workspace = "{WORKSPACE}"
monitors = ["model-{i}-drift"]
model_name = "model-{i}"
[targets.copy]
source = "data/landing/model-{i}"
sink = "data/training-store/model-{i}"
[targets.training]
reference = "data/training-store/model-{i}/reference.csv"
label = "defaulted"
"""
        for i in range(1, MODELS)
    )
    return write_config(directory, extra=extra)


def storm(events: int, copies: int, seed: int) -> tuple[list[bytes], list[str]]:
    """Batches of 100 events; ``events / copies`` distinct signals each sent ``copies`` times, shuffled.
    Returns the bodies and the signals' idempotency keys."""
    from drift_retrain.intake.parsing import to_drift_signal
    from drift_retrain.testing import dataset_drift

    rng = random.Random(seed)
    monitors = ["credit-default-drift"] + [f"model-{i}-drift" for i in range(1, MODELS)]
    distinct = [
        dataset_drift(f"storm-{uuid.uuid4().hex}", monitor=monitors[n % MODELS]) for n in range(events // copies)
    ]
    sent = []
    for event in distinct:
        for _ in range(copies):
            sent.append(dict(event, id=str(uuid.uuid4())))  # a new publication or subscription: a new event id
    rng.shuffle(sent)
    bodies = [json.dumps(sent[i : i + 100]).encode() for i in range(0, len(sent), 100)]
    return bodies, sorted({to_drift_signal(e).idempotency_key for e in distinct})


async def deliver(url: str, bodies: list[bytes], concurrency: int = 8, retry_pause: float = 1.0) -> dict[str, float]:
    """Every body until it is accepted (200), retrying 503s and dropped connections like Event Grid
    (sooner than Event Grid's 10 s first retry, to measure the receiver rather than the wait)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    counts = {"retries": 0, "refused": 0}
    headers = {"content-type": "application/json", "aeg-event-type": "Notification"}

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                try:
                    status = (await http.post(url, content=body, headers=headers)).status_code
                except httpx.HTTPError:
                    status = 0
                if status == 200:
                    break
                if status not in (0, 503):
                    counts["refused"] += 1
                    break
                counts["retries"] += 1
                await asyncio.sleep(retry_pause)

    async with httpx.AsyncClient(timeout=60) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        counts["seconds"] = time.perf_counter() - began
    return counts


def runs_per_key(api_url: str, keys: list[str]) -> dict[str, int]:
    """How many flow runs Prefect holds for each idempotency key."""
    found: dict[str, int] = {}
    with httpx.Client(base_url=api_url, timeout=60) as api:
        for start in range(0, len(keys), 50):  # Prefect answers at most 200 runs a call: room for repeats
            chunk = keys[start : start + 50]
            response = api.post(
                "/flow_runs/filter", json={"flow_runs": {"idempotency_key": {"any_": chunk}}, "limit": 200}
            )
            response.raise_for_status()
            runs = response.json()
            for run in runs:
                found[run["idempotency_key"]] = found.get(run["idempotency_key"], 0) + 1
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(repeats: int = 3, events: int = 10_000, copies: int = 5) -> list[Row]:
    from benchmarks.handoff import receiver, runnerless_prefect

    seconds, rss, retries, lost, doubled, refused = [], [], 0, 0, 0, 0
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        directory = Path(tmp)
        config = fifty_models(directory)
        with runnerless_prefect(directory, config) as (server, _):
            for n in range(repeats):
                bodies, keys = storm(events, copies, seed=n)
                with receiver(server.api_url, config, directory) as (url, pid):
                    counts = asyncio.run(deliver(url, bodies))
                    rss.append(peak_rss_mb(pid))
                seconds.append(counts["seconds"])
                retries += int(counts["retries"])
                refused += int(counts["refused"])
                found = runs_per_key(server.api_url, keys)
                lost += sum(1 for k in keys if k not in found)
                doubled += sum(count - 1 for count in found.values() if count > 1)
    took, peak = Figure.of(seconds), Figure.of(rss)
    distinct = events // copies
    return [
        Row(
            "storm",
            f"storm: {events:,} events in batches of 100 ({distinct:,} signals x{copies}, {MODELS} models), 8 concurrent",
            f"{took.show(1)} s ({distinct / took.median:.0f} runs/s), peak RSS {peak.show(0)} MB",
            f"lost {lost}, duplicate runs {doubled}, 503-retried deliveries {retries}, refused {refused}",
            "report; 0 lost, 0 duplicate runs",
            lost == 0 and doubled == 0 and refused == 0,
            {
                "seconds": took,
                "peak_rss_mb": peak,
                "lost": lost,
                "duplicate_runs": doubled,
                "retries": retries,
                "refused": refused,
                "events": events,
                "distinct_signals": distinct,
            },
        )
    ]


if __name__ == "__main__":
    import sys

    for row in measure(repeats=1, events=int(sys.argv[1]) if len(sys.argv) > 1 else 1000):
        print(row.as_json())
