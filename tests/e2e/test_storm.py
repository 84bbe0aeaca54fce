"""A storm: 1,000 Event Grid deliveries in batches over HTTP against the real receiver and the real
Prefect server, for 20 models: redeliveries (same event id), duplicate subscriptions (same drift run
under another event id), both schemas, and some workspaces nobody configured.

What must hold: every valid distinct signal has exactly one flow run; the models retrain exactly as the
policy implies (one retrain per model inside its cooldown, none below the drift threshold); no two
retrains of a model ever hold its slot at once (from the task runs' timestamps); every skip says why;
and the receiver never answered 5xx."""

from __future__ import annotations

import copy
import json
import random
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest

from drift_retrain.backends.local.monitor import latest_window
from drift_retrain.backends.local.registry import FileModelRegistry
from drift_retrain.devstack.sender import Delivery, redeliver
from drift_retrain.signals import DriftSignal
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import dataset_drift, monitor_breach
from tests.e2e.conftest import STORM_MODELS

# The storm's fixture (1,000 deliveries, then 35 flow runs to their end) is set up inside the first test's
# time limit; on two cores shared with another suite it needs more than the default 600 s.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

DELIVERIES = 1000
HOT = STORM_MODELS[:15]  # drift above the threshold: one retrain each, whatever the storm
QUIET = STORM_MODELS[15:]  # drift below the threshold: no retrain
UNKNOWN_WORKSPACE = "/subscriptions/00000000-0000-0000-0000-0000000000ff/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/nobody-s"
SLOT_TASKS = {"re-decide-in-slot", "copy-window", "report-copy", "train-model", "current-champion", "report-training",
              "register-model", "report-decision"}


def to_cloudevent(event: dict) -> dict:
    """The same event as Event Grid delivers it in the CloudEvents 1.0 schema."""
    if "specversion" in event:
        return event
    return {"specversion": "1.0", "type": event["eventType"], "source": event["topic"], "subject": event["subject"],
            "id": event["id"], "time": event["eventTime"], "data": event["data"]}


def storm_signals(
    workspace: str, window: tuple[datetime, datetime], hot: list[str] = HOT, quiet: list[str] = QUIET
) -> list[dict]:
    """The storm's distinct drift signals (35 here): two per hot model (a v1 drift run over the window and a v2
    breach, so one of them must coalesce into the other's retrain), one low-drift v1 run per quiet model."""
    span = {"StartTime": window[0].isoformat(), "EndTime": window[1].isoformat()}
    events = []
    for model in hot:
        events.append(dataset_drift(f"{model}-drift_a", f"{model}-drift", workspace, DriftCoefficient=0.8, **span))
        events.append(monitor_breach(f"{model}-monitor-run", workspace, f"{model}-monitor", cloudevents=True))
    for model in quiet:
        events.append(dataset_drift(f"{model}-drift_a", f"{model}-drift", workspace, DriftCoefficient=0.1, **span))
    return events


def deliveries(originals: list[dict], count: int, rng: random.Random) -> list[dict]:
    """Each original once, the rest redeliveries or a second subscription's copy, in either schema."""
    out = [copy.deepcopy(e) for e in originals]
    while len(out) < count:
        event = copy.deepcopy(rng.choice(originals))
        if rng.random() < 0.5:
            event["id"] = str(uuid.uuid4())  # another subscription: same drift run, another event id
        out.append(event)
    rng.shuffle(out)
    return out


def batches(events: list[dict], rng: random.Random) -> list[tuple[str, list[dict]]]:
    """Batches of 1..40 events; a subscription delivers in one schema, so a batch is all of one schema."""
    schemas: dict[str, list[dict]] = {"eventgrid": [], "cloudevents": []}
    for event in events:
        schemas["cloudevents" if "specversion" in event or rng.random() < 0.5 else "eventgrid"].append(event)
    out = []
    for schema, items in schemas.items():
        items = [to_cloudevent(e) for e in items] if schema == "cloudevents" else items
        i = 0
        while i < len(items):
            size = rng.randint(1, 40)
            out.append((schema, items[i : i + size]))
            i += size
    rng.shuffle(out)
    return out


