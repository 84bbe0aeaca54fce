"""Known failures read as a sentence, not a traceback: what failed and what to do, on stderr, exit 1 (it
failed) or 2 (usage, config); the traceback only with --debug or DRIFT_RETRAIN_DEBUG=1. Each case runs the real
command line (``main()``, as the ``drift-retrain`` script does) in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from drift_retrain.devstack.stack import PROJECT_DIR, _port_in_use, free_port
from drift_retrain.testing import write_config

CLI = [sys.executable, "-m", "drift_retrain.cli"]


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command with no Prefect server named and Prefect's home (its profiles, an ephemeral database)
    under ``tmp_path``, so nothing is read from or written to the real ~/.prefect."""
    environment = dict(os.environ) | {"PREFECT_HOME": str(tmp_path / "prefect-home"), "HOME": str(tmp_path)} | env
    for name in ("PREFECT_API_URL", "DRIFT_RETRAIN_DEBUG"):
        if name not in env:
            environment.pop(name, None)
    return subprocess.run([*CLI, *args], cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=180)


def _one_or_two_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    return lines


def test_send_event_without_a_receiver_says_so_in_one_line(tmp_path: Path) -> None:
    config, event = write_config(tmp_path), tmp_path / "event.json"
    event.write_text('{"id": "1"}')
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/eventgrid"
    result = run(tmp_path, "send-event", str(event), "-c", str(config), "--url", f"{url}?code=not-to-be-shown")
    assert result.returncode == 1
    (line,) = _one_or_two_lines(result)
    assert line.startswith(f"cannot reach {url} (ConnectError") and "drift-retrain up" in line
    assert "not-to-be-shown" not in result.stderr

    debug = run(tmp_path, "--debug", "send-event", str(event), "-c", str(config), "--url", url)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ConnectError" in debug.stderr


def test_webhook_without_prefect_api_url_refuses_before_it_serves(tmp_path: Path) -> None:
    port = free_port()
    result = run(tmp_path, "webhook", "-c", str(write_config(tmp_path)), "--port", str(port))
    assert result.returncode == 2
    assert _one_or_two_lines(result)[0].startswith("PREFECT_API_URL is not set")
    assert "Uvicorn" not in result.stderr and not _port_in_use(port)


def test_limits_without_prefect_api_url_refuses_and_starts_no_throwaway_server(tmp_path: Path) -> None:
    result = run(tmp_path, "limits", "-c", str(write_config(tmp_path)))
    assert result.returncode == 2
    assert _one_or_two_lines(result)[0].startswith("PREFECT_API_URL is not set")
    assert "ok" not in result.stdout
    # An ephemeral server would have put its database in Prefect's home.
    assert not list((tmp_path / "prefect-home").glob("*.db")) and not (tmp_path / ".prefect").exists()


def test_a_busy_port_is_one_line_naming_who_holds_it(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"DRIFT_RETRAIN_PREFECT_PORT": str(port), "DRIFT_RETRAIN_WEBHOOK_PORT": str(free_port())}
        result = run(tmp_path, "up", "-c", str(config), **ports)
        debug = run(tmp_path, "up", "-c", str(config), DRIFT_RETRAIN_DEBUG="1", **ports)
    assert result.returncode == 1
    (line,) = _one_or_two_lines(result)
    holder = f"pid {os.getpid()}" if sys.platform == "linux" else "another process"
    assert line.startswith(f"port {port} (prefect) is already in use by {holder}")
    assert "set DRIFT_RETRAIN_PREFECT_PORT to a free port" in line
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "StackError" in debug.stderr


@pytest.mark.parametrize("command", ["up", "demo", "down", "limits"])
def test_a_missing_config_is_one_line_and_exit_2(tmp_path: Path, command: str) -> None:
    result = run(tmp_path, command, "-c", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    _one_or_two_lines(result)
