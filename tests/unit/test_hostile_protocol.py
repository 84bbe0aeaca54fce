"""Issue 14, "every event field is hostile": the receiver's protocol, sizes, body reading, logging, auth and
process environment. One regression test (or a few) per numbered item; each fails with its mechanism
reverted. The slow-client and keep-alive tests serve the receiver with real uvicorn (in a thread, on
loopback, with the settings ``serve`` uses); the rest drive the ASGI app in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prefect.server.schemas.actions import DeploymentFlowRunCreate as ServerFlowRunCreate
from prefect.settings.models.server.api import ServerAPISettings
from pydantic import ValidationError
from starlette.testclient import TestClient

import drift_retrain.intake.app as app_module
from drift_retrain.backends.azure import details_v2
from drift_retrain.config import Settings, load_settings
from drift_retrain.devstack import stack as stack_module
from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.intake.delivery import Rejected, _document
from drift_retrain.intake.handoff import TRIMMED, flow_run_body, parameter_limit, parameters_size
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.intake.server import uvicorn_options
from drift_retrain.logsafe import log_value
from drift_retrain.signals import MONITOR_BREACH_TAG
from drift_retrain.testing import dataset_drift, monitor_breach, write_config
from tests.entra import TENANT, LocalTenant
from tests.unit.receiver import EG_JSON, SECRET, SECRET_ENV, RecordingHandoff, bearer, post

HOST = "127.0.0.1"


def metric(client: TestClient, line: str) -> float:
    """The value of one Prometheus sample line (``name{labels}``), 0 when absent."""
    for row in client.get("/metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def receiver_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("drift_retrain")]


# -- 3. events of 512 KiB - 1 MiB: sized for Prefect ---------------------------------------------------------


def test_prefects_parameter_limit_is_the_one_read() -> None:
    """prefect/settings/models/server/api.py ``max_parameter_size``: the limit every create is checked against."""
    assert parameter_limit() == ServerAPISettings.model_fields["max_parameter_size"].default == 524_288


def _server_accepts(signal: Any, target: Any) -> None:
    """Prefect's server-side request model, as the create endpoint validates it (raises when too large)."""
    ServerFlowRunCreate.model_validate(flow_run_body(signal, target))


def test_an_event_too_big_for_prefect_is_handed_off_without_the_rest_of_it(client, configured, recorder, caplog) -> None:
    """A 700 KB event (under Event Grid's 1 MB) used to be answered 503 for ever, and its batch with it."""
    caplog.set_level(logging.INFO)
    big = dataset_drift("big-v1", Padding="x" * 700_000)
    breach = monitor_breach("big-v2")
    breach["data"]["runProperties"] = {"blob": "y" * 700_000}
    small = dataset_drift("small")
    response = post(client, [big, small, breach])
    assert response.status_code == 200, response.text[:300]
    assert [a["event_id"] for a in response.json()["accepted"]] == [big["id"], small["id"], breach["id"]]

    by_run = {s.run_id: s for s in recorder.signals}
    target = configured.targets[0]
    whole = to_drift_signal(big)
    with pytest.raises(ValidationError, match="must be less than 524,288 bytes"):
        _server_accepts(whole, target)  # what used to be sent, and refused
    for run_id in ("big-v1", "big-v2"):
        signal = by_run[run_id]
        _server_accepts(signal, target)
        assert parameters_size(signal) <= 524_288
        assert TRIMMED in signal.raw_event and "delivered event made" in signal.raw_event[TRIMMED]
        assert to_drift_signal(signal.raw_event).identity == signal.identity  # still reads as the same signal
    v1 = by_run["big-v1"].raw_event["data"]
    assert "Padding" not in v1 and v1["RunId"] == "big-v1" and v1["DriftCoefficient"] == big["data"]["DriftCoefficient"]
    v2 = by_run["big-v2"]  # what the azure backend reads from the raw event: experimentId and the breach tag
    assert "runProperties" not in v2.raw_event["data"]
    assert details_v2._data(v2)["experimentId"] == breach["data"]["experimentId"]
    assert to_drift_signal(v2.raw_event).signal_name == "docs-monitor_data_drift"  # the breach tag kept
    assert TRIMMED not in by_run["small"].raw_event and by_run["small"].raw_event == small  # small: untouched
    assert sum("raw_event=trimmed" in line for line in receiver_lines(caplog)) == 2


