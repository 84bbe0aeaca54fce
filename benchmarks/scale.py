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
from dataclasses import asdict, dataclass, field
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
    "redis1": "PostgreSQL + Redis, 1 API process",
    "redis": "PostgreSQL + Redis, 2 API processes",
}
#: The layouts issue 17 compares, all running at once and measured in turn (``compare``).
COMPARED = ("postgres", "redis1", "redis")
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
    #: Each process by role (api, services, balancer, postgres, redis), for the CPU breakdown.
    roles: dict[str, list[int]] = field(default_factory=dict)
    postgres: Any = None


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


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine spent busy (not idle, not waiting on I/O) since boot, every
    process counted, ours or not (proc(5), /proc/stat's first line, in clock ticks)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


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
    roles: dict[str, list[int]] = {}
    postgres = None
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
            roles["api"] = [pid]
        else:
            postgres = stack.enter_context(services.Postgres(directory / "postgres"))
            redis = stack.enter_context(services.Redis(directory / "redis")) if name != "postgres" else None
            database_pids = [p.pid for p in (postgres, redis) if p is not None and p.pid is not None]
            roles["postgres"] = [postgres.pid] if postgres.pid else []
            if redis is not None and redis.pid:
                roles["redis"] = [redis.pid]
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
                roles["api"] = [pid]
            else:
                prefect_pids, apis = [], []
                for n in range(1, 3 if name == "redis" else 2):
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
                roles["api"] = list(prefect_pids)
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
                roles["services"] = prefect_pids[-1:]
                if len(apis) > 1:
                    api_url, balancer_pid = stack.enter_context(balancer(apis, directory / "balancer.log"))
                    balancer_pids = roles["balancer"] = [balancer_pid]
                else:
                    api_url = f"{apis[0]}/api"
        deployment_id = register_as_declared(api_url, config)
        time.sleep(5)  # a just-started server finishes its own start-up writes
        yield Layout(name, api_url, deployment_id, prefect_pids, database_pids, balancer_pids, roles, postgres)


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


# -- the layouts side by side (issue 17's ratio) -------------------------------------------------------

#: Event Grid's retry schedule: 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, ... (learn.microsoft.com/azure/
#: event-grid/delivery-and-retry, "Retry schedule"); it adds a small randomization, as here.
EVENT_GRID_PAUSES = (10.0, 30.0, 60.0, 300.0, 600.0)
#: The CPU of every process on the machine over a turn (``machine_busy_seconds``), beside our processes'.
MACHINE = "machine"


@dataclass
class Turn:
    """One layout's delivery of one level in one round of ``compare``: the load and its CPU by role."""

    layout: str
    round: int
    concurrency: int
    result: LoadResult
    deliveries: int
    cpu_s: dict[str, float]
    redelivery_posts: int = 0
    lost: int = 0
    duplicates: int = 0

    @property
    def rate(self) -> float:
        return self.result.accepted_events / self.result.seconds if self.result.seconds else 0.0

    def core_share(self, role: str) -> float:
        """The role's CPU over the delivery as a share of one core (1.0: one core busy all along)."""
        return self.cpu_s.get(role, 0.0) / self.result.seconds if self.result.seconds else 0.0


@dataclass
class Running:
    """A compared layout with its two receivers."""

    layout: Layout
    urls: list[str]
    receiver_pids: list[int]

    def roles(self) -> dict[str, list[int]]:
        return {**self.layout.roles, "receivers": self.receiver_pids}


@contextmanager
def side_by_side(directory: Path, names: tuple[str, ...] = COMPARED) -> Iterator[dict[str, Running]]:
    """Every layout of ``names`` started at once, each with two receivers and warmed up; stopped after."""
    from benchmarks.storm import fifty_models

    config = fifty_models(_mkdir(directory / "config"))
    with ExitStack() as stack:
        running: dict[str, Running] = {}
        for name in names:
            started = stack.enter_context(layout(name, directory / name, config))
            pairs = [
                stack.enter_context(receiver(started.api_url, config, _mkdir(directory / f"{name}-receiver-{n}")))
                for n in range(2)
            ]
            running[name] = Running(started, [url for url, _ in pairs], [pid for _, pid in pairs])
            asyncio.run(deliver_once(running[name].urls, bodies(10), 2))  # deployment looked up, connections open
        yield running


def compare(
    running: dict[str, Running], levels: tuple[int, ...] = (32, 128), rounds: int = 3, per_level: int = 150
) -> list[Turn]:
    """Each round, each level delivered to every layout in turn (the order rotating round by round), so the
    layouts meet the same machine (other work on it included) and each ratio is taken within one round."""
    from benchmarks.storm import runs_per_key

    names = list(running)
    turns: list[Turn] = []
    for round_ in range(rounds):
        for concurrency in levels:
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                side = running[name]
                payloads = bodies(max(per_level, 3 * concurrency))
                roles = side.roles()
                before = {role: cpu_seconds(pids) for role, pids in roles.items()}
                load_before, machine_before = os.times(), machine_busy_seconds()
                result, refused = asyncio.run(deliver_once(side.urls, payloads, concurrency))
                load_after, machine_after = os.times(), machine_busy_seconds()
                cpu = {role: cpu_seconds(pids) - before[role] for role, pids in roles.items()}
                cpu["load client"] = (load_after.user - load_before.user) + (load_after.system - load_before.system)
                cpu[MACHINE] = machine_after - machine_before
                posts = asyncio.run(redeliver(side.urls, refused)) if refused else 0
                found = runs_per_key(side.layout.api_url, keys := keys_of(payloads))
                turns.append(
                    Turn(
                        name,
                        round_,
                        concurrency,
                        result,
                        len(payloads),
                        cpu,
                        posts,
                        lost=sum(1 for k in keys if k not in found),
                        duplicates=sum(n - 1 for n in found.values() if n > 1),
                    )
                )
                shares = ", ".join(f"{role} {turns[-1].core_share(role):.2f}" for role in cpu)
                print(
                    f"  round {round_} {name} c{concurrency}: {turns[-1].rate:.1f}/s, {result.statuses}; "
                    f"cores: {shares}; load {os.getloadavg()[0]:.1f}",
                    file=sys.stderr,
                    flush=True,
                )
    return turns


def compare_rows(turns: list[Turn]) -> list[Row]:
    """Per layout and level the median rate and CPU by role; the ratios, each taken within a round."""
    out = []
    by = {(t.layout, t.concurrency, t.round): t for t in turns}
    for name in dict.fromkeys(t.layout for t in turns):
        for concurrency in sorted({t.concurrency for t in turns}):
            mine = [t for t in turns if t.layout == name and t.concurrency == concurrency]
            rate = Figure.of(t.rate for t in mine)
            roles = list(dict.fromkeys(role for t in mine for role in t.cpu_s))
            ms = {
                r: Figure.of(1000 * t.cpu_s.get(r, 0.0) / max(1, t.result.accepted_events) for t in mine) for r in roles
            }
            cores = {r: Figure.of(t.core_share(r) for t in mine) for r in roles}
            errors = sum(t.result.server_errors for t in mine)
            lost, duplicates = sum(t.lost for t in mine), sum(t.duplicates for t in mine)
            out.append(
                Row(
                    "scale",
                    f"scale, side by side, {LABELS[name]}, 2 receivers, {concurrency} concurrent: signals/s "
                    f"({len(mine)} rounds)",
                    f"{rate.show(1)}/s, 5xx {errors} of {sum(t.deliveries for t in mine)}, "
                    f"p99 {Figure.of(t.result.p(0.99) for t in mine).show(2)} s",
                    "CPU per signal (ms) / busy cores, by process: "
                    + ", ".join(f"{r} {ms[r].median:.1f} ms / {cores[r].median:.2f}" for r in roles if r != MACHINE)
                    + f"; the machine's 2 cores: {cores[MACHINE].median:.2f} busy (every process, ours or not)",
                    "one run per signal after redelivery",
                    lost == 0 and duplicates == 0,
                    {
                        "layout": name,
                        "concurrency": concurrency,
                        "signals_per_s": rate,
                        "server_errors": errors,
                        "cpu_ms_per_signal": {r: asdict(f) for r, f in ms.items()},
                        "busy_cores": {r: asdict(f) for r, f in cores.items()},
                        "lost": lost,
                        "duplicate_runs": duplicates,
                    },
                )
            )
    pairs = (("redis", "postgres", ">= 1.3x"), ("redis1", "postgres", "report"), ("redis", "redis1", "report"))
    for concurrency in sorted({t.concurrency for t in turns}):
        for two, one, target in pairs:
            ratios = [
                by[(two, concurrency, r)].rate / by[(one, concurrency, r)].rate
                for r in sorted({t.round for t in turns})
                if (two, concurrency, r) in by and (one, concurrency, r) in by and by[(one, concurrency, r)].rate
            ]
            if not ratios:
                continue
            ratio = Figure.of(ratios)
            out.append(
                Row(
                    "scale",
                    f"scale, side by side, {LABELS[two]} vs {LABELS[one]}, 2 receivers, {concurrency} concurrent",
                    f"{ratio.show(2)}x (median of {ratio.samples} rounds, each ratio within its round)",
                    f"{LABELS[one]}, same run, interleaved",
                    target,
                    ratio.median >= 1.3 if target != "report" else None,
                    {"ratio": ratio, "layouts": [two, one], "concurrency": concurrency},
                )
            )
    return out


# -- 503s at 128 concurrent, redelivered as Event Grid does ---------------------------------------------


@dataclass
class Disrupted:
    """A burst through a disruption: every answer met, the posts it took, how long each signal waited."""

    disruption: str
    concurrency: int
    deliveries: int
    first: LoadResult
    statuses: dict[int, int]
    posts: int
    accepted_after: list[float]
    disrupted_at: float = 0.0
    lost: int = 0
    duplicates: int = 0
    runs_per_signal: dict[int, int] = field(default_factory=dict)


async def deliver_as_event_grid(
    urls: list[str],
    payloads: list[bytes],
    concurrency: int,
    during: Any = None,
    during_after: int = 0,
    pauses: tuple[float, ...] = EVENT_GRID_PAUSES,
    give_up: float = 1800.0,
) -> Disrupted:
    """Each body posted until answered 200, ``concurrency`` posts at a time, a refused one (any other answer, a
    dropped connection, a 30 s timeout) posted again after Event Grid's next pause; ``during()``, a coroutine
    function (the disruption), runs once ``during_after`` bodies are accepted."""
    import random

    gate = asyncio.Semaphore(concurrency)
    turn = itertools.cycle(urls)
    first = LoadResult(0.0)
    statuses: dict[int, int] = {}
    accepted_after: list[float] = []
    posts = 0
    accepted = 0
    reached = asyncio.Event()
    headers = {"content-type": "application/json", "aeg-event-type": "Notification"}
    began = time.perf_counter()
    deadline = time.monotonic() + give_up

    async def one(http: httpx.AsyncClient, body: bytes) -> None:
        nonlocal posts, accepted
        for attempt in itertools.count():
            async with gate:
                posts += 1
                sent = time.perf_counter()
                try:
                    answer = await http.post(next(turn), content=body, headers=headers)
                    status = answer.status_code
                except httpx.HTTPError:  # Event Grid's 30 s response timeout, a refused or cut connection
                    status = 0
            statuses[status] = statuses.get(status, 0) + 1
            if attempt == 0:
                first.latencies.append(time.perf_counter() - sent)
                first.statuses[status] = first.statuses.get(status, 0) + 1
            if status == 200:
                accepted += 1
                if accepted >= during_after:
                    reached.set()
                accepted_after.append(time.perf_counter() - began)
                return
            if time.monotonic() > deadline:
                raise RuntimeError("a delivery was not accepted within the benchmark's deadline")
            pause = pauses[min(attempt, len(pauses) - 1)]
            await asyncio.sleep(pause * random.uniform(0.9, 1.1))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def disrupt() -> None:
            await reached.wait()
            await during()

        side = asyncio.create_task(disrupt()) if during else None
        await asyncio.gather(*(one(http, body) for body in payloads))
        if side:
            await side
    first.seconds = time.perf_counter() - began
    first.accepted_events = first.statuses.get(200, 0)
    return Disrupted("", concurrency, len(payloads), first, statuses, posts, accepted_after)


def postgres_restart(running: Running, down_s: float = 25.0) -> tuple[str, Any]:
    """PostgreSQL stopped, started again ``down_s`` later: longer than the receiver's hand-off deadline (20 s),
    so the deliveries waiting meanwhile are answered 503."""
    label = f"PostgreSQL down {down_s:.0f} s mid-burst"

    async def during() -> None:
        await asyncio.to_thread(running.layout.postgres.stop)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(running.layout.postgres.start)

    return label, during


def disrupted_burst(running: Running, concurrency: int = 128, count: int = 384) -> Disrupted:
    """``count`` signals at ``concurrency`` through a PostgreSQL restart, redelivered as Event Grid does; then
    how many runs Prefect holds for each signal."""
    from benchmarks.storm import runs_per_key

    payloads = bodies(count)
    label, during = postgres_restart(running)
    done = asyncio.run(deliver_as_event_grid(running.urls, payloads, concurrency, during, during_after=count // 4))
    found = runs_per_key(running.layout.api_url, keys := keys_of(payloads))
    done.disruption = label
    done.lost = sum(1 for k in keys if k not in found)
    done.duplicates = sum(n - 1 for n in found.values() if n > 1)
    per_signal: dict[int, int] = {}
    for key in keys:
        per_signal[found.get(key, 0)] = per_signal.get(found.get(key, 0), 0) + 1
    done.runs_per_signal = per_signal
    return done


def disrupted_row(done: Disrupted, name: str) -> Row:
    refused = sum(n for status, n in done.statuses.items() if status != 200)
    errors_5xx = sum(n for status, n in done.statuses.items() if status >= 500)
    waited = sorted(done.accepted_after)
    p99 = waited[min(len(waited) - 1, int(0.99 * len(waited)))] if waited else float("nan")
    converged = done.lost == 0 and done.duplicates == 0 and set(done.runs_per_signal) == {1}
    return Row(
        "scale",
        f"scale, {LABELS[name]}, 2 receivers, {done.concurrency} concurrent, {done.disruption}: every refused "
        "delivery redelivered on Event Grid's schedule (10 s, 30 s, 1 min, ...)",
        f"5xx {errors_5xx} (503 {done.statuses.get(503, 0)}), no answer {done.statuses.get(0, 0)}, of "
        f"{done.posts} posts for {done.deliveries} signals ({done.posts - done.deliveries} redeliveries); "
        f"p99 to acceptance {p99:.1f} s",
        f"runs per signal {dict(sorted(done.runs_per_signal.items()))} (lost {done.lost}, duplicate runs "
        f"{done.duplicates}); first attempts' p99 {done.first.p(0.99):.1f} s",
        "5xx met, every one converges to exactly one run per signal",
        converged and errors_5xx > 0 and refused == done.posts - done.deliveries,
        {
            "layout": name,
            "disruption": done.disruption,
            "concurrency": done.concurrency,
            "signals": done.deliveries,
            "posts": done.posts,
            "redeliveries": done.posts - done.deliveries,
            "statuses": done.statuses,
            "first_attempt_statuses": done.first.statuses,
            "p99_to_acceptance_s": p99,
            "first_attempt_p99_s": done.first.p(0.99),
            "runs_per_signal": done.runs_per_signal,
            "lost": done.lost,
            "duplicate_runs": done.duplicates,
        },
    )


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
    rounds: int = 3,
    sweep: bool = True,
    burst_signals: int = 384,
    side: bool = True,
) -> list[Row]:
    """Every layout alone (each started afresh: rows per cell and the storms), then the compared layouts side by
    side (the ratios) and the 503 burst at 128 concurrent on the Redis layout."""
    if quick:
        per_level, storm_events, rounds, burst_signals = min(per_level, 20), min(storm_events, 500), 1, 128
    cells: list[Cell] = []
    storms: list[dict[str, Any]] = []
    loads: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for name in layouts if sweep else ():
            loads[name] = round(os.getloadavg()[0], 2)
            print(f"scale: {LABELS[name]} (load {loads[name]}) ...", file=sys.stderr, flush=True)
            more_cells, more_storms = measure_layout(name, Path(tmp) / name, levels, per_level, storm_events)
            cells += more_cells
            storms += more_storms
        if not side:
            return rows(cells, storms, loads)
        print(f"scale: side by side (load {os.getloadavg()[0]:.1f}) ...", file=sys.stderr, flush=True)
        with side_by_side(Path(tmp) / "side-by-side") as running:
            turns = compare(running, rounds=rounds, per_level=per_level)
            disrupted = disrupted_burst(running["redis"], count=burst_signals)
            print(f"  503 burst: {disrupted.statuses}, runs per signal {disrupted.runs_per_signal}", file=sys.stderr)
    return rows(cells, storms, loads) + compare_rows(turns) + [disrupted_row(disrupted, "redis")]


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
    run.add_argument("--rounds", type=int, default=3, help="rounds of the side-by-side comparison")
    run.add_argument("--side-by-side-only", action="store_true", help="no per-layout sweep or storm")
    args = parser.parse_args(argv)
    if args.command == "balance":
        import uvicorn

        uvicorn.run(balance_app(args.backends), host="127.0.0.1", port=args.port, access_log=False, log_level="warning")
    else:
        for row in measure(
            quick=args.quick, layouts=tuple(args.layouts), rounds=args.rounds, sweep=not args.side_by_side_only
        ):
            print(row.what, "|", row.value, "|", row.reference, "|", row.met)


if __name__ == "__main__":
    main()
