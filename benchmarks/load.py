"""An asyncio load generator for deliveries that must each be unique (a new drift run per event):
``concurrency`` clients post the given bodies as fast as the server answers, and every answer's status
and latency is kept."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)  # status -> count (0: no answer)
    latencies: list[float] = field(default_factory=list)
    accepted_events: int = 0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)

    def p(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def post_all(url: str, bodies: list[bytes], concurrency: int, events_per_body: int = 1,
                   timeout: float = 60.0) -> LoadResult:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    result = LoadResult(0.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json", "aeg-event-type": "Notification"}

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            began = time.perf_counter()
            try:
                status = (await http.post(url, content=body, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            result.latencies.append(time.perf_counter() - began)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.accepted_events += events_per_body

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - began
    return result
