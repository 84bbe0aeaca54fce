"""The receiver's HTTP contract with Event Grid, in process: handshakes, auth, content types, limits,
filters, all-or-none, 503, metrics, and fuzzed bodies and headers.

Hand-off is recorded in memory here; that it creates exactly one Prefect run per signal, over real HTTP
against a real Prefect server, is proven in tests/e2e/test_intake.py.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from prefect.settings import PREFECT_API_URL, temporary_settings
from starlette.testclient import TestClient

from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.config import ConfigError, HandoffConfig, PolicyConfig, Settings, load_settings
from drift_retrain.intake.feed import PrefectEventFeed, drift_detected
from drift_retrain.intake.handoff import PrefectHandoff
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.policy import decide
from drift_retrain.results import DriftDetails
from drift_retrain.testing import DEMO_WORKSPACE, INTAKE_TARGETS, SAMPLE_WORKSPACE, dataset_drift, local_target, monitor_breach, sample, write_config
from tests.entra import TENANT, LocalTenant
from tests.unit.receiver import EG_JSON, SECRET, SECRET_ENV, RecordingHandoff, bearer, post

def drift(run_id: str = "mon_1", **overrides) -> dict:
    return dataset_drift(run_id, **overrides)


def cloud(event: dict) -> dict:
    """The same event in CloudEvents 1.0 schema."""
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": event["topic"],
        "type": event["eventType"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "data": event["data"],
    }


# -- handshakes ---------------------------------------------------------------------------------


def test_subscription_validation_handshake_logs_the_manual_url(client, recorder, caplog) -> None:
    caplog.set_level(logging.INFO)
    response = post(client, sample("subscription_validation_event.json"), headers={"aeg-event-type": "SubscriptionValidation"})
    assert response.status_code == 200
    assert response.json() == sample("subscription_validation_response.json")
    assert recorder.signals == []
    assert sample("subscription_validation_event.json")[0]["data"]["validationUrl"] in caplog.text


def test_validation_event_mixed_with_events_is_refused(client, recorder) -> None:
    response = post(client, sample("subscription_validation_event.json") + [drift()])
    assert response.status_code == 400 and "delivered alone" in response.json()["error"]
    assert recorder.signals == []


def test_validation_header_without_a_validation_event_is_refused(client, recorder) -> None:
    response = post(client, [drift()], headers={"aeg-event-type": "SubscriptionValidation"})
    assert response.status_code == 400
    assert recorder.signals == []


def test_cloudevents_abuse_protection(client) -> None:
    response = client.options(EVENTS_PATH, headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert "WebHook-Allowed-Rate" not in response.headers
    assert "POST" in response.headers["Allow"]
    asked = client.options(EVENTS_PATH, headers={"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120"})
    assert asked.headers["WebHook-Allowed-Rate"] == "*"
    cased = client.options(EVENTS_PATH, headers={"WebHook-Request-Origin": "EventGrid.Azure.NET"})  # a host name: any casing
    assert cased.status_code == 200 and cased.headers["WebHook-Allowed-Origin"] == "EventGrid.Azure.NET"


def test_abuse_protection_logs_the_callback_for_manual_validation(client, caplog) -> None:
    """Logged for an authenticated caller only (issue 14: tests/unit/test_hostile_protocol.py)."""
    caplog.set_level(logging.INFO)
    callback = "https://rp-eastus2.eventgrid.azure.net/validate?token=abc"
    response = client.options(EVENTS_PATH, params={"code": SECRET},
                              headers={"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Callback": callback})
    assert response.status_code == 200
    assert callback in caplog.text


@pytest.mark.parametrize(("origin", "status"), [(None, 400), ("evil.example.com", 403)])
def test_abuse_protection_refuses_other_origins(client, origin, status) -> None:
    response = client.options(EVENTS_PATH, headers={"WebHook-Request-Origin": origin} if origin else {})
    assert response.status_code == status
    assert "WebHook-Allowed-Origin" not in response.headers


@pytest.mark.parametrize("kind", ["SubscriptionDeletion", "SomethingNew"])
def test_deletion_and_unknown_delivery_kinds_are_acknowledged_not_processed(client, recorder, caplog, kind) -> None:
    caplog.set_level(logging.INFO)
    response = post(client, [drift()], headers={"aeg-event-type": kind})
    assert response.status_code == 200
    assert response.json()["accepted"] == []
    assert recorder.signals == []
    assert kind in caplog.text


# -- both schemas, every sample -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("eg_DatasetDriftDetected.json", EG_JSON),
        ("ce_DatasetDriftDetected.json", "application/cloudevents-batch+json; charset=utf-8"),
        ("ce_DatasetDriftDetected.json", "application/json"),  # the docs samples show CloudEvents arrays as json
        ("ce_spec_example_dataset_drift_detected__specVersion_camelcase.json", "application/cloudevents+json"),
    ],
)
def test_every_drift_sample_is_handed_off(client, recorder, name, content_type) -> None:
    response = post(client, sample(name), content_type=content_type)
    assert response.status_code == 200, response.text
    (accepted,) = response.json()["accepted"]
    assert accepted["flow_run_name"] == f"docs-model-2019-07-04..05-{recorder.signals[0].digest[:8]}"  # model, window, digest
    assert [s.monitor for s in recorder.signals] == ["myDriftMonitor"]


@pytest.mark.parametrize("schema", ["eg", "ce"])
@pytest.mark.parametrize("kind", ["ModelRegistered", "ModelDeployed", "RunCompleted", "RunStatusChanged"])
def test_other_machine_learning_samples_are_acknowledged_and_ignored(client, recorder, schema, kind) -> None:
    content_type = EG_JSON if schema == "eg" else "application/cloudevents-batch+json"
    response = post(client, sample(f"{schema}_{kind}.json"), content_type=content_type)
    assert response.status_code == 200
    assert response.json()["accepted"] == []
    assert response.json()["ignored"][0]["reason"]
    assert recorder.signals == []


@pytest.mark.parametrize("cloudevents", [False, True])
def test_v2_monitor_breach_is_handed_off_in_both_schemas(client, recorder, cloudevents) -> None:
    event = monitor_breach("monitor-run-1", cloudevents=cloudevents)
    response = post(client, event if cloudevents else [event], content_type="application/cloudevents+json" if cloudevents else EG_JSON)
    assert response.status_code == 200, response.text
    assert [(s.kind.value, s.monitor, s.run_id) for s in recorder.signals] == [("model_monitor", "docs-monitor", "monitor-run-1")]


FRAUD = "credit_card_fraud_monitor"  # the monitor name of Microsoft's how-to, whose signals are named after it


@pytest.fixture
def fraud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorder: RecordingHandoff):
    """A receiver whose config also routes the how-to's monitor, in the docs samples' workspace."""
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    extra = INTAKE_TARGETS + local_target("fraud", [FRAUD], SAMPLE_WORKSPACE, model_name="fraud-model")
    with TestClient(create_app(load_settings(write_config(tmp_path, extra=extra)), recorder)) as test_client:
        yield test_client


@pytest.mark.parametrize(("schema", "content_type"), [("eg", EG_JSON), ("ce", "application/cloudevents-batch+json")])
def test_a_monitors_breaches_replay_into_one_signal_per_signal_with_its_rows(fraud, recorder, schema, content_type) -> None:
    """tests/fixtures/eventgrid/*_RunStatusChanged_model_monitor_breaches.json: one RunStatusChanged per signal of
    one monitor, its tag text as evaluate_metrics_threshold.py builds it (Spark toJSON rows, doubles as Java
    prints them: 1.2E-4). The experiment name is the docs sample's: no source says what a monitor run's is."""
    response = post(fraud, sample(f"{schema}_RunStatusChanged_model_monitor_breaches.json"), content_type=content_type)
    assert response.status_code == 200, response.text
    assert len(response.json()["accepted"]) == 3 and response.json()["ignored"] == []
    assert recorder.targets == ["fraud"] * 3
    assert {(s.kind.value, s.monitor, s.breach_unparsed) for s in recorder.signals} == {("model_monitor", FRAUD, None)}
    assert {s.signal_name: [(r.group, r.metric, r.value, r.threshold, r.alerts_below) for r in s.breached] for s in recorder.signals} == {
        f"{FRAUD}_data_drift": [("TRANSACTIONAMOUNT", "JensenShannonDistance", 0.3125, 0.1, False),
                                ("LOCALHOUR", "TwoSampleKolmogorovSmirnovTest", 0.018, 0.05, True)],
        f"{FRAUD}_prediction_drift": [("IS_FRAUD", "PopulationStabilityIndex", 0.2704, 0.2, False)],
        f"{FRAUD}_data_quality": [("DIGITALITEMCOUNT", "NullValueRate", 0.00012, 0.0, False)],
    }
    assert len({s.identity for s in recorder.signals}) == 3  # one signal per evaluate step run


def test_the_component_tests_own_message_reads_and_an_unrouted_signal_is_ignored_by_name(fraud, recorder) -> None:
    """The exact text azureml-assets' unit test expects of _generate_error_message (signal 'name', one row with a
    group; tests/unit/test_evaluate_metrics_threshold.py): read, and acknowledged with the signal named."""
    [event] = sample("eg_RunStatusChanged_component_test_message.json")
    signal = to_drift_signal(event)
    assert (signal.signal_name, signal.breach_unparsed) == ("name", None)
    assert [(r.group, r.metric, r.value, r.threshold) for r in signal.breached] == [("1", "metics", 4.6, 5.6)]
    response = post(fraud, [event])
    assert response.status_code == 200 and recorder.signals == []
    assert response.json()["ignored"] == [{
        "event_id": event["id"], "event_type": "Microsoft.MachineLearningServices.RunStatusChanged",
        "reason": f"v2 signal 'name' of experiment 'automl-local-regression' in workspace {SAMPLE_WORKSPACE} matches no "
                  "configured signal or monitor name",
    }]


HEAD = "The signal '{}' has failed due to one or more features violating metric thresholds.\n"
LIST = "The feature names and their corresponding computed metric values violating the threshold are \n"


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        (7, "the tag value is int, not text"),
        (["a"], "the tag value is list, not text"),
        (None, "the tag value is NoneType, not text"),
        (HEAD.format("docs-monitor_drift") + LIST + "[{'metric_name': 'X'}, 3]\n", "row 0: a dict, not a JSON string; row 1: a int, not a JSON string"),
        (HEAD.format("docs-monitor_drift") + LIST + "['{\"metric_value\":NaN,\"metric_name\":\"X\",\"threshold_value\":1.0}']\n",
         "row 0: X: metric_value and threshold_value must be finite numbers"),
        (HEAD.format("docs-monitor_drift") + LIST + "['{\"metric_value\":\"NaN\",\"metric_name\":\"X\",\"threshold_value\":1.0}']\n",
         "row 0: X: metric_value and threshold_value must be finite numbers"),
        (HEAD.format("docs-monitor_drift") + LIST + "['{\"metric_value\":1" + "0" * 400 + ",\"metric_name\":\"X\",\"threshold_value\":1.0}']\n",
         "row 0: X: metric_value and threshold_value must be finite numbers"),
        (HEAD.format("docs-monitor\nsignal") + LIST + "[]\n", "the signal name is empty, too long or has control characters"),
    ],
)
def test_a_hostile_breach_tag_is_acknowledged_and_its_decision_says_why(client, recorder, tag, why) -> None:
    """The tag's presence is the breach: handed off (routed here by the experiment name, the last resort), and the
    decision's drift rule passes naming what could not be read. Never a 5xx."""
    event = monitor_breach("hostile-1", experiment="docs-monitor")
    event["data"]["runTags"] = {"azureml_modelmonitor_threshold_breached": tag}
    response = post(client, [event])
    assert response.status_code == 200, response.text
    [signal] = recorder.signals
    assert (signal.monitor, signal.breached) == ("docs-monitor", [])
    [drift_check] = [c for c in decide(signal, DriftDetails(available=False, source="-"), PolicyConfig(), []).checks if c.rule == "drift"]
    assert drift_check.passed and drift_check.detail.endswith(f"breached; rows unreadable: {why}")


def test_a_signal_name_with_quotes_is_read_whole_and_routed_by_the_monitor_name_in_it(client, recorder) -> None:
    name = 'docs-monitor "risky" it\'s | <b>'
    response = post(client, [monitor_breach("quoted-1", signal=name)])
    assert response.status_code == 200, response.text
    [signal] = recorder.signals
    assert (signal.signal_name, signal.monitor, recorder.targets) == (name, "docs-monitor", ["docs-sample"])


@pytest.mark.parametrize(("data", "field"), [({"runTags": ["x"]}, "data.RunTags"), ({"runId": 12}, "data.RunId")])
def test_a_malformed_breach_event_is_a_400_naming_the_field(client, recorder, data, field) -> None:
    event = monitor_breach("bad-1")
    event["data"].update(data)
    response = post(client, [event])
    assert response.status_code == 400 and field in response.json()["error"]
    assert recorder.signals == []


def test_mixed_batch_in_cloudevents_batch_mode(client, recorder) -> None:
    events = [cloud(drift("a")), monitor_breach("b", workspace=DEMO_WORKSPACE, monitor="credit-default-drift", cloudevents=True),
              sample("ce_ModelRegistered.json")[0]]
    response = post(client, events, content_type="application/cloudevents-batch+json")
    assert response.status_code == 200, response.text
    assert [s.run_id for s in recorder.signals] == ["a", "b"]
    assert len(response.json()["ignored"]) == 1


def test_unknown_fields_and_key_casing_are_tolerated(client, recorder) -> None:
    event = drift("casing")
    event["data"] = {k.lower(): v for k, v in event["data"].items()} | {"SomethingNew": {"x": 1}}
    event["extension"] = "ignored"
    assert post(client, [event]).status_code == 200
    assert [s.run_id for s in recorder.signals] == ["casing"]


def test_batch_hands_off_every_signal_in_order(client, recorder) -> None:
    assert post(client, [drift("a"), drift("b"), drift("c")]).status_code == 200
    assert [s.run_id for s in recorder.signals] == ["a", "b", "c"]


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
def test_missing_or_wrong_secret_is_401_and_nothing_is_handed_off(client, recorder, caplog, code) -> None:
    caplog.set_level(logging.DEBUG)
    response = post(client, [drift()], code=code)
    assert response.status_code == 401
    receiver_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("drift_retrain"))
    assert "outcome=unauthorized" in receiver_log
    assert SECRET not in response.text and SECRET not in receiver_log  # (the test client itself logs its URL)
    assert recorder.signals == []


def test_auth_comes_before_the_body_is_looked_at(client, recorder) -> None:
    assert post(client, b"{not json", code="wrong").status_code == 401
    assert post(client, b"x" * 10_000_000, code="wrong").status_code == 401
    assert post(client, [drift()], code="wrong", content_type="text/plain").status_code == 401


def test_secret_in_a_configured_header(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    settings = load_settings(write_config(tmp_path, **{SECRET_ENV: f'{SECRET_ENV}\nsecret_header = "X-Drift-Retrain-Key"'}))
    recorder = RecordingHandoff()
    with TestClient(create_app(settings, recorder)) as client:
        assert post(client, [drift("h1")], code=None, headers={"X-Drift-Retrain-Key": SECRET}).status_code == 200
        assert post(client, [drift("h2")], code=None, headers={"X-Drift-Retrain-Key": "nope"}).status_code == 401
        assert post(client, [drift("h3")], code=SECRET).status_code == 200  # ?code= still works
    assert [s.run_id for s in recorder.signals] == ["h1", "h3"]


@pytest.fixture
def tenant():
    local = LocalTenant()
    yield local
    local.close()


@pytest.fixture
def entra_client(tmp_path, monkeypatch, tenant):
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    path = write_config(tmp_path, extra=tenant.entra_table(), **{SECRET_ENV: f'{SECRET_ENV}\nauth = "entra"'})
    recorder = RecordingHandoff()
    with TestClient(create_app(load_settings(path), recorder)) as client:
        yield client, recorder


def test_entra_token_from_event_grid_is_accepted(entra_client, tenant) -> None:
    client, recorder = entra_client
    v1 = post(client, [drift("v1")], code=None, headers=bearer(tenant.token()))
    v2 = tenant.token(iss=f"https://login.microsoftonline.com/{TENANT}/v2.0", appid=None, azp="4962773b-9cdb-44cf-a8bf-237846a00ab7",
                      aud="api://drift-retrain", ver="2.0")
    assert v1.status_code == 200, v1.text
    assert post(client, [drift("v2")], code=None, headers=bearer(v2)).status_code == 200
    assert [s.run_id for s in recorder.signals] == ["v1", "v2"]
    assert tenant.requests == 1  # the JWKS is cached


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda t: None, "missing bearer token"),
        (lambda t: "not-a-jwt", "malformed bearer token"),
        (lambda t: t.token(exp=1698165685, iat=1698078985, nbf=1698078985), "expired"),
        (lambda t: t.token(aud="someone-else"), "wrong audience"),
        (lambda t: t.token(iss="https://sts.windows.net/another-tenant/"), "wrong issuer"),
        (lambda t: t.token(appid="00000000-0000-0000-0000-000000000000"), "not issued to Azure Event Grid"),
        (lambda t: t.token(signer=t.stranger), "InvalidSignatureError"),
        (lambda t: t.token(kid="unknown-kid"), "unknown key"),
        (lambda t: t.token(exp=None), "MissingRequiredClaimError"),
        (lambda t: t.token(signer="a-shared-secret-long-enough-for-hs256!", alg="HS256"), "must be RS256"),
    ],
)
def test_bad_entra_tokens_are_401(entra_client, tenant, make, reason) -> None:
    client, recorder = entra_client
    token = make(tenant)
    response = post(client, [drift()], code=None, headers=bearer(token) if token else {})
    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert recorder.signals == []


def test_entra_without_its_section_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"receiver: .*auth = \"entra\" needs a \[receiver.entra\] section"):
        load_settings(write_config(tmp_path, **{SECRET_ENV: f'{SECRET_ENV}\nauth = "entra"'}))


def test_auth_none_needs_the_explicit_local_opt_in(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"allow_unauthenticated = true"):
        load_settings(write_config(tmp_path, **{SECRET_ENV: f'{SECRET_ENV}\nauth = "none"'}))


def test_no_secret_and_no_opt_out_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    settings = load_settings(write_config(tmp_path))
    with pytest.raises(ConfigError, match="receiver: no secret in \\$DRIFT_RETRAIN_WEBHOOK_SECRET"):
        create_app(settings, RecordingHandoff())


@pytest.mark.parametrize("opt_in", ["allow_unauthenticated = true", 'auth = "none"\nallow_unauthenticated = true'])
def test_explicit_opt_out_accepts_without_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opt_in: str) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    path = write_config(tmp_path, **{SECRET_ENV: f"{SECRET_ENV}\n{opt_in}"})
    recorder = RecordingHandoff()
    with TestClient(create_app(load_settings(path), recorder)) as client:
        assert post(client, [drift()], code=None).status_code == 200
    assert len(recorder.signals) == 1


# -- 400 and 413 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("text/plain", "content type 'text/plain' is not accepted"),
        ("application/xml; charset=utf-8", "content type 'application/xml; charset=utf-8'"),
        ("", "content type 'none' is not accepted"),
    ],
)
def test_wrong_content_type_is_400_naming_it(client, recorder, content_type, message) -> None:
    response = post(client, [drift()], content_type=content_type)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert recorder.signals == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[]", "non-empty array"),
        (b"[1, 2]", "non-empty array of event objects"),
        (b'"text"', "JSON object or a non-empty array"),
        (b"[\"\xfe\xfd\"]", "not valid JSON: not UTF-8 at byte 2"),  # (a UTF-16 byte order mark is 415: test_hostile_protocol.py)
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'[{"id": "x", "topic": "t"}]', "missing required field(s): eventType"),
        (b'[{"specversion": "1.0", "id": "x", "type": "t"}]', "missing required field(s): source"),
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


def test_unknown_workspace_is_refused_for_any_event_type(client: TestClient, recorder: RecordingHandoff) -> None:
    stranger = DEMO_WORKSPACE.replace("demo-workspace", "someone-elses")
    response = post(client, [drift("good"), drift("x", workspace=stranger)])
    assert response.status_code == 400
    assert "someone-elses is not a configured workspace" in response.json()["error"]
    blob = sample("deadletter_event_eventgrid_schema.json")  # a storage event: its topic is no workspace
    assert post(client, [blob]).status_code == 400
    assert recorder.signals == []


def test_unrouted_monitor_in_a_known_workspace_is_ignored_with_reason(client, recorder) -> None:
    response = post(client, [drift("x", monitor="not-ours")])
    assert response.status_code == 200
    assert response.json()["ignored"][0]["reason"] == "monitor 'not-ours' is not routed to any target"
    assert recorder.signals == []


def test_oversize_batch_is_413_without_reading_it_whole(client, configured, recorder) -> None:
    limit = configured.receiver.max_batch_bytes
    response = post(client, b"[" + b" " * limit + b"]")
    assert response.status_code == 413 and f"{limit}-byte batch limit" in response.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = client.post(EVENTS_PATH, params={"code": SECRET}, content=chunks(), headers={"Content-Type": EG_JSON})
    assert streamed.status_code == 413
    assert recorder.signals == []


def test_an_event_over_1_mb_is_413_naming_it(client, recorder) -> None:
    big = drift("big")
    big["data"]["Padding"] = "x" * (1024 * 1024)
    response = post(client, [drift("small"), big])
    assert response.status_code == 413
    assert f"event #1 ({big['id']})" in response.json()["error"]
    assert recorder.signals == []


def test_too_many_events_is_413(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    settings = load_settings(write_config(tmp_path, **{SECRET_ENV: f"{SECRET_ENV}\nmax_batch_events = 3"}))
    recorder = RecordingHandoff()
    with TestClient(create_app(settings, recorder)) as client:
        assert post(client, [drift(str(i)) for i in range(3)]).status_code == 200
        response = post(client, [drift(str(i)) for i in range(4)])
    assert response.status_code == 413 and "batch of 4 events exceeds 3" in response.json()["error"]
    assert len(recorder.signals) == 3


# -- filters ------------------------------------------------------------------------------------


def test_target_filters_are_a_second_line_of_defence(client, recorder) -> None:
    weak = post(client, [drift("weak", monitor="filtered-monitor", DriftCoefficient=0.4)])
    assert weak.status_code == 200
    (ignored,) = weak.json()["ignored"]
    assert ignored["reason"] == ("filtered out: filtered/strong-drift-only: advanced filter not met: "
                                 "data.DriftCoefficient NumberGreaterThanOrEquals 0.5")
    strong = post(client, [drift("strong", monitor="filtered-monitor", DriftCoefficient=0.6)])
    assert len(strong.json()["accepted"]) == 1
    other_subject = drift("subject", monitor="filtered-monitor", DriftCoefficient=0.9)
    other_subject["subject"] = "elsewhere/1"
    assert "does not begin with 'datadrifts/'" in post(client, [other_subject]).json()["ignored"][0]["reason"]
    assert [s.run_id for s in recorder.signals] == ["strong"]


# -- hand-off failures and operations ------------------------------------------------------------


def test_handoff_failure_is_503_with_retry_after(configured: Settings) -> None:
    with TestClient(create_app(configured, RecordingHandoff(fail=True))) as client:
        response = post(client, [drift()])
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        assert client.get("/healthz").status_code == 503
        ignored_only = post(client, sample("eg_ModelRegistered.json"))
        assert ignored_only.status_code == 200  # nothing to hand off: acknowledged even while Prefect is down


def test_unreachable_prefect_is_503_not_an_acknowledgement(configured: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # bound but not listening: connections are refused
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{dead}/api"}):
            handoff = PrefectHandoff(config=HandoffConfig(deadline_seconds=1.5))
            with TestClient(create_app(configured, handoff)) as client:
                response = post(client, [drift()])
                assert response.status_code == 503
                assert response.headers["Retry-After"] == "30"
                assert client.get("/healthz").json() == {"prefect": "unreachable"}


@pytest.mark.parametrize("event_feed", [True, False])
def test_the_event_feed_follows_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, event_feed: bool) -> None:
    """Deployed (no handoff given), the receiver posts Prefect events unless [receiver] event_feed = false."""
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    settings = load_settings(write_config(tmp_path, **{r"\[receiver\]\n": f"[receiver]\nevent_feed = {str(event_feed).lower()}\n"}))
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with TestClient(create_app(settings)) as client:
            assert isinstance(client.app.state.receiver.feed, PrefectEventFeed) is event_feed


def test_metrics_count_every_outcome_in_prometheus_text(configured: Settings) -> None:
    recorder = RecordingHandoff()
    with TestClient(create_app(configured, recorder)) as client:
        post(client, [drift("m1"), drift("m2")] + sample("eg_ModelDeployed.json"))
        post(client, [drift()], code="wrong")
        post(client, b"{bad")
        recorder.fail = True
        post(client, [drift("m3")])
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'drift_retrain_events_total{outcome="accepted"} 2.0',
        'drift_retrain_events_total{outcome="ignored"} 1.0',
        'drift_retrain_events_total{outcome="rejected"} 1.0',
        'drift_retrain_events_total{outcome="failed_handoff"} 1.0',
        'drift_retrain_events_total{outcome="duplicate"} 0.0',
        'drift_retrain_requests_total{status="200"} 1.0',
        'drift_retrain_requests_total{status="401"} 1.0',
        'drift_retrain_requests_total{status="400"} 1.0',
        'drift_retrain_requests_total{status="503"} 1.0',
    ):
        assert line in text, line


def test_structured_log_names_event_delivery_count_and_outcome(client, caplog) -> None:
    caplog.set_level(logging.INFO)
    event = drift("logged")
    post(client, [event], headers={"aeg-delivery-count": "3"})
    assert f"event_id={event['id']} delivery_count=3 outcome=accepted drift_run=logged" in caplog.text


# -- fuzzing --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values, "topic": st.sampled_from([DEMO_WORKSPACE, "x"]) | json_values,
        "source": json_values, "eventType": st.sampled_from(
            ["Microsoft.MachineLearningServices.DatasetDriftDetected", "Microsoft.MachineLearningServices.RunStatusChanged"]
        ) | json_values,
        "type": json_values, "specversion": json_values, "subject": json_values, "eventTime": json_values,
        "data": st.dictionaries(st.sampled_from(["RunId", "DataDriftName", "DriftCoefficient", "runTags", "StartTime"]), json_values)
        | json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(event_like, max_size=4).map(lambda v: json.dumps(v).encode())
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=bodies,
    content_type=st.sampled_from(["application/json", "application/cloudevents+json", "text/plain"]) | header_values,
    kind=st.sampled_from(["Notification", "SubscriptionValidation"]) | header_values,
    count=header_values,
)
def test_fuzzed_bodies_and_headers_never_5xx_and_hand_off_nothing(client, recorder, body, content_type, kind, count) -> None:
    response = post(client, body, content_type=content_type, headers={"aeg-event-type": kind, "aeg-delivery-count": count})
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 400, 413, 415), response.status_code  # 415: a body in UTF-16/32
    assert recorder.signals == []  # no fuzzed body names a routed monitor: nothing may be handed off


class BrokenFeed:
    async def __aenter__(self) -> "BrokenFeed":
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def publish(self, handed) -> None:
        raise RuntimeError("event feed is broken")


class RecordingFeed(BrokenFeed):
    def __init__(self) -> None:
        self.events: list = []

    def publish(self, handed) -> None:
        self.events.extend(drift_detected(h) for h in handed)


def test_an_event_per_accepted_signal_is_queued_for_the_feed(configured: Settings) -> None:
    feed, recorder = RecordingFeed(), RecordingHandoff()
    with TestClient(create_app(configured, recorder, feed)) as client:
        response = post(client, [drift("f1"), drift("f2")] + sample("eg_ModelRegistered.json"))
    assert response.status_code == 200
    assert [e.payload["run_id"] for e in feed.events] == ["f1", "f2"]
    assert {e.event for e in feed.events} == {"azureml.drift.detected"}
    flow_runs = [r["prefect.resource.id"] for e in feed.events for r in e.related if r["prefect.resource.role"] == "flow-run"]
    assert flow_runs == [f"prefect.flow-run.{a['flow_run_id']}" for a in response.json()["accepted"]]


def test_a_failing_event_feed_never_fails_the_acknowledgement(configured: Settings) -> None:
    recorder = RecordingHandoff()
    with TestClient(create_app(configured, recorder, BrokenFeed())) as client:
        response = post(client, [drift("feed-broken")])
    assert response.status_code == 200
    assert [s.run_id for s in recorder.signals] == ["feed-broken"]


# -- review of issue 3: gaps found by mutation testing ----------------------------------------------


def test_workspace_ids_match_whatever_their_casing(client, recorder) -> None:
    """ARM ids are case-insensitive and Event Grid topics do not keep the configured casing."""
    for run_id, topic in [("upper", DEMO_WORKSPACE.upper()), ("lower", DEMO_WORKSPACE.lower())]:
        response = post(client, [drift(run_id, workspace=topic)])
        assert response.status_code == 200, response.text
        assert len(response.json()["accepted"]) == 1
    assert [s.run_id for s in recorder.signals] == ["upper", "lower"]


def test_a_monitor_is_routed_only_within_its_own_workspace(client, recorder) -> None:
    """credit-default-drift belongs to the demo workspace; the same name in the docs workspace is not ours."""
    response = post(client, [drift("elsewhere", workspace=sample("eg_DatasetDriftDetected.json")[0]["topic"])])
    assert response.status_code == 200
    assert response.json()["ignored"][0]["reason"] == "monitor 'credit-default-drift' is not routed to any target"
    assert recorder.signals == []


FILTERED_ONLY_WORKSPACE = DEMO_WORKSPACE.replace("demo-workspace", "filtered-only")
FILTERED_ONLY_TARGET = local_target(
    "filtered-only",
    ["fo-monitor"],
    FILTERED_ONLY_WORKSPACE,
    model_name="fo-model",
    data="fo",
    extra="""
[[targets.subscriptions]]
name = "v1-a"
included_event_types = ["Microsoft.MachineLearningServices.DatasetDriftDetected"]
subject_begins_with = "datadrifts/a"

[[targets.subscriptions]]
name = "v1-b"
included_event_types = ["Microsoft.MachineLearningServices.DatasetDriftDetected"]
subject_begins_with = "datadrifts/b"
""",
)


def test_events_no_subscription_of_their_workspace_would_deliver_are_ignored_before_they_are_read(tmp_path, monkeypatch) -> None:
    """Event Grid would not have delivered them: a malformed drift event outside every subscription of
    its workspace is ignored with the filters' reason instead of refusing its whole batch, and an event
    passes when any one of the target's subscriptions takes it."""
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    settings = load_settings(write_config(tmp_path, extra=FILTERED_ONLY_TARGET))
    recorder = RecordingHandoff()

    def event(run_id: str, subject: str) -> dict:
        made = drift(run_id, monitor="fo-monitor", workspace=FILTERED_ONLY_WORKSPACE)
        made["subject"] = subject
        return made

    unreadable = event("unreadable", "other/x")
    del unreadable["data"]["RunId"]
    unreadable["topic"] = FILTERED_ONLY_WORKSPACE.upper()  # its workspace, however cased
    with TestClient(create_app(settings, recorder)) as client:
        response = post(client, [event("via-a", "datadrifts/a/1"), event("via-b", "datadrifts/b/1"), unreadable])
    assert response.status_code == 200, response.text
    (ignored,) = response.json()["ignored"]
    assert ignored["event_id"] == unreadable["id"]
    assert ignored["reason"].startswith("filtered out: filtered-only/v1-a: subject 'other/x' does not begin with 'datadrifts/a'")
    assert [s.run_id for s in recorder.signals] == ["via-a", "via-b"]


def test_the_secret_is_compared_in_constant_time(client, monkeypatch) -> None:
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("drift_retrain.intake.auth.hmac.compare_digest", spy)
    assert post(client, [drift("ct")], code="wrong").status_code == 401
    assert post(client, [drift("ct")]).status_code == 200
    assert compared == [(b"wrong", SECRET.encode()), (SECRET.encode(), SECRET.encode())]


def _asgi_post(app, headers: list[tuple[bytes, bytes]], query: bytes) -> tuple[int, int]:
    """POST through the bare ASGI interface; returns (status, how often the app asked for the body)."""
    asked = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"[]", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": EVENTS_PATH, "raw_path": EVENTS_PATH.encode(), "root_path": "", "query_string": query,
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8088),
    }
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), asked


def test_refusals_from_the_request_line_and_headers_read_no_body(configured) -> None:
    app = create_app(configured, RecordingHandoff())
    json_type = (b"content-type", b"application/json")
    assert _asgi_post(app, [json_type, (b"content-length", b"2")], b"code=wrong") == (401, 0)
    assert _asgi_post(app, [json_type, (b"content-length", b"2")], b"") == (401, 0)
    too_big = str(configured.receiver.max_batch_bytes + 1).encode()
    assert _asgi_post(app, [json_type, (b"content-length", too_big)], f"code={SECRET}".encode()) == (413, 0)
    assert _asgi_post(app, [(b"content-type", b"text/plain")], f"code={SECRET}".encode()) == (400, 0)


def test_the_secret_is_in_no_log_line_and_no_answer_on_any_path(configured, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = RecordingHandoff()
    answers = []
    with TestClient(create_app(configured, recorder)) as client:
        answers.append(post(client, [drift("ok")]))
        answers.append(post(client, sample("eg_ModelRegistered.json")))
        answers.append(post(client, b"{bad"))
        answers.append(post(client, [drift("x")], content_type="text/plain"))
        answers.append(post(client, b"[" + b" " * configured.receiver.max_batch_bytes + b"]"))
        answers.append(post(client, sample("subscription_validation_event.json"), headers={"aeg-event-type": "SubscriptionValidation"}))
        answers.append(post(client, [drift("d")], headers={"aeg-event-type": "SubscriptionDeletion"}))
        answers.append(client.options(EVENTS_PATH, params={"code": SECRET}, headers={"WebHook-Request-Origin": "eventgrid.azure.net"}))
        recorder.fail = True
        answers.append(post(client, [drift("down")]))
    assert [a.status_code for a in answers] == [200, 200, 400, 400, 413, 200, 200, 200, 503]
    receiver_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("drift_retrain", "deployments")))
    assert "outcome=" in receiver_log
    assert SECRET not in receiver_log
    assert all(SECRET not in a.text and SECRET not in str(a.headers) for a in answers)


def _padded(run_id: str, size: int) -> dict:
    """A drift event whose compact JSON is exactly ``size`` bytes."""
    event = drift(run_id)
    event["data"]["Padding"] = ""
    base = len(json.dumps(event, separators=(",", ":")).encode())
    event["data"]["Padding"] = "x" * (size - base)
    assert len(json.dumps(event, separators=(",", ":")).encode()) == size
    return event


def test_an_event_of_exactly_1_mb_is_accepted_one_byte_more_is_413(client, configured, recorder) -> None:
    limit = configured.receiver.max_event_bytes
    assert limit == 1024 * 1024
    exact = post(client, json.dumps([_padded("exact", limit)], separators=(",", ":")))
    assert exact.status_code == 200, exact.text[:200]
    over = post(client, json.dumps([_padded("over", limit + 1)], separators=(",", ":")))
    assert over.status_code == 413
    assert [s.run_id for s in recorder.signals] == ["exact"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", 123, "field 'id'"),
        ("eventTime", "yesterday-ish", "field 'time'"),
        ("subject", ["a"], "field 'subject'"),
        ("eventType", {"x": 1}, "field 'type'"),
    ],
)
def test_envelope_fields_of_the_wrong_type_are_400_naming_the_field(client, recorder, field, value, message) -> None:
    event = drift("typed")
    event[field] = value
    response = post(client, [event])
    assert response.status_code == 400, response.text
    assert "event #0" in response.json()["error"] and message in response.json()["error"]
    assert recorder.signals == []


def test_duplicates_are_answered_with_the_existing_run_and_counted(client, recorder) -> None:
    event = drift("dup")
    first = post(client, [event]).json()["accepted"][0]
    twin = dict(event, id=str(uuid.uuid4()))  # a second subscription's copy of the same drift
    again = post(client, [event], headers={"aeg-delivery-count": "1"}).json()["accepted"][0]
    other = post(client, [twin]).json()["accepted"][0]
    assert (first["duplicate"], again["duplicate"], other["duplicate"]) == (False, True, True)
    assert first["flow_run_id"] == again["flow_run_id"] == other["flow_run_id"]
    metrics = client.get("/metrics").text
    assert 'drift_retrain_events_total{outcome="accepted"} 1.0' in metrics
    assert 'drift_retrain_events_total{outcome="duplicate"} 2.0' in metrics


def test_a_refused_batch_counts_each_of_its_events_as_rejected(client, recorder) -> None:
    bad = drift("bad")
    del bad["data"]["RunId"]
    assert post(client, [drift("a"), drift("b"), bad]).status_code == 400
    assert 'drift_retrain_events_total{outcome="rejected"} 3.0' in client.get("/metrics").text


def test_every_outcome_is_logged_with_event_id_delivery_count_and_outcome(configured, caplog) -> None:
    caplog.set_level(logging.INFO)
    recorder = RecordingHandoff()
    ignored = sample("eg_ModelRegistered.json")
    down = drift("down")
    with TestClient(create_app(configured, recorder)) as client:
        post(client, ignored, headers={"aeg-delivery-count": "2"})
        post(client, b"{bad", headers={"aeg-delivery-count": "4"})
        recorder.fail = True
        post(client, [down], headers={"aeg-delivery-count": "5"})
    lines = [r.getMessage() for r in caplog.records if r.name == "drift_retrain.webhook"]
    assert any(line.startswith(f"event_id={ignored[0]['id']} delivery_count=2 outcome=ignored type=") for line in lines), lines
    assert any(line.startswith("outcome=rejected status=400 delivery_count=4 reason=") for line in lines), lines
    assert any(line.startswith(f"event_id={down['id']} delivery_count=5 outcome=failed_handoff drift_run=down") for line in lines), lines


def _valid_events() -> list[tuple[dict, str]]:
    return [
        (drift("fz-v1"), EG_JSON),
        (cloud(drift("fz-ce")), "application/cloudevents+json"),
        (monitor_breach("fz-v2"), EG_JSON),
    ]


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, 2),
    where=st.sampled_from(["top", "data"]),
    key=st.sampled_from(["id", "topic", "source", "eventType", "type", "specversion", "subject", "eventTime", "time", "data",
                         "RunId", "runId", "DataDriftName", "DriftCoefficient", "StartTime", "EndTime", "runTags", "experimentName"]),
    value=st.none() | json_values,
    delete=st.booleans(),
)
def test_fuzzed_fields_of_valid_events_never_5xx_and_hand_off_only_what_is_accepted(client, recorder, which, where, key, value, delete) -> None:
    """Start from a valid drift event and break one field: the answer is a 4xx that hands off nothing,
    or a 200 whose accepted signals are exactly the ones handed off."""
    event, content_type = _valid_events()[which]
    target = event if where == "top" else event.get("data")
    if isinstance(target, dict):
        if delete:
            target.pop(key, None)
        else:
            target[key] = value
    before = len(recorder.signals)
    response = post(client, [event] if content_type == EG_JSON else event, content_type=content_type)
    assert response.status_code in (200, 400, 413), response.text
    handed = recorder.signals[before:]
    if response.status_code != 200:
        assert handed == []
    else:
        assert len(handed) == len(response.json()["accepted"]) <= 1


FIELD_KEYS = ["id", "topic", "source", "eventType", "type", "specversion", "subject", "eventTime", "time", "data"]
DATA_KEYS = ["RunId", "runId", "DataDriftName", "DataDriftId", "DriftCoefficient", "StartTime", "EndTime", "BaseDatasetId",
             "runTags", "experimentName"]
WRONG_TYPES = [None, True, 0, -1.5, "", "text", [], ["a", 1], {}, {"azureml_modelmonitor_threshold_breached": ["x"]}]


def test_every_field_of_every_drift_shape_with_every_json_type_never_5xx(client, recorder) -> None:
    """The deterministic counterpart of the fuzzers: each field (envelope and data) of each valid drift
    shape, replaced by each JSON type, is answered 200 or 400, and only 200s hand anything off."""
    answered = set()
    for which in range(len(_valid_events())):
        for where, keys in (("top", FIELD_KEYS), ("data", DATA_KEYS)):
            for key in keys:
                for value in WRONG_TYPES:
                    event, content_type = _valid_events()[which]
                    (event if where == "top" else event["data"])[key] = value
                    before = len(recorder.signals)
                    response = post(client, [event], content_type=content_type)
                    assert response.status_code in (200, 400), (which, where, key, value, response.text)
                    if response.status_code == 400:
                        assert len(recorder.signals) == before, (which, where, key, value)
                    answered.add(response.status_code)
    assert answered == {200, 400}


def test_served_without_uvicorns_access_log_which_would_print_the_secret(configured, monkeypatch) -> None:
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.getLogger("httpx").level)  # serve() sets it
    from drift_retrain.intake.app import serve

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # serve() refuses without a server
        serve(configured, port=18088)
    [options] = calls
    assert {k: options[k] for k in ("host", "port", "access_log", "log_level")} == {
        "host": "127.0.0.1", "port": 18088, "access_log": False, "log_level": "info"}


def test_an_unreachable_jwks_endpoint_is_503_so_event_grid_retries_not_401(tmp_path, monkeypatch, tenant) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    table = tenant.entra_table().replace(tenant.jwks_url, "http://127.0.0.1:9/keys")
    path = write_config(tmp_path, extra=table, **{SECRET_ENV: f'{SECRET_ENV}\nauth = "entra"'})
    recorder = RecordingHandoff()
    with TestClient(create_app(load_settings(path), recorder)) as client:
        response = post(client, [drift("jwks-down")], code=None, headers=bearer(tenant.token()))
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert "signing keys could not be fetched" in response.json()["error"]
    assert recorder.signals == []


class CrashingHealthHandoff(RecordingHandoff):
    async def healthy(self) -> bool:
        raise RuntimeError("not what httpx raises")


def test_healthz_is_503_not_500_whatever_the_health_check_raises(configured) -> None:
    with TestClient(create_app(configured, CrashingHealthHandoff())) as client:
        response = client.get("/healthz")
    assert response.status_code == 503 and response.json() == {"prefect": "unreachable"}
