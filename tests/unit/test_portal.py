"""The portal deep links a registered model's report carries: the formats the portals themselves emit."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from drift_retrain import portal
from drift_retrain.config import Settings
from drift_retrain.results import ModelVersion
from tests.contract.ml_fixtures import WS, target

FACTORY = "/subscriptions/00000000-0000-0000-0000-00000000c0de/resourceGroups/ml-rg/providers/Microsoft.DataFactory/factories/adf"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _model(uri: str = "azureml://registries/x/models/credit-default/versions/3") -> ModelVersion:
    return ModelVersion(name="credit-default", version=3, uri=uri, created_at=datetime.now(timezone.utc), tags={})


def test_data_factory_run_opens_the_run_in_the_factory_monitor() -> None:
    url = portal.data_factory_run(FACTORY, "6a1b2c3d-0000-4000-8000-000000000001")
    assert url == (
        "https://adf.azure.com/en/monitoring/pipelineruns/6a1b2c3d-0000-4000-8000-000000000001"
        f"?factory={FACTORY}"
    )


def test_ml_job_and_model_carry_the_workspace_and_tenant() -> None:
    job = urlsplit(portal.ml_job(WS, "train-0123abcd", TENANT))
    assert (job.netloc, job.path) == ("ml.azure.com", "/runs/train-0123abcd")
    assert parse_qs(job.query) == {"wsid": [WS], "tid": [TENANT]}
    model = urlsplit(portal.ml_model(WS, "credit-default", 3, TENANT))
    assert model.path == "/model/credit-default:3/details"
    assert parse_qs(model.query) == {"wsid": [WS], "tid": [TENANT]}


def test_without_a_configured_tenant_the_link_leaves_tid_out() -> None:
    assert "tid=" not in portal.ml_job(WS, "train-1")
    assert portal.ml_job(WS, "train-1").endswith(f"?wsid={WS}")


def test_names_are_escaped_but_arm_ids_stay_readable() -> None:
    url = portal.ml_job(WS, "job with space/and#hash")
    assert "/runs/job%20with%20space%2Fand%23hash?" in url
    assert f"wsid={WS}" in url  # slashes of the ARM id unescaped, as the studio emits them


def test_an_azure_retrain_links_the_copy_run_the_job_and_the_model() -> None:
    settings = Settings.model_validate({
        "targets": [target({"kind": "pipeline_job", "component": "c:1"}).model_dump(by_alias=True)],
        "azure": {"credential": {"kind": "client_secret", "tenant_id": TENANT, "client_id": "c", "client_secret_env": "S"}},
    })
    links = portal.retrain_links(settings, settings.targets[0], "adf-run-1", "train-abc", _model())
    assert [link.url for link in links] == [
        portal.data_factory_run(FACTORY, "adf-run-1"),
        portal.ml_job(WS, "train-abc", TENANT),
        portal.ml_model(WS, "credit-default", 3, TENANT),
    ]
    assert [link.label for link in links] == [
        "Data Factory run adf-run-1", "Azure ML job train-abc", "Azure ML model credit-default:3",
    ]


def test_a_local_retrain_links_the_registry_folder(settings: Settings, tmp_path: Path) -> None:
    model_file = tmp_path / "registry" / "credit-default" / "3" / "model.joblib"
    (link,) = portal.retrain_links(settings, settings.targets[0], "copy-1", "train-1", _model(str(model_file)))
    assert link.url == model_file.parent.as_uri()
    assert "local registry" in link.label
