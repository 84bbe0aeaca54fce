"""A worker SIGKILLed mid-retrain, with its flow-run processes (a host gone at once): one retrain waiting on
its Data Factory copy, one waiting on its training run, both on the worker that dies. Prefect's zombie recipe
marks each run Crashed once its heartbeats stop (the automation `drift-retrain limits` creates: drift_retrain/zombies.py), the sweep deployment
schedules it again, and the other worker runs it: it reattaches to what the first attempt started in Azure, so
the loopback Azure sees one copy run and one training run per retrain, and the registry one version each.

Both retrains must start on the same worker, so that the other one is alive to take them over: the other
worker is down (SIGKILLed while idle) until the first dies."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from drift_retrain.devstack.sender import deliver_events
from drift_retrain.fake_azure import FakeAzure, RunScript
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.names import SIGNAL_TAG
from drift_retrain.testing import dataset_drift
from tests.scale.conftest import HEARTBEAT_SECONDS, KILL_CASES, ZOMBIE_SECONDS, healthy, wait_until

pytestmark = pytest.mark.timeout(1200)

ACTIVE = {"PENDING", "RUNNING", "CANCELLING"}


def adf_runs(fake: FakeAzure, monitor: str) -> list:
    return [r for r in fake.datafactory.created("copy-drift-window") if r.parameters.get("monitor") == monitor]


def ml_jobs(fake: FakeAzure, run_id: str) -> list:
    return [j for j in fake.ml.jobs.values() if j.body.get("ParameterAssignments", {}).get("drift_run") == run_id]


def submitted(worker: Any) -> set[str]:
    """Flow runs the worker started ("Worker '<name>' submitting flow run '<id>'", prefect/workers/base.py)."""
    return set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", worker.log.read_text(errors="replace")))


@pytest.fixture(scope="module")
def killed(fleet, scale_api, scale_azure: FakeAzure) -> dict[str, Any]:
    doomed, other = fleet.workers
    wait_until(
        lambda: not [r for r in scale_api._all_runs({"flow_runs": {"state": {"type": {"any_": sorted(ACTIVE)}}}})],
        "no flow run in flight before the kill",
        timeout=600,
        pause=1,
    )
    other.kill()  # idle: nothing of ours runs on it; both retrains now land on `doomed`

    stamp = int(time.time() * 1000)
    cases: dict[str, dict[str, Any]] = {}
    # The copy the first retrain waits on lasts long enough to be killed in; the second's copy is quick and its
    # training long. Each fake run keeps its scripted course whatever happens to the flow that started it.
    scale_azure.datafactory.script(
        "copy-drift-window", RunScript(steps=(("Queued", 0.5), ("InProgress", 40.0)), final="Succeeded")
    )
    scale_azure.datafactory.script("copy-drift-window", RunScript(steps=(("InProgress", 1.0),), final="Succeeded"))
    scale_azure.ml.script_next_job(RunScript(steps=(("Running", 40.0),), final="Completed"), metrics={"roc_auc": 0.9})
    scale_azure.ml.script_next_job(RunScript(steps=(("Running", 2.0),), final="Completed"), metrics={"roc_auc": 0.9})
    for case in KILL_CASES:
        run_id = f"azure-{case}-drift_{stamp}"
        monitor = f"azure-{case}-drift"
        event = dataset_drift(run_id, monitor=monitor, StartTime="2026-10-01T00:00:00Z", EndTime="2026-10-08T00:00:00Z")
        scale_azure.ml.datadrift.publish(event["data"]["DataDriftId"], run_id, 0.7)
        response = deliver_events(fleet.webhook_url(len(cases) % 2), [event], fleet.secret)
        assert response.status_code == 200, response.text
        cases[case] = {
            "signal": to_drift_signal(event),
            "monitor": monitor,
            "run_id": run_id,
            "flow_run_id": response.json()["accepted"][0]["flow_run_id"],
        }
        wait_until(
            lambda monitor=monitor: adf_runs(scale_azure, monitor),
            f"{case}: the copy run was never created",
            timeout=300,
        )

    mid_copy, mid_training = cases["mid-copy"], cases["mid-training"]
    wait_until(
        lambda: adf_runs(scale_azure, mid_copy["monitor"])[0].run.status_calls >= 2,
        "mid-copy: the flow never waited on its copy",
        timeout=300,
    )
    wait_until(
        lambda: (
            ml_jobs(scale_azure, mid_training["run_id"])
            and ml_jobs(scale_azure, mid_training["run_id"])[0].run.status_calls >= 1  # looked at: in its hold
        ),
        "mid-training: the flow never waited on its training",
        timeout=300,
    )
    assert adf_runs(scale_azure, mid_copy["monitor"])[0].status() == "InProgress"  # still copying when killed
    assert not ml_jobs(scale_azure, mid_copy["run_id"])
    doomed.kill()  # SIGKILL: the worker and its flow-run processes, nothing flushed or cleaned up
    killed_at = time.monotonic()
    for case in cases.values():
        case["state_after_kill"] = scale_api.flow_run(case["flow_run_id"])["state"]["type"]
        case["first_worker"] = doomed.name if case["flow_run_id"] in submitted(doomed) else "?"
    other.start()
    other.wait_ready(lambda: healthy(f"http://127.0.0.1:{fleet.worker_ports[1]}/health"))

    def crashed() -> bool:
        return all(scale_api.flow_run(c["flow_run_id"])["state"]["type"] == "CRASHED" for c in cases.values())

    wait_until(
        crashed,
        "the dead worker's runs were never marked Crashed",
        timeout=ZOMBIE_SECONDS + 4 * HEARTBEAT_SECONDS + 120,
    )
    detected = time.monotonic() - killed_at
    sweep = scale_api.wait(scale_api.run_deployment("sweep/sweep", {"lookback_hours": 1, "catch_up": False}))
    for case in cases.values():
        case["final"] = scale_api.wait(case["flow_run_id"], timeout=600)
    doomed.start()  # the fleet as it was, for whatever runs next
    print(f"\nworker kill: runs marked Crashed {detected:.0f} s after the kill; sweep {sweep['state']['type']}")
    return {"cases": cases, "sweep": sweep, "other": other, "doomed": doomed}


@pytest.mark.parametrize("case", KILL_CASES)
def test_the_other_worker_finishes_the_killed_retrain(case, killed) -> None:
    found = killed["cases"][case]
    assert found["state_after_kill"] == "RUNNING"  # what a SIGKILL leaves behind
    assert found["first_worker"] == killed["doomed"].name
    assert killed["sweep"]["state"]["type"] == "COMPLETED", killed["sweep"]["state"]
    assert found["final"]["state"]["type"] == "COMPLETED", found["final"]["state"]
    assert found["final"]["run_count"] >= 2
    assert found["flow_run_id"] in submitted(killed["other"])


@pytest.mark.parametrize("case", KILL_CASES)
def test_one_copy_one_training_and_one_version_per_killed_retrain(case, killed, scale_azure: FakeAzure) -> None:
    found = killed["cases"][case]
    (copy_run,) = adf_runs(scale_azure, found["monitor"])  # one Data Factory run, at the fake
    (job,) = ml_jobs(scale_azure, found["run_id"])  # one training run
    assert job.creates == 1
    assert copy_run.run.cancel_calls == 0 and job.run.cancel_calls == 0  # reattached, not cancelled and redone
    versions = [
        m
        for m in scale_azure.ml.models.get(f"azure-{case}", [])
        if m["properties"]["tags"].get(SIGNAL_TAG) == found["signal"].identity
    ]
    assert len(versions) == 1
    assert versions[0]["properties"]["tags"]["prefect.flow_run_id"] == found["flow_run_id"]
