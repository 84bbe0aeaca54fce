"""Waits that hold no process (docs/waiting.md), on a real stack of its own (Prefect server, runner, receiver)
and the loopback Azure: a retrain whose ML job goes on past its hold is suspended (Prefect's Suspended state,
the run page's message, the waiting tags, no process), and is resumed by its job event posted to the
receiver, by the waiter's fallback pass with no event, and by a new runner after its runner was killed; one
cancelled while suspended has its ML job cancelled and its model's slot freed. Every resumed retrain reattaches:
one Data Factory run, one ML job, one model version, one decision card."""

from __future__ import annotations

import copy
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from drift_retrain.config import Settings, load_settings
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.devstack.stack import Stack, free_port
from drift_retrain.fake_azure import CLIENT_ID, TENANT, FakeAzure, RunScript
from drift_retrain.names import WAITING_TAG, artifact_key, job_resource, limit_name, waiting_tag
from drift_retrain.testing import DEMO_WORKSPACE, dataset_drift, sample, write_config
from tests.e2e.conftest import AZURE_FACTORY, AZURE_SECRET_ENV, STACK_ENV, Api

pytestmark = pytest.mark.e2e

PIPELINE_YAML = Path(__file__).resolve().parents[1] / "contract" / "data" / "train_pipeline_job.yml"
WINDOW = {"StartTime": "2026-11-01T00:00:00Z", "EndTime": "2026-11-08T00:00:00Z"}
#: fallback_minutes per case: 10 where nothing but the test (or the cancel trigger) may wake the run; 0.25 where
#: the waiter's fallback pass is what resumes it.
CASES = {"push": 10, "fallback": 0.25, "cancel": 10, "killed": 0.25, "hold": 10}
#: The training's polling per case: "hold" holds its process long and, were it polling, would look every 5 s.
POLLING = dict.fromkeys(CASES, "initial_interval = 0.2, max_interval = 1, timeout_minutes = 10, hold_seconds = 2") | {
    "hold": "initial_interval = 5, max_interval = 5, jitter = 0, timeout_minutes = 10, hold_seconds = 120"
}

TARGET = """
[[targets]]
name = "wait-{case}"
backend = "azure"
workspace = "{workspace}"
monitors = ["wait-{case}-drift"]
model_name = "wait-{case}"
policy = {{ cooldown_minutes = 0, min_rows = 100 }}
registry = {{ kind = "azure_ml", model_type = "mlflow_model", path = "model/" }}

[targets.copy]
kind = "data_factory"
factory = "{factory}"
pipeline = "copy-wait-{case}"
output_uri = "azureml://datastores/training/paths/{{model_name}}/{{window_end_date}}_{{signal_key}}/"
parameters = {{ windowStart = "{{window_start}}", windowEnd = "{{window_end}}" }}

[targets.training]
kind = "pipeline_job"
yaml = "{yaml}"
inputs = {{ training_data = "{{copy_output_uri}}", window_end = "{{window_end_date}}" }}
polling = {{ {polling}, fallback_minutes = {fallback} }}
"""

AZURE = """
[azure]
authority_host = "{url}"
resource_manager = "{url}"
ca_bundle = "{ca}"
credential = {{ kind = "client_secret", tenant_id = "{tenant}", client_id = "{client}", client_secret_env = "{secret_env}" }}
polling = {{ initial_interval = 0.2, max_interval = 1, timeout_minutes = 10 }}
"""


@pytest.fixture(scope="module")
def wait_settings(tmp_path_factory: pytest.TempPathFactory, fake_azure: FakeAzure) -> Settings:
    os.environ.update(STACK_ENV)
    azure = AZURE.format(
        url=fake_azure.url, ca=fake_azure.ca_path, tenant=TENANT, client=CLIENT_ID, secret_env=AZURE_SECRET_ENV
    )
    targets = "".join(
        TARGET.format(
            case=case,
            workspace=DEMO_WORKSPACE,
            factory=AZURE_FACTORY,
            yaml=PIPELINE_YAML,
            fallback=fallback,
            polling=POLLING[case],
        )
        for case, fallback in CASES.items()
    )
    return load_settings(write_config(tmp_path_factory.mktemp("waits"), extra=azure + targets))


