"""The intake over real HTTP: the receiver under uvicorn, a real Prefect server (SQLite) behind it.

Every verbatim sample in both schemas, single and batched; the handshakes; each auth mode; each filter
operator; the 400/401/413 paths; fuzzed input; 32 concurrent deliveries (plus a duplicate subscription's
copy of each) all answered 200 with exactly one run per signal; the Prefect event per signal; Prefect
stopped -> 503, restarted -> redelivery -> exactly one run per signal.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.config import load_settings
from drift_retrain.intake.feed import PrefectEventFeed
from drift_retrain.intake.handoff import PrefectHandoff
from drift_retrain.names import DRIFT_DETECTED, drift_detected_event_id, flow_run_name
from drift_retrain.signals import MONITOR_BREACH_TAG
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.devstack.sender import EVENT_GRID_RESPONSE_TIMEOUT, Delivery, redeliver
from drift_retrain.devstack.stack import STARTUP_SECONDS, free_port
from drift_retrain.intake.subscription import BREACH_TEXT
from drift_retrain.testing import DEMO_WORKSPACE, INTAKE_TARGETS, dataset_drift, local_target, monitor_breach, sample, write_config
from drift_retrain.testing import PrefectServer, running, spawn
from tests.e2e.conftest import Api
from tests.entra import LocalTenant

pytestmark = pytest.mark.e2e

SECRET = "intake-secret-4f1d"
SECRET_ENV = r'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"'
EG = "application/json; charset=utf-8"
SAMPLE_RUN = flow_run_name(SimpleNamespace(model_name="docs-model"), to_drift_signal(sample("eg_DatasetDriftDetected.json")[0]))  # type: ignore[arg-type]

# operator, key, value or values, data that passes, data that does not
OPERATOR_CASES = [
    ("StringIn", "data.ModelTags.key1", ["value1"], {"ModelTags": {"key1": "VALUE1"}}, {"ModelTags": {"key1": "value2"}}),
    ("StringNotIn", "data.ModelTags.key1", ["blocked"], {"ModelTags": {"key1": "ok"}}, {"ModelTags": {"key1": "Blocked"}}),
    ("StringContains", f"data.RunTags.{MONITOR_BREACH_TAG}", [BREACH_TEXT],
     {"RunTags": {MONITOR_BREACH_TAG: f"Monitor m {BREACH_TEXT}"}}, {"RunTags": {MONITOR_BREACH_TAG: "all good"}}),
    ("StringBeginsWith", "data.BaseDatasetId", ["3c56"], {"BaseDatasetId": "3C56-abc"}, {"BaseDatasetId": "ffff-3c56"}),
    ("NumberGreaterThanOrEquals", "data.DriftCoefficient", 0.5, {"DriftCoefficient": 0.5}, {"DriftCoefficient": 0.49}),
    ("NumberLessThan", "data.DriftCoefficient", 0.9, {"DriftCoefficient": 0.89}, {"DriftCoefficient": 0.9}),
    ("BoolEquals", "data.Approved", True, {"Approved": True}, {"Approved": False}),
    ("IsNotNull", "data.ModelTags.key1", None, {"ModelTags": {"key1": "x"}}, {"ModelTags": {"key1": None}}),
]


def operator_targets() -> str:
    blocks = []
    for operator, key, arg, _, _ in OPERATOR_CASES:
        if arg is None:
            rule = f'{{ operator = "{operator}", key = "{key}" }}'
        elif isinstance(arg, list):
            rule = f'{{ operator = "{operator}", key = "{key}", values = {json.dumps(arg)} }}'
        else:
            rule = f'{{ operator = "{operator}", key = "{key}", value = {json.dumps(arg)} }}'
        subscription = f'[[targets.subscriptions]]\nname = "only-{operator}"\nadvanced_filters = [{rule}]\n'
        blocks.append(local_target(f"op-{operator}", [f"op-{operator}"], model_name=f"op-{operator.lower()}", extra=subscription))
    return "".join(blocks)


RECEIVER_EDIT = {SECRET_ENV: f'{SECRET_ENV}\nsecret_header = "X-Drift-Retrain-Key"\nhandoff = {{ deadline_seconds = 4 }}'}


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    with PrefectServer.with_deployment(tmp_path_factory.mktemp("intake-prefect")) as server:
        yield server


def receiver_app(settings, prefect: PrefectServer, secret: str | None = SECRET):
    with pytest.MonkeyPatch.context() as mp:  # the secret is read once, when the app is built
        if secret:
            mp.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", secret)
        else:
            mp.delenv("DRIFT_RETRAIN_WEBHOOK_SECRET", raising=False)
        return create_app(
            settings,
            PrefectHandoff(config=settings.receiver.handoff, api_url=prefect.api_url),
            PrefectEventFeed(api_url=prefect.api_url),
        )


@pytest.fixture(scope="module")
def receiver(prefect, tmp_path_factory):
    settings = load_settings(write_config(tmp_path_factory.mktemp("intake"), extra=INTAKE_TARGETS + operator_targets(), **RECEIVER_EDIT))
    with running(receiver_app(settings, prefect)) as url:
        yield url


@pytest.fixture(scope="module")
def api(prefect) -> Api:
    return Api(prefect.api_url)


def attempt(url: str, body, *, code: str | None = SECRET, content_type: str = EG, headers: dict | None = None,
            delivery_count: int = 0, timeout: float = 35) -> httpx.Response:
    """One delivery attempt, as Event Grid makes it (a test that expects a 503 on purpose asserts on this)."""
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    params = {"code": code} if code is not None else None
    base = {"Content-Type": content_type, "aeg-event-type": "Notification"}
    return httpx.post(url + EVENTS_PATH, content=content, params=params, timeout=timeout,
                      headers=base | (headers or {}) | {"aeg-delivery-count": str(delivery_count)})


def deliver(url: str, body, *, code: str | None = SECRET, content_type: str = EG, headers: dict | None = None,
            delivery_count: int = 0) -> Delivery:
    """Event Grid's delivery: attempted again (count + 1) on 503/429, a timeout or a refused connection, after
    Retry-After, within a bound; any other answer is final at once (a 4xx is never retried)."""
    return redeliver(
        lambda count, timeout: attempt(url, body, code=code, content_type=content_type, headers=headers, delivery_count=count, timeout=timeout),
        first_count=delivery_count,
        url=url,
    )


def made_the_run(delivery: Delivery, accepted: dict) -> bool:
    """This delivery created the signal's run: not a duplicate, unless an earlier attempt of the same delivery
    was answered 503 after Prefect had recorded it (Event Grid then retries, and the retry finds the run)."""
    return not accepted["duplicate"] or delivery.retried > 0


def runs_named(api: Api, name: str) -> list[dict]:
    return [r for r in api.flow_runs() if r["name"] == name]


def run_name(model: str, event: dict) -> str:
    """The name the receiver gives the event's run: the model, the window's days, the signal's digest."""
    return flow_run_name(SimpleNamespace(model_name=model), to_drift_signal(event))  # type: ignore[arg-type]


