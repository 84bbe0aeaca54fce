"""Durable hand-off: drift signals/s accepted by the receiver into a real Prefect server (SQLite) at 1,
8, 32 and 128 concurrent deliveries, over the best rate of raw serial ``create_flow_run`` calls to the
same server measured just before and after each level (the machine is shared: a rate measured minutes
apart would compare two different machines); every answer's status and latency kept (0 5xx, p99 <
30 s). 100-event batches are reported beside. No runner: the runs stay Scheduled, so only their
creation is measured, and Prefect's late-runs service is off (it would turn every waiting run Late, a
write per run that only this runner-less set-up causes).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx

from drift_retrain.devstack.stack import HOST, free_port

from benchmarks.common import Figure, Row, environment, server_process, wait_until
from benchmarks.load import LoadResult, post_all

CONCURRENCY = (1, 8, 32, 128)
SECRET = "bench-secret"
#: Prefect server settings of the runner-less benchmark servers (see the module doc).
NO_RUNNER = {"PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}


def bodies(count: int, events: int = 1) -> list[bytes]:
    """Deliveries of ``events`` DatasetDriftDetected events each, every event a new drift run."""
    from drift_retrain.testing import dataset_drift

    return [json.dumps([dataset_drift(f"credit-default-drift_{uuid.uuid4().hex}") for _ in range(events)]).encode()
            for _ in range(count)]


def raw_serial_rate(api_url: str, deployment_id: str, calls: int, config: Path) -> tuple[float, int]:
    """Runs/s of one client calling create_flow_run back to back with the very requests the receiver
    sends (a new signal each), and how many failed."""
    from drift_retrain.config import load_settings
    from drift_retrain.intake.handoff import flow_run_body
    from drift_retrain.intake.parsing import to_drift_signal

    target = load_settings(config).targets[0]
    requests = [flow_run_body(to_drift_signal(json.loads(body)[0]), target) for body in bodies(calls)]
    failed = 0
    with httpx.Client(base_url=api_url, timeout=30) as http:
        began = time.perf_counter()
        for request in requests:
            try:
                if http.post(f"/deployments/{deployment_id}/create_flow_run", json=request).status_code >= 300:
                    failed += 1
            except httpx.TransportError:  # Prefect drops connections under write pressure
                failed += 1
        return (calls - failed) / (time.perf_counter() - began), failed


@contextmanager
def receiver(api_url: str, config: Path, logs: Path) -> Iterator[tuple[str, int]]:
    """``drift-retrain webhook`` as deployed, talking to ``api_url``; yields its events URL and pid."""
    port = free_port()
    env = dict(os.environ, PREFECT_API_URL=api_url, DRIFT_RETRAIN_CONFIG=str(config), DRIFT_RETRAIN_WEBHOOK_SECRET=SECRET)
    command = [sys.executable, "-m", "drift_retrain.cli", "webhook", "--host", HOST, "--port", str(port)]
    with server_process(command, env, logs / "webhook.log", lambda _: wait_until(f"http://{HOST}:{port}/healthz")) as pid:
        yield f"http://{HOST}:{port}/api/eventgrid?code={SECRET}", pid


@contextmanager
def runnerless_prefect(directory: Path) -> Iterator[tuple[Any, str]]:
    """A Prefect server (SQLite) with the drift-to-retrain deployment and no runner; yields the server
    and the deployment id."""
    from drift_retrain.testing import PrefectServer

    server = PrefectServer(directory)
    with environment(**NO_RUNNER):
        server.start()
    try:
        deployment_id = server.register_deployment()
        time.sleep(5)  # a just-started server finishes its own start-up writes
        yield server, deployment_id
    finally:
        server.stop()


def measure(repeats: int = 3, quick: bool = False) -> list[Row]:
    from benchmarks.intake import bench_config

    calls = 30 if quick else 90
    with tempfile.TemporaryDirectory(prefix="bench-handoff-") as tmp:
        directory = Path(tmp)
        with runnerless_prefect(directory) as (server, deployment_id):
            config = bench_config(directory)
            raw_serial_rate(server.api_url, deployment_id, 10, config)  # warm up
            raw_rates: list[float] = []
            by_level: dict[int, list[LoadResult]] = {c: [] for c in CONCURRENCY}
            local_best: dict[int, list[float]] = {c: [] for c in CONCURRENCY}
            batches: list[LoadResult] = []
            feedless_config = bench_config(directory / "feedless", **{r"\[receiver\]\n": "[receiver]\nevent_feed = false\n"})
            feedless: list[LoadResult] = []
            feedless_best: list[float] = []
            with receiver(server.api_url, config, directory) as (url, _), \
                    receiver(server.api_url, feedless_config, directory / "feedless") as (feedless_url, _):
                for warm_url in (url, feedless_url):  # warm up: deployment looked up, connections open
                    asyncio.run(post_all(warm_url, bodies(10), 1))
                before = raw_serial_rate(server.api_url, deployment_id, calls, config)[0]
                raw_rates.append(before)
                for _ in range(repeats):
                    for concurrency in CONCURRENCY:
                        count = 20 if quick else max(150, 3 * concurrency)
                        by_level[concurrency].append(asyncio.run(post_all(url, bodies(count), concurrency)))
                        after = raw_serial_rate(server.api_url, deployment_id, calls, config)[0]
                        raw_rates.append(after)
                        local_best[concurrency].append(max(before, after))
                        before = after
                        if concurrency == 1:  # the same level without the event feed's posts to Prefect
                            feedless.append(asyncio.run(post_all(feedless_url, bodies(count), 1)))
                            after = raw_serial_rate(server.api_url, deployment_id, calls, config)[0]
                            raw_rates.append(after)
                            feedless_best.append(max(before, after))
                            before = after
                    batches.append(asyncio.run(post_all(url, bodies(4 if quick else 10, 100), 4, events_per_body=100)))
    best_raw = max(raw_rates)
    rows = []
    for concurrency, results in by_level.items():
        rates = Figure.of(r.accepted_events / r.seconds for r in results)
        ratio = Figure.of(r.accepted_events / r.seconds / best for r, best in zip(results, local_best[concurrency]))
        errors = sum(r.server_errors for r in results)
        p99 = Figure.of(r.p(0.99) for r in results)
        met = ratio.median >= 0.8 and errors == 0 and p99.high < 30
        rows.append(Row(
            "handoff", f"durable hand-off, {concurrency} concurrent 1-event deliveries: signals/s vs raw serial",
            f"{ratio.show(2)}x ({rates.show(1)}/s), 5xx {errors}, p99 {p99.show(2)} s",
            f"raw serial create_flow_run, best of before/after: {Figure.of(local_best[concurrency]).show(1)}/s",
            ">= 0.8, 0 5xx, p99 < 30 s", met,
            {"ratio": ratio, "signals_per_s": rates, "raw_serial_per_s": Figure.of(raw_rates),
             "reference_per_s": Figure.of(local_best[concurrency]), "best_raw_per_s": best_raw,
             "server_errors": errors, "p99_s": p99, "p50_s": Figure.of(r.p(0.5) for r in results),
             "statuses": [r.statuses for r in results]},
        ))
    rates = Figure.of(r.accepted_events / r.seconds for r in feedless)
    ratio = Figure.of(r.accepted_events / r.seconds / best for r, best in zip(feedless, feedless_best))
    rows.append(Row(
        "handoff", "durable hand-off, 1 concurrent, event feed off ([receiver] event_feed = false): signals/s vs raw serial",
        f"{ratio.show(2)}x ({rates.show(1)}/s), 5xx {sum(r.server_errors for r in feedless)}",
        f"raw serial create_flow_run, best of before/after: {Figure.of(feedless_best).show(1)}/s", "report", None,
        {"ratio": ratio, "signals_per_s": rates, "reference_per_s": Figure.of(feedless_best),
         "server_errors": sum(r.server_errors for r in feedless), "p99_s": Figure.of(r.p(0.99) for r in feedless)},
    ))
    rates = Figure.of(r.accepted_events / r.seconds for r in batches)
    errors = sum(r.server_errors for r in batches)
    p99 = Figure.of(r.p(0.99) for r in batches)
    rows.append(Row(
        "handoff", "durable hand-off, 100-event batches (4 concurrent): runs/s",
        f"{rates.show(1)}/s ({rates.median / best_raw:.2f}x), 5xx {errors}, p99 {p99.show(2)} s",
        f"raw serial create_flow_run: best {best_raw:.1f}/s", "report", None,
        {"runs_per_s": rates, "server_errors": errors, "p99_s": p99, "statuses": [r.statuses for r in batches]},
    ))
    return rows


if __name__ == "__main__":
    for row in measure(repeats=1, quick="--quick" in sys.argv):
        print(row.what, "|", row.value, "|", row.reference, "|", row.met)
