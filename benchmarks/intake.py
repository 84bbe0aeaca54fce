"""Intake cost: accepted deliveries/s of the receiver (auth + parse + validate + filter + hand-off to a
no-op sink) over a bare Starlette handler answering 200, both under the same uvicorn settings in their
own process, loaded by the same wrk command, in alternating rounds of the same run.

Each delivery is a 1-event Event Grid array (DatasetDriftDetected for a configured monitor) posted
with ``?code=<secret>``, as Event Grid posts it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from drift_retrain.devstack.stack import HOST, free_port

from benchmarks.common import Figure, Row, server_process

SECRET = "bench-secret"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["aeg-event-type"] = "Notification"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout, latency:percentile(99)))
end
"""


def one_event_body() -> bytes:
    from drift_retrain.testing import dataset_drift

    return json.dumps([dataset_drift("credit-default-drift_1795651200000")]).encode()


def bench_config(directory: Path, **replace: str) -> Path:
    """The shipped drift-retrain.toml with its state in ``directory`` (regex edits as write_config's)."""
    from drift_retrain.testing import write_config

    directory.mkdir(parents=True, exist_ok=True)
    return write_config(directory, **replace)


@contextmanager
def serving(app: str, config: Path, logs: Path) -> Iterator[str]:
    """One of benchmarks.apps in its own process; yields the events URL."""
    port = free_port()
    url = f"http://{HOST}:{port}/api/eventgrid?code={SECRET}"
    env = dict(os.environ, DRIFT_RETRAIN_CONFIG=str(config), DRIFT_RETRAIN_WEBHOOK_SECRET=SECRET)
    command = [sys.executable, "-m", "benchmarks.apps", app, "--port", str(port)]
    with server_process(command, env, logs / f"{app}.log", lambda proc: _wait_for_post(url, proc)):
        yield url


def _wait_for_post(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"benchmark server exited with {proc.returncode}")
        try:
            httpx.post(url, content=b"[]", headers={"content-type": "application/json"}, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("benchmark server did not come up")


def wrk(url: str, body: Path, script: Path, seconds: float, connections: int) -> dict[str, float]:
    """One wrk run (1 thread: the machine's other core serves). Returns accepted/s and error counts."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env=dict(os.environ, BENCH_BODY=str(body)), timeout=seconds + 60,
    )
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    found = json.loads(line[6:])
    seconds_run = found["duration_us"] / 1e6
    ok = found["requests"] - found["non2xx"]
    return {"accepted_per_s": ok / seconds_run, "non2xx": found["non2xx"],
            "socket_errors": found["connect"] + found["read"] + found["write"] + found["timeout"],
            "p99_ms": found["p99_us"] / 1000}


def measure(rounds: int = 5, seconds: float = 5, connections: int = 32) -> list[Row]:
    if shutil.which("wrk") is None:
        return [Row("intake", "intake cost: receiver / bare handler (deliveries/s)", "not run: wrk is not installed",
                    target=">= 0.6", met=None)]
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        directory = Path(tmp)
        body = directory / "event.json"
        body.write_bytes(one_event_body())
        script = directory / "post.lua"
        script.write_text(LUA)
        config = bench_config(directory)
        bare, receiver, ratios = [], [], []
        errors = {"bare": 0, "receiver": 0}
        with serving("bare", config, directory) as bare_url, serving("receiver", config, directory) as receiver_url:
            for app_url in (bare_url, receiver_url):  # warm up both
                wrk(app_url, body, script, 1, connections)
            for _ in range(rounds):
                b = wrk(bare_url, body, script, seconds, connections)
                r = wrk(receiver_url, body, script, seconds, connections)
                bare.append(b["accepted_per_s"])
                receiver.append(r["accepted_per_s"])
                ratios.append(r["accepted_per_s"] / b["accepted_per_s"])
                errors["bare"] += b["non2xx"] + b["socket_errors"]
                errors["receiver"] += r["non2xx"] + r["socket_errors"]
    ratio = Figure.of(ratios)
    return [Row(
        "intake", "intake cost: receiver / bare handler (1-event deliveries/s)",
        f"{ratio.show(2)}x ({Figure.of(receiver).show(0)}/s)",
        f"bare Starlette: {Figure.of(bare).show(0)}/s",
        ">= 0.6", ratio.median >= 0.6,
        {"ratio": ratio, "receiver_per_s": Figure.of(receiver), "bare_per_s": Figure.of(bare), "errors": errors,
         "load": f"wrk -t1 -c{connections} -d{seconds:g}s x {rounds} alternating rounds"},
    )]


if __name__ == "__main__":
    for row in measure(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 2, seconds=3):
        print(row.as_json())
