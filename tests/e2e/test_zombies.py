"""`drift-retrain limits` creates the zombie-run automation (drift_retrain/zombies.py) on a real Prefect server,
once; it crashes a Running run whose heartbeats stopped and leaves a Suspended one (a wait that holds no
process, so sends no heartbeat) alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drift_retrain.testing import PrefectServer, write_config
from drift_retrain.zombies import ZOMBIE_AUTOMATION
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

WINDOW = 15  # Prefect's floor for a proactive trigger's window is 10 s (events/schemas/automations.py)


def limits(server: PrefectServer, config: Path) -> str:
    env = dict(os.environ, PREFECT_API_URL=server.api_url)
    command = [sys.executable, "-m", "drift_retrain.cli", "limits", "-c", str(config), "--heartbeat-window", str(WINDOW)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def heartbeat(api: Api, run_id: str) -> None:
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "prefect.flow-run.heartbeat",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}"},
    }
    api.http.post("/events", json=[event]).raise_for_status()


def set_state(api: Api, run_id: str, state: dict) -> None:
    answer = api.http.post(f"/flow_runs/{run_id}/set_state", json={"state": state, "force": True}).raise_for_status()
    assert answer.json()["status"] == "ACCEPT", answer.text


def test_limits_makes_one_automation_that_spares_suspended_runs(tmp_path: Path) -> None:
    (tmp_path / "prefect").mkdir()
    with PrefectServer.with_deployment(tmp_path / "prefect") as server:
        api = Api(server.api_url)
        config = write_config(tmp_path)
        assert f"automation {ZOMBIE_AUTOMATION!r} created" in limits(server, config)
        assert f"automation {ZOMBIE_AUTOMATION!r} updated" in limits(server, config)
        named = api.http.post("/automations/filter", json={"automations": {"name": {"any_": [ZOMBIE_AUTOMATION]}}})
        assert len(named.raise_for_status().json()) == 1

        deployment = api.http.get("/deployments/name/drift-to-retrain/drift-to-retrain").raise_for_status().json()
        runs = [
            api.http.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).raise_for_status().json()["id"]
            for _ in range(2)
        ]
        zombie, suspended = runs
        time.sleep(2)  # the automation reaches the triggers service's cache (it reloads on change)
        for run in runs:
            set_state(api, run, {"type": "RUNNING"})
            heartbeat(api, run)
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        set_state(
            api,
            suspended,
            {
                "type": "PAUSED",
                "name": "Suspended",
                "state_details": {"pause_reschedule": True, "pause_timeout": until, "pause_key": "wait"},
            },
        )
        deadline = time.monotonic() + 240
        while api.flow_run(zombie)["state"]["type"] != "CRASHED":
            assert time.monotonic() < deadline, f"not crashed: {api.flow_run(zombie)['state']}"
            time.sleep(1)
        time.sleep(WINDOW)  # the suspended run's last heartbeat is as old as the zombie's, and a window older
        state = api.flow_run(suspended)["state"]
        assert (state["type"], state["name"]) == ("PAUSED", "Suspended")
