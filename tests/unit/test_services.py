"""drift_retrain/devstack/services.py against the real binaries: a throwaway PostgreSQL and redis-server start,
answer on their URL, keep their data over a restart and are gone after stop."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drift_retrain.devstack import processes, services

MISSING = services.missing_binaries()
needs_binaries = pytest.mark.skipif(
    bool(MISSING) and not os.environ.get("DRIFT_RETRAIN_REQUIRE_SCALE"),
    reason=f"not installed: {', '.join(MISSING)} (Debian: apt-get install postgresql redis-server)",
)


def _pg_query(url: str, sql: str) -> object:
    import asyncpg

    async def run() -> object:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return await connection.fetchval(sql)
        finally:
            await connection.close()

    return asyncio.run(run())


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@needs_binaries
def test_postgres_starts_keeps_data_over_a_restart_and_stops(tmp_path: Path) -> None:
    with services.Postgres(tmp_path / "pg") as pg:
        assert pg.url.startswith(f"postgresql+asyncpg://prefect:{pg.password}@127.0.0.1:{pg.port}/prefect")
        _pg_query(pg.url, "CREATE TABLE kept (n int)")
        _pg_query(pg.url, "INSERT INTO kept VALUES (7)")
        pid = pg.pid
        pg.restart()
        assert pg.pid != pid
        assert _pg_query(pg.url, "SELECT n FROM kept") == 7
        # A wrong password is refused: the cluster authenticates TCP clients (scram-sha-256).
        with pytest.raises(Exception, match="password"):
            _pg_query(pg.url.replace(pg.password, "wrong"), "SELECT 1")
        assert pid is not None
    assert _refused(pg.port)
    assert not processes.in_groups({pid})


@needs_binaries
def test_postgres_as_root_runs_as_the_postgres_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root has to hand PostgreSQL to another user")
    tmp_path.chmod(0o700)  # as pytest's own temp dirs are: the postgres user cannot search them
    with services.Postgres(tmp_path / "pg") as pg:
        assert pg.pid is not None
        owners = {Path(f"/proc/{pid}").stat().st_uid for pid in processes.in_groups({pg.pid})}
        assert owners == {services.pwd.getpwnam("postgres").pw_uid}


@needs_binaries
def test_postgres_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A test run killed with SIGKILL leaves no cluster holding its port."""
    script = (
        "import sys, time; from pathlib import Path; from drift_retrain.devstack import services;"
        f"pg = services.Postgres(Path({str(tmp_path / 'pg')!r})); pg.start(); print(pg.port, pg.pid, flush=True);"
        "time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path.cwd())
    assert parent.stdout is not None
    port, pid = map(int, parent.stdout.readline().split())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 60
    while processes.in_groups({pid}) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes.in_groups({pid})
    assert _refused(port)


@needs_binaries
def test_postgres_restarted_from_another_thread_stays_up(tmp_path: Path) -> None:
    """A test restarts it from a helper thread; the child must not die when that thread ends."""
    import threading

    with services.Postgres(tmp_path / "pg") as pg:
        helper = threading.Thread(target=pg.restart)
        helper.start()
        helper.join()
        time.sleep(2)
        assert _pg_query(pg.url, "SELECT 1") == 1
        assert pg.running


@needs_binaries
def test_redis_starts_forgets_everything_on_restart_and_stops(tmp_path: Path) -> None:
    import redis

    with services.Redis(tmp_path / "redis") as rd:
        client = redis.Redis.from_url(rd.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        rd.restart()
        assert client.ping()
        assert client.get("k") is None  # no persistence: a throwaway
        client.close()
    assert _refused(rd.port)
    assert not list((tmp_path / "redis").glob("*.rdb"))


def test_the_redis_layout_names_prefect_redis_modules_and_a_docket_database_of_its_own() -> None:
    env = services.server_env("postgresql+asyncpg://u:p@h:5/db", "redis://127.0.0.1:6379/0")
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == "postgresql+asyncpg://u:p@h:5/db"
    assert env["PREFECT_API_DATABASE_MIGRATE_ON_START"] == "false"
    assert env["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    assert env["PREFECT_REDIS_MESSAGING_URL"] == "redis://127.0.0.1:6379/0"
    assert env["PREFECT_SERVER_DOCKET_URL"] == "redis://127.0.0.1:6379/1"
    assert services.redis_layout_env("redis://h:1")["PREFECT_SERVER_DOCKET_URL"] == "redis://h:1/1"
    assert "PREFECT_MESSAGING_BROKER" not in services.server_env("postgresql+asyncpg://u:p@h:5/db")


def test_the_layout_settings_are_prefect_settings_that_load_their_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every name is one Prefect reads (a typo would be ignored silently), and every module imports."""
    import importlib

    from prefect.settings import Settings

    env = services.server_env("postgresql+asyncpg://u:p@h:5/db", "redis://127.0.0.1:6379/0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.server.database.connection_url is not None
    assert settings.server.database.connection_url.get_secret_value() == "postgresql+asyncpg://u:p@h:5/db"
    assert settings.server.events.messaging_broker == "prefect_redis.messaging"
    assert settings.server.events.messaging_cache == "prefect_redis.messaging"
    assert settings.server.events.causal_ordering == "prefect_redis.ordering"
    assert settings.server.concurrency.lease_storage == "prefect_redis.lease_storage"
    assert settings.server.docket.url == "redis://127.0.0.1:6379/1"
    assert settings.server.database.migrate_on_start is False
    from prefect_redis.client import RedisMessagingSettings

    assert RedisMessagingSettings().url == "redis://127.0.0.1:6379/0"
    for module in ("prefect_redis.messaging", "prefect_redis.ordering", "prefect_redis.lease_storage"):
        importlib.import_module(module)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+asyncpg://prefect:s3cret@db:5432/prefect", "postgresql+asyncpg://prefect:***@db:5432/prefect"),
        ("redis://:s3cret@r:6379/0", "redis://***@r:6379/0"),
        ("redis://r:6379/0", "redis://r:6379/0"),
        ("rediss://user@r:6379", "rediss://user@r:6379"),
        ("postgresql://u:p@ss@db/x?sslmode=require", "postgresql://u:***@db/x?sslmode=require"),
        ("postgresql://u@db/x?password=s3cret&sslmode=require", "postgresql://u@db/x?password=***&sslmode=require"),
    ],
)
def test_mask_url_hides_the_password(url: str, masked: str) -> None:
    assert services.mask_url(url) == masked


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("postgresql://u:p@db:5432/prefect", "postgresql+asyncpg://u:p@db:5432/prefect"),
        ("postgresql+asyncpg://u:p@db/prefect", "postgresql+asyncpg://u:p@db/prefect"),
    ],
)
def test_a_postgresql_url_is_taken_with_prefects_async_driver(url: str, normalised: str) -> None:
    assert services.checked_database_url(url) == normalised


@pytest.mark.parametrize(
    ("option", "url", "message"),
    [
        (
            "--database",
            "mysql://u:s3cret@db/x",
            "--database takes a postgresql:// or postgresql+asyncpg:// URL (scheme 'mysql' given)",
        ),
        (
            "--database",
            "sqlite:///tmp/x.db",
            "--database takes a postgresql:// or postgresql+asyncpg:// URL (scheme 'sqlite' given)",
        ),
        (
            "--database",
            "u:s3cret@db/x",
            "--database takes a postgresql:// or postgresql+asyncpg:// URL (no scheme given)",
        ),
        ("--database", "postgresql:///x?password=s3cret", "--database URL names no host"),
        ("--redis", "http://s3cret@r", "--redis takes a redis:// or rediss:// URL (scheme 'http' given)"),
        (
            "--redis",
            "redis+sentinel://s3cret@r",
            "--redis takes a redis:// or rediss:// URL (scheme 'redis+sentinel' given)",
        ),
    ],
)
def test_a_wrong_url_is_refused_in_one_line_that_holds_no_secret(option: str, url: str, message: str) -> None:
    check = services.checked_database_url if option == "--database" else services.checked_redis_url
    with pytest.raises(ValueError) as refused:
        check(url)
    assert str(refused.value).startswith(message)
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)
