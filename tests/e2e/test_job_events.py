"""Issue 16 item 1 against a real Prefect server (SQLite) and the receiver under uvicorn: an Azure ML job event
for one of our training jobs resumes the retrain suspended on it (Prefect's own resume: Suspended -> Scheduled
"Resuming") and is recorded as the Prefect event ``azureml.job.<status>``; a Running event, a duplicate, an
event for another job or for an unknown job resumes nothing, and every one is answered 200.

The suspended retrains are runs of the real deployment put in Prefect's ``Suspended`` state (PAUSED,
pause_reschedule) with the tags a waiting retrain carries (``names.WAITING_TAG``,
``names.waiting_tag(names.job_resource(job))``), the state and tags the suspend side writes.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from drift_retrain.config import load_settings
from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.intake.handoff import PrefectHandoff
from drift_retrain.intake.job_wake import PrefectJobWaker
from drift_retrain.names import (
    RETRAIN_DEPLOYMENT,
    SIGNAL_TAG,
    TRAINING_STEP,
    WAITING_TAG,
    digest,
    job_resource,
    ledger_variable_name,
    signal_identity,
    waiting_tag,
)
from drift_retrain.testing import INTAKE_TARGETS, SAMPLE_WORKSPACE, PrefectServer, running, sample, write_config
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

SECRET = "job-events-secret-7c2e"
SECRET_ENV = r'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"'
JOB = "train-0123456789abcdef0123"
OTHER_JOB = "train-fedcba9876543210fedc-2"
UNKNOWN_JOB = "train-aaaaaaaaaaaaaaaaaaaa"
V1_RUN = "5d1f6a2e-8c3b-4e7a-9f10-2b3c4d5e6f70"
V1_IDENTITY = signal_identity(SAMPLE_WORKSPACE, "drift-run-v1")


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    with PrefectServer.with_deployment(tmp_path_factory.mktemp("job-events-prefect")) as server:
        yield server


@pytest.fixture(scope="module")
def api(prefect) -> Api:
    return Api(prefect.api_url)


@pytest.fixture(scope="module")
def receiver(prefect, tmp_path_factory):
    settings_file = write_config(tmp_path_factory.mktemp("job-events"), extra=INTAKE_TARGETS)
    with pytest.MonkeyPatch.context() as mp:  # the secret is read once, when the app is built
        mp.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
        settings = load_settings(settings_file)
        app = create_app(
            settings,
            PrefectHandoff(config=settings.receiver.handoff, api_url=prefect.api_url),
            waker=PrefectJobWaker(api_url=prefect.api_url),
        )
    with running(app) as url:
        yield url


def suspended_retrain(api: Api, job: str) -> str:
    """A run of the retrain deployment, suspended waiting on ``job`` as the retrain suspends itself."""
    run_id = api.run_deployment(RETRAIN_DEPLOYMENT)
    api.http.patch(f"/flow_runs/{run_id}", json={"tags": [WAITING_TAG, waiting_tag(job_resource(job))]}).raise_for_status()
    state = {
        "type": "PAUSED",
        "name": "Suspended",
        "state_details": {
            "pause_reschedule": True,
            "pause_timeout": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    }
    answer = api.http.post(f"/flow_runs/{run_id}/set_state", json={"state": state, "force": True})
    answer.raise_for_status()
    assert answer.json()["status"] == "ACCEPT", answer.json()
    assert state_of(api, run_id) == ("PAUSED", "Suspended")
    return run_id


def state_of(api: Api, run_id: str) -> tuple[str, str]:
    state = api.flow_run(run_id)["state"]
    return state["type"], state["name"]


def job_event(job: str, status: str, kind: str = "eg_RunStatusChanged.json", **data: object) -> dict:
    event = copy.deepcopy(sample(kind)[0])
    event["id"] = str(uuid.uuid4())
    event["data"].update({"runId": job, "runStatus": status, **data})
    event["subject"] = f"experiments/{event['data']['experimentId']}/runs/{job}"
    return event


def post(url: str, events: list[dict]) -> httpx.Response:
    return httpx.post(
        url + EVENTS_PATH,
        params={"code": SECRET},
        json=events,
        headers={"aeg-event-type": "Notification"},
        timeout=35,
    )


def recorded(api: Api, event: dict, name: str, job: str) -> dict:
    """The Prefect event of this Azure event, once the server stored it (posted after the resumes: handled)."""
    query = {"filter": {"event": {"name": [name]}, "resource": {"id": [job_resource(job)]}}, "limit": 50}

    def read(body: dict) -> list[dict]:
        return [e for e in body["events"] if e["payload"]["event_id"] == event["id"]]

    found = api._poll("/events/filter", query, read, timeout=120)
    assert found, f"no {name} for {job} recorded"
    return found[0]


def test_a_job_event_resumes_only_the_retrain_suspended_on_that_job_once_it_ended(api, receiver) -> None:
    waiting = suspended_retrain(api, JOB)
    bystander = suspended_retrain(api, OTHER_JOB)

    running_event = job_event(JOB, "Running")
    answer = post(receiver, [running_event])
    assert answer.status_code == 200, answer.text
    assert answer.json()["jobs"] == [{"event_id": running_event["id"], "job": JOB, "kind": "v2", "status": "Running"}]
    event = recorded(api, running_event, "azureml.job.running", JOB)
    assert event["resource"]["prefect.resource.name"] == JOB and event["related"] == []
    assert state_of(api, waiting) == ("PAUSED", "Suspended")  # not an end: nothing resumed

    unknown = job_event(UNKNOWN_JOB, "Completed", "eg_RunCompleted.json")
    assert post(receiver, [unknown]).status_code == 200
    assert recorded(api, unknown, "azureml.job.completed", UNKNOWN_JOB)["payload"]["resumed"] == []
    assert state_of(api, waiting) == ("PAUSED", "Suspended") and state_of(api, bystander) == ("PAUSED", "Suspended")

    completed = job_event(JOB, "completed")  # the docs' sample spells statuses in lowercase
    assert post(receiver, [completed]).status_code == 200
    event = recorded(api, completed, "azureml.job.completed", JOB)
    assert event["payload"]["resumed"] == [waiting]
    assert [r["prefect.resource.id"] for r in event["related"]] == [f"prefect.flow-run.{waiting}"]
    assert state_of(api, waiting) == ("SCHEDULED", "Resuming")  # Prefect's resume of a Suspended run
    assert state_of(api, bystander) == ("PAUSED", "Suspended")

    late = job_event(JOB, "Running")  # out of order, after Completed, and a duplicate of the Completed
    for again in (late, completed):
        assert post(receiver, [again]).status_code == 200
    assert recorded(api, late, "azureml.job.running", JOB)["payload"]["resumed"] == []
    assert state_of(api, waiting) == ("SCHEDULED", "Resuming") and state_of(api, bystander) == ("PAUSED", "Suspended")


def test_a_v1_pipeline_run_wakes_its_retrain_once_the_ledger_confirms_it(api, receiver) -> None:
    waiting = suspended_retrain(api, V1_RUN)
    tags = {"runTags": {SIGNAL_TAG: V1_IDENTITY}}

    unrecorded = job_event(V1_RUN, "Completed", **tags)  # no ledger record names the run yet: not ours
    assert post(receiver, [unrecorded]).json()["jobs"][0]["kind"] == "v1"
    api.http.post(
        "/variables/",
        json={"name": ledger_variable_name(TRAINING_STEP, f"train-{digest(V1_IDENTITY)}"), "value": {"run_id": V1_RUN}},
    ).raise_for_status()
    confirmed = job_event(V1_RUN, "Failed", **tags)
    assert post(receiver, [confirmed]).status_code == 200

    event = recorded(api, confirmed, "azureml.job.failed", V1_RUN)
    assert event["payload"]["resumed"] == [waiting] and event["payload"]["kind"] == "v1"
    assert state_of(api, waiting) == ("SCHEDULED", "Resuming")
    assert not [e for e in api.events("azureml.job.completed", job_resource(V1_RUN), timeout=1)]
    metrics = httpx.get(receiver + "/metrics", timeout=30).text
    assert 'drift_retrain_job_events_total{outcome="unconfirmed"} 1.0' in metrics