# -- protocol -------------------------------------------------------------------------------------


def test_every_drift_sample_in_both_schemas_becomes_one_run(receiver, api) -> None:
    first = deliver(receiver, sample("eg_DatasetDriftDetected.json"))
    assert first.status_code == 200, first.text
    (created,) = first.json()["accepted"]
    assert made_the_run(first, created) and created["flow_run_name"] == SAMPLE_RUN
    for name, content_type in [
        ("ce_DatasetDriftDetected.json", "application/cloudevents-batch+json"),
        ("ce_DatasetDriftDetected.json", "application/json"),
        ("ce_spec_example_dataset_drift_detected__specVersion_camelcase.json", "application/cloudevents+json"),
    ]:
        again = deliver(receiver, sample(name), content_type=content_type)
        assert again.status_code == 200, (name, again.text)
        (accepted,) = again.json()["accepted"]
        assert accepted["duplicate"] and accepted["flow_run_id"] == created["flow_run_id"]
    (run,) = runs_named(api, SAMPLE_RUN)
    assert run["id"] == created["flow_run_id"]
    assert run["parameters"]["signal"]["drift_coefficient"] == pytest.approx(0.835034906847)
    assert {"model:docs-model", "kind:dataset_drift", "via:webhook"} <= set(run["tags"])


