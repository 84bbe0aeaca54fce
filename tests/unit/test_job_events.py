"""Issue 16 item 1: Azure ML job events of our training jobs are recognised (pure), reported in the receiver's 200
and handed to the waker after the answer; nothing else is (other runs, hostile values, breaches), and a job
event never becomes a drift signal nor a breach a job event.

That the waker emits the Prefect event and resumes the suspended retrain, against a real Prefect server, is
proven in tests/e2e/test_job_events.py.
"""

from __future__ import annotations

import copy
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from starlette.testclient import TestClient

from drift_retrain.devstack.stack import free_port
from drift_retrain.intake.app import create_app
from drift_retrain.intake.job_events import JobKind, JobStatus, job_event, status_of
from drift_retrain.intake.job_wake import PrefectJobWaker
from drift_retrain.intake.parsing import parse_envelope
from drift_retrain.names import SIGNAL_TAG, digest, TRAINING_JOB_NAME, signal_identity, training_job_name, training_run_key
from drift_retrain.testing import SAMPLE_WORKSPACE, monitor_breach, sample
from tests.unit.receiver import EG_JSON, RecordingHandoff, post

JOB = "train-0123456789abcdef0123"  # one of our job names: train-<20 hex>
V1_RUN = "5d1f6a2e-8c3b-4e7a-9f10-2b3c4d5e6f70"  # a v1 pipeline run id: the pipelines service's GUID
SAMPLES = ["eg_RunStatusChanged.json", "ce_RunStatusChanged.json", "eg_RunCompleted.json", "ce_RunCompleted.json"]


def job_sample(name: str, run_id: str = JOB, **data: object) -> dict:
    """The documented sample with our run id (the subject too, as Azure builds it) and ``data`` edits."""
    event = copy.deepcopy(sample(name)[0])
    event["data"]["runId"] = run_id
    if isinstance(run_id, str) and run_id.isprintable() and len(run_id) < 1000:  # else the sample's own subject
        event["subject"] = f"experiments/{event['data']['experimentId']}/runs/{run_id}"
    event["data"].update(data)
    return event


def recognise(event: dict):
    return job_event(parse_envelope(event))


class RecordingWaker:
    def __init__(self) -> None:
        self.woken: list = []
        self.count = lambda outcome, n: None

    async def __aenter__(self) -> RecordingWaker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def wake(self, jobs: list) -> None:
        self.woken.extend(jobs)


@pytest.fixture
def waker() -> RecordingWaker:
    return RecordingWaker()


@pytest.fixture
def receiver(configured, recorder, waker):
    with TestClient(create_app(configured, recorder, waker=waker)) as test_client:
        yield test_client


# -- recognition (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_every_documented_run_sample_for_our_job_is_a_typed_job_event(name) -> None:
    """The docs' samples, runId replaced by our job's name: RunCompleted is Completed, the RunStatusChanged sample's
    "failed" (lowercase) is Failed; the workspace is the topic/source's and the time the event's."""
    job = recognise(job_sample(name))
    assert job is not None
    assert (job.job, job.kind, job.resource) == (JOB, JobKind.V2, f"azureml.job.{JOB}")
    expected = JobStatus.COMPLETED if "RunCompleted" in name else JobStatus.FAILED
    assert job.status == expected and job.terminal
    assert job.azure_status == ("" if "RunCompleted" in name else "failed")
    assert (job.workspace_id, job.workspace) == (SAMPLE_WORKSPACE, "{workspace-name}")
    assert job.event_time == datetime(2017, 6, 26, 18, 41, 0, 958410, tzinfo=UTC)
    assert job.answer() == {"event_id": job.event_id, "job": JOB, "kind": "v2", "status": expected.value}


@pytest.mark.parametrize("name", SAMPLES)
def test_the_documented_samples_as_sent_are_no_job_of_ours(name) -> None:
    assert recognise(sample(name)[0]) is None  # an AutoML child run: AutoML_ad912b2d-..._5


def test_every_attempts_name_is_ours() -> None:
    signal = SimpleNamespace(digest="0123456789abcdef0123")
    for attempt in (1, 2, 17):
        name = training_job_name(signal, attempt)  # type: ignore[arg-type]
        assert recognise(job_sample(SAMPLES[0], name)).job == name


