"""Layouts side by side (issue 17): the durable hand-off at 1, 8, 32 and 128 concurrent 1-event deliveries and
the storm, each with one and with two receiver replicas, on

- ``sqlite``: one ``prefect server start`` on SQLite (the one-machine default);
- ``postgres``: one ``prefect server start`` on PostgreSQL;
- ``redis``: Prefect's multi-server layout on PostgreSQL and Redis (messaging, event ordering, concurrency
  leases, the services' docket): migrations run apart (``prefect server database upgrade -y``), two
  ``prefect server start --no-services`` API processes behind a balancer, one ``prefect server services start``.

Everything runs against drift-to-retrain as deployed (``benchmarks.handoff.register_as_declared``), with no
runner (runs stay Scheduled; the late-runs service is off, see ``benchmarks.handoff``). The balancer is
``python -m benchmarks.scale balance``: a small per-request HTTP round-robin proxy in its own process (as
NGINX balances, per request; a TCP proxy would pin each receiver's one keep-alive connection to one API), its
CPU reported apart. Two receivers share the deliveries round-robin per request from the load client (Event
Grid posts to one endpoint; the balancer in front of the receivers is left out so its cost does not count).

For each cell: signals/s, 5xx (and dropped connections) of all deliveries, p99 latency, then every refused
delivery is redelivered as Event Grid does (until accepted) and Prefect is asked how many runs each signal
has (exactly one each is the target). CPU per signal: the Prefect server processes' user+system CPU time
(psutil, the process and its children) over the level, divided by the signals; the database's (PostgreSQL
and Redis) apart.

PostgreSQL and Redis are started by ``drift_retrain.devstack.services`` (throwaway, under a temporary dir).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import Figure, Row, server_process, wait_until
from benchmarks.handoff import CONCURRENCY, NO_RUNNER, bodies, receiver, register_as_declared
from benchmarks.load import LoadResult

LAYOUTS = ("sqlite", "postgres", "redis")
LABELS = {
    "sqlite": "SQLite, 1 API process",
    "postgres": "PostgreSQL, 1 API process",
    "redis": "PostgreSQL + Redis, 2 API processes",
}
REPLICAS = (1, 2)
PREFECT = str(Path(sys.executable).with_name("prefect"))


@dataclass
class Layout:
    """A running Prefect layout: the API URL receivers use, the deployment, and whose CPU counts as what."""

    name: str
    api_url: str
    deployment_id: str
    prefect_pids: list[int]
    database_pids: list[int] = field(default_factory=list)
    balancer_pids: list[int] = field(default_factory=list)


# -- CPU -----------------------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU seconds of these processes and their live children."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            leader = psutil.Process(pid)
            for proc in [leader, *leader.children(recursive=True)]:
                try:
                    times = proc.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
    return total


# -- the layouts ---------------------------------------------------------------------------------------


def prefect_env(home: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    from drift_retrain.devstack.stack import prefect_settings

    return dict(os.environ) | prefect_settings(home, port) | NO_RUNNER | extra


@contextmanager
def prefect_process(command: list[str], env: dict[str, str], log: Path, health: str | None) -> Iterator[int]:
    """A Prefect server process until stopped; ``health``: wait until it answers 200 (else: still up after 3 s)."""

    def ready(proc: Any) -> None:
        deadline = time.monotonic() + (3 if health is None else 180)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} exited: see {log}")
            if health is not None and _answers(health):
                return
            time.sleep(0.25)
        if health is not None:
            raise RuntimeError(f"{health} did not answer 200 within 180 s: see {log}")

    with server_process(command, env, log, ready) as pid:
        yield pid


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def balancer(backends: list[str], log: Path) -> Iterator[tuple[str, int]]:
    """``python -m benchmarks.scale balance`` in front of ``backends`` (base URLs); yields its URL and pid."""
    from drift_retrain.devstack.stack import HOST, free_port

    port = free_port()
    command = [sys.executable, "-m", "benchmarks.scale", "balance", "--port", str(port), *backends]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with server_process(command, env, log, lambda _: wait_until(f"http://{HOST}:{port}/api/health")) as pid:
        yield f"http://{HOST}:{port}/api", pid


@contextmanager
def layout(name: str, directory: Path, config: Path) -> Iterator[Layout]:
    """Start one layout under ``directory``, register the deployment; stop everything after."""
    from drift_retrain.devstack import services
    from drift_retrain.devstack.stack import HOST, free_port

    home = directory / "state"  # prefect_settings puts PREFECT_HOME at <state>/prefect
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    database_pids: list[int] = []
    balancer_pids: list[int] = []
    with ExitStack() as stack:
        if name == "sqlite":
            port = free_port()
            pid = stack.enter_context(
                prefect_process(
                    [PREFECT, "server", "start"],
                    prefect_env(home, port, {}),
                    directory / "server.log",
                    f"http://{HOST}:{port}/api/health",
                )
            )
            api_url, prefect_pids = f"http://{HOST}:{port}/api", [pid]
        else:
            postgres = stack.enter_context(services.Postgres(directory / "postgres"))
            redis = stack.enter_context(services.Redis(directory / "redis")) if name == "redis" else None
            database_pids = [p.pid for p in (postgres, redis) if p is not None and p.pid is not None]
            shared = services.server_env(postgres.url, redis.url if redis else None)
            subprocess.run(
                services.migrate_command(),
                env=prefect_env(home, free_port(), shared),
                check=True,
                capture_output=True,
                timeout=600,
            )
            if name == "postgres":
                port = free_port()
                pid = stack.enter_context(
                    prefect_process(
                        [PREFECT, "server", "start"],
                        prefect_env(home, port, shared),
                        directory / "server.log",
                        f"http://{HOST}:{port}/api/health",
                    )
                )
                api_url, prefect_pids = f"http://{HOST}:{port}/api", [pid]
            else:
                prefect_pids, apis = [], []
                for n in (1, 2):
                    port = free_port()
                    prefect_pids.append(
                        stack.enter_context(
                            prefect_process(
                                services.api_command(port),
                                prefect_env(home, port, shared),
                                directory / f"api-{n}.log",
                                f"http://{HOST}:{port}/api/health",
                            )
                        )
                    )
                    apis.append(f"http://{HOST}:{port}")
                prefect_pids.append(
                    stack.enter_context(
                        prefect_process(
                            services.services_command(),
                            prefect_env(home, free_port(), shared),
                            directory / "services.log",
                            None,
                        )
                    )
                )
                api_url, balancer_pid = stack.enter_context(balancer(apis, directory / "balancer.log"))
                balancer_pids = [balancer_pid]
        deployment_id = register_as_declared(api_url, config)
        time.sleep(5)  # a just-started server finishes its own start-up writes
        yield Layout(name, api_url, deployment_id, prefect_pids, database_pids, balancer_pids)


# -- load ----------------------------------------------------------------------------------------------


async def deliver_once(urls: list[str], payloads: list[bytes], concurrency: int) -> tuple[LoadResult, list[bytes]]:
    """Each body posted once, round-robin over ``urls``, ``concurrency`` at a time; the result and the bodies
    that were not accepted (5xx, a dropped connection, or any other answer but 200)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in payloads:
        queue.put_nowait(body)
    result = LoadResult(0.0)
    refused: list[bytes] = []
    turn = itertools.cycle(urls)
    headers = {"content-type": "application/json", "aeg-event-type": "Notification"}

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            began = time.perf_counter()
            try:
                status = (await http.post(next(turn), content=body, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            result.latencies.append(time.perf_counter() - began)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.accepted_events += 1
            else:
                refused.append(body)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - began
    return result, refused


async def redeliver(urls: list[str], payloads: list[bytes], pause: float = 1.0, give_up: float = 600.0) -> int:
    """Post each body again until it is accepted, as Event Grid retries a 503 (sooner than its 10 s first retry,
    to measure the layout rather than the wait); returns how many posts it took."""
    posts = 0
    turn = itertools.cycle(urls)
    deadline = time.monotonic() + give_up
    headers = {"content-type": "application/json", "aeg-event-type": "Notification"}
    async with httpx.AsyncClient(timeout=60) as http:
        for body in payloads:
            while True:
                posts += 1
                try:
                    if (await http.post(next(turn), content=body, headers=headers)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redelivery was not accepted within its deadline")
                await asyncio.sleep(pause)
    return posts


def keys_of(payloads: list[bytes]) -> list[str]:
    import json

    from drift_retrain.intake.parsing import to_drift_signal

    return sorted({to_drift_signal(event).idempotency_key for body in payloads for event in json.loads(body)})


def storm_delivery(urls: list[str], payloads: list[bytes]) -> tuple[float, int]:
    """The storm's bodies, 8 at a time, each until accepted (503s redelivered); seconds and retries."""
    result, refused = asyncio.run(deliver_once(urls, payloads, 8))
    began = time.perf_counter()
    retries = asyncio.run(redeliver(urls, refused)) if refused else 0
    return result.seconds + (time.perf_counter() - began), retries


# -- the benchmark -------------------------------------------------------------------------------------


@dataclass
class Cell:
    layout: str
    replicas: int
    concurrency: int
    result: LoadResult
    deliveries: int
    prefect_cpu_s: float
    database_cpu_s: float
    balancer_cpu_s: float
    redelivery_posts: int = 0
    lost: int = 0
    duplicates: int = 0

    @property
    def rate(self) -> float:
        return self.result.accepted_events / self.result.seconds if self.result.seconds else 0.0


def measure_layout(
    name: str, directory: Path, levels: tuple[int, ...], per_level: int, storm_events: int
) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every level with 1 and 2 receivers, then the storm with each, on one layout."""
    from benchmarks.storm import fifty_models, runs_per_key, storm

    config = fifty_models(_mkdir(directory))
    cells: list[Cell] = []
    storms: list[dict[str, Any]] = []
    with layout(name, directory / "servers", config) as running:
        for replicas in REPLICAS:
            with ExitStack() as stack:
                urls = [
                    stack.enter_context(
                        receiver(running.api_url, config, _mkdir(directory / f"receiver-{replicas}-{n}"))
                    )[0]
                    for n in range(replicas)
                ]
                asyncio.run(deliver_once(urls, bodies(10), 2))  # warm up: deployment looked up, connections open
                for concurrency in levels:
                    payloads = bodies(per_level if per_level < 150 else max(per_level, 3 * concurrency))
                    before = _cpu(running)
                    result, refused = asyncio.run(deliver_once(urls, payloads, concurrency))
                    after = _cpu(running)
                    posts = asyncio.run(redeliver(urls, refused)) if refused else 0
                    found = runs_per_key(running.api_url, keys := keys_of(payloads))
                    cells.append(
                        Cell(
                            name,
                            replicas,
                            concurrency,
                            result,
                            len(payloads),
                            after[0] - before[0],
                            after[1] - before[1],
                            after[2] - before[2],
                            posts,
                            lost=sum(1 for k in keys if k not in found),
                            duplicates=sum(n - 1 for n in found.values() if n > 1),
                        )
                    )
                    print(
                        f"  {name} x{replicas} c{concurrency}: {cells[-1].rate:.1f}/s, statuses {result.statuses}",
                        file=sys.stderr,
                        flush=True,
                    )
                if storm_events:
                    payloads, keys = storm(storm_events, 5, seed=replicas)
                    before = _cpu(running)
                    seconds, retries = storm_delivery(urls, payloads)
                    after = _cpu(running)
                    found = runs_per_key(running.api_url, keys)
                    storms.append(
                        {
                            "layout": name,
                            "replicas": replicas,
                            "events": storm_events,
                            "signals": len(keys),
                            "seconds": seconds,
                            "retries": retries,
                            "prefect_cpu_s": after[0] - before[0],
                            "lost": sum(1 for k in keys if k not in found),
                            "duplicates": sum(n - 1 for n in found.values() if n > 1),
                        }
                    )
                    print(f"  {name} x{replicas} storm: {storms[-1]}", file=sys.stderr, flush=True)
    return cells, storms


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpu(running: Layout) -> tuple[float, float, float]:
    return cpu_seconds(running.prefect_pids), cpu_seconds(running.database_pids), cpu_seconds(running.balancer_pids)


def measure(
    quick: bool = False,
    levels: tuple[int, ...] = CONCURRENCY,
    layouts: tuple[str, ...] = LAYOUTS,
    per_level: int = 150,
    storm_events: int = 10_000,
) -> list[Row]:
    """One pass over every layout (each started afresh), rows per cell, the comparisons and the storms."""
    if quick:
        per_level, storm_events = min(per_level, 20), min(storm_events, 500)
    cells: list[Cell] = []
    storms: list[dict[str, Any]] = []
    loads: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for name in layouts:
            loads[name] = round(os.getloadavg()[0], 2)
            print(f"scale: {LABELS[name]} (load {loads[name]}) ...", file=sys.stderr, flush=True)
            more_cells, more_storms = measure_layout(name, Path(tmp) / name, levels, per_level, storm_events)
            cells += more_cells
            storms += more_storms
    return rows(cells, storms, loads)


def rows(cells: list[Cell], storms: list[dict[str, Any]], loads: dict[str, float]) -> list[Row]:
    out = []
    for cell in cells:
        errors = cell.result.server_errors
        per_signal_ms = 1000 * cell.prefect_cpu_s / max(1, cell.result.accepted_events)
        converged = cell.lost == 0 and cell.duplicates == 0
        zero_5xx_target = cell.layout != "sqlite" and cell.replicas == 2 and cell.concurrency <= 32
        target = "0 5xx; one run per signal" if zero_5xx_target else "one run per signal after redelivery"
        met = converged and (errors == 0 if zero_5xx_target else True)
        out.append(
            Row(
                "scale",
                f"scale, {LABELS[cell.layout]}, {cell.replicas} receiver(s), {cell.concurrency} concurrent: signals/s",
                f"{cell.rate:.1f}/s, 5xx {errors} of {cell.deliveries}, p99 {cell.result.p(0.99):.2f} s, "
                f"Prefect CPU {per_signal_ms:.1f} ms/signal",
                f"after redelivery ({cell.redelivery_posts} posts): lost {cell.lost}, duplicate runs {cell.duplicates}",
                target,
                met,
                {
                    "layout": cell.layout,
                    "replicas": cell.replicas,
                    "concurrency": cell.concurrency,
                    "signals_per_s": cell.rate,
                    "server_errors": errors,
                    "deliveries": cell.deliveries,
                    "statuses": cell.result.statuses,
                    "p99_s": cell.result.p(0.99),
                    "p50_s": cell.result.p(0.5),
                    "prefect_cpu_s": cell.prefect_cpu_s,
                    "database_cpu_s": cell.database_cpu_s,
                    "balancer_cpu_s": cell.balancer_cpu_s,
                    "prefect_cpu_ms_per_signal": per_signal_ms,
                    "redelivery_posts": cell.redelivery_posts,
                    "lost": cell.lost,
                    "duplicate_runs": cell.duplicates,
                    "load_1min_at_layout_start": loads.get(cell.layout),
                },
            )
        )
    by = {(c.layout, c.replicas, c.concurrency): c for c in cells}
    for concurrency in (32, 128):
        two, one = by.get(("redis", 2, concurrency)), by.get(("postgres", 2, concurrency))
        if two and one and one.rate:
            ratio = two.rate / one.rate
            out.append(
                Row(
                    "scale",
                    f"scale, 2 API processes (Redis layout) vs 1 (PostgreSQL), 2 receivers, {concurrency} concurrent",
                    f"{ratio:.2f}x ({two.rate:.1f}/s vs {one.rate:.1f}/s)",
                    "PostgreSQL, 1 API process, same run",
                    ">= 1.3x",
                    ratio >= 1.3,
                    {"ratio": ratio, "two_api_per_s": two.rate, "one_api_per_s": one.rate},
                )
            )
    for name in LABELS:
        busy = [c for c in cells if c.layout == name and c.concurrency >= 8 and c.result.accepted_events]
        if busy:
            ms = Figure.of(1000 * c.prefect_cpu_s / c.result.accepted_events for c in busy)
            db = Figure.of(1000 * c.database_cpu_s / c.result.accepted_events for c in busy)
            out.append(
                Row(
                    "scale",
                    f"scale, {LABELS[name]}: Prefect server CPU per signal (8-128 concurrent, 1 and 2 receivers)",
                    f"{ms.show(1)} ms, so one core takes ~{1000 / ms.median:.0f} signals/s",
                    f"database (PostgreSQL, Redis) CPU per signal: {db.show(1)} ms"
                    if name != "sqlite"
                    else "SQLite: in the server process",
                    "report",
                    None,
                    {"prefect_cpu_ms_per_signal": ms, "database_cpu_ms_per_signal": db},
                )
            )
    for result in storms:
        ok = result["lost"] == 0 and result["duplicates"] == 0
        out.append(
            Row(
                "scale",
                f"scale, storm, {LABELS[result['layout']]}, {result['replicas']} receiver(s): {result['events']:,} events "
                f"({result['signals']:,} signals x5) in batches of 100, 8 concurrent",
                f"{result['seconds']:.1f} s ({result['signals'] / result['seconds']:.0f} runs/s), "
                f"Prefect CPU {1000 * result['prefect_cpu_s'] / result['signals']:.1f} ms/run",
                f"lost {result['lost']}, duplicate runs {result['duplicates']}, 503-retried deliveries {result['retries']}",
                "0 lost, 0 duplicate runs",
                ok,
                dict(result),
            )
        )
    return out


# -- the balancer --------------------------------------------------------------------------------------


def balance_app(backends: list[str]) -> Any:
    """An ASGI app passing each request to the next backend in turn (per request, as NGINX's round-robin)."""
    turn = itertools.cycle(backends)
    clients: dict[str, httpx.AsyncClient] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            for client in clients.values():
                await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        backend = next(turn)
        client = clients.get(backend) or clients.setdefault(backend, httpx.AsyncClient(base_url=backend, timeout=120))
        headers = [
            (k.decode(), v.decode()) for k, v in scope["headers"] if k.lower() not in (b"host", b"content-length")
        ]
        path = scope["raw_path"].decode() + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        try:
            answer = await client.request(scope["method"], path, content=body, headers=headers)
        except httpx.HTTPError:
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        kept = [
            (k.encode(), v.encode())
            for k, v in answer.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
        ]
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [*kept, (b"content-length", str(len(answer.content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    commands = parser.add_subparsers(dest="command", required=True)
    balance = commands.add_parser("balance", help="the per-request round-robin balancer (used by the benchmark)")
    balance.add_argument("--port", type=int, required=True)
    balance.add_argument("backends", nargs="+")
    run = commands.add_parser("run", help="the benchmark alone")
    run.add_argument("--quick", action="store_true")
    run.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    args = parser.parse_args(argv)
    if args.command == "balance":
        import uvicorn

        uvicorn.run(balance_app(args.backends), host="127.0.0.1", port=args.port, access_log=False, log_level="warning")
    else:
        for row in measure(quick=args.quick, layouts=tuple(args.layouts)):
            print(row.what, "|", row.value, "|", row.reference, "|", row.met)


if __name__ == "__main__":
    main()
