"""Throwaway PostgreSQL and Redis for the scale tier and its benchmarks, and the environment and commands of
Prefect's self-hosted layout on them (one API process, the background services and the migration run apart).

Each service runs from Debian's binaries (``postgresql``, ``redis-server``) on a free loopback port with all its
files under a directory of the caller's, has a ``url``, ``stop()``, ``start()`` and ``restart()``, and dies
with the process that started it. ``missing_binaries()`` says what is absent, so a test can skip saying why.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drift_retrain.devstack import processes
from drift_retrain.devstack.stack import HOST, child_options, free_port
from drift_retrain.text import one_line

#: Where Debian's ``postgresql-NN`` package puts initdb and postgres (they are not on PATH there).
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
#: initdb and postgres refuse to run as root; as root we run them as this user (Debian's package creates it).
POSTGRES_USER = "postgres"
READY_SECONDS = 60.0
STOP_SECONDS = 30.0


class ServiceError(RuntimeError):
    """A service did not start or stop; the message names it and ends with its log's tail."""


def postgres_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: from PATH, else Debian's newest versioned one."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres", path=str(Path(found).resolve().parent)):
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob(POSTGRES_BIN_GLOB), key=_version_key, reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


def _version_key(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


def missing_binaries() -> list[str]:
    """What the scale tier needs and this machine lacks (empty when it can run): Debian package names."""
    missing = []
    if postgres_bin_dir() is None:
        missing.append("postgresql (initdb, postgres)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if os.geteuid() == 0 and not _user_exists(POSTGRES_USER):
        missing.append(f"the {POSTGRES_USER} user (PostgreSQL refuses to run as root)")
    return missing


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def mask_url(url: str) -> str:
    """The URL with its password (in the user info, or a ``password=`` query parameter, which asyncpg and
    redis-py read too) replaced by ``***``, for anything printed or logged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, question, query = rest.partition("?")
    if question:
        query = "&".join(
            f"{key}=***" if "password" in key.lower() else f"{key}{eq}{value}"
            for key, eq, value in (item.partition("=") for item in query.split("&"))
        )
    if "@" in rest.split("/", 1)[0]:
        userinfo, _, hostpart = rest.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        rest = f"{user}{':***' if has_password else ''}@{hostpart}" if user else f"***@{hostpart}"
    return f"{scheme}://{rest}{question}{query}"


DATABASE_SCHEMES = ("postgresql", "postgresql+asyncpg")
REDIS_SCHEMES = ("redis", "rediss")


def checked_database_url(url: str) -> str:
    """``--database``: a PostgreSQL URL with a host, as Prefect's server takes it (``postgresql+asyncpg://``: its
    async engine needs the asyncpg driver, docs.prefect.io/v3/advanced/self-hosted "Database setup"). A
    ValueError's one-line message never holds the URL (it may hold a password)."""
    parts = _url_parts(url, "--database", DATABASE_SCHEMES)
    return "postgresql+asyncpg://" + parts


def checked_redis_url(url: str) -> str:
    """``--redis``: a ``redis://`` or ``rediss://`` (TLS) URL with a host, unchanged."""
    _url_parts(url, "--redis", REDIS_SCHEMES)
    return url


def _url_parts(url: str, option: str, schemes: tuple[str, ...]) -> str:
    """What follows ``scheme://`` once the scheme is one of ``schemes`` and a host is named."""
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in schemes:
        shown = f"scheme {one_line(scheme, 20)!r}" if sep else "no scheme"
        raise ValueError(f"{option} takes a {expected} URL ({shown} given)")
    if not urlsplit(url.strip()).hostname:
        raise ValueError(f"{option} URL names no host ({expected}user:password@host:port/...)")
    return rest


class _Service:
    """A child process in a session of its own that we start, stop (SIGTERM, then SIGKILL) and start again."""

    name = "service"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self.log = self.directory / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Once, before the first start (initdb, directories)."""

    def _after_first_start(self) -> None:
        """Once, after the first start (create the database)."""

    def start(self) -> None:
        """Start the service (a no-op while it runs) and wait until it answers on its port."""
        if self.running:
            return
        first = not self.directory.exists() or not any(self.directory.iterdir())
        self.directory.mkdir(parents=True, exist_ok=True)
        if first:
            self._prepare()
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(), cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, **child_options()
            )
        deadline = time.monotonic() + READY_SECONDS
        while not self._ready():
            if self._proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with code {self._proc.returncode}\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"{self.name} did not answer within {READY_SECONDS:.0f} s\n{self.tail()}")
            time.sleep(0.1)
        if first:
            self._after_first_start()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop it with ``sig`` (SIGKILL for a crash) and wait until its whole process group is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        deadline = time.monotonic() + STOP_SECONDS
        while processes.in_groups({proc.pid}) and time.monotonic() < deadline:  # backends exit after the postmaster
            time.sleep(0.1)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, start again on the same port with the same data."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Postgres(_Service):
    """A PostgreSQL cluster of its own (initdb into ``directory/data``), TCP on 127.0.0.1 only, no fsync (a
    throwaway), with a superuser ``prefect`` whose random password is in ``url``, and a database ``prefect``."""

    name = "postgres"
    user = "prefect"
    database = "prefect"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port)
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise ServiceError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin_dir = bin_dir
        self.data = self.directory / "data"
        self.password = secrets.token_hex(16)

    @property
    def url(self) -> str:
        """For ``PREFECT_API_DATABASE_CONNECTION_URL`` (docs.prefect.io/v3/advanced/self-hosted, "Database setup")."""
        return f"postgresql+asyncpg://{self.user}:{self.password}@{HOST}:{self.port}/{self.database}"

    def _as_owner(self, command: list[str]) -> list[str]:
        """As root, run ``command`` as the postgres user: setpriv(1) keeps CAP_DAC_READ_SEARCH (so it can reach
        a data dir under a root-only 0700 temp dir) and asks for SIGTERM when we die (the uid change clears a
        parent-death signal set before it: prctl(2) PR_SET_PDEATHSIG)."""
        if os.geteuid() != 0:
            return command
        # The kernel sends the signal when the *thread* that started the child ends (prctl(2)): from another
        # thread, none (as ``child_options`` does), or a restart from a helper thread would stop at once.
        on_main = threading.current_thread() is threading.main_thread()
        return [
            "setpriv",
            f"--reuid={POSTGRES_USER}",
            f"--regid={POSTGRES_USER}",
            "--init-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            *(["--pdeathsig=TERM"] if on_main else []),
            *command,
        ]

    def _prepare(self) -> None:
        password_file = self.directory / "password"
        password_file.write_text(self.password + "\n")
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(POSTGRES_USER)
            for path in (self.directory, self.data, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        result = subprocess.run(
            self._as_owner(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.user,
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        password_file.unlink()
        if result.returncode != 0:
            raise ServiceError(f"initdb failed with code {result.returncode}\n{result.stdout}{result.stderr}")

    def _command(self) -> list[str]:
        # Server settings: postgresql.org/docs/15/runtime-config.html. No unix socket (its path may exceed 107
        # bytes under a temp dir), no durability (fsync off), room for two API processes, services and workers.
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": "",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return self._as_owner([str(self.bin_dir / "postgres"), "-D", str(self.data), *options])

    def stop(self, sig: signal.Signals = signal.SIGINT) -> None:
        """SIGINT is PostgreSQL's "fast" shutdown (sessions are cut, the cluster is consistent):
        postgresql.org/docs/15/server-shutdown.html; SIGKILL for a crash (it recovers at the next start)."""
        super().stop(sig)

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port), "-t", "1"], check=False
        )
        return result.returncode == 0

    def _after_first_start(self) -> None:
        self.psql("postgres", f"CREATE DATABASE {self.database}")

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` on ``database`` as the superuser; its output without alignment or headers."""
        connect = ["-h", HOST, "-p", str(self.port), "-U", self.user, "-d", database]
        result = subprocess.run(
            [str(self.bin_dir / "psql"), *connect, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"psql failed: {result.stderr.strip()}")
        return result.stdout


class Redis(_Service):
    """A redis-server of its own: 127.0.0.1 only, no persistence (no RDB snapshots, no AOF), its files in
    ``directory``."""

    name = "redis"

    def __init__(self, directory: Path, port: int | None = None) -> None:
        super().__init__(directory, port)
        found = shutil.which("redis-server")
        if found is None:
            raise ServiceError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = found

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        # Options: redis.io/docs/latest/operate/oss_and_stack/management/config-file/ (save "" turns RDB off).
        return [
            self.binary,
            "--bind",
            HOST,
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


# -- Prefect's self-hosted layout -------------------------------------------------------------------------------


def redis_layout_env(redis_url: str) -> dict[str, str]:
    """Prefect server settings for Redis: messaging, event ordering, concurrency leases and the services' docket.

    Module names from Prefect's self-hosted guide, "Redis setup" (docs.prefect.io/v3/advanced/self-hosted); the
    setting names are prefect/settings/models/server/events.py (``PREFECT_MESSAGING_BROKER``,
    ``PREFECT_MESSAGING_CACHE``, ``causal_ordering``), concurrency.py (``lease_storage``) and docket.py (``url``);
    prefect-redis reads ``PREFECT_REDIS_MESSAGING_URL`` (prefect_redis/client.py, RedisMessagingSettings).
    """
    docket_url = redis_url.rsplit("/", 1)[0] + "/1" if _has_db_path(redis_url) else redis_url.rstrip("/") + "/1"
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": redis_url,
        # Docket coordinates the background services across processes; memory:// is single-process only
        # (prefect/settings/models/server/docket.py). Its own database number keeps its keys apart.
        "PREFECT_SERVER_DOCKET_URL": docket_url,
    }


def _has_db_path(url: str) -> bool:
    path = url.split("://", 1)[-1].partition("/")[2].split("?")[0]
    return path.isdigit()


def server_env(database_url: str, redis_url: str | None = None) -> dict[str, str]:
    """What every Prefect server process (API, services, migration) of the layout needs: the database, no
    migration at start (it runs once, apart: ``migrate_command``) and, with ``redis_url``, the Redis layout."""
    env = {
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        # The migration runs once before any server starts (self-hosted guide, "Database migrations").
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if redis_url:
        env.update(redis_layout_env(redis_url))
    return env


def _prefect_cli() -> list[str]:
    script = Path(sys.executable).with_name("prefect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]


def migrate_command() -> list[str]:
    """Upgrade the schema once (prefect/cli/server.py ``database upgrade``), before any server process starts."""
    return [*_prefect_cli(), "server", "database", "upgrade", "-y"]


def api_command(port: int, host: str = HOST) -> list[str]:
    """One API process without the background services (prefect/cli/server.py ``start --no-services``);
    several of these can share one database and Redis behind a balancer."""
    return [*_prefect_cli(), "server", "start", "--host", host, "--port", str(port), "--no-services"]


def services_command() -> list[str]:
    """The background services (scheduler, late runs, triggers, event persister...) in their own process
    (prefect/cli/server.py ``services start``)."""
    return [*_prefect_cli(), "server", "services", "start"]