def test_a_signal_that_can_never_fit_is_413_naming_the_event_and_the_limit(client, recorder, monkeypatch) -> None:
    """What cannot fit even trimmed is refused at intake (413: Event Grid dead-letters it) with its batch."""
    monkeypatch.setattr("drift_retrain.intake.delivery.parameter_limit", lambda: 600)  # smaller than any signal
    first, second = dataset_drift("a"), dataset_drift("b")
    response = post(client, [first, second])
    assert response.status_code == 413
    error = response.json()["error"]
    assert f"event #0 ({first['id']})" in error and "Prefect stores at most 600" in error
    assert recorder.signals == []
    assert metric(client, 'drift_retrain_requests_total{status="413"}') == 1
    assert metric(client, 'drift_retrain_events_total{outcome="rejected"}') == 2


# -- 4. integers past Python's digit limit; any unexpected failure ----------------------------------------------


def test_an_integer_of_5000_digits_is_400_naming_the_rule(client, recorder) -> None:
    body = json.dumps([dataset_drift("digits")]).replace('"DriftCoefficient": 0.8', '"DriftCoefficient": ' + "9" * 5000)
    assert "9" * 5000 in body
    response = post(client, body)
    assert response.status_code == 400
    assert "an integer has more than 4300 digits" in response.json()["error"]
    assert recorder.signals == []
    assert metric(client, 'drift_retrain_requests_total{status="400"}') == 1


def test_an_unpaired_surrogate_is_400_not_a_hand_off_that_fails_for_ever(client, recorder, configured) -> None:
    """``"\\ud800"`` decodes to a str that is no Unicode: httpx cannot encode it for Prefect (the write would
    fail on every retry, so the delivery was answered 503 for ever)."""
    event = dataset_drift("surrogate", Note="x")
    body = json.dumps([event]).replace('"Note": "x"', '"Note": "\\ud800"')
    with pytest.raises(UnicodeEncodeError):
        httpx.Request("POST", "http://prefect", json=flow_run_body(to_drift_signal(json.loads(body)[0]), configured.targets[0]))
    response = post(client, body)
    assert response.status_code == 400 and "unpaired UTF-16 surrogate" in response.json()["error"]
    assert recorder.signals == []
    paired = json.dumps([dataset_drift("paired", Note="\U0001f600")])  # an escaped pair is one character: fine
    assert "\\ud83d\\ude00" in paired and post(client, paired).status_code == 200


def test_an_unexpected_failure_is_a_counted_500_with_an_answer(client, recorder, monkeypatch, caplog) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("boom\r\nforged line")

    monkeypatch.setattr(app_module, "read_delivery", broken)
    response = post(client, [dataset_drift("x")])  # the test client raises what the app lets escape
    assert response.status_code == 500 and "not acknowledged" in response.json()["error"]
    assert metric(client, 'drift_retrain_requests_total{status="500"}') == 1
    [line] = [r.getMessage() for r in caplog.records if "outcome=error" in r.getMessage()]
    assert "boom\\r\\nforged line" in line and "\nforged" not in line


# -- 7. keys that differ only in case, and exact duplicates -----------------------------------------------------


def _with_extra_key(event: dict, where: str, key: str, value: Any) -> str:
    """The event as JSON text with ``"key": value`` added to one object (so it may repeat a key exactly)."""
    text = json.dumps(event)
    marker = {"top": '{"', "data": '"data": {"', "tags": '"runTags": {"'}[where]
    insert = json.dumps({key: value})[1:-1] + ", "
    at = text.index(marker) + len(marker) - 1
    return "[" + text[:at] + insert + text[at:] + "]"