def post(url: str, secret: str, schema: str, events: list[dict]) -> Delivery:
    """Event Grid's delivery of one batch: tried again after a 503 (the receiver's back-pressure) as Event Grid does."""
    content_type = "application/cloudevents-batch+json; charset=utf-8" if schema == "cloudevents" else "application/json"

    def attempt(count: int, timeout: float) -> httpx.Response:
        headers = {"Content-Type": content_type, "aeg-event-type": "Notification", "aeg-delivery-count": str(count)}
        return httpx.post(url, content=json.dumps(events), headers=headers, params={"code": secret}, timeout=timeout)

    return redeliver(attempt, url=url)


def storm_runs(api) -> list[dict]:
    response = api.http.post("/flow_runs/filter", json={"flow_runs": {"tags": {"any_": [f"model:{m}" for m in STORM_MODELS]}}, "limit": 200})
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def storm(stack, api, e2e_settings):
    rng = random.Random(20261126)
    window = latest_window(e2e_settings.local_monitors[0], e2e_settings)
    originals = storm_signals(e2e_settings.targets[0].workspace, window)
    unknown = [dataset_drift(f"nobody_{i}", "nobody-drift", UNKNOWN_WORKSPACE, DriftCoefficient=0.9) for i in range(50)]
    valid = deliveries(originals, DELIVERIES - len(unknown), rng)
    sent = batches(valid, rng) + [("eventgrid", unknown[i : i + 10]) for i in range(0, len(unknown), 10)]
    rng.shuffle(sent)
    assert sum(len(b) for _, b in sent) == DELIVERIES

    began = time.monotonic()
    with ThreadPoolExecutor(8) as pool:  # Event Grid delivers concurrently
        responses = list(pool.map(lambda b: (b, post(stack.webhook_url, stack.secret, *b)), sent))
    intake_seconds = time.monotonic() - began

    expected = {to_drift_signal(e).identity: to_drift_signal(e) for e in originals}
    deadline = time.monotonic() + 1200  # polls: minutes on a busy machine, the bound only for a hang
    while True:
        runs = storm_runs(api)
        if len(runs) >= len(expected) and all(r["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"} for r in runs):
            break
        assert time.monotonic() < deadline, Counter(r["state"]["type"] for r in runs)
        time.sleep(2)
    return responses, expected, runs, intake_seconds


def test_no_5xx_unknown_workspaces_refused_and_every_signal_acknowledged(storm) -> None:
    """No error answer ever; a 503 is the receiver's back-pressure (Prefect slower than its hand-off deadline,
    as on a busy machine): it must say when to retry, and the retry must be acknowledged."""
    responses, expected, _, intake_seconds = storm
    attempts = Counter(a.status for _, r in responses for a in r.attempts)
    assert not [s for s in attempts if s is None or (s >= 500 and s != 503)], attempts
    assert all(a.retry_after for _, r in responses for a in r.attempts if a.status == 503)
    for (schema, events), response in responses:
        unknown = events[0].get("topic", events[0].get("source")) == UNKNOWN_WORKSPACE
        assert response.status_code == (400 if unknown else 200), (schema, str(response), response.text[:300])
    accepted = [a for _, r in responses if r.status_code == 200 for a in r.json()["accepted"]]
    assert len(accepted) == DELIVERIES - 50
    made = sum(not a["duplicate"] for a in accepted)  # one new run per distinct signal ...
    retried = [r for _, r in responses if r.retried]
    # ... unless a 503'd attempt had its runs recorded: its retry then finds them (one run each is asserted below)
    assert made == len(expected) or (retried and made < len(expected)), (made, len(expected), [str(r) for r in retried])
    print(f"storm intake: {DELIVERIES} deliveries in {len(responses)} batches in {intake_seconds:.1f} s; "
          f"{len(retried)} batch(es) retried after a 503 ({attempts[503]} answers)")


