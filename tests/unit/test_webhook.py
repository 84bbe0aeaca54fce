"""The receiver's HTTP contract with Event Grid: handshake, secret, all-or-none, 400/401/413/503.

Hand-off is recorded in memory here; that it creates exactly one Prefect run per signal is proven
against a real Prefect server in tests/e2e.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from starlette.testclient import TestClient

from deployments.webhook import EVENTS_PATH, MAX_BODY_BYTES, create_app
from drift_retrain.config import ConfigError, Settings, load_settings
from drift_retrain.handoff import HandedOff, HandoffUnavailable, PrefectHandoff
from tests.conftest import DEMO_WORKSPACE, dataset_drift, sample, write_config

SECRET = "s3cret-value"


class RecordingHandoff:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.signals: list = []

    async def hand_off(self, signal, target, started_by="webhook") -> HandedOff:
        if self.fail:
            raise HandoffUnavailable("Prefect is down")
        self.signals.append(signal)
        return HandedOff(flow_run_id=uuid.uuid4(), flow_run_name=f"{target.model_name}-{signal.run_id}", created=True)

    async def healthy(self) -> bool:
        return not self.fail

    async def __aenter__(self) -> "RecordingHandoff":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


def drift(run_id: str = "mon_1", **overrides: str) -> dict:
    return dataset_drift(run_id, **overrides)


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    return load_settings(write_config(tmp_path))


@pytest.fixture
def recorder() -> RecordingHandoff:
    return RecordingHandoff()


@pytest.fixture
def client(configured: Settings, recorder: RecordingHandoff):
    with TestClient(create_app(configured, recorder)) as test_client:
        yield test_client


def post(client: TestClient, body, code: str | None = SECRET, **kwargs):
    params = {"code": code} if code is not None else {}
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(EVENTS_PATH, params=params, content=content, headers={"Content-Type": "application/json"}, **kwargs)


def test_subscription_validation_handshake(client: TestClient, recorder: RecordingHandoff) -> None:
    response = post(client, sample("subscription_validation_event.json"))
    assert response.status_code == 200
    assert response.json() == sample("subscription_validation_response.json")
    assert recorder.signals == []


def test_drift_event_is_handed_off_and_acknowledged(client: TestClient, recorder: RecordingHandoff) -> None:
    response = post(client, [drift("mon_1")])
    assert response.status_code == 200
    body = response.json()
    assert [a["flow_run_name"] for a in body["accepted"]] == ["credit-default-mon_1"]
    assert [s.run_id for s in recorder.signals] == ["mon_1"]


def test_batch_hands_off_every_signal(client: TestClient, recorder: RecordingHandoff) -> None:
    assert post(client, [drift("a"), drift("b"), drift("c")]).status_code == 200
    assert [s.run_id for s in recorder.signals] == ["a", "b", "c"]


@pytest.mark.parametrize("code", [None, "", "wrong", SECRET + "x"])
def test_missing_or_wrong_secret_is_401_and_nothing_is_handed_off(client, recorder, code) -> None:
    response = post(client, [drift()], code=code)
    assert response.status_code == 401
    assert SECRET not in response.text
    assert recorder.signals == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[]", "non-empty array"),
        (b"[1, 2]", "non-empty array of event objects"),
        (b'"text"', "JSON object or a non-empty array"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_body_is_400_naming_the_problem(client, recorder, body: bytes, message: str) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert recorder.signals == []


def test_one_bad_event_rejects_the_whole_batch(client: TestClient, recorder: RecordingHandoff) -> None:
    bad = drift("bad")
    del bad["data"]["RunId"]
    response = post(client, [drift("good"), bad])
    assert response.status_code == 400
    assert "event #1" in response.json()["error"] and "RunId" in response.json()["error"]
    assert recorder.signals == []


def test_unknown_workspace_is_refused(client: TestClient, recorder: RecordingHandoff) -> None:
    stranger = DEMO_WORKSPACE.replace("demo-workspace", "someone-elses")
    response = post(client, [drift("good"), drift("x", workspace=stranger)])
    assert response.status_code == 400
    assert "someone-elses is not configured" in response.json()["error"]
    assert recorder.signals == []


@pytest.mark.parametrize(
    "name", ["eg_ModelRegistered.json", "eg_ModelDeployed.json", "eg_RunCompleted.json", "eg_RunStatusChanged.json"]
)
def test_other_machine_learning_events_are_acknowledged_and_ignored(client, recorder, name: str) -> None:
    response = post(client, sample(name))
    assert response.status_code == 200
    assert response.json()["accepted"] == []
    assert response.json()["ignored"][0]["reason"]
    assert recorder.signals == []


def test_unrouted_monitor_in_a_known_workspace_is_ignored_with_reason(client, recorder) -> None:
    response = post(client, [drift("x", monitor="not-ours")])
    assert response.status_code == 200
    assert response.json()["ignored"][0]["reason"] == "monitor 'not-ours' is not routed to any target"
    assert recorder.signals == []


def test_oversize_body_is_413(client: TestClient, recorder: RecordingHandoff) -> None:
    response = post(client, b"[" + b" " * MAX_BODY_BYTES + b"]")
    assert response.status_code == 413
    assert recorder.signals == []


def test_handoff_failure_is_503_with_retry_after(configured: Settings) -> None:
    with TestClient(create_app(configured, RecordingHandoff(fail=True))) as client:
        response = post(client, [drift()])
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        assert client.get("/healthz").status_code == 503


def test_unreachable_prefect_is_503_not_an_acknowledgement(configured: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # bound but not listening: connections are refused
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{dead}/api"}):
            with TestClient(create_app(configured, PrefectHandoff(timeout=3))) as client:
                response = post(client, [drift()])
                assert response.status_code == 503
                assert client.get("/healthz").json() == {"prefect": "unreachable"}


def test_no_secret_and_no_opt_out_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    settings = load_settings(write_config(tmp_path))
    with pytest.raises(ConfigError, match="receiver: no secret in \\$DRIFT_RETRAIN_WEBHOOK_SECRET"):
        create_app(settings, RecordingHandoff())


def test_explicit_opt_out_accepts_without_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    path = write_config(tmp_path, **{r'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"': 'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"\nallow_unauthenticated = true'})
    recorder = RecordingHandoff()
    with TestClient(create_app(load_settings(path), recorder)) as client:
        assert post(client, [drift()], code=None).status_code == 200
    assert len(recorder.signals) == 1
