"""Drift details from the drift run's MLflow metrics on the workspace's tracking URI, and the honest
"unavailable" answer (never an exception) the policy then decides around."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drift_retrain.backends.azure.details import AzureDriftDetails
from drift_retrain.backends.azure.workspace_rest import RestError, WorkspaceRest
from drift_retrain.config import PolicyConfig
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.policy import decide
from drift_retrain.results import FeatureDrift
from tests.contract.ml_fixtures import (
    WS,
    signal,
    target,
)


def _details(session):
    return AzureDriftDetails(session, target({"kind": "published_pipeline", "pipeline_id": "p"}))


def test_v1_drift_run_metrics_become_details(fake, ml_session):
    sig = signal("drift_details_v1")
    fake.ml.drift_runs[sig.run_id] = {
        "datadrift_coefficient": 0.72,
        "drift_threshold": 0.3,
        "datadrift_contribution.income": 0.61,
        "wasserstein_distance.income": 0.42,
        "energy_distance.income": 0.05,
        "datadrift_contribution.age": 0.39,
    }

    details = _details(ml_session).fetch(sig)

    assert details.available
    assert (details.drift_coefficient, details.threshold, details.rows_in_window) == (0.72, 0.3, None)
    assert details.features == [
        FeatureDrift(feature="age", contribution=0.39),
        FeatureDrift(feature="income", contribution=0.61, wasserstein=0.42, metrics={"energy_distance": 0.05}),
    ]
    assert [f.feature for f in details.top_features()] == ["income", "age"]
    assert "drift_details_v1" in details.source
    # Where it came from: the workspace (ARM) -> its tracking URI -> MLflow runs/get, each with a bearer token.
    [mlflow] = fake.sent("GET", "/api/2.0/mlflow/runs/get")
    assert mlflow.path == f"/mlflow/v1.0{WS}/api/2.0/mlflow/runs/get?run_id={sig.run_id}"
    assert mlflow.headers["authorization"].startswith("Bearer ")
    assert fake.sent("GET", f"{WS}?api-version=2024-10-01-preview")


def test_an_unknown_drift_run_is_unavailable_and_the_policy_uses_the_event(fake, ml_session):
    sig = signal("drift_never_logged")

    details = _details(ml_session).fetch(sig)

    assert not details.available
    assert "not found (HTTP 404" in details.source and "deciding on the event's own data" in details.source
    decision = decide(sig, details, PolicyConfig(min_rows=0, cooldown_minutes=0), [])
    drift = next(c for c in decision.checks if c.rule == "drift")
    assert drift.passed and "(event)" in drift.detail  # 0.835 from the event itself
    rows = next(c for c in decision.checks if c.rule == "min_rows")
    assert details.source in rows.detail


def test_a_run_without_metrics_and_a_failing_service_are_unavailable(fake, ml_session):
    empty, down = signal("drift_empty"), signal("drift_down")
    fake.ml.drift_runs[empty.run_id] = {}
    source = _details(ml_session)
    fake.faults.errors[f"runs/get?run_id={down.run_id}"] = 1

    no_metrics = source.fetch(empty)
    unavailable = source.fetch(down)

    assert not no_metrics.available and "logged no metrics" in no_metrics.source
    assert not unavailable.available and "HTTP 503" in unavailable.source


def test_an_unreachable_workspace_is_unavailable_not_an_error(fake, ml_session):
    """A connection failure (not an HTTP answer) is an honest "unavailable" too: details never fail the flow."""
    import socket

    from drift_retrain.backends.azure.session import AzureSession

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{sock.getsockname()[1]}"
    session = AzureSession(ml_session.config.model_copy(update={"resource_manager": closed}), ml_session.credential)

    details = _details(session).fetch(signal("drift_unreachable"))

    assert not details.available
    assert "ConnectError" in details.source and "deciding on the event's own data" in details.source


def test_a_workspace_the_identity_may_not_read_is_unavailable_naming_the_role(fake, ml_session):
    fake.ml.forbidden = True  # ARM answers the workspace GET with 403 AuthorizationFailed

    details = _details(ml_session).fetch(signal("drift_forbidden"))

    assert not details.available
    assert "not readable by this identity (HTTP 403" in details.source
    assert "needs the AzureML Data Scientist role on the workspace" in details.source


# -- v2: a model-monitor signal's details from the monitor's metric runs ----------------------------------

MONITOR = "credit-default-drift"
DATA_DRIFT = f"{MONITOR}-data-drift"  # named <monitor>-<signal>, Microsoft's convention for routing
#: What the data drift signal computed in the run that breached: one numerical and one categorical metric
#: per feature (data_drift_signal_monitor/spec.yaml), income and region past their thresholds.
BREACHING = [
    {"metric_name": "NormalizedWassersteinDistance", "metric_value": 0.42, "threshold_value": 0.1, "group": "income"},
    {"metric_name": "NormalizedWassersteinDistance", "metric_value": 0.03, "threshold_value": 0.1, "group": "age"},
    {"metric_name": "JensenShannonDistance", "metric_value": 0.27, "threshold_value": 0.1, "group": "region"},
]
QUIET_PREDICTIONS = [{"metric_name": "PopulationStabilityIndex", "metric_value": 0.01, "threshold_value": 0.2, "group": "score"}]


def _v2(fake, signals, created, **kwargs):
    return fake.ml.add_monitor_run(WS, MONITOR, signals, created=created, **kwargs)


def _scaled(rows, factor):
    return [dict(row, metric_value=row["metric_value"] * factor) for row in rows]


def test_v2_details_list_every_metric_and_threshold_of_every_feature_of_the_breached_signal(fake, ml_session):
    """Several signals, one breaching; the monitor ran the day before and the day after too (each run appends
    a point to the same metric runs): the details are the breaching run's, every feature, metric, threshold."""
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    signals = lambda rows: {DATA_DRIFT: rows, f"{MONITOR}-prediction-drift": QUIET_PREDICTIONS}  # noqa: E731
    _v2(fake, signals(_scaled(BREACHING, 0.1)), day - timedelta(days=1))
    run = _v2(fake, signals(BREACHING), day)
    _v2(fake, signals(_scaled(BREACHING, 2.0)), day + timedelta(days=1))
    fake.ml.monitoring.page_size = 2  # MLflow answers in pages of two: every page is read
    assert run.breached == [DATA_DRIFT]
    sig = to_drift_signal(run.breach_event(DATA_DRIFT))

    details = _details(ml_session).fetch(sig)

    assert details.available, details.source
    assert details.features == [
        FeatureDrift(feature="age", wasserstein=0.03, metrics={"NormalizedWassersteinDistance": 0.03},
                     thresholds={"NormalizedWassersteinDistance": 0.1}),
        FeatureDrift(feature="income", wasserstein=0.42, metrics={"NormalizedWassersteinDistance": 0.42},
                     thresholds={"NormalizedWassersteinDistance": 0.1}),
        FeatureDrift(feature="region", metrics={"JensenShannonDistance": 0.27}, thresholds={"JensenShannonDistance": 0.1}),
    ]
    assert details.source.startswith(f"MLflow metric runs of signal '{DATA_DRIFT}'")
    assert run.experiment_id in details.source and "3 runs" in details.source
    # Found by the signal's name in the event's experiment, the way the outputter itself finds its runs.
    searches = fake.sent("POST", "/api/2.0/mlflow/runs/search")
    assert searches[0].path == f"/mlflow/v1.0{WS}/api/2.0/mlflow/runs/search"
    assert searches[0].body["experiment_ids"] == [run.experiment_id]
    assert searches[0].body["filter"] == f"tags.azureml.signal_name = '{DATA_DRIFT}'"
    assert len(searches) == 2 and searches[1].body["page_token"]
    assert fake.sent("GET", "/api/2.0/mlflow/metrics/get-history")  # the day after's points were stepped over