def test_exactly_one_flow_run_per_valid_distinct_signal(storm) -> None:
    _, expected, runs, _ = storm
    keys = Counter(r["idempotency_key"] for r in runs)
    assert keys == Counter(s.idempotency_key for s in expected.values())
    assert not [r for r in runs if "nobody" in r["name"]]
    assert {r["state"]["type"] for r in runs} == {"COMPLETED"}


def test_retrains_are_what_the_policy_implies(storm, e2e_settings) -> None:
    for model in STORM_MODELS:
        registry = FileModelRegistry(e2e_settings.resolve(e2e_settings.target(model).registry.path))
        versions = registry.versions(model)
        assert len(versions) == (1 if model in HOT else 0), (model, [v.tags.get("drift.run_id") for v in versions])


def decisions(api, runs: list[dict]) -> dict[str, str]:
    """Each run's final decision (its latest decision artifact's summary), by flow run id."""
    latest: dict[str, dict] = {}
    for model in STORM_MODELS:
        response = api.http.post("/artifacts/filter", json={"artifacts": {"key": {"any_": [f"decision-{model}"]}}, "limit": 200})
        response.raise_for_status()
        for artifact in response.json():
            known = latest.get(artifact["flow_run_id"])
            if known is None or artifact["created"] > known["created"]:
                latest[artifact["flow_run_id"]] = artifact
    return {run["id"]: latest[run["id"]]["description"] for run in runs if run["id"] in latest}


def test_every_skipped_signal_carries_its_reason(storm, api) -> None:
    _, _, runs, _ = storm
    summaries = decisions(api, runs)
    assert len(summaries) == len(runs), "a run ended without a recorded decision"
    for run in runs:
        model = next(t.split(":", 1)[1] for t in run["tags"] if t.startswith("model:"))
        summary = summaries[run["id"]]
        if summary.startswith("retrain: "):
            assert model in HOT
            continue
        assert summary.startswith("skip: ") and len(summary) > len("skip: ")
        if model in QUIET:
            assert "< threshold 0.300" in summary
        else:  # the storm coalesced: a retrain of this model finished while it waited, or just before
            assert "cooldown: v1 was registered" in summary or "covered by" in summary, summary
    retrains = Counter(next(t for t in r["tags"] if t.startswith("model:")) for r in runs if summaries[r["id"]].startswith("retrain: "))
    assert retrains == Counter({f"model:{m}": 1 for m in HOT})


def test_never_two_retrains_of_one_model_hold_its_slot_at_once(storm, api) -> None:
    """From the task runs' own timestamps: from each run's re-decision in the slot to its last step there."""
    _, _, runs, _ = storm
    response = api.http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [r["id"] for r in runs]}}, "limit": 200})
    response.raise_for_status()
    tasks = response.json()
    offset = 200
    while len(tasks) == offset:
        more = api.http.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [r["id"] for r in runs]}}, "limit": 200, "offset": offset})
        tasks += more.json()
        offset += 200
    model_of = {r["id"]: next(t.split(":", 1)[1] for t in r["tags"] if t.startswith("model:")) for r in runs}
    spans: dict[str, list[tuple[str, str]]] = {}
    for run_id in model_of:
        mine = [t for t in tasks if t["flow_run_id"] == run_id]
        entered = [t["start_time"] for t in mine if t["name"].startswith("re-decide-in-slot")]
        if not entered:
            continue  # skipped before it needed the slot
        inside = [t for t in mine if t["name"].rsplit("-", 1)[0] in SLOT_TASKS and t["start_time"] >= entered[0]]
        spans.setdefault(model_of[run_id], []).append((entered[0], max(t["end_time"] for t in inside)))
    assert set(spans) >= set(HOT)
    for model, intervals in spans.items():
        intervals.sort()
        for (_, first_end), (second_start, _) in zip(intervals, intervals[1:]):
            assert second_start >= first_end, f"{model}: two runs held its slot at once: {intervals}"
