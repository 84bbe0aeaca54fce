"""Servers for the intake tests: a bare Prefect server (no runner, so created runs stay Scheduled and
cost nothing) that can be stopped and restarted on its port, and the receiver under real uvicorn."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import uvicorn

from drift_retrain.stack import HOST, free_port, prefect_settings


class PrefectServer:
    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def start(self, timeout: float = 120) -> None:
        env = dict(os.environ) | prefect_settings(self.home, self.port)
        log = open(self.home / "prefect-server.log", "ab")
        prefect = Path(sys.executable).with_name("prefect")
        self.proc = subprocess.Popen([str(prefect), "server", "start"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: see {self.home / 'prefect-server.log'}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError("prefect server not healthy in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def register_deployment(self, flow: str = "drift-to-retrain", name: str = "drift-to-retrain") -> str:
        """The deployment the receiver creates runs of, without a runner to execute them."""
        api = httpx.Client(base_url=self.api_url, timeout=30)

        def post(path: str, body: dict) -> dict:  # a just-started server's SQLite may answer 503 for a moment
            for _ in range(40):
                response = api.post(path, json=body)
                if response.status_code != 503:
                    break
                time.sleep(0.25)
            response.raise_for_status()
            return response.json()

        flow_id = post("/flows/", {"name": flow})["id"]
        return post("/deployments/", {"name": name, "flow_id": flow_id, "enforce_parameter_schema": False})["id"]


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve an ASGI app with real uvicorn on a free port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