def test_v2_a_signal_name_with_a_quote_neither_breaks_nor_widens_the_search(fake, ml_session):
    quoted, other = "credit-default-drift-o'brien's drift", "credit-default-drift-o"
    run = _v2(fake, {quoted: BREACHING, other: _scaled(BREACHING, 5.0)}, datetime.now(UTC) - timedelta(hours=1))
    sig = to_drift_signal(run.breach_event(quoted))

    details = _details(ml_session).fetch(sig)

    assert details.available, details.source
    assert {f.feature: f.metrics for f in details.features} == {
        "age": {"NormalizedWassersteinDistance": 0.03},
        "income": {"NormalizedWassersteinDistance": 0.42},
        "region": {"JensenShannonDistance": 0.27},
    }  # its own runs only, not the other signal's
    [search] = fake.sent("POST", "/api/2.0/mlflow/runs/search")
    assert search.body["filter"] == ""  # matched client-side: no quoting MLflow would not undo
    # The fake refuses the naive filter, as MLflow's parser does: quoting it in would have broken the search.
    rest = WorkspaceRest(ml_session, WS)
    naive = {"experiment_ids": [run.experiment_id], "filter": f"tags.azureml.signal_name = '{quoted}'"}
    try:
        rest.request("POST", f"{rest.endpoints().mlflow}/api/2.0/mlflow/runs/search", json=naive)
    except RestError as exc:
        assert exc.status_code == 400
    else:
        raise AssertionError("the fake took a filter MLflow refuses")