@pytest.fixture(scope="module")
def wait_stack(wait_settings: Settings) -> Iterator[Stack]:
    with Stack(wait_settings, prefect_port=free_port(), webhook_port=free_port()) as running:
        yield running


def until(what: str, check: Callable[[], Any], timeout: float = 240, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def start_retrain(stack: Stack, fake: FakeAzure, case: str, job_seconds: float | None) -> tuple[str, str]:
    """A drift event for ``wait-<case>`` whose ML job runs ``job_seconds`` (None: until cancelled): the flow run id
    and the drift run id."""
    run_id = f"wait-{case}_{uuid.uuid4().hex[:8]}"
    event = dataset_drift(run_id, monitor=f"wait-{case}-drift", **WINDOW)
    fake.ml.datadrift.publish(event["data"]["DataDriftId"], run_id, 0.58, {"income": {"datadrift_contribution": 0.4}})
    script = (
        RunScript(steps=(("Running", 1.0),), never_finishes=True)
        if job_seconds is None
        else RunScript(steps=(("Running", job_seconds),), final="Completed")
    )
    fake.ml.script_next_job(script, metrics={"roc_auc": 0.8})
    response = deliver_events(stack.webhook_url, [event], stack.secret)
    assert response.status_code == 200, response.text
    return response.json()["accepted"][0]["flow_run_id"], run_id


def suspended(api: Api, flow_run_id: str) -> dict[str, Any] | None:
    run = api.flow_run(flow_run_id)
    state = run["state"]
    assert state["type"] not in {"FAILED", "CRASHED", "COMPLETED"}, state
    return run if state["type"] == "PAUSED" and state["name"] == "Suspended" else None


def jobs_waited_on(run: dict[str, Any]) -> list[str]:
    prefix = waiting_tag(job_resource(""))
    return [tag[len(prefix) :] for tag in run["tags"] if tag.startswith(prefix)]


def processes_of(flow_run_id: str) -> list[int]:
    """Processes running the flow run: the runner starts each with PREFECT__FLOW_RUN_ID in its environment
    (prefect/runner/_starter_engine.py)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def assert_suspended_holding_nothing(api: Api, flow_run_id: str) -> str:
    """Suspended on its ML job with the run page's message, tagged for the receiver, and no process: the job's name."""
    run = until("the retrain to be suspended", lambda: suspended(api, flow_run_id))
    (job,) = jobs_waited_on(run)
    assert run["state"]["message"] == f"waiting for ML job {job} (suspended)"
    assert WAITING_TAG in run["tags"]
    until("its flow process to exit", lambda: not processes_of(flow_run_id), timeout=60)
    return job


def assert_ran_once(api: Api, fake: FakeAzure, flow_run_id: str, case: str, job: str) -> None:
    """Completed, having reattached: one Data Factory run, one ML job created once, one model version, one
    decision card; the waiting tags are gone."""
    run = api.wait(flow_run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert not [t for t in run["tags"] if t == WAITING_TAG or t.startswith("waiting-on:")], run["tags"]
    assert len(fake.datafactory.created(f"copy-wait-{case}")) == 1
    assert len(fake.sent("PUT", f"/jobs/{job}")) == 1 and fake.ml.jobs[job].creates == 1
    assert len(fake.ml.models[f"wait-{case}"]) == 1
    cards = [a for a in api.artifacts(flow_run_id) if a["key"] == artifact_key("decision", f"wait-{case}")]
    assert len(cards) == 1, cards


def job_event(job: str, status: str) -> dict[str, Any]:
    """Azure ML's RunStatusChanged for the job (the documented sample, this job's name and status)."""
    event = copy.deepcopy(sample("eg_RunStatusChanged.json")[0])
    event["id"] = str(uuid.uuid4())
    event["topic"] = DEMO_WORKSPACE  # the stack's targets' workspace: the receiver takes no other
    event["data"].update({"runId": job, "runStatus": status})
    event["subject"] = f"experiments/{event['data']['experimentId']}/runs/{job}"
    return event


def task_runs(api: Api, flow_run_id: str) -> list[str]:
    """The names of the flow run's task runs (``<task name>-<n>``), across its resumes."""
    response = api.http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200})
    response.raise_for_status()
    return [t["name"] for t in response.json()]