@pytest.mark.parametrize(
    ("where", "key", "value", "already"),
    [
        ("data", "driftcoefficient", 0.9, "DriftCoefficient"),
        ("data", "DriftCoefficient", 0.9, "DriftCoefficient"),
        ("top", "ID", "other-id", "id"),
        ("top", "eventType", "Microsoft.MachineLearningServices.RunStatusChanged", "eventType"),
    ],
)
def test_a_key_given_twice_in_any_casing_is_400_naming_it(client, recorder, where, key, value, already) -> None:
    """``DriftCoefficient`` 0.31 beside ``driftcoefficient`` 0.9 passed a >= 0.5 filter and retrained on 0.31."""
    event = dataset_drift("dup", monitor="filtered-monitor", DriftCoefficient=0.31)
    response = post(client, _with_extra_key(event, where, key, value))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert f"'{key}'" in error and f"'{already}'" in error and "appears twice" in error
    if key != already:
        assert "differing only in case" in error
    assert recorder.signals == []


def test_a_breach_tag_given_twice_in_run_tags_is_400(client, recorder) -> None:
    event = monitor_breach("dup-tag")
    response = post(client, _with_extra_key(event, "tags", MONITOR_BREACH_TAG.upper(), "all good"))
    assert response.status_code == 400 and MONITOR_BREACH_TAG.upper() in response.json()["error"]
    assert recorder.signals == []


# -- 8. logs: escaped, bounded, one line per refused delivery ----------------------------------------------------


def test_log_value_escapes_every_control_character_and_bounds_length() -> None:
    assert log_value("a\r\nb\x00c\x1b[2Jd\u2028e\u202ef\\n") == "a\\r\\nb\\x00c\\x1b[2Jd\\u2028e\\u202ef\\\\n"
    assert log_value("é 日本 ok") == "é 日本 ok"
    assert log_value("z" * 1000, 10) == "z" * 10 + "...(+990 chars)"
    assert log_value(None) == "None"


FORBIDDEN = ("\r", "\n", "\x00", "\x1b", "\u2028", "\x7f")