def test_v2_no_access_is_unavailable_with_the_reason(fake, ml_session):
    run = _v2(fake, {DATA_DRIFT: BREACHING}, datetime.now(UTC) - timedelta(hours=1))
    sig = to_drift_signal(run.breach_event(DATA_DRIFT))

    fake.ml.monitoring.forbidden = True  # MLflow answers 403 PERMISSION_DENIED
    mlflow_denied = _details(ml_session).fetch(sig)
    fake.ml.monitoring.forbidden, fake.ml.forbidden = False, True  # ARM denies the workspace itself
    workspace_denied = _details(ml_session).fetch(sig)

    for details in (mlflow_denied, workspace_denied):
        assert not details.available
        assert "not readable by this identity (HTTP 403" in details.source
        assert "deciding on the breach tag's own rows" in details.source
    assert "no permission to read runs" in mlflow_denied.source


def test_v2_a_signal_without_metric_runs_or_experiment_is_unavailable(fake, ml_session):
    run = _v2(fake, {DATA_DRIFT: BREACHING}, datetime.now(UTC) - timedelta(hours=1))
    event = run.breach_event(DATA_DRIFT)
    elsewhere = dict(event, data={**event["data"], "experimentId": "00000000-0000-0000-0000-0000000e0e0e"})
    nameless = dict(event, data={key: value for key, value in event["data"].items() if key != "experimentId"})

    no_runs = _details(ml_session).fetch(to_drift_signal(elsewhere))
    no_experiment = _details(ml_session).fetch(to_drift_signal(nameless))

    assert not no_runs.available
    assert f"no MLflow metric runs tagged azureml.signal_name = '{DATA_DRIFT}'" in no_runs.source
    assert not no_experiment.available and "no usable data.experimentId" in no_experiment.source


def test_v2_details_of_a_signal_whose_outputter_tags_groups(fake, ml_session):
    """Model performance and generation safety/quality signals publish through the metric outputter, which tags
    the feature as azureml.group_0 (none: a metric of the whole data); a pass rate alerts below its threshold."""
    from drift_retrain.fake_azure.monitoring import METRIC_OUTPUTTER

    gsq = f"{MONITOR}-gsq"
    rows = [
        {"metric_name": "AggregatedGroundednessPassRate", "metric_value": 0.6, "threshold_value": 0.7},
        {"metric_name": "AverageFluencyScore", "metric_value": 4.1, "threshold_value": 3.0, "group": "en"},
    ]
    run = _v2(fake, {gsq: rows}, datetime.now(UTC) - timedelta(hours=1), outputter=METRIC_OUTPUTTER)
    assert run.breached == [gsq]  # 0.6 < 0.7: below, the pass rate's direction

    details = _details(ml_session).fetch(to_drift_signal(run.breach_event(gsq)))

    assert details.available, details.source
    assert details.features == [
        FeatureDrift(feature="(overall)", metrics={"AggregatedGroundednessPassRate": 0.6},
                     thresholds={"AggregatedGroundednessPassRate": 0.7}),
        FeatureDrift(feature="en", metrics={"AverageFluencyScore": 4.1}, thresholds={"AverageFluencyScore": 3.0}),
    ]
