"""Deep links into the Azure portals for what a retrain started, so the Prefect run page leads there.

The formats are the ones the portals themselves use (and the Azure ML service returns as a job's
``services.Studio.endpoint``):

- Data Factory pipeline run: ``https://adf.azure.com/en/monitoring/pipelineruns/<run id>?factory=<factory ARM id>``
- Azure ML job: ``https://ml.azure.com/runs/<job name>?wsid=<workspace ARM id>&tid=<tenant id>``
- Azure ML model: ``https://ml.azure.com/model/<name>:<version>/details?wsid=<workspace ARM id>&tid=<tenant id>``

``tid`` picks the directory the studio signs in to; it is left out when the tenant is not configured
(the studio then uses the user's home tenant).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict

from drift_retrain.config import Settings, TargetConfig
from drift_retrain.results import ModelVersion

DATA_FACTORY_STUDIO = "https://adf.azure.com"
ML_STUDIO = "https://ml.azure.com"


class Link(BaseModel):
    """One labelled link of a run's report."""

    model_config = ConfigDict(frozen=True)

    label: str
    url: str


def _query(**params: str | None) -> str:
    """ARM ids keep their slashes readable (the portals accept them unescaped, as they emit them)."""
    return urlencode({k: v for k, v in params.items() if v}, safe="/")


def data_factory_run(factory_id: str, run_id: str) -> str:
    return f"{DATA_FACTORY_STUDIO}/en/monitoring/pipelineruns/{quote(run_id, safe='')}?{_query(factory=factory_id)}"


def ml_job(workspace_id: str, job_name: str, tenant_id: str | None = None) -> str:
    return f"{ML_STUDIO}/runs/{quote(job_name, safe='')}?{_query(wsid=workspace_id, tid=tenant_id)}"


def ml_model(workspace_id: str, name: str, version: int, tenant_id: str | None = None) -> str:
    return (
        f"{ML_STUDIO}/model/{quote(f'{name}:{version}', safe=':')}/details?{_query(wsid=workspace_id, tid=tenant_id)}"
    )


def retrain_links(
    settings: Settings, target: TargetConfig, copy_run_id: str, job_id: str, model: ModelVersion
) -> list[Link]:
    """Where to look further: the Azure portals for an azure target, the registry folder for a local one."""
    if target.backend == "local":
        folder = Path(model.uri).resolve().parent
        return [Link(label=f"{model.name} v{model.version} in the local registry", url=folder.as_uri())]
    tenant = settings.azure.credential.tenant_id
    return [
        Link(label=f"Data Factory run {copy_run_id}", url=data_factory_run(target.copy_step.factory, copy_run_id)),
        Link(label=f"Azure ML job {job_id}", url=ml_job(target.workspace, job_id, tenant)),
        Link(
            label=f"Azure ML model {model.name}:{model.version}",
            url=ml_model(target.workspace, model.name, model.version, tenant),
        ),
    ]
