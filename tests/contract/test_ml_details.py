"""Drift details: v1 (DatasetDriftDetected) from the datadrift service, v2 from the monitor run's MLflow metrics
on the workspace's tracking URI, and the honest "unavailable" answer (never an exception) the policy then
decides around."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

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


DRIFT_ID = "01d29aa4-e6a4-470a-9ef3-66660d21f8ef"  # the DataDriftId of the documented DatasetDriftDetected sample


def _dto(name, value, column=None, pipeline_start="2019-07-05T02:11:09.512Z", start="2019-07-04T00:00:00Z"):
    """A DataDriftMetricDto exactly as azureml-datadrift 1.62.0 deserialises it (_restclient/models/
    data_drift_metric_dto.py _attribute_map: every key, camelCase; dates ISO 8601)."""
    return {
        "name": name, "value": value, "modelName": None, "modelVersion": None, "serviceName": None,
        "baseDatasetId": "3c56d136-0f64-4657-a0e8-5162089a88a3", "targetDatasetId": "d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        "startDate": start, "endDate": "2019-07-05T00:00:00Z", "metricType": "column" if column else "dataset",
        "columnType": "Numerical" if column else None, "columnName": column, "pipelineStartTime": pipeline_start,
        "customDimensions": {},
    }


def test_v1_drift_details_come_from_the_datadrift_service(fake, ml_session):
    sig = signal("drift_details_v1")
    assert sig.monitor_id == DRIFT_ID
    fake.ml.datadrift.detectors[DRIFT_ID] = {"id": DRIFT_ID, "name": "credit-default-drift", "driftThreshold": 0.3}
    fake.ml.datadrift.metrics[DRIFT_ID] = {sig.run_id: [
        _dto("datadrift_coefficient", 0.72),
        _dto("datadrift_contribution", 0.61, "income"),
        _dto("wasserstein_distance", 0.42, "income"),
        _dto("energy_distance", 0.05, "income"),
        _dto("datadrift_contribution", 0.39, "age"),
    ]}

    details = _details(ml_session).fetch(sig)

    assert details.available
    assert (details.drift_coefficient, details.threshold, details.rows_in_window) == (0.72, 0.3, None)
    assert details.features == [
        FeatureDrift(feature="age", contribution=0.39),
        FeatureDrift(feature="income", contribution=0.61, wasserstein=0.42, metrics={"energy_distance": 0.05}),
    ]
    assert [f.feature for f in details.top_features()] == ["income", "age"]
    assert details.source == f"datadrift service metrics of drift run {sig.run_id} of workspace ml-ws"
    # Where it came from: the workspace (ARM) -> discovery's run history host -> the datadrift service, with a bearer token.
    [metrics] = fake.sent("GET", f"/datadrifts/{DRIFT_ID}/metrics")
    assert metrics.path.startswith(f"/datadrift/v1.0{WS}/datadrifts/{DRIFT_ID}/metrics?")
    query = parse_qs(urlsplit(metrics.path).query)
    assert query == {"runId": [sig.run_id], "apiVersion": ["2019-05-15-preview"],
                     "startDateString": ["2019-07-04T00:00:00+00:00"], "endDateString": ["2019-07-05T00:00:00+00:00"]}
    assert metrics.headers["authorization"].startswith("Bearer ")
    assert fake.sent("GET", f"/datadrift/v1.0{WS}/datadrifts/{DRIFT_ID}?api-version=2020-06-30-preview")
    assert fake.sent("GET", f"{WS}?api-version=2024-10-01-preview")
    assert not fake.sent("GET", "/api/2.0/mlflow/runs/get")  # v1 results are not MLflow metrics of the run


def test_v1_details_keep_the_latest_computation_of_the_window_and_leave_out_what_is_malformed(fake, ml_session):
    """A run's results may hold several computations of its window (the latest pipeline start wins, as
    _result_handler dedups) and names older versions wrote (ds_mcc_test, ds_feature_importance); records that
    are not a named finite number are left out and counted, never fatal."""
    sig = signal("drift_details_v1_history")
    fake.ml.datadrift.metrics[DRIFT_ID] = {sig.run_id: [
        _dto("datadrift_coefficient", 0.2, pipeline_start="2019-07-05T01:00:00Z"),
        _dto("datadrift_contribution", 0.9, "income", pipeline_start="2019-07-05T01:00:00Z"),
        _dto("ds_mcc_test", 0.64, pipeline_start="2019-07-05T03:00:00Z"),
        _dto("ds_feature_importance", 0.5, "income", pipeline_start="2019-07-05T03:00:00Z"),
        _dto("datadrift_contribution", "high", "age", pipeline_start="2019-07-05T03:00:00Z"),
        _dto(None, 0.1, pipeline_start="2019-07-05T03:00:00Z"),
        _dto("wasserstein_distance", True, "age", pipeline_start="2019-07-05T03:00:00Z"),
        "not a record",
    ]}

    details = _details(ml_session).fetch(sig)

    assert details.available and details.drift_coefficient == 0.64 and details.threshold is None
    assert details.features == [FeatureDrift(feature="income", contribution=0.5)]
    assert details.source.endswith("; 4 malformed or excess records left out")


def test_an_unknown_drift_run_is_unavailable_and_the_policy_uses_the_event(fake, ml_session):
    sig = signal("drift_never_logged")  # the datadrift service knows no such monitor: 404

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
    fake.ml.datadrift.publish(DRIFT_ID, "drift_other_run", 0.5)  # the monitor exists; these runs have no results
    source = _details(ml_session)
    fake.faults.errors[f"runId={down.run_id}"] = 1

    no_metrics = source.fetch(empty)
    unavailable = source.fetch(down)

    assert not no_metrics.available and "has no drift metrics for the run (0 records)" in no_metrics.source
    assert not unavailable.available and "HTTP 503" in unavailable.source


def test_a_v1_event_without_a_drift_monitor_id_is_unavailable(fake, ml_session):
    sig = signal("drift_no_monitor_id").model_copy(update={"monitor_id": None})

    details = _details(ml_session).fetch(sig)

    assert not details.available and "the event named no DataDriftId" in details.source
    assert not fake.sent("GET", "/datadrift/")


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


@pytest.mark.parametrize("refused_by", ["arm", "datadrift"])
def test_a_workspace_the_identity_may_not_read_is_unavailable_naming_the_role(refused_by, fake, ml_session):
    if refused_by == "arm":
        fake.ml.forbidden = True  # ARM answers the workspace GET with 403 AuthorizationFailed
    else:
        fake.ml.datadrift.forbidden = True  # the datadrift service answers 403

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