def resumed_to_confirming_get(api: Api, flow_run_id: str, job: str) -> float:
    """Seconds from the resumed run's Running to its log of the job's end, which it writes on the status call
    that confirms it (``training: reattached to job <job> (Completed) of this signal``), both on the Prefect
    server's clock."""
    at = datetime.fromisoformat
    states = api.http.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()
    paused = max(at(s["timestamp"]) for s in states if s["type"] == "PAUSED")
    running = min(at(s["timestamp"]) for s in states if s["type"] == "RUNNING" and at(s["timestamp"]) > paused)
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
    deadline = time.monotonic() + 90  # a run's last log lines reach the server in a batch after it ends
    while True:
        logs = api.http.post("/logs/filter", json=body).json()
        found = [
            at(g["timestamp"])
            for g in logs
            if at(g["timestamp"]) > running and job in g["message"] and "Completed" in g["message"]
        ]
        if found or time.monotonic() > deadline:
            assert found, f"no log of job {job} confirmed Completed after the resume"
            return (min(found) - running).total_seconds()
        time.sleep(0.5)


def test_a_suspended_retrain_resumed_by_its_job_event_reattaches_and_registers_once_without_deciding_again(
    wait_stack: Stack, fake_azure: FakeAzure
) -> None:
    """The resumed run goes on from the decision its wait record kept: the drift details are pulled once, the
    decision, the slot's re-check and the copy each ran once, in the run before the suspension."""
    api = Api(wait_stack.api_url)
    flow_run_id, drift_run = start_retrain(wait_stack, fake_azure, "push", job_seconds=20)
    job = assert_suspended_holding_nothing(api, flow_run_id)
    until("the ML job to complete", lambda: fake_azure.ml.jobs[job].status() == "Completed", timeout=120)
    time.sleep(1)
    assert suspended(api, flow_run_id), "only the job event may resume it here (fallback_minutes = 10)"

    posted = time.monotonic()
    response = deliver_events(wait_stack.webhook_url, [job_event(job, "Completed")], wait_stack.secret)
    assert response.status_code == 200, response.text

    assert_ran_once(api, fake_azure, flow_run_id, "push", job)
    print(f"job event to registered and completed: {time.monotonic() - posted:.1f} s")  # a figure, not a bound
    names = task_runs(api, flow_run_id)
    for step in ("pull-drift-details", "decide", "re-decide-in-slot", "copy-window"):
        assert sum(n.startswith(f"{step}-") for n in names) == 1, (step, sorted(names))
    assert sum(n.startswith("train-model-") for n in names) == 2, sorted(names)  # submitted, then reattached
    metrics = [r for r in fake_azure.sent("GET", "/metrics") if "/datadrifts/" in r.path and drift_run in r.path]
    assert len(metrics) == 1, [r.path for r in metrics]
    print(f"resumed Running -> confirming GET: {resumed_to_confirming_get(api, flow_run_id, job):.1f} s")


def test_with_no_event_the_waiters_fallback_pass_resumes_it(wait_stack: Stack, fake_azure: FakeAzure) -> None:
    api = Api(wait_stack.api_url)
    flow_run_id, _ = start_retrain(wait_stack, fake_azure, "fallback", job_seconds=10)
    job = assert_suspended_holding_nothing(api, flow_run_id)

    assert_ran_once(api, fake_azure, flow_run_id, "fallback", job)
    waiters = api.flow_runs("waiter/waiter")
    assert any(re.match(r"[1-9][0-9]* resumed", w["state"]["message"] or "") for w in waiters), waiters