@pytest.mark.parametrize(
    ("given", "status"),
    [
        ("Completed", JobStatus.COMPLETED),
        ("COMPLETED", JobStatus.COMPLETED),
        ("failed", JobStatus.FAILED),
        ("Canceled", JobStatus.CANCELED),
        ("Cancelled", JobStatus.CANCELED),
        (" running ", JobStatus.RUNNING),
        ("NotResponding", JobStatus.NOT_RESPONDING),
        ("Paused", JobStatus.PAUSED),
        ("Finished", JobStatus.UNKNOWN),  # the v1 pipelines service's word, not a run status
        ("Completed\nInjected", JobStatus.UNKNOWN),
        ("C" * 10_000, JobStatus.UNKNOWN),
        (3, JobStatus.UNKNOWN),
        (None, JobStatus.UNKNOWN),
        (["Completed"], JobStatus.UNKNOWN),
        ({"status": "Completed"}, JobStatus.UNKNOWN),
    ],
)
def test_the_status_is_read_case_insensitively_into_a_closed_set(given, status) -> None:
    assert status_of(given) == status
    job = recognise(job_sample("eg_RunStatusChanged.json", runStatus=given))
    assert job is not None and job.status == status
    assert "\n" not in job.azure_status and len(job.azure_status) <= 40


def test_only_ends_wake() -> None:
    """NotResponding and Paused can still change (backends/azure/training.py TERMINAL): they wake nothing."""
    ends = {s for s in JobStatus if recognise(job_sample("eg_RunStatusChanged.json", runStatus=s.value)).terminal}
    assert ends == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}


@pytest.mark.parametrize(
    "run_id",
    [
        "train-0123456789abcdef012",  # one hex digit short
        "train-0123456789abcdef01234",  # one too many
        "train-0123456789ABCDEF0123",  # our digests are lowercase
        JOB + "-0",
        JOB + "-12345",
        JOB + "/../../etc/passwd",
        JOB + "\n",
        "x" + JOB,
        "train-" + "a" * 100_000,
        "https://evil.example/" + JOB,
        "",
        3,
        None,
        [JOB],
        {"name": JOB},
    ],
)
def test_a_run_id_that_is_not_exactly_one_of_our_names_is_no_job_event(run_id) -> None:
    assert recognise(job_sample("eg_RunCompleted.json", run_id=run_id)) is None


def test_other_event_types_are_no_job_events() -> None:
    event = job_sample("eg_RunCompleted.json")
    event["eventType"] = "Microsoft.MachineLearningServices.ModelRegistered"
    assert recognise(event) is None
    assert TRAINING_JOB_NAME.fullmatch(JOB)


def test_a_breach_is_never_a_job_event_even_on_one_of_our_names() -> None:
    for cloudevents in (False, True):
        assert recognise(monitor_breach(JOB, cloudevents=cloudevents)) is None
        breach = monitor_breach(JOB, cloudevents=cloudevents)
        tags = breach["data"]["runTags"]
        breach["data"]["runTags"] = {k.upper(): v for k, v in tags.items()}  # in any casing
        assert recognise(breach) is None


def v1_event(run_id: str = V1_RUN, workspace: str = SAMPLE_WORKSPACE, identity: object = None) -> dict:
    identity = signal_identity(workspace, "drift-run-7") if identity is None else identity
    event = job_sample("eg_RunStatusChanged.json", run_id, runStatus="Completed", runTags={SIGNAL_TAG: identity})
    event["topic"] = workspace
    return event


def test_a_v1_pipeline_run_is_recognised_by_its_signal_tag_for_the_ledger_to_confirm() -> None:
    """The v1 submit tags the run with the signal's identity (backends/azure/training.py ``tags``): the event
    names the training step's ledger key, whose record the waker checks names this run."""
    job = recognise(v1_event())
    signal = SimpleNamespace(digest=digest(signal_identity(SAMPLE_WORKSPACE, "drift-run-7")))
    assert job is not None
    assert (job.kind, job.job, job.status) == (JobKind.V1, V1_RUN, JobStatus.COMPLETED)
    assert job.ledger_key == training_run_key(signal)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event",
    [
        v1_event(identity="/subscriptions/other/resourcegroups/rg/providers/microsoft.machinelearningservices/workspaces/w/runs/r"),
        v1_event(identity=""),
        v1_event(identity=3),
        v1_event(identity=SAMPLE_WORKSPACE.lower() + "/runs/x\ny"),
        v1_event(identity=SAMPLE_WORKSPACE.lower() + "/runs/" + "r" * 5000),
        v1_event(run_id="not-a-guid"),
        v1_event(run_id=V1_RUN + "0"),
        job_sample("eg_RunCompleted.json", V1_RUN),  # no signal tag: not ours
    ],
)
def test_a_v1_run_without_our_signal_tag_for_its_own_workspace_is_no_job_event(event) -> None:
    assert recognise(event) is None


