"""`drift-retrain up --database URL --redis URL`: the one-machine stack with Prefect's server on PostgreSQL and
its Redis layout. It comes up, says where without the password, a delivery becomes a flow run stored in that
PostgreSQL, and `drift-retrain down` stops it all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drift_retrain.backends.local.monitor import drift_event, run_monitor
from drift_retrain.config import load_settings
from drift_retrain.devstack import demo_data, record, services
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.devstack.stack import (
    PREFECT_PORT_ENV,
    PROJECT_DIR,
    STARTUP_SECONDS,
    WEBHOOK_PORT_ENV,
    free_port,
    local_secret,
)
from drift_retrain.testing import spawn, write_config
from tests.e2e.conftest import Api
from tests.scale.conftest import wait_until

pytestmark = pytest.mark.timeout(900)


def test_up_on_postgresql_and_redis_records_runs_in_postgresql_and_down_stops_it(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    with services.Postgres(tmp_path / "postgres") as postgres, services.Redis(tmp_path / "redis") as redis:
        ports = {PREFECT_PORT_ENV: str(free_port()), WEBHOOK_PORT_ENV: str(free_port())}
        # The database URL from the variable (out of `ps`), the Redis one as an option; postgresql:// is taken too.
        env = {**os.environ, **ports, "DRIFT_RETRAIN_DATABASE_URL": postgres.url.replace("+asyncpg", "")}
        env.pop("PREFECT_API_URL", None)
        output = tmp_path / "up.out"
        with output.open("wb") as out:
            up = spawn(
                [
                    sys.executable,
                    "-m",
                    "drift_retrain.cli",
                    "up",
                    "-c",
                    str(settings.source_file),
                    "--redis",
                    redis.url,
                ],
                cwd=PROJECT_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:

            def is_up() -> bool:
                assert up.poll() is None, output.read_text()
                found = record.read(settings.state_dir)
                return found is not None and found.phase == "up" and "Ctrl-C" in output.read_text()

            wait_until(is_up, "up on PostgreSQL", timeout=3 * STARTUP_SECONDS, pause=0.25)
            said = output.read_text()
            assert f"database    postgresql+asyncpg://prefect:***@127.0.0.1:{postgres.port}/prefect" in said
            assert f"redis       {redis.url}" in said

            api = Api(f"http://127.0.0.1:{ports[PREFECT_PORT_ENV]}/api")
            webhook = f"http://127.0.0.1:{ports[WEBHOOK_PORT_ENV]}/api/eventgrid"
            response = deliver_events(webhook, [drift_event(run_monitor(monitor, settings))], local_secret(settings))
            assert response.status_code == 200, response.text
            (accepted,) = response.json()["accepted"]
            # Stored in PostgreSQL, not in a SQLite file under the state dir.
            assert (
                postgres.psql(
                    "prefect", f"SELECT count(*) FROM flow_run WHERE id = '{accepted['flow_run_id']}'"
                ).strip()
                == "1"
            )
            assert not list(settings.state_dir.rglob("*.db"))
            assert api.wait(accepted["flow_run_id"])["state"]["type"] == "COMPLETED"
            # The server's events went through Redis (prefect-redis keeps its streams there).
            assert redis_keys(redis.port), "nothing in Redis: the server did not use it"

            down = subprocess.run(
                [sys.executable, "-m", "drift_retrain.cli", "down", "-c", str(settings.source_file)],
                cwd=PROJECT_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert down.returncode == 0 and "stopped the stack" in down.stdout, down.stdout + down.stderr
            assert up.wait(timeout=120) == 0
        finally:
            if up.poll() is None:
                up.kill()
                up.wait(timeout=30)
        assert "stopped." in output.read_text()
        for path in [output, *settings.state_dir.joinpath("logs").glob("*.log")]:
            assert postgres.password not in path.read_text(errors="replace"), f"the password is in {path}"
        deadline = time.monotonic() + 60
        while record.read(settings.state_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert record.read(settings.state_dir) is None


def redis_keys(port: int) -> list[bytes]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        return list(client.scan_iter(count=100))
    finally:
        client.close()