def test_cancelling_a_suspended_retrain_cancels_its_ml_job_and_frees_the_slot(
    wait_stack: Stack, fake_azure: FakeAzure
) -> None:
    api = Api(wait_stack.api_url)
    flow_run_id, _ = start_retrain(wait_stack, fake_azure, "cancel", job_seconds=None)
    job = assert_suspended_holding_nothing(api, flow_run_id)
    with httpx.Client(base_url=wait_stack.api_url, timeout=30) as client:
        limit = client.get(f"/v2/concurrency_limits/{limit_name('wait-cancel')}").json()
        assert limit["active_slots"] == 1, "the model's slot is kept across the suspension"

        # What the UI's Cancel does: propose Cancelling (a suspended run goes straight to Cancelled)
        client.post(f"/flow_runs/{flow_run_id}/set_state", json={"state": {"type": "CANCELLING"}}).raise_for_status()

        until("the ML job's cancel", lambda: fake_azure.ml.jobs[job].cancel_calls >= 1, timeout=180)
        assert fake_azure.sent("POST", f"/jobs/{job}/cancel")
        until(
            "the slot to be freed",
            lambda: client.get(f"/v2/concurrency_limits/{limit_name('wait-cancel')}").json()["active_slots"] == 0,
            timeout=60,
        )
    until("its waiting tags to be dropped", lambda: WAITING_TAG not in api.flow_run(flow_run_id)["tags"], timeout=60)
    assert api.flow_run(flow_run_id)["state"]["type"] == "CANCELLED"


def test_a_retrain_whose_runner_was_killed_while_suspended_is_resumed_by_a_new_runner(
    wait_stack: Stack, fake_azure: FakeAzure
) -> None:
    api = Api(wait_stack.api_url)
    flow_run_id, _ = start_retrain(wait_stack, fake_azure, "killed", job_seconds=10)
    job = assert_suspended_holding_nothing(api, flow_run_id)

    (old,) = [proc for name, proc in wait_stack._procs if name == "runner"]
    os.killpg(old.pid, signal.SIGKILL)
    old.wait(timeout=30)
    wait_stack._procs.remove(("runner", old))
    time.sleep(20)  # the job ends and the waiter's pass comes due while no runner runs
    assert suspended(api, flow_run_id)
    wait_stack._spawn(
        "runner", [sys.executable, "-m", "deployments.runner", str(wait_stack.project_dir / "prefect.yaml")]
    )

    assert_ran_once(api, fake_azure, flow_run_id, "killed", job)


def test_a_job_ending_within_the_hold_is_seen_at_its_event_not_by_polling(
    wait_stack: Stack, fake_azure: FakeAzure
) -> None:
    """The hold (120 s here) waits for the job's end event: one status call after subscribing, one to confirm the
    event, never suspended; polled every 5 s instead, a 15 s job would cost 4+ calls."""
    api = Api(wait_stack.api_url)
    before = set(fake_azure.ml.jobs)
    flow_run_id, _ = start_retrain(wait_stack, fake_azure, "hold", job_seconds=15)
    job = until("its ML job", lambda: next(iter(set(fake_azure.ml.jobs) - before), None), timeout=180, every=0.2)
    until("the ML job to complete", lambda: fake_azure.ml.jobs[job].status() == "Completed", timeout=120)
    time.sleep(2)
    looks = fake_azure.ml.jobs[job].run.status_calls
    assert api.flow_run(flow_run_id)["state"]["type"] == "RUNNING", "held in its process, not polled to the end"

    posted = time.monotonic()
    response = deliver_events(wait_stack.webhook_url, [job_event(job, "Completed")], wait_stack.secret)
    assert response.status_code == 200, response.text

    assert_ran_once(api, fake_azure, flow_run_id, "hold", job)
    print(
        f"job event to completed: {time.monotonic() - posted:.1f} s; status calls {looks} before the event, "
        f"{fake_azure.ml.jobs[job].run.status_calls} in all"
    )  # figures, not bounds
    assert looks <= 1, looks  # the hold's one look after subscribing; polling every 5 s would have made 4+
    assert fake_azure.ml.jobs[job].run.status_calls <= looks + 1  # the event's one confirming call
    states = httpx.get(f"{wait_stack.api_url}/flow_run_states/", params={"flow_run_id": flow_run_id}, timeout=30)
    assert "PAUSED" not in {s["type"] for s in states.json()}, "never suspended: the end was seen in the hold"