@pytest.mark.parametrize(("schema", "content_type"), [("eg", EG), ("ce", "application/cloudevents-batch+json")])
def test_every_sample_batched_other_events_ignored_drift_deduplicated(receiver, api, schema, content_type) -> None:
    kinds = ["ModelRegistered", "ModelDeployed", "RunCompleted", "RunStatusChanged", "DatasetDriftDetected"]
    batch = [sample(f"{schema}_{kind}.json")[0] for kind in kinds]
    before, existed = len(api.flow_runs()), bool(runs_named(api, SAMPLE_RUN))  # another test may have made it
    response = deliver(receiver, batch, content_type=content_type)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [i["event_type"].rsplit(".", 1)[1] for i in body["ignored"]] == kinds[:4]
    assert all(i["reason"] for i in body["ignored"])
    assert [a["flow_run_name"] for a in body["accepted"]] == [SAMPLE_RUN]
    assert len(api.flow_runs()) - before == (0 if existed else 1)
    assert len(runs_named(api, SAMPLE_RUN)) == 1


def test_v2_breach_in_both_schemas_is_one_run(receiver, api) -> None:
    eg = monitor_breach("v2-breach-1")
    ce = monitor_breach("v2-breach-1", cloudevents=True)
    first = deliver(receiver, [eg])
    assert made_the_run(first, first.json()["accepted"][0])
    assert deliver(receiver, ce, content_type="application/cloudevents+json").json()["accepted"][0]["duplicate"] is True
    assert len(runs_named(api, run_name("docs-model", eg))) == 1


