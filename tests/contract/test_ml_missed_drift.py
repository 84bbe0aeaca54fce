"""The sweep's azure catch-up against the fake's model-monitor run tree, through the real azure-ai-ml (ARM
Jobs - List) and our REST client (run-history children): which breaches become signals, and that each is the
signal the evaluate step's RunStatusChanged event would have been."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from drift_retrain.backends.azure import missed
from drift_retrain.backends.azure.details import AzureDriftDetails
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.config import EventSubscriptionConfig, Settings
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.signals import DATASET_DRIFT_DETECTED, MONITOR_BREACH_TAG, SignalKind
from drift_retrain.sweep import missed_signals
from drift_retrain.testing import DEMO_WORKSPACE
from tests.contract.conftest import azure_settings
from tests.contract.ml_fixtures import WS

MONITOR = "credit-default-drift"  # the one monitor azure_settings' target takes
DATA_DRIFT, PREDICTION_DRIFT = f"{MONITOR}-data-drift", f"{MONITOR}-prediction-drift"
BREACHING = [
    {"metric_name": "JensenShannonDistance", "metric_value": 0.31, "threshold_value": 0.1, "group": "income"},
    {"metric_name": "JensenShannonDistance", "metric_value": 0.02, "threshold_value": 0.1, "group": "age"},
]
QUIET = [{"metric_name": "PopulationStabilityIndex", "metric_value": 0.01, "threshold_value": 0.2, "group": "score"}]


@pytest.fixture
def settings(tmp_path, fake) -> Settings:
    return azure_settings(tmp_path, fake)


def monitor_run(fake, signals, monitor=MONITOR, workspace=DEMO_WORKSPACE, **kwargs):
    """A run of ``monitor`` in its own experiment, the monitor's name (so routing by the experiment name and
    by a signal name that contains the monitor's agree)."""
    return fake.ml.add_monitor_run(workspace, monitor, signals, experiment=monitor, **kwargs)


def test_the_catch_up_finds_a_lost_breach_and_rebuilds_the_evaluate_steps_event(fake, settings):
    since = datetime.now(UTC) - timedelta(hours=1)
    fake.ml.jobs_page_size = 2  # ARM pages of two jobs, run-history pages of one child: every page is followed
    fake.ml.monitoring.page_size = 1
    breached = monitor_run(fake, {DATA_DRIFT: BREACHING, PREDICTION_DRIFT: QUIET})
    monitor_run(fake, {DATA_DRIFT: QUIET})  # no breach: nothing to catch up
    monitor_run(fake, {DATA_DRIFT: BREACHING}, created=since - timedelta(minutes=5))  # before the look-back
    monitor_run(fake, {"some-other-monitor-data-drift": BREACHING}, monitor="some-other-monitor")  # no target's
    monitor_run(fake, {DATA_DRIFT: BREACHING}, workspace=WS)  # another workspace, no target

    found, unseen = missed_signals(settings, since)

    assert unseen == []
    [(signal, target)] = found
    step = breached.evaluate[DATA_DRIFT]
    assert target.name == "credit-default"
    assert signal.kind is SignalKind.MODEL_MONITOR and signal.run_id == step.run_id  # the evaluate step, as the event
    event, _ = settings.routed(to_drift_signal(breached.breach_event(DATA_DRIFT, workspace=DEMO_WORKSPACE)))
    assert (signal.identity, signal.idempotency_key) == (event.identity, event.idempotency_key)
    assert (signal.monitor, signal.signal_name, signal.breached) == (MONITOR, event.signal_name, event.breached)
    assert event.monitor == MONITOR and [r.group for r in signal.breached] == ["income"]
    assert signal.raw_event["data"] == event.raw_event["data"]  # ids, experiment, tags, properties, status
    assert signal.event_time == event.event_time  # the step's end, not the sweep's clock
    assert signal.raw_event["id"] == f"sweep-{step.run_id}"

    lists = [parse_qs(urlsplit(r.path).query) for r in fake.sent("GET", "/workspaces/demo-workspace/jobs?")]
    assert len(lists) == 2  # four monitor runs in this workspace, two a page: the nextLink was followed
    assert all(q["jobType"] == ["Pipeline"] and "tag" not in q for q in lists)  # the tag is not on these jobs
    children = fake.sent("GET", f"/runs/{breached.job.name}/children")
    assert len(children) == 2 and "%24continuationtoken=" in children[1].path  # two signals, one a page
    assert all("api-version=v1.0" in r.path for r in children)


