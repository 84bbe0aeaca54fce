"""Registration through azure-ai-ml as the fake receives it: the exact tags and properties PUT, the
version numbering the service hands out, metrics read back, and an idempotent rerun."""

from __future__ import annotations

from datetime import timezone

from drift_retrain.backends.azure.registry import MAX_TAG_VALUE, AzureModelRegistry
from drift_retrain.names import SIGNAL_TAG
from drift_retrain.results import TrainingResult
from tests.contract.ml_fixtures import (
    WS,
    signal,
    target,
)


def _training(job_id: str, **metrics: float) -> TrainingResult:
    return TrainingResult(job_id=job_id, status="Completed", metrics=metrics, rows_train=900, rows_test=300,
                          model_uri=f"azureml://jobs/{job_id}/outputs/model/paths/model/", duration=61.0)


def _registry(session, model_type="mlflow_model"):
    return AzureModelRegistry(session, target({"kind": "pipeline_job", "component": "c:1"},
                                              registry={"kind": "azure_ml", "model_type": model_type, "path": "model/"}))


def test_register_puts_tags_and_properties_exactly(fake, ml_session):
    registry = _registry(ml_session)
    sig = signal("drift_register")
    tags = {SIGNAL_TAG: sig.identity, "drift.run_id": sig.run_id, "decision": "retrain: drift 0.835 >= 0.300",
            "decision.checks": "x" * 600}

    version = registry.register("credit-default", _training("train-1", roc_auc=0.9125, accuracy=0.8), tags)

    models = f"{WS}/models/credit-default"
    assert [(r.method, r.path) for r in fake.sent(contains="/models/credit-default")] == [
        ("GET", f"{models}/versions?api-version=2023-08-01-preview&listViewType=ActiveOnly"),  # ours: idempotency
        ("GET", f"{models}/versions?api-version=2023-08-01-preview&$orderBy=createdtime%20desc&$top=1"),  # 404
        ("GET", f"{models}?api-version=2023-08-01-preview"),  # container: 404 -> version "1"
        ("PUT", f"{models}/versions/1?api-version=2023-08-01-preview"),
    ]  # the same paths and api-versions as the recorded azure-ai-ml 1.35.2 requests
    [put] = fake.sent("PUT", "/models/credit-default/versions/")
    assert put.path.startswith(f"{WS}/models/credit-default/versions/1?api-version=2023-08-01-preview")
    sent = put.body["properties"]
    assert sent["modelType"] == "mlflow_model"
    assert sent["modelUri"] == "azureml://jobs/train-1/outputs/model/paths/model/"
    assert sent["tags"] == {
        SIGNAL_TAG: sig.identity,
        "drift.run_id": sig.run_id,
        "decision": "retrain: drift 0.835 >= 0.300",
        "decision.checks": "x" * (MAX_TAG_VALUE - 44) + "... (full value in the version's properties)",
    }
    assert all(len(v) <= MAX_TAG_VALUE for v in sent["tags"].values())
    assert sent["properties"] == {
        "decision.checks": "x" * 600,
        "drift_retrain.job_id": "train-1",
        "drift_retrain.rows_train": "900",
        "drift_retrain.rows_test": "300",
        "metric.roc_auc": "0.9125",
        "metric.accuracy": "0.8",
    }
    assert (version.name, version.version, version.uri) == ("credit-default", 1, sent["modelUri"])
    assert version.metrics == {"roc_auc": 0.9125, "accuracy": 0.8}
    assert version.created_at.tzinfo is not None and version.created_at.utcoffset() == timezone.utc.utcoffset(None)
    assert not version.already_registered


def test_a_rerun_finds_its_version_and_adds_none(fake, ml_session):
    registry = _registry(ml_session)
    first, second = signal("drift_a"), signal("drift_b")
    v1 = registry.register("churn", _training("train-a", auc=0.7), {SIGNAL_TAG: first.identity})
    v2 = registry.register("churn", _training("train-b", auc=0.8), {SIGNAL_TAG: second.identity})

    again = registry.register("churn", _training("train-b", auc=0.8), {SIGNAL_TAG: second.identity})

    assert (v1.version, v2.version) == (1, 2)  # numbered by the service's nextVersion
    assert again.already_registered and again.version == 2
    assert len(fake.sent("PUT", "/models/churn/versions/")) == 2
    assert len(fake.ml.models["churn"]) == 2
    history = registry.versions("churn")
    assert [(v.version, v.tags[SIGNAL_TAG], v.metrics) for v in history] == [
        (1, first.identity, {"auc": 0.7}),
        (2, second.identity, {"auc": 0.8}),
    ]  # oldest first


def test_custom_model_type_and_an_unknown_model(fake, ml_session):
    registry = _registry(ml_session, model_type="custom_model")
    assert registry.versions("never-registered") == []

    registry.register("plain", _training("train-c"), {SIGNAL_TAG: "s"})

    [put] = fake.sent("PUT", "/models/plain/versions/1")
    assert put.body["properties"]["modelType"] == "custom_model"
    assert fake.ml.models["plain"][0]["properties"]["flavors"] == {}