def test_handshakes_over_http(receiver) -> None:
    response = deliver(receiver, sample("subscription_validation_event.json"), headers={"aeg-event-type": "SubscriptionValidation"})
    assert response.status_code == 200
    assert response.json() == sample("subscription_validation_response.json")
    options = httpx.options(receiver + EVENTS_PATH, headers={"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "60"},
                            timeout=30)
    assert options.status_code == 200
    assert options.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert options.headers["WebHook-Allowed-Rate"] == "*"
    deleted = deliver(receiver, [dataset_drift("deleted-1")], headers={"aeg-event-type": "SubscriptionDeletion"})
    assert deleted.status_code == 200 and deleted.json()["accepted"] == []


# -- auth -----------------------------------------------------------------------------------------


def test_shared_secret_in_query_or_header_and_401_otherwise(receiver, api) -> None:
    assert deliver(receiver, [dataset_drift("auth-q")]).status_code == 200
    assert deliver(receiver, [dataset_drift("auth-h")], code=None, headers={"X-Drift-Retrain-Key": SECRET}).status_code == 200
    for code, headers in [("wrong", {}), (None, {}), (None, {"X-Drift-Retrain-Key": "wrong"})]:
        response = deliver(receiver, [dataset_drift("auth-bad")], code=code, headers=headers)
        assert response.status_code == 401 and SECRET not in response.text
    assert len(runs_named(api, run_name("credit-default", dataset_drift("auth-q")))) == 1 and len(runs_named(api, run_name("credit-default", dataset_drift("auth-h")))) == 1
    assert runs_named(api, run_name("credit-default", dataset_drift("auth-bad"))) == []


def test_entra_protected_delivery(prefect, api, tmp_path) -> None:
    tenant = LocalTenant()
    try:
        path = write_config(tmp_path, extra=tenant.entra_table(), **{SECRET_ENV: f'{SECRET_ENV}\nauth = "entra"'})
        with running(receiver_app(load_settings(path), prefect, secret=None)) as url:
            good = deliver(url, [dataset_drift("entra-ok")], code=None, headers={"Authorization": f"Bearer {tenant.token()}"})
            assert good.status_code == 200, good.text
            for token in (tenant.token(aud="other"), tenant.token(signer=tenant.stranger), tenant.token(exp=int(time.time()) - 600)):
                bad = deliver(url, [dataset_drift("entra-bad")], code=None, headers={"Authorization": f"Bearer {token}"})
                assert bad.status_code == 401
            assert deliver(url, [dataset_drift("entra-bad")], code=SECRET).status_code == 401  # a secret is no token
    finally:
        tenant.close()
    assert len(runs_named(api, run_name("credit-default", dataset_drift("entra-ok")))) == 1
    assert runs_named(api, run_name("credit-default", dataset_drift("entra-bad"))) == []


# -- filters ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("operator", "key", "arg", "passing", "failing"), OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_each_filter_operator_decides_which_events_become_runs(receiver, api, operator, key, arg, passing, failing) -> None:
    model = f"op-{operator.lower()}"
    yes = dataset_drift(f"{operator}-yes", monitor=f"op-{operator}", **passing)
    no = dataset_drift(f"{operator}-no", monitor=f"op-{operator}", **failing)
    response = deliver(receiver, [yes, no])
    assert response.status_code == 200, response.text
    assert [a["flow_run_name"] for a in response.json()["accepted"]] == [run_name(model, yes)]
    (ignored,) = response.json()["ignored"]
    assert ignored["event_id"] == no["id"] and f"{key} {operator}" in ignored["reason"]
    assert len(runs_named(api, run_name(model, yes))) == 1
    assert runs_named(api, run_name(model, no)) == []


# -- refusals ---------------------------------------------------------------------------------------


def oversize_event() -> list[dict]:
    event = dataset_drift("refused-big")
    event["data"]["Padding"] = "x" * (1024 * 1024 + 1)
    return [event]


def unknown_workspace() -> list[dict]:
    return [dataset_drift("refused-ws", workspace=DEMO_WORKSPACE.replace("demo-workspace", "elsewhere"))]


def missing_run_id() -> list[dict]:
    event = dataset_drift("refused-missing")
    del event["data"]["RunId"]
    return [dataset_drift("refused-with-bad-neighbour"), event]


@pytest.mark.parametrize(
    ("make", "kwargs", "status", "message"),
    [
        (lambda: b"{oops", {}, 400, "not valid JSON"),
        (lambda: [dataset_drift("refused-ct")], {"content_type": "text/plain"}, 400, "content type 'text/plain'"),
        (missing_run_id, {}, 400, "event #1"),
        (unknown_workspace, {}, 400, "is not a configured workspace"),
        (lambda: [dataset_drift("refused-auth")], {"code": "nope"}, 401, "missing or wrong secret"),
        (oversize_event, {}, 413, "event #0"),
        (lambda: b"[" + b" " * (5 * 1024 * 1024) + b"]", {}, 413, "batch limit"),
    ],
    ids=["malformed", "content-type", "missing-field", "unknown-workspace", "secret", "event-over-1MB", "batch-over-limit"],
)
def test_refusals_create_nothing(receiver, api, make, kwargs, status, message) -> None:
    before = len(api.flow_runs())
    response = deliver(receiver, make(), **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert len(api.flow_runs()) == before


@hypothesis_settings(max_examples=40, deadline=None)
@given(
    body=st.binary(max_size=200) | st.lists(st.dictionaries(st.sampled_from(["id", "topic", "eventType", "data", "specversion"]),
                                                             st.text(max_size=30) | st.integers(), max_size=5), max_size=3).map(json.dumps),
    content_type=st.sampled_from([EG, "application/cloudevents+json", "text/html", ""]),
    kind=st.sampled_from(["Notification", "SubscriptionValidation", "x"]),
)
def test_fuzzed_input_over_http_never_5xx_never_a_run(receiver, api, body, content_type, kind) -> None:
    before = len(api.flow_runs())
    response = attempt(receiver, body, content_type=content_type, headers={"aeg-event-type": kind})  # no 5xx, even once
    assert response.status_code in (200, 400, 413), response.text
    assert len(api.flow_runs()) == before


# -- nothing lost, never twice --------------------------------------------------------------------


def test_32_concurrent_deliveries_and_a_duplicate_subscription_are_all_acknowledged_once(receiver, api) -> None:
    events = [dataset_drift(f"burst-{i}") for i in range(32)]
    twins = []
    for event in events:  # a second subscription delivers the same drift with its own event id
        twin = copy.deepcopy(event)
        twin["id"] = str(uuid.uuid4())
        twins.append(twin)
    with ThreadPoolExecutor(64) as pool:
        responses = list(pool.map(lambda e: deliver(receiver, [e]), events + twins))
    assert [r.status_code for r in responses] == [200] * 64, [str(r) for r in responses if r.status_code != 200][:3]
    attempts = [a for r in responses for a in r.attempts]
    # every attempt answered within Event Grid's response timeout (a 503 within it is an answer, and retried)
    assert all(a.status is not None and a.seconds < EVENT_GRID_RESPONSE_TIMEOUT for a in attempts), [str(r) for r in responses if r.retried]
    for event, first, second in zip(events, responses[:32], responses[32:]):
        assert first.json()["accepted"][0]["flow_run_id"] == second.json()["accepted"][0]["flow_run_id"]
        made = [a["duplicate"] for a in first.json()["accepted"] + second.json()["accepted"]].count(False)
        assert made == 1 or (made == 0 and (first.retried or second.retried))  # see made_the_run
    slowest = max(a.seconds for a in attempts)
    print(f"burst: 64 deliveries in {len(attempts)} attempts, slowest answer {slowest:.1f} s")
    expected = {run_name("credit-default", event) for event in events}
    names = [r["name"] for r in api.flow_runs() if r["name"] in expected]
    assert sorted(names) == sorted(expected) and len(expected) == 32


def test_redelivery_of_the_same_event_maps_to_the_same_run(receiver, api) -> None:
    event = dataset_drift("redelivered-1")
    first = deliver(receiver, [event]).json()["accepted"][0]
    again = deliver(receiver, [event], delivery_count=1).json()["accepted"][0]
    assert again["duplicate"] and again["flow_run_id"] == first["flow_run_id"]
    assert len(runs_named(api, run_name("credit-default", dataset_drift("redelivered-1")))) == 1


def test_each_accepted_signal_is_a_prefect_event_related_to_its_run(receiver, api) -> None:
    event = dataset_drift("feed-1")
    (accepted,) = deliver(receiver, [event]).json()["accepted"]
    (published,) = _poll_event(api, "feed-1")
    related = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in published["related"]}
    assert related["flow-run"] == f"prefect.flow-run.{accepted['flow_run_id']}"
    assert related["drift-run"] == "azureml.drift-run.demo-workspace.feed-1"
    assert published["payload"]["event_id"] == event["id"]
    assert published["id"] == str(drift_detected_event_id(to_drift_signal(event)))
    redelivered = deliver(receiver, [event], delivery_count=1)
    assert redelivered.json()["accepted"][0]["duplicate"]
    # the feed posts in order: once a later signal's event is stored, the repeat (same event id) has been
    # posted too, and Prefect dropped it instead of storing it twice
    deliver(receiver, [dataset_drift("feed-2")])
    _poll_event(api, "feed-2")
    assert len(_poll_event(api, "feed-1")) == 1


def _poll_event(api: Api, run_id: str, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in api.events(DRIFT_DETECTED, "azureml.monitor.demo-workspace.credit-default-drift", timeout=1)
                 if e["payload"]["run_id"] == run_id]
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {DRIFT_DETECTED} event for {run_id}")


def test_healthz_and_metrics_over_http(receiver) -> None:
    assert httpx.get(receiver + "/healthz", timeout=30).json() == {"prefect": "ok"}
    metrics = httpx.get(receiver + "/metrics", timeout=30).text
    accepted = next(line for line in metrics.splitlines() if line.startswith('drift_retrain_events_total{outcome="accepted"}'))
    assert float(accepted.rsplit(" ", 1)[1]) >= 32
    duplicate = next(line for line in metrics.splitlines() if line.startswith('drift_retrain_events_total{outcome="duplicate"}'))
    assert float(duplicate.rsplit(" ", 1)[1]) >= 32  # the duplicate subscription's copies of the burst
    assert 'drift_retrain_requests_total{status="401"}' in metrics


def test_a_receiver_killed_mid_batch_and_restarted_makes_one_run_per_signal(prefect, api, tmp_path) -> None:
    """The receiver process is SIGKILLed while it hands a large batch to Prefect (some runs made, not all,
    no answer sent); Event Grid redelivers the batch to the restarted receiver: every signal ends with
    exactly one run, the ones the dead receiver made included."""
    settings_file = write_config(tmp_path, extra=INTAKE_TARGETS)  # the default 20 s hand-off deadline
    env = dict(os.environ) | {"PREFECT_API_URL": prefect.api_url, "DRIFT_RETRAIN_WEBHOOK_SECRET": SECRET}

    started: list[subprocess.Popen] = []

    def start() -> tuple[subprocess.Popen, str]:
        port = free_port()
        process = spawn([sys.executable, "-m", "drift_retrain.cli", "webhook", "--config", str(settings_file), "--port", str(port)],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    return process, url
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.2)

    try:
        tag = uuid.uuid4().hex[:6]
        batch = [dataset_drift(f"midbatch-{tag}-{i:04d}") for i in range(400)]
        names = {run_name("credit-default", event) for event in batch}

        def made() -> int:
            query = {"flow_runs": {"name": {"any_": sorted(names)}}}
            return api.http.post("/flow_runs/count", json=query).json()

        first, url = start()
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(attempt, url, batch)  # the attempt the kill cuts off
            deadline = time.monotonic() + 120
            while made() == 0:
                assert time.monotonic() < deadline, "the receiver never started creating the batch's runs"
                time.sleep(0.02)
            first.kill()
            first.wait(timeout=10)
            with pytest.raises(httpx.HTTPError):
                in_flight.result(timeout=30)  # never acknowledged: Event Grid will redeliver
        partial = made()
        assert 0 < partial < len(batch), f"{partial} runs at the kill: not mid-batch"

        _, url = start()
        redelivered = deliver(url, batch, delivery_count=1)  # Event Grid's redelivery, itself retried on 503 like any
        assert redelivered.status_code == 200, f"{redelivered}: {redelivered.text[:300]}"
        print(f"mid-batch: {partial} of {len(batch)} runs made before the kill; redelivery {redelivered}")
        accepted = redelivered.json()["accepted"]
        assert sum(a["duplicate"] for a in accepted) >= partial  # the dead receiver's runs were found, not remade
        runs = [r["name"] for r in api.flow_runs() if r["name"] in names]
        assert sorted(runs) == sorted(names)  # exactly one run per signal
    finally:
        for process in started:  # killed or not, whatever failed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_prefect_down_is_503_and_redelivery_after_restart_makes_one_run_each(receiver, prefect, api) -> None:
    """Last in this module: it stops and restarts the module's Prefect server."""
    batch = [dataset_drift(f"outage-{i}") for i in range(3)]
    prefect.stop()
    try:
        began = time.monotonic()
        refused = attempt(receiver, batch)  # one attempt: the 503 is the point
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
        # the configured 4 s deadline, plus room for a loaded machine: well inside Event Grid's 30 s
        assert time.monotonic() - began < EVENT_GRID_RESPONSE_TIMEOUT / 2
        assert httpx.get(receiver + "/healthz", timeout=30).status_code == 503
    finally:
        prefect.start()
    for count in (1, 2):  # Event Grid retries the whole batch; a retry may even arrive twice
        retried = deliver(receiver, batch, delivery_count=count)
        assert retried.status_code == 200, retried.text
    for i in range(3):
        assert len(runs_named(api, run_name("credit-default", batch[i]))) == 1
    assert httpx.get(receiver + "/healthz", timeout=30).status_code == 200
