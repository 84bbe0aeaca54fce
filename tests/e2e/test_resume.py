"""Never twice: the flow process is SIGKILLed at each step boundary and in the middle of its waits on
Azure, then the same flow run is run again; it reattaches to what the first attempt started and ends
with exactly one copy, one training job and one model version, counted where they happen (the local
backend's records, the loopback Azure's side, the registry).

Every case has a model of its own and all crash side by side, then rerun side by side: a killed worker
keeps its model's retrain slot until the lease expires (about a minute), and waiting for that once is
enough."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import pytest

from drift_retrain.names import COPY_RUN_TAG, SIGNAL_TAG, TRAINING_JOB_TAG, copy_run_key, training_run_key
from drift_retrain.backends.local.monitor import latest_window
from drift_retrain.backends.local.registry import FileModelRegistry
from drift_retrain.fake_azure import FakeAzure, RunScript
from drift_retrain.signals import DriftSignal
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import dataset_drift, spawn
from tests.e2e.conftest import AZURE_CRASH_CASES, CRASH_STEPS

# The crash fixture (crash every case, wait out the dead workers' leases, rerun every case) is set up inside
# the first test's time limit; on two cores shared with another suite it can need more than the default 600 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


@dataclass
class Case:
    signal: DriftSignal
    flow_run_id: str
    crash_exit: int = 0
    crash_state: str = ""
    rerun_exit: int = 0
    output: str = ""


def new_flow_run(api, signal: DriftSignal) -> str:
    """A drift-to-retrain flow run outside any deployment, so the runner leaves it to this test's worker."""
    flow_id = api.http.get("/flows/name/drift-to-retrain").json()["id"]
    body = {
        "flow_id": flow_id,
        "parameters": {"signal": signal.model_dump(mode="json"), "force": False},
        "state": {"type": "SCHEDULED"},
        "tags": ["resume-test"],
    }
    response = api.http.post("/flow_runs/", json=body)
    response.raise_for_status()
    return response.json()["id"]


