"""Durable hand-off: drift signals/s accepted by the receiver into a real Prefect server (SQLite) at 1,
8, 32 and 128 concurrent deliveries, over the best rate of raw serial ``create_flow_run`` calls to the
same server measured just before and after each level (the machine is shared: a rate measured minutes
apart would compare two different machines); every answer's status and latency kept (0 5xx, p99 <
30 s). 100-event batches are reported beside. No runner: the runs stay Scheduled, so only their
creation is measured, and Prefect's late-runs service is off (it would turn every waiting run Late, a
write per run that only this runner-less set-up causes).

The deployment is drift-to-retrain as deployed: registered from prefect.yaml by the runner's own
``load_deployments`` (its parameter schema from the flow, ``enforce_parameter_schema: true``), not a bare
deployment without a schema. A last row prices the schema check per create: the receiver's requests (which
skip it per run), the same requests checked (the Run form's path, and the receiver's before issue 17), and a
bare deployment, measured alternately.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
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

PROJECT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32, 128)
SECRET = "bench-secret"
#: Prefect server settings of the runner-less benchmark servers (see the module doc).
NO_RUNNER = {"PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}


def bodies(count: int, events: int = 1) -> list[bytes]:
    """Deliveries of ``events`` DatasetDriftDetected events each, every event a new drift run."""
    from drift_retrain.testing import dataset_drift

    return [
        json.dumps([dataset_drift(f"credit-default-drift_{uuid.uuid4().hex}") for _ in range(events)]).encode()
        for _ in range(count)
    ]


def register_as_declared(api_url: str, config: Path) -> str:
    """drift-to-retrain registered exactly as prefect.yaml declares it (schema from the flow, enforced), by the
    runner's own ``load_deployments`` in a fresh process (the flow's target list is read from ``config`` at
    import); returns the deployment id."""
    from drift_retrain.names import RETRAIN_DEPLOYMENT_NAME

    script = (
        "import sys; from pathlib import Path; from drift_retrain.devstack.runner import load_deployments; "
        "(d,) = [d for d in load_deployments(Path(sys.argv[1])) if d.name == sys.argv[2]]; print(d.apply())"
    )
    env = dict(os.environ, PREFECT_API_URL=api_url, DRIFT_RETRAIN_CONFIG=str(config), PYTHONPATH=str(PROJECT))
    done = subprocess.run(
        [sys.executable, "-c", script, str(PROJECT / "prefect.yaml"), RETRAIN_DEPLOYMENT_NAME],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"registering the deployment failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def raw_serial_rate(
    api_url: str, deployment_id: str, calls: int, config: Path, checked: bool = False
) -> tuple[float, int]:
    """Runs/s of one client calling create_flow_run back to back with the very requests the receiver
    sends (a new signal each), and how many failed. ``checked``: without the receiver's per-run skip of
    the schema check (what the Run form sends)."""
    from drift_retrain.config import load_settings
    from drift_retrain.intake.handoff import flow_run_body
    from drift_retrain.intake.parsing import to_drift_signal

    target = load_settings(config).targets[0]
    requests = [flow_run_body(to_drift_signal(json.loads(body)[0]), target) for body in bodies(calls)]
    if checked:
        for request in requests:
            request.pop("enforce_parameter_schema", None)
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
    env = dict(
        os.environ, PREFECT_API_URL=api_url, DRIFT_RETRAIN_CONFIG=str(config), DRIFT_RETRAIN_WEBHOOK_SECRET=SECRET
    )
    command = [sys.executable, "-m", "drift_retrain.cli", "webhook", "--host", HOST, "--port", str(port)]
    with server_process(
        command, env, logs / "webhook.log", lambda _: wait_until(f"http://{HOST}:{port}/healthz")
    ) as pid:
        yield f"http://{HOST}:{port}/api/eventgrid?code={SECRET}", pid


@contextmanager
def runnerless_prefect(directory: Path, config: Path) -> Iterator[tuple[Any, str]]:
    """A Prefect server (SQLite) with the drift-to-retrain deployment as deployed (for ``config``'s targets)
    and no runner; yields the server and the deployment id."""
    from drift_retrain.testing import PrefectServer

    server = PrefectServer(directory)
    with environment(**NO_RUNNER):
        server.start()
    try:
        deployment_id = register_as_declared(server.api_url, config)
        time.sleep(5)  # a just-started server finishes its own start-up writes
        yield server, deployment_id
    finally:
        server.stop()


def measure(repeats: int = 3, quick: bool = False) -> list[Row]:
    from benchmarks.intake import bench_config

    calls = 30 if quick else 90
    with tempfile.TemporaryDirectory(prefix="bench-handoff-") as tmp:
        directory = Path(tmp)
        config = bench_config(directory)
        with runnerless_prefect(directory, config) as (server, deployment_id):
            raw_serial_rate(server.api_url, deployment_id, 10, config)  # warm up
            raw_rates: list[float] = []
            by_level: dict[int, list[LoadResult]] = {c: [] for c in CONCURRENCY}
            local_best: dict[int, list[float]] = {c: [] for c in CONCURRENCY}
            batches: list[LoadResult] = []
            feedless_config = bench_config(
                directory / "feedless", **{r"\[receiver\]\n": "[receiver]\nevent_feed = false\n"}
            )
            feedless: list[LoadResult] = []
            feedless_best: list[float] = []
            with (
                receiver(server.api_url, config, directory) as (url, _),
                receiver(server.api_url, feedless_config, directory / "feedless") as (feedless_url, _),
            ):
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
            schema_cost = schema_check_cost(server, deployment_id, config, rounds=repeats, calls=calls)
    best_raw = max(raw_rates)
    rows = []
    for concurrency, results in by_level.items():
        rates = Figure.of(r.accepted_events / r.seconds for r in results)
        ratio = Figure.of(r.accepted_events / r.seconds / best for r, best in zip(results, local_best[concurrency]))
        errors = sum(r.server_errors for r in results)
        p99 = Figure.of(r.p(0.99) for r in results)
        met = ratio.median >= 0.8 and errors == 0 and p99.high < 30
        rows.append(
            Row(
                "handoff",
                f"durable hand-off, {concurrency} concurrent 1-event deliveries: signals/s vs raw serial",
                f"{ratio.show(2)}x ({rates.show(1)}/s), 5xx {errors}, p99 {p99.show(2)} s",
                f"raw serial create_flow_run, best of before/after: {Figure.of(local_best[concurrency]).show(1)}/s",
                ">= 0.8, 0 5xx, p99 < 30 s",
                met,
                {
                    "ratio": ratio,
                    "signals_per_s": rates,
                    "raw_serial_per_s": Figure.of(raw_rates),
                    "reference_per_s": Figure.of(local_best[concurrency]),
                    "best_raw_per_s": best_raw,
                    "server_errors": errors,
                    "p99_s": p99,
                    "p50_s": Figure.of(r.p(0.5) for r in results),
                    "statuses": [r.statuses for r in results],
                },
            )
        )
    rates = Figure.of(r.accepted_events / r.seconds for r in feedless)
    ratio = Figure.of(r.accepted_events / r.seconds / best for r, best in zip(feedless, feedless_best))
    rows.append(
        Row(
            "handoff",
            "durable hand-off, 1 concurrent, event feed off ([receiver] event_feed = false): signals/s vs raw serial",
            f"{ratio.show(2)}x ({rates.show(1)}/s), 5xx {sum(r.server_errors for r in feedless)}",
            f"raw serial create_flow_run, best of before/after: {Figure.of(feedless_best).show(1)}/s",
            "report",
            None,
            {
                "ratio": ratio,
                "signals_per_s": rates,
                "reference_per_s": Figure.of(feedless_best),
                "server_errors": sum(r.server_errors for r in feedless),
                "p99_s": Figure.of(r.p(0.99) for r in feedless),
            },
        )
    )
    rates = Figure.of(r.accepted_events / r.seconds for r in batches)
    errors = sum(r.server_errors for r in batches)
    p99 = Figure.of(r.p(0.99) for r in batches)
    rows.append(
        Row(
            "handoff",
            "durable hand-off, 100-event batches (4 concurrent): runs/s",
            f"{rates.show(1)}/s ({rates.median / best_raw:.2f}x), 5xx {errors}, p99 {p99.show(2)} s",
            f"raw serial create_flow_run: best {best_raw:.1f}/s",
            "report",
            None,
            {"runs_per_s": rates, "server_errors": errors, "p99_s": p99, "statuses": [r.statuses for r in batches]},
        )
    )
    rows.append(schema_cost)
    return rows


def schema_check_cost(server: Any, deployment_id: str, config: Path, rounds: int, calls: int) -> Row:
    """Raw serial creates on the deployment as deployed, the receiver's requests (schema check skipped per
    run) against the same requests checked, and against a bare deployment (no schema), alternately."""
    bare_id = server.register_deployment(name="bare-no-schema")
    raw_serial_rate(server.api_url, bare_id, 10, config)  # warm up
    skipped, checked, bare = [], [], []
    for _ in range(rounds):
        skipped.append(raw_serial_rate(server.api_url, deployment_id, calls, config)[0])
        checked.append(raw_serial_rate(server.api_url, deployment_id, calls, config, checked=True)[0])
        bare.append(raw_serial_rate(server.api_url, bare_id, calls, config)[0])
    ratio = Figure.of(c / s for c, s in zip(checked, skipped))
    bare_ratio = Figure.of(s / b for s, b in zip(skipped, bare))
    return Row(
        "handoff",
        "create_flow_run on the deployment as deployed, raw serial: schema checked / receiver's (skipped per run)",
        f"{ratio.show(2)}x ({Figure.of(checked).show(1)}/s checked, {Figure.of(skipped).show(1)}/s skipped)",
        f"bare deployment (no schema): {Figure.of(bare).show(1)}/s; skipped / bare {bare_ratio.show(2)}x",
        "report",
        None,
        {
            "checked_per_s": Figure.of(checked),
            "skipped_per_s": Figure.of(skipped),
            "bare_per_s": Figure.of(bare),
            "checked_over_skipped": ratio,
            "skipped_over_bare": bare_ratio,
        },
    )


if __name__ == "__main__":
    for row in measure(repeats=1, quick="--quick" in sys.argv):
        print(row.what, "|", row.value, "|", row.reference, "|", row.met)