# -- the receiver -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_the_receiver_names_our_job_events_in_its_200_and_wakes_on_them(receiver, recorder, waker, name) -> None:
    event = job_sample(name)
    content_type = EG_JSON if name.startswith("eg_") else "application/cloudevents-batch+json"
    response = post(receiver, [event], content_type=content_type)

    assert response.status_code == 200, response.text
    status = "Completed" if "RunCompleted" in name else "Failed"
    assert response.json() == {
        "accepted": [],
        "ignored": [],
        "jobs": [{"event_id": event["id"], "job": JOB, "kind": "v2", "status": status}],
    }
    assert recorder.signals == []  # a job event is never a drift signal
    assert [(j.job, j.status.value) for j in waker.woken] == [(JOB, status)]
    metrics = receiver.get("/metrics").text
    assert 'drift_retrain_job_events_total{outcome="received"} 1.0' in metrics


def test_a_breach_in_the_same_batch_still_routes_as_drift(receiver, recorder, waker) -> None:
    breach = monitor_breach("monitor-run-1")
    breach_on_our_name = monitor_breach(JOB)
    breach_on_our_name["id"] = str(uuid.uuid4())
    job = job_sample("eg_RunStatusChanged.json", runStatus="Running")

    response = post(receiver, [breach, job, breach_on_our_name])

    assert response.status_code == 200, response.text
    assert [s.run_id for s in recorder.signals] == ["monitor-run-1", JOB]
    assert [j["status"] for j in response.json()["jobs"]] == ["Running"]
    assert [j.job for j in waker.woken] == [JOB]


def test_other_runs_and_malformed_run_tags_answer_as_before(receiver, recorder, waker) -> None:
    other = sample("eg_RunStatusChanged.json")
    response = post(receiver, other)
    assert response.status_code == 200 and response.json()["jobs"] == [] and response.json()["ignored"]
    bad = job_sample("eg_RunStatusChanged.json", runTags="not an object")
    refused = post(receiver, [bad])
    assert refused.status_code == 400 and "RunTags" in refused.text  # the drift path decides, as before
    assert waker.woken == [] and recorder.signals == []


def test_a_failing_waker_never_fails_the_delivery(configured) -> None:
    class Broken(RecordingWaker):
        def wake(self, jobs: list) -> None:
            raise RuntimeError("queue gone")

    with TestClient(create_app(configured, RecordingHandoff(), waker=Broken())) as client:
        response = post(client, [job_sample("eg_RunCompleted.json")])
    assert response.status_code == 200 and response.json()["jobs"][0]["job"] == JOB


def test_prefect_unreachable_costs_the_delivery_nothing_and_is_counted_once(configured, caplog) -> None:
    """The waker's Prefect calls run after the answer, on its own task: with nothing listening at the API the
    delivery is still answered 200 at once, and the failure is logged and counted once, never raised."""
    waker = PrefectJobWaker(api_url=f"http://127.0.0.1:{free_port()}/api")
    with TestClient(create_app(configured, RecordingHandoff(), waker=waker)) as client:
        started = time.monotonic()
        response = post(client, [job_sample("eg_RunCompleted.json")])
        answered = time.monotonic() - started
        deadline = time.monotonic() + 120
        while 'drift_retrain_job_events_total{outcome="failed"} 1.0' not in client.get("/metrics").text:
            assert time.monotonic() < deadline, client.get("/metrics").text
            time.sleep(0.2)
    assert response.status_code == 200 and response.json()["jobs"][0]["status"] == "Completed"
    assert answered < 30  # Event Grid's response timeout; in practice milliseconds
    failures = [r for r in caplog.records if r.name == "drift_retrain.intake.job_wake" and "not handled" in r.message]
    assert len(failures) == 1 and JOB in failures[0].message