def worker(stack, flow_run_id: str, kill_after: str | None = None) -> subprocess.Popen:
    """Run the flow run in a process of its own, the way a worker does (``tests/e2e/crash_run.py``)."""
    command = [sys.executable, "-m", "tests.e2e.crash_run", flow_run_id, *(["--kill-after", kill_after] if kill_after else [])]
    return spawn(command, cwd=stack.project_dir, env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out.decode(errors="replace")


def stop(processes: list[subprocess.Popen]) -> None:
    """Whatever failed, no worker outlives the fixture (each is a process group of its own)."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def adf_runs(fake: FakeAzure, signal: DriftSignal) -> list:
    return [r for r in fake.datafactory.created("copy-drift-window") if r.parameters.get("monitor") == signal.monitor]


def ml_jobs(fake: FakeAzure, signal: DriftSignal) -> list:
    return [j for j in fake.ml.jobs.values() if j.body.get("ParameterAssignments", {}).get("drift_run") == signal.run_id]


def azure_versions(fake: FakeAzure, signal: DriftSignal) -> list:
    model = signal.monitor.removesuffix("-drift")
    return [m for m in fake.ml.models.get(model, []) if m["properties"]["tags"].get(SIGNAL_TAG) == signal.identity]


@pytest.fixture(scope="module")
def crashes(stack, api, e2e_settings, fake_azure: FakeAzure) -> dict[str, Case]:
    """Every case crashed once (SIGKILL), then the same flow run run again to its end."""
    stamp = int(time.time() * 1000)
    start, end = latest_window(e2e_settings.local_monitors[0], e2e_settings)
    cases: dict[str, Case] = {}
    for step in CRASH_STEPS:
        event = dataset_drift(f"crash-{step}_{stamp}", f"crash-{step}-monitor",
                              StartTime=start.isoformat(), EndTime=end.isoformat(), DriftCoefficient=0.9)
        cases[step] = Case(to_drift_signal(event), "")
    for case in AZURE_CRASH_CASES:
        run_id = f"azure-{case}-drift_{stamp}"
        event = dataset_drift(run_id, monitor=f"azure-{case}-drift", StartTime="2026-10-01T00:00:00Z", EndTime="2026-10-08T00:00:00Z")
        fake_azure.ml.datadrift.publish(event["data"]["DataDriftId"], run_id, 0.7)
        fake_azure.datafactory.script("copy-drift-window", RunScript(steps=(("Queued", 0.3), ("InProgress", 8.0)), final="Succeeded"))
        fake_azure.ml.script_next_job(RunScript(steps=(("Running", 8.0),), final="Completed"), metrics={"roc_auc": 0.9})
        cases[case] = Case(to_drift_signal(event), "")
    for case in cases.values():
        case.flow_run_id = new_flow_run(api, case.signal)

    hooked = {name: name if name in CRASH_STEPS else ("register-model" if name == "after-registration" else None) for name in cases}
    started: list[subprocess.Popen] = []
    try:
        _crash_and_rerun(stack, api, fake_azure, cases, hooked, started)
    finally:
        stop(started)
    return cases


def _crash_and_rerun(stack, api, fake_azure: FakeAzure, cases: dict[str, Case], hooked: dict[str, str | None],
                     started: list[subprocess.Popen]) -> None:
    """Crash every case's worker (at its step, or SIGKILLed in its wait on Azure), then rerun each to its end."""
    workers = {name: worker(stack, cases[name].flow_run_id, kill_after=hooked[name]) for name in cases}
    started += workers.values()
    mid_copy, mid_training = cases["mid-copy-wait"].signal, cases["mid-training-wait"].signal
    wait_until(lambda: adf_runs(fake_azure, mid_copy) and adf_runs(fake_azure, mid_copy)[0].run.status_calls >= 2,
               "the worker never waited on its Data Factory run")
    workers["mid-copy-wait"].kill()  # SIGKILL in the middle of the wait: nothing can cancel or clean up
    # an ML wait looks once, then holds on the job's end event (drift_retrain/job_end_events.py): one call is waiting
    wait_until(lambda: ml_jobs(fake_azure, mid_training) and ml_jobs(fake_azure, mid_training)[0].run.status_calls >= 1,
               "the worker never waited on its training run")
    workers["mid-training-wait"].kill()
    for name, process in workers.items():
        cases[name].crash_exit, cases[name].output = finish(process)
        cases[name].crash_state = api.flow_run(cases[name].flow_run_id)["state"]["type"]

    for case in cases.values():  # the rerun a Prefect retry, the sweep or the UI makes: the same run, Scheduled again
        api.http.post(f"/flow_runs/{case.flow_run_id}/set_state", json={"state": {"type": "SCHEDULED"}, "force": True}).raise_for_status()
    reruns = {name: worker(stack, case.flow_run_id) for name, case in cases.items()}
    started += reruns.values()
    for name, process in reruns.items():
        cases[name].rerun_exit, out = finish(process)
        cases[name].output += "\n--- rerun ---\n" + out


def assert_crashed_then_completed(case: Case, api) -> dict:
    assert case.crash_exit == -9, f"the worker was not killed: exit {case.crash_exit}\n{case.output[-3000:]}"
    assert case.crash_state == "RUNNING"  # what a crash leaves behind
    assert case.rerun_exit == 0, case.output[-3000:]
    final = api.flow_run(case.flow_run_id)
    assert final["state"]["type"] == "COMPLETED", (final["state"], case.output[-3000:])
    return final


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_local_rerun_after_a_sigkill_at_each_step_boundary_registers_exactly_one_version(step, crashes, api, e2e_settings) -> None:
    case = crashes[step]
    assert_crashed_then_completed(case, api)
    registry = FileModelRegistry(e2e_settings.resolve(e2e_settings.target(f"crash-{step}").registry.path))
    (version,) = registry.versions(f"crash-{step}")  # exactly one, whatever the crash point
    assert version.tags[SIGNAL_TAG] == case.signal.identity
    assert version.tags["prefect.flow_run_id"] == case.flow_run_id
    assert version.tags[TRAINING_JOB_TAG] == training_run_key(case.signal)
    assert version.tags[COPY_RUN_TAG] == copy_run_key(case.signal)
    decision = api.latest_artifact(case.flow_run_id, f"decision-crash-{step}")["description"]
    if step == "register-model":  # registered before the crash: the rerun finds it and says so
        assert decision.startswith(f"skip: already handled: registered as crash-{step} v1")
    else:
        assert decision.startswith("retrain: ")


@pytest.mark.parametrize("case_name", AZURE_CRASH_CASES)
def test_azure_rerun_after_a_sigkill_reattaches_and_starts_nothing_twice(case_name, crashes, api, fake_azure: FakeAzure) -> None:
    case = crashes[case_name]
    assert_crashed_then_completed(case, api)
    (adf_run,) = adf_runs(fake_azure, case.signal)  # one Data Factory run, seen at the fake
    (job,) = ml_jobs(fake_azure, case.signal)  # one training run
    assert job.creates == 1
    assert adf_run.run.cancel_calls == 0 and job.run.cancel_calls == 0  # reattached, not cancelled and redone
    assert len(azure_versions(fake_azure, case.signal)) == 1  # one model version in the registry
    if case_name == "after-registration":
        model = f"azure-{case_name}"
        assert api.latest_artifact(case.flow_run_id, f"decision-{model}")["description"].startswith("skip: already handled")