def test_a_monitor_run_without_breach_yields_nothing(fake, settings):
    quiet = monitor_run(fake, {DATA_DRIFT: QUIET, PREDICTION_DRIFT: QUIET})

    found, unseen = missed_signals(settings, datetime.now(UTC) - timedelta(hours=1))

    assert (found, unseen) == ([], [])
    assert quiet.breached == []
    assert fake.sent("GET", f"/runs/{quiet.job.name}/children")  # it was looked at


def test_metrics_that_alert_below_their_threshold_breach_below_it(fake, settings):
    """The Kolmogorov-Smirnov test's value is a p-value: drift is a value *below* the threshold."""
    ks = "TwoSampleKolmogorovSmirnovTest"
    now = datetime.now(UTC)
    low = monitor_run(fake, {DATA_DRIFT: [{"metric_name": ks, "metric_value": 0.01, "threshold_value": 0.05, "group": "age"}]},
                      created=now - timedelta(minutes=20))
    high = monitor_run(fake, {DATA_DRIFT: [{"metric_name": ks, "metric_value": 0.4, "threshold_value": 0.05, "group": "age"}]},
                       created=now - timedelta(minutes=10))  # the next run of the monitor: no breach

    found, _ = missed_signals(settings, datetime.now(UTC) - timedelta(hours=1))

    assert [s.run_id for s, _ in found] == [low.evaluate[DATA_DRIFT].run_id]
    assert high.breached == [] and MONITOR_BREACH_TAG not in high.evaluate[DATA_DRIFT].tags
    assert '"metric_name":"TwoSampleKolmogorovSmirnovTest"' in low.evaluate[DATA_DRIFT].tags[MONITOR_BREACH_TAG]
    # Its details: the breaching run's point, not the next run's; the test's value is its p-value
    # (numerical_data_drift_metrics.py _ks2sample_pandas_impl).
    [(signal, target)] = found
    details = AzureDriftDetails(AzureSession.from_config(settings.azure), target).fetch(signal)
    [age] = details.features
    assert (age.ks_pvalue, age.ks_statistic, age.thresholds) == (0.01, None, {ks: 0.05})


def test_the_catch_up_says_when_it_reached_its_cap(fake, settings, monkeypatch):
    monkeypatch.setattr(missed, "MAX_JOBS_LISTED", 2)
    runs = [monitor_run(fake, {DATA_DRIFT: BREACHING}) for _ in range(3)]

    found, unseen = missed_signals(settings, datetime.now(UTC) - timedelta(hours=1))

    assert len(found) == 2  # the two newest; the third is past the cap
    assert {s.run_id for s, _ in found} < {r.evaluate[DATA_DRIFT].run_id for r in runs}
    [row] = unseen
    assert (row.flow_run, row.action) == ("target credit-default", "not caught up")
    assert "the catch-up read its cap (2 jobs" in row.detail


def test_a_target_fed_only_by_v1_drift_says_it_is_not_caught_up(fake, settings):
    v1 = EventSubscriptionConfig(name="v1-drift", included_event_types=[DATASET_DRIFT_DETECTED])
    settings = settings.model_copy(update={"targets": [settings.targets[0].model_copy(update={"subscriptions": [v1]})]})

    found, unseen = missed_signals(settings, datetime.now(UTC) - timedelta(hours=1))

    assert found == []
    [row] = unseen
    assert (row.flow_run, row.action) == ("target credit-default", "not caught up")
    assert "v1 DatasetDriftDetected" in row.detail


def test_an_unreachable_workspace_is_a_row_of_the_sweep_not_its_failure(fake, settings):
    fake.faults.errors["/jobs?"] = 100  # 503 on every attempt the SDK's retry policy makes

    found, unseen = missed_signals(settings, datetime.now(UTC) - timedelta(hours=1))

    assert found == []
    [row] = unseen
    assert (row.action, row.detail) == ("catch-up failed", "HttpResponseError: (ServiceUnavailable) Transient failure (fake)")


def test_the_catch_up_holds_a_breach_to_the_configured_limits_as_the_receiver_would(fake, settings):
    """A caught-up signal is checked against the receiver's configured bounds, not the defaults: with an
    earliest time after the breach, the receiver would refuse its event, so the sweep does not hand it off."""
    monitor_run(fake, {DATA_DRIFT: BREACHING})
    since = datetime.now(UTC) - timedelta(hours=1)
    assert len(missed_signals(settings, since)[0]) == 1  # the defaults take it
    strict = settings.receiver.model_copy(update={"earliest_time": datetime.now(UTC) + timedelta(days=1)})

    found, _ = missed_signals(settings.model_copy(update={"receiver": strict}), since)

    assert found == []
