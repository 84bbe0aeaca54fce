"""Drift details from the drift run's MLflow metrics on the workspace's tracking URI, and the honest
"unavailable" answer (never an exception) the policy then decides around."""

from __future__ import annotations

from drift_retrain.backends.azure.details import AzureDriftDetails
from drift_retrain.config import PolicyConfig
from drift_retrain.policy import decide
from drift_retrain.results import FeatureDrift
from drift_retrain.signals import DriftSignal, SignalKind
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


def test_v2_monitor_signal_metrics_per_feature(fake, ml_session):
    sig = DriftSignal(kind=SignalKind.MODEL_MONITOR, workspace_id=WS, monitor="credit-monitor",
                      run_id="monitor_run_17", event_id="e-1", breached_metrics=["jensen_shannon_distance"])
    fake.ml.drift_runs[sig.run_id] = {
        "data_drift.income.jensen_shannon_distance": 0.31,
        "data_drift.income.population_stability_index": 0.27,
        "data_drift.age.jensen_shannon_distance": 0.02,
    }

    details = _details(ml_session).fetch(sig)

    assert details.available and details.drift_coefficient is None
    assert details.features == [
        FeatureDrift(feature="age", metrics={"jensen_shannon_distance": 0.02}),
        FeatureDrift(feature="income", psi=0.27, metrics={"jensen_shannon_distance": 0.31}),
    ]


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