def test_event_values_cannot_forge_or_break_receiver_log_lines(client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    forged = "x\r\nINFO drift_retrain.webhook: event_id=forged outcome=accepted\x00\x1b[2J\u2028\x7f"
    accepted = dataset_drift("run-ok")  # ids are refused at intake when hostile (test_event_values.py); the rest is logged
    ignored = dataset_drift("ig")
    ignored["eventType"] = "Microsoft.MachineLearningServices.ModelRegistered" + forged
    refused = dataset_drift("refused", workspace=accepted["topic"].replace("demo-workspace", "other" + forged))
    headers = {"aeg-delivery-count": "1\x1b\x7f", "aeg-subscription-name": "sub\x1b[31m"}
    post(client, [accepted, ignored], headers=headers)
    post(client, [refused], headers=headers)
    validation = [{"id": "v", "topic": "t", "subject": "", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "eventTime": "2024-01-01T00:00:00Z", "data": {"validationCode": "c", "validationUrl": "https://x/" + forged}}]
    post(client, validation, headers={**headers, "aeg-event-type": "SubscriptionValidation"})
    lines = receiver_lines(caplog)
    assert len(lines) >= 3  # one line a delivery at least (a hostile event type refuses its batch: 400)
    for line in lines:
        assert not any(c in line for c in FORBIDDEN), repr(line)
    assert any("\\r\\nINFO drift_retrain.webhook: event_id=forged" in line for line in lines)


def test_an_unauthenticated_options_never_logs_its_callback_url(client, caplog) -> None:
    """50 OPTIONS with an allowed origin used to log any URL each, 106 KB in all."""
    caplog.set_level(logging.DEBUG)
    callback = "https://attacker.example/" + "a" * 2000
    for _ in range(50):
        response = client.options(EVENTS_PATH, headers={"WebHook-Request-Origin": "eventgrid.azure.net",
                                                        "WebHook-Request-Callback": callback})
        assert response.status_code == 200
    text = "\n".join(receiver_lines(caplog))
    assert "attacker.example" not in text and len(text) < 50 * 150
    caplog.clear()
    client.options(EVENTS_PATH, params={"code": SECRET},
                   headers={"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Callback": callback})
    [line] = receiver_lines(caplog)
    assert "https://attacker.example/aaa" in line and len(line) < 700  # authenticated: logged, bounded


def test_a_refused_batch_logs_one_line_with_its_count(configured, caplog) -> None:
    caplog.set_level(logging.INFO)
    events = [dataset_drift(f"r{i}") for i in range(2000)]
    with TestClient(create_app(configured, RecordingHandoff(fail=True))) as failing:
        assert post(failing, events).status_code == 503
    [failed] = [r for r in caplog.records if r.name == "drift_retrain.webhook"]
    assert failed.levelno == logging.ERROR and "outcome=failed_handoff" in failed.getMessage()
    assert "signals=2000" in failed.getMessage()
    caplog.clear()
    bad = dataset_drift("bad")
    del bad["data"]["RunId"]
    with TestClient(create_app(configured, RecordingHandoff())) as refusing:
        assert post(refusing, [*events, bad]).status_code == 400
    [rejected] = [r.getMessage() for r in caplog.records if r.name == "drift_retrain.webhook"]
    assert rejected.startswith("outcome=rejected status=400") and rejected.endswith("events=2001")


# -- 9. big batches are parsed off the event loop ------------------------------------------------------------


def _big_body(events: int = 200) -> bytes:
    body = json.dumps([dataset_drift(f"big-{i}") for i in range(events)]).encode()
    assert len(body) > app_module.INLINE_PARSE_BYTES
    return body


async def _while_served(app: Any, scenario: Any) -> Any:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver", timeout=60) as http:
            return await scenario(http)


def _events_url() -> str:
    return f"{EVENTS_PATH}?code={SECRET}"


def test_a_large_body_is_parsed_while_the_event_loop_keeps_answering(configured, monkeypatch) -> None:
    """A parse that blocks its thread: on the event loop, /metrics could not answer until it ended."""
    real = app_module.read_delivery
    started, finished = threading.Event(), threading.Event()

    def slow(*args: Any) -> Any:
        started.set()
        try:
            finished.wait(20)  # released by the test once /metrics has answered (or given up on)
            return real(*args)
        finally:
            finished.set()

    monkeypatch.setattr(app_module, "read_delivery", slow)

    async def scenario(http: httpx.AsyncClient) -> tuple[bool, int]:
        delivery = asyncio.create_task(http.post(_events_url(), content=_big_body(), headers={"content-type": EG_JSON}))
        assert await asyncio.to_thread(started.wait, 20)  # the parse has begun (and blocks its thread)
        assert (await http.get("/metrics")).status_code == 200
        answered_during_parse = not finished.is_set()
        finished.set()
        return answered_during_parse, (await delivery).status_code

    assert asyncio.run(_while_served(create_app(configured, RecordingHandoff()), scenario)) == (True, 200)


def test_large_parses_run_at_most_max_concurrent_parses_at_once(configured, monkeypatch) -> None:
    real = app_module.read_delivery
    lock, running, most = threading.Lock(), [0], [0]

    def counted(*args: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.2)
            return real(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(app_module, "read_delivery", counted)
    assert configured.receiver.max_concurrent_parses == 1
    body = _big_body()

    async def scenario(http: httpx.AsyncClient) -> list[int]:
        posts = [http.post(_events_url(), content=body, headers={"content-type": EG_JSON}) for _ in range(3)]
        return [r.status_code for r in await asyncio.gather(*posts)]

    assert asyncio.run(_while_served(create_app(configured, RecordingHandoff()), scenario)) == [200, 200, 200]
    assert most[0] == 1


# -- 10. protocol edges -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [f"code=wrong&code={SECRET}", f"code={SECRET}&code=wrong", f"code={SECRET}&code={SECRET}"])
def test_a_repeated_code_is_401_saying_why(client, recorder, query) -> None:
    response = client.post(f"{EVENTS_PATH}?{query}", content=json.dumps([dataset_drift("q")]), headers={"content-type": EG_JSON})
    assert response.status_code == 401 and "?code= given 2 times" in response.json()["error"]
    assert recorder.signals == []


def test_a_repeated_secret_header_is_401(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    settings = load_settings(write_config(tmp_path, **{SECRET_ENV: f'{SECRET_ENV}\nsecret_header = "X-Drift-Retrain-Key"'}))
    with TestClient(create_app(settings, RecordingHandoff())) as client:
        response = client.post(EVENTS_PATH, content=json.dumps([dataset_drift("h")]),
                               headers=[("content-type", EG_JSON), ("x-drift-retrain-key", "wrong"), ("x-drift-retrain-key", SECRET)])
    assert response.status_code == 401 and "X-Drift-Retrain-Key header given 2 times" in response.json()["error"]


def test_the_endpoint_answers_with_a_trailing_slash_and_never_redirects(client, recorder) -> None:
    response = client.post(f"{EVENTS_PATH}/?code={SECRET}", content=json.dumps([dataset_drift("slash")]),
                           headers={"content-type": EG_JSON, "host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 200 and "location" not in response.headers
    assert [s.run_id for s in recorder.signals] == ["slash"]
    refused = client.post(f"{EVENTS_PATH}/?code=wrong", content=b"[]", headers={"content-type": EG_JSON}, follow_redirects=False)
    assert refused.status_code == 401
    options = client.options(f"{EVENTS_PATH}/", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert options.status_code == 200
    for method in ("GET", "HEAD", "PUT"):
        for path in (EVENTS_PATH, f"{EVENTS_PATH}/"):
            refused = client.request(method, f"{path}?code={SECRET}", follow_redirects=False)
            assert refused.status_code == 405 and refused.headers["allow"] == "POST, OPTIONS"
    assert metric(client, 'drift_retrain_requests_total{status="405"}') == 6


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
def test_a_content_encoding_is_415_naming_it(client, recorder, encoding) -> None:
    response = post(client, [dataset_drift("enc")], headers={"content-encoding": encoding})
    assert response.status_code == 415 and f"Content-Encoding '{encoding}'" in response.json()["error"]
    assert recorder.signals == []
    assert post(client, [dataset_drift("identity")], headers={"content-encoding": "identity"}).status_code == 200


@pytest.mark.parametrize(
    ("prefix", "codec", "named"),
    [
        (b"\xef\xbb\xbf", "utf-8", "UTF-8 with a byte order mark"),
        (b"", "utf-16-le", "UTF-16-LE"),
        (b"", "utf-16-be", "UTF-16-BE"),
        (b"", "utf-16", "UTF-16"),
        (b"", "utf-32", "UTF-32"),
        (b"", "utf-32-le", "UTF-32-LE"),
    ],
)
def test_a_body_not_in_plain_utf8_is_415_naming_its_encoding(client, recorder, prefix, codec, named) -> None:
    """Event Grid posts UTF-8 (RFC 8259 section 8.1: JSON between systems is UTF-8, without a BOM)."""
    body = prefix + json.dumps([dataset_drift("bom")]).encode(codec)
    response = post(client, body)
    assert response.status_code == 415
    assert response.json()["error"].startswith(f"body is {named};")
    assert recorder.signals == []
    assert metric(client, 'drift_retrain_requests_total{status="415"}') == 1


@pytest.mark.parametrize(("charset", "status"), [("utf-8", 200), ('"UTF-8"', 200), ("utf8", 200), ("iso-8859-1", 415),
                                                 ("utf-16", 415), ("", 415)])
def test_a_charset_other_than_utf8_is_415(client, charset, status) -> None:
    run_id = "cs-" + "".join(c for c in charset if c.isalnum())  # a valid run id whatever the charset's spelling
    response = post(client, [dataset_drift(run_id)], content_type=f"application/json; charset={charset}")
    assert response.status_code == status, response.text
    if status == 415:
        assert "charset" in response.json()["error"]


def test_up_names_where_the_secret_really_comes_from(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from drift_retrain.cli import app

    class Up:
        ui_url, webhook_url, logs = "http://ui", "http://hook/api/eventgrid", Path("logs")
        attached = None

        def __init__(self, settings: Settings, **_: object) -> None:  # up --database/--redis pass theirs
            pass

        def __enter__(self) -> Up:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(stack_module, "Stack", Up)
    monkeypatch.setattr(stack_module, "wait_until_interrupted", lambda: None)
    config = write_config(tmp_path)
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", "from-env")
    from_env = CliRunner().invoke(app, ["up", "--config", str(config)])
    assert "?code=<secret in $DRIFT_RETRAIN_WEBHOOK_SECRET>" in from_env.output, from_env.output
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET")
    from_file = CliRunner().invoke(app, ["up", "--config", str(config)])
    assert f"?code=<secret in {tmp_path / 'state' / 'webhook-secret'}>" in from_file.output, from_file.output


# -- 11. the secret only in the receiver's environment -----------------------------------------------------------


def test_only_the_receivers_process_gets_the_webhook_secret(tmp_path, monkeypatch) -> None:
    """Prefect's server and the runner (and so every flow run, which inherits the runner's environment) get
    no secret, even when the stack's own environment holds it; the receiver gets it."""
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", "inherited-secret")
    settings = load_settings(write_config(tmp_path))
    envs: dict[str, dict[str, str]] = {}

    class Spawned:
        pid, returncode, stdin = 0, None, None

        def __init__(self, command: list[str], *, env: dict[str, str], **options: Any) -> None:
            name = "server" if "server" in command else "runner" if "deployments.runner" in command else "receiver"
            envs[name] = env

        def poll(self) -> None:
            return None

    monkeypatch.setattr(stack_module.subprocess, "Popen", Spawned)
    monkeypatch.setattr(stack_module, "_port_in_use", lambda port: False)
    monkeypatch.setattr(stack_module.Stack, "_wait", lambda *args, **kwargs: None)
    monkeypatch.setattr(stack_module.Stack, "_free_orphaned_slots", lambda self: None)  # no server to ask
    stack = stack_module.Stack(settings, prefect_port=free_port(), webhook_port=free_port())
    stack.start()
    stack._procs.clear()  # nothing real was started
    assert set(envs) == {"server", "runner", "receiver"}
    assert "DRIFT_RETRAIN_WEBHOOK_SECRET" not in envs["server"]
    assert "DRIFT_RETRAIN_WEBHOOK_SECRET" not in envs["runner"]
    assert envs["receiver"]["DRIFT_RETRAIN_WEBHOOK_SECRET"] == "inherited-secret" == stack.secret
    assert "DRIFT_RETRAIN_WEBHOOK_SECRET" not in stack.env()  # what tests hand to their own processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# -- 13. Entra: the token's tenant --------------------------------------------------------------------------------


@pytest.fixture
def tenant() -> Iterator[LocalTenant]:
    local = LocalTenant()
    yield local
    local.close()


@pytest.mark.parametrize("tid", ["72f988bf-86f1-41af-91ab-2d7cd011db47", None])
def test_a_token_of_the_right_issuer_but_another_tenant_is_401(tmp_path, monkeypatch, tenant, tid) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    # an issuer list broader than the one tenant (e.g. a migration): the tid still has to be ours
    issuers = f'issuers = ["https://sts.windows.net/{TENANT}/", "https://sts.windows.net/shared/"]\n'
    path = write_config(tmp_path, extra=tenant.entra_table() + issuers, **{SECRET_ENV: f'{SECRET_ENV}\nauth = "entra"'})
    recorder = RecordingHandoff()
    with TestClient(create_app(load_settings(path), recorder)) as client:
        ours = post(client, [dataset_drift("ours")], code=None, headers=bearer(tenant.token()))
        other = post(client, [dataset_drift("other")], code=None, headers=bearer(tenant.token(tid=tid)))
        shared = post(client, [dataset_drift("shared")], code=None,
                      headers=bearer(tenant.token(iss="https://sts.windows.net/shared/", tid=tid)))
    assert ours.status_code == 200
    assert other.status_code == shared.status_code == 401
    reason = "issued for another tenant (tid)" if tid else "MissingRequiredClaimError"
    assert reason in other.json()["error"] and reason in shared.json()["error"]
    assert [s.run_id for s in recorder.signals] == ["ours"]


def test_a_repeated_authorization_header_is_401(tmp_path, monkeypatch, tenant) -> None:
    monkeypatch.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
    path = write_config(tmp_path, extra=tenant.entra_table(), **{SECRET_ENV: f'{SECRET_ENV}\nauth = "entra"'})
    with TestClient(create_app(load_settings(path), RecordingHandoff())) as client:
        response = client.post(EVENTS_PATH, content=json.dumps([dataset_drift("two")]),
                               headers=[("content-type", EG_JSON), ("authorization", "Bearer junk"),
                                        ("authorization", f"Bearer {tenant.token()}")])
    assert response.status_code == 401 and "Authorization header given 2 times" in response.json()["error"]


# -- 5 (and 4 over a socket). Served by real uvicorn: slow clients, keep-alive --------------------------------------

TIMEOUT = 1.0  # header_timeout_seconds and body_timeout_seconds of the served receiver
SLACK = 20.0  # a closed connection is found within TIMEOUT + SLACK however loaded the machine; without the
# deadlines the clients below keep their connections for as long as they trickle, so the bound is what fails


@contextlib.contextmanager
def served(settings: Settings, recorder: RecordingHandoff) -> Iterator[int]:
    """The receiver under uvicorn in a thread, with the options ``serve`` passes (``server.uvicorn_options``)."""
    app = create_app(settings, recorder)
    port = free_port()
    config = uvicorn.Config(app, host=HOST, port=port, log_level="warning", access_log=False, lifespan="on",
                            **uvicorn_options(settings.receiver, app.state.metrics.timed_out))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def quick_deadlines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    edit = f"{SECRET_ENV}\nheader_timeout_seconds = {TIMEOUT}\nbody_timeout_seconds = {TIMEOUT}"
    return load_settings(write_config(tmp_path, **{SECRET_ENV: edit}))


class Trickler:
    """A client that sends ``opening`` and then one more byte every 0.25 s, for as long as it is let."""

    def __init__(self, port: int, opening: bytes, byte: bytes = b" ") -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setblocking(False)
        self.sock.sendall(opening)
        self.byte = byte
        self.started = time.monotonic()
        self.closed_after: float | None = None
        self.answer = b""

    def step(self) -> None:
        if self.closed_after is not None:
            return
        try:
            while select.select([self.sock], [], [], 0)[0]:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError
                self.answer += chunk
            if self.byte:
                self.sock.send(self.byte)
        except (ConnectionError, BrokenPipeError, OSError):
            self.closed_after = time.monotonic() - self.started
            self.sock.close()


def _head(path: str, *more: str) -> bytes:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: receiver", "Content-Type: application/json", *more, "", ""]).encode()


def test_slow_clients_are_closed_within_the_deadlines_while_deliveries_succeed(quick_deadlines, recorder) -> None:
    """6 connections sending a byte every 5 s (4 slow bodies, 2 slow header streams without a secret) were
    still open after 100 s. Now: slow bodies get 408 and are closed, slow heads and idle connections are
    closed (408), a refused body's unread rest is not waited for, and a normal delivery still succeeds."""
    with served(quick_deadlines, recorder) as port:
        events = f"{EVENTS_PATH}?code={SECRET}"
        clients = {
            **{f"body-{i}": Trickler(port, _head(events, "Content-Length: 100000")) for i in range(4)},
            **{f"head-{i}": Trickler(port, b"POST /api/eventgrid HTTP/1.1\r\nHost: receiver\r\nX-Slow: ", b"a") for i in range(2)},
            "idle": Trickler(port, b"", b""),
            "refused-body": Trickler(port, _head(EVENTS_PATH, "Content-Length: 100000")),  # 401 at once
        }
        delivered: list[int] = []
        deadline = time.monotonic() + TIMEOUT + SLACK
        while time.monotonic() < deadline and any(c.closed_after is None for c in clients.values()):
            for trickler in clients.values():
                trickler.step()
            if not delivered:
                body = json.dumps([dataset_drift("meanwhile")])
                delivered.append(httpx.post(f"http://{HOST}:{port}{events}", content=body,
                                            headers={"content-type": EG_JSON}, timeout=60).status_code)
            time.sleep(0.25)
        metrics = httpx.get(f"http://{HOST}:{port}/metrics", timeout=60).text
    still_open = [name for name, c in clients.items() if c.closed_after is None]
    assert still_open == [], f"still open after {TIMEOUT + SLACK:.0f} s: {still_open}"
    assert delivered == [200] and [s.run_id for s in recorder.signals] == ["meanwhile"]
    for name, trickler in clients.items():
        expected = b"HTTP/1.1 401" if name == "refused-body" else b"HTTP/1.1 408"
        assert trickler.answer.startswith(expected), (name, trickler.answer[:80])
        assert trickler.closed_after >= TIMEOUT * 0.9, (name, trickler.closed_after)  # type: ignore[operator]
    assert 'drift_retrain_requests_total{status="408"} 4.0' in metrics
    assert 'drift_retrain_client_timeouts_total{phase="header"} 3.0' in metrics
    assert 'drift_retrain_client_timeouts_total{phase="body"} 5.0' in metrics  # 4 answered 408, 1 unread rest


def test_a_next_request_trickled_on_a_kept_alive_connection_is_closed_too(quick_deadlines, recorder) -> None:
    with served(quick_deadlines, recorder) as port:
        trickler = Trickler(port, b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\nGET /healthz HTTP/1.1\r\nX-Slow: ", b"a")
        deadline = time.monotonic() + TIMEOUT + SLACK
        while time.monotonic() < deadline and trickler.closed_after is None:
            trickler.step()
            time.sleep(0.25)
    assert trickler.closed_after is not None, "the trickled second request kept its connection"
    assert trickler.answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in trickler.answer


def test_a_huge_integer_and_an_unexpected_failure_answer_on_a_connection_that_stays_usable(
    quick_deadlines, recorder, monkeypatch
) -> None:
    """Over real HTTP keep-alive: the answer arrives (400, then 500) and the same connection serves the next
    request, where the uncaught error used to reset it."""
    with served(quick_deadlines, recorder) as port:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        body = json.dumps([dataset_drift("n")]).replace('"DriftCoefficient": 0.8', '"DriftCoefficient": ' + "1" * 4301)

        def ask(method: str, path: str, content: str | None = None) -> int:
            connection.request(method, path, body=content, headers={"Content-Type": EG_JSON})
            response = connection.getresponse()
            response.read()
            return response.status

        assert ask("POST", f"{EVENTS_PATH}?code={SECRET}", body) == 400
        sock = connection.sock
        assert ask("GET", "/healthz") == 200 and connection.sock is sock

        def broken(*args: Any) -> None:
            raise KeyError("unexpected")

        monkeypatch.setattr(app_module, "read_delivery", broken)
        assert ask("POST", f"{EVENTS_PATH}?code={SECRET}", json.dumps([dataset_drift("m")])) == 500
        assert ask("GET", "/healthz") == 200 and connection.sock is sock
        connection.close()


def test_serve_hands_uvicorn_the_deadlines_and_limits(configured, monkeypatch) -> None:
    from drift_retrain.intake.server import DeadlineProtocol

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: None)
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.getLogger("httpx").level)  # serve() sets it
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # serve() refuses without a server
        app_module.serve(configured, port=18088)
    [options] = calls
    assert issubclass(options["http"], DeadlineProtocol)
    assert (options["http"].head_timeout, options["http"].drain_timeout) == (10, 10)
    assert (options["timeout_keep_alive"], options["limit_concurrency"], options["h11_max_incomplete_event_size"]) == (
        5, 1000, 16384)
    assert options["access_log"] is False


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_and_are_400(token: str) -> None:
    """Python's json reads them; JSON (RFC 8259 section 6) has no such numbers, so no field can hold one."""
    body = f'[{{"id": "e1", "eventType": "x", "topic": "t", "data": {{"DriftCoefficient": {token}}}}}]'.encode()
    with pytest.raises(Rejected) as refused:
        _document(body)
    assert refused.value.status == 400 and f"'{token}' is not a JSON number" in str(refused.value)
