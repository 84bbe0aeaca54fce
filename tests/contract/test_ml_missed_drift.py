"""The sweep's azure catch-up against the fake's ARM Jobs - List, through the real azure-ai-ml: which
model-monitor runs become signals, and that each is the signal its RunStatusChanged event would have been."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from drift_retrain.config import EventSubscriptionConfig, Settings
from drift_retrain.signals import DATASET_DRIFT_DETECTED, MONITOR_BREACH_TAG, SignalKind
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.sweep import missed_signals
from drift_retrain.breaches import breach_text
from drift_retrain.testing import BREACH_ROWS, DEMO_WORKSPACE, monitor_breach
from tests.contract.conftest import azure_settings
from tests.contract.ml_fixtures import WS

MONITOR = "credit-default-drift"  # the one monitor azure_settings' target takes


def breach_tags(monitor: str) -> dict[str, str]:
    """The tags of a monitor_breach() event's run (only the breach tag: no tag names the monitor), so both
    shapes carry the same breach."""
    return {MONITOR_BREACH_TAG: breach_text(f"{monitor}_data_drift", BREACH_ROWS)}


@pytest.fixture
def settings(tmp_path, fake) -> Settings:
    return azure_settings(tmp_path, fake)


def test_ended_breaches_of_routed_monitors_since_then_become_the_events_signals(fake, settings):
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    ml = fake.ml
    ml.jobs_page_size = 2
    caught = ["mon-failed-1", "mon-failed-2", "mon-completed"]
    for name in caught:
        ml.add_monitor_run(DEMO_WORKSPACE, name, MONITOR, breach_tags(MONITOR),
                           status="Completed" if name == "mon-completed" else "Failed")
    ml.add_monitor_run(DEMO_WORKSPACE, "mon-quiet", MONITOR, {}, status="Completed")
    ml.add_monitor_run(DEMO_WORKSPACE, "mon-unrouted", "some-other-monitor", breach_tags("some-other-monitor"))
    ml.add_monitor_run(DEMO_WORKSPACE, "mon-old", MONITOR, breach_tags(MONITOR), created=since - timedelta(minutes=5))
    ml.add_monitor_run(DEMO_WORKSPACE, "mon-running", MONITOR, breach_tags(MONITOR), status="Running")
    ml.add_monitor_run(WS, "mon-elsewhere", MONITOR, breach_tags(MONITOR))  # another workspace, no target

    found, unseen = missed_signals(settings, since)

    assert unseen == []
    assert sorted(s.run_id for s, _ in found) == sorted(caught)
    assert {t.name for _, t in found} == {"credit-default"}
    for signal, _ in found:
        event, _ = settings.routed(to_drift_signal(monitor_breach(signal.run_id, workspace=DEMO_WORKSPACE, monitor=MONITOR)))
        assert signal.kind is SignalKind.MODEL_MONITOR
        assert (signal.identity, signal.idempotency_key) == (event.identity, event.idempotency_key)
        assert (signal.monitor, signal.signal_name, signal.breached) == (event.monitor, event.signal_name, event.breached)

    pages = [parse_qs(urlsplit(r.path).query) for r in fake.sent("GET", "/workspaces/demo-workspace/jobs?")]
    assert len(pages) == 3  # five tagged runs of this workspace, two a page: every nextLink was followed
    assert all(p["tag"] == [MONITOR_BREACH_TAG] and p["api-version"] == ["2024-01-01-preview"] for p in pages)
    assert [p.get("$skip") for p in pages] == [None, ["2"], ["4"]]


def test_a_target_fed_only_by_v1_drift_says_it_is_not_caught_up(fake, settings):
    v1 = EventSubscriptionConfig(name="v1-drift", included_event_types=[DATASET_DRIFT_DETECTED])
    settings = settings.model_copy(update={"targets": [settings.targets[0].model_copy(update={"subscriptions": [v1]})]})

    found, unseen = missed_signals(settings, datetime.now(timezone.utc) - timedelta(hours=1))

    assert found == []
    [row] = unseen
    assert (row.flow_run, row.action) == ("target credit-default", "not caught up")
    assert "v1 DatasetDriftDetected" in row.detail


def test_an_unreachable_workspace_is_a_row_of_the_sweep_not_its_failure(fake, settings):
    fake.faults.errors["/jobs?"] = 100  # 503 on every attempt the SDK's retry policy makes

    found, unseen = missed_signals(settings, datetime.now(timezone.utc) - timedelta(hours=1))

    assert found == []
    [row] = unseen
    assert (row.action, row.detail) == ("catch-up failed", "HttpResponseError: (ServiceUnavailable) Transient failure (fake)")
