"""The workspace's regional services, over plain REST: run history, MLflow metrics, v1 pipelines.

azure-ai-ml has no public API for run metrics or v1 published pipelines, so these calls go straight to
the documented endpoints with an ARM-scoped token from ``AzureSession.bearer()``. Where they live is
read from the workspace itself (ARM GET: ``discoveryUrl`` -> the regional ``api`` and ``history`` hosts,
``mlFlowTrackingUri``), once per workspace, so nothing region-specific is configured.

Routes used (azure-ai-ml's generated runhistory client, azureml-pipeline-core 1.62.0's aeva client, MLflow's REST API):
- run details:  ``GET {history}/history/v1.0{workspace}/runs/{runId}``
- run children: ``GET {history}/history/v1.0{workspace}/runs/{runId}/children`` (pages by ``nextLink``)
- metrics:      ``GET {mlflow}/api/2.0/mlflow/runs/get?run_id={runId}`` (latest value of every metric)
- v1 pipelines: ``POST {api}/pipelines/v1.0{workspace}/PipelineRuns/PipelineSubmit/{id}`` (or
  ``.../PipelineEndpointSubmit/Id/{id}``), ``GET .../PipelineRuns/{runId}``, ``DELETE .../PipelineRuns/{runId}/Execution``

Every id put into a path is checked first (``safe_id``): ids come from Azure's answers and the ledger.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from drift_retrain.backends.azure.session import AzureSession

#: What azure-ai-ml 1.35.2 sends for a workspace GET (reference/azure/machinelearning/sdk-requests_*);
#: also what `drift-retrain check` reads the workspace with.
WORKSPACE_API_VERSION = "2024-10-01-preview"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
#: What a run, pipeline or drift-monitor id may look like before it goes into a URL: GUIDs, job names
#: (``train-<digest>-2``), v1 drift run ids (``<DataDriftId>_<epoch-ms>``).
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}")
#: Bounds on what a children listing may cost: pages followed, runs returned.
MAX_CHILD_PAGES = 20
MAX_CHILDREN = 500
METRIC_KEY_MAX = 250  # MLflow's own limit on a metric key (mlflow/utils/validation.py MAX_ENTITY_KEY_LENGTH)


class RestError(RuntimeError):
    """A regional-service call answered with an error; carries the HTTP status and the service's message."""

    def __init__(self, status_code: int, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code, self.message, self.response = status_code, message, response


@dataclass(frozen=True)
class Endpoints:
    api: str  # regional host, e.g. https://westeurope.api.azureml.ms (v1 pipelines)
    mlflow: str  # https form of the workspace's mlFlowTrackingUri
    history: str = ""  # run history and datadrift host (discovery "history"); the api host when unnamed

    @property
    def run_history(self) -> str:
        return self.history or self.api


def safe_id(value: object, what: str) -> str:
    """``value``, checked to be one plain path segment (no ``/``, ``?``, ``%``, no leading dot), or ValueError
    naming ``what``: ids from answers and records never steer a URL."""
    if not isinstance(value, str) or not SAFE_ID.fullmatch(value):
        raise ValueError(f"{what} {str(value)[:80]!r} is not a valid id")
    return value


class WorkspaceRest:
    """Regional REST calls for one workspace ARM id, authenticated as the session's identity."""

    def __init__(self, session: AzureSession, workspace_id: str, regional_host: str | None = None) -> None:
        self.session, self.workspace_id = session, workspace_id.rstrip("/")
        self._regional_host = regional_host.rstrip("/") if regional_host else None
        self._endpoints: Endpoints | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(verify=session.verify(), timeout=TIMEOUT)

    # -- plumbing -------------------------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.session.bearer()}", **kwargs.pop("headers", {})}
        response = self._http.request(method, url, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise RestError(response.status_code, _message(response), response)
        return response.json() if response.content else None

    def endpoints(self) -> Endpoints:
        with self._lock:
            if self._endpoints is None:
                arm = self.session.config.resource_manager.rstrip("/")
                ws = self.request("GET", f"{arm}{self.workspace_id}", params={"api-version": WORKSPACE_API_VERSION})
                props = ws.get("properties") or {}
                api = history = self._regional_host
                if api is None:
                    discovery = self.request("GET", props["discoveryUrl"])
                    api = str(discovery["api"]).rstrip("/")
                    # azureml-core's ServiceContext sends run history (and the datadrift client) to the
                    # discovery key "history", v1 pipelines to "api" (azureml/_restclient/service_context.py
                    # _ServiceKeys.initialize); a discovery answer without "history" means the api host.
                    history = str(discovery.get("history") or api).rstrip("/")
                tracking = str(
                    props.get("mlFlowTrackingUri")
                    or f"azureml://{api.removeprefix('https://')}/mlflow/v1.0{self.workspace_id}"
                )
                self._endpoints = Endpoints(
                    api=api, mlflow="https://" + tracking.removeprefix("azureml://").rstrip("/"), history=history or api
                )
            return self._endpoints

    # -- run history ----------------------------------------------------------------------------

    def _history(self) -> str:
        return f"{self.endpoints().run_history}/history/v1.0{self.workspace_id}"

    def run(self, run_id: str) -> dict[str, Any]:
        """Run-history details of a run (status, error, experimentId, tags)."""
        return self.request("GET", f"{self._history()}/runs/{safe_id(run_id, 'run id')}")

    def children(self, run_id: str) -> list[dict[str, Any]]:
        """The run's direct children (pipeline steps), every page, at most ``MAX_CHILDREN``.

        azure-ai-ml's ``jobs.list(parent_job_name=...)`` lists them so (runhistory _runs_operations.py
        ``get_child``: ``GET .../runs/{runId}/children``, a PaginatedRunList ``{value, continuationToken,
        nextLink}`` followed by ``nextLink``), as recorded in reference/azure/machinelearning/
        recording_pipeline_job_create_get_children_excerpt.json. A ``nextLink`` to another host is not
        followed: it would carry this identity's token there."""
        base = self._history()
        url: str | None = f"{base}/runs/{safe_id(run_id, 'run id')}/children"
        runs: list[dict[str, Any]] = []
        for _ in range(MAX_CHILD_PAGES):
            if url is None or len(runs) >= MAX_CHILDREN:
                break
            page = self.request("GET", url)
            if not isinstance(page, dict):
                raise ValueError(f"run history answered the children of run {run_id} with {type(page).__name__}")
            runs += [r for r in page.get("value") or [] if isinstance(r, dict)]
            link = page.get("nextLink")
            url = link if isinstance(link, str) and link.startswith(self.endpoints().run_history + "/") else None
        return runs[:MAX_CHILDREN]

    # -- MLflow ---------------------------------------------------------------------------------

    def metrics(self, run_id: str) -> tuple[dict[str, float], dict[str, Any]]:
        """The run's metrics (latest value of each) and its MLflow run info, via MLflow's ``runs/get``.
        Entries that are not a named finite number are left out, not fatal."""
        # a query value (encoded by httpx), not a path segment: any run name the service gave is fine here
        body = self.request("GET", f"{self.endpoints().mlflow}/api/2.0/mlflow/runs/get", params={"run_id": run_id})
        run = body.get("run") if isinstance(body, dict) else None
        run = run if isinstance(run, dict) else {}
        data = run.get("data")
        data = data if isinstance(data, dict) else {}
        latest: dict[str, tuple[int, int, float]] = {}
        for metric in data.get("metrics") or []:
            parsed = _metric(metric)
            if parsed is None:
                continue
            key, stamp = parsed
            if key not in latest or stamp[:2] >= latest[key][:2]:
                latest[key] = stamp
        info = run.get("info")
        return {k: v[2] for k, v in latest.items()}, info if isinstance(info, dict) else {}

    # -- v1 pipelines ---------------------------------------------------------------------------

    def _pipelines(self) -> str:
        # azureml-pipeline-core 1.62.0 _restclients/aeva/aml_pipelines_api10.py: every route under /pipelines/v1.0{workspace}
        return f"{self.endpoints().api}/pipelines/v1.0{self.workspace_id}"

    def submit_pipeline(self, pipeline_id: str | None, endpoint_id: str | None, body: dict[str, Any]) -> Any:
        """POST a PipelineSubmissionInfo: to a published pipeline (aml_pipelines_api10.py
        ``..._pipeline_runs_pipeline_submit_by_pipeline_id_post``: ``PipelineRuns/PipelineSubmit/{pipelineId}``) or a
        pipeline endpoint (``..._pipeline_endpoint_submit_by_pipeline_run_id_post``: ``PipelineRuns/PipelineEndpointSubmit/Id/{id}``).
        Both answer 200 with a PipelineRunEntity."""
        if pipeline_id:
            url = f"{self._pipelines()}/PipelineRuns/PipelineSubmit/{safe_id(pipeline_id, 'pipeline id')}"
        else:
            url = f"{self._pipelines()}/PipelineRuns/PipelineEndpointSubmit/Id/{safe_id(endpoint_id, 'pipeline endpoint id')}"
        return self.request("POST", url, json=body)

    def pipeline_run(self, run_id: str) -> dict[str, Any]:
        """The PipelineRunEntity (``Status.StatusCode``, ``Status.StatusDetail``, ...) of a v1 pipeline run:
        what ``PipelineRun.get_status`` reads (aml_pipelines_api10.py ``..._pipeline_runs_by_pipeline_run_id_get``)."""
        body = self.request("GET", f"{self._pipelines()}/PipelineRuns/{safe_id(run_id, 'pipeline run id')}")
        if not isinstance(body, dict):
            raise ValueError(f"the pipelines service answered run {run_id} with {type(body).__name__}")
        return body

    def cancel_pipeline_run(self, run_id: str) -> None:
        """``PipelineRun.cancel``: ``DELETE .../PipelineRuns/{runId}/Execution``, 200 (aml_pipelines_api10.py
        ``..._pipeline_runs_by_pipeline_run_id_execution_delete``, called by service_caller.py ``cancel_pipeline_run_async``)."""
        self.request("DELETE", f"{self._pipelines()}/PipelineRuns/{safe_id(run_id, 'pipeline run id')}/Execution")


def _metric(entry: object) -> tuple[str, tuple[int, int, float]] | None:
    """(key, (timestamp, step, value)) of one MLflow metric entry, or None when it is not usable."""
    if not isinstance(entry, dict):
        return None
    key, value = entry.get("key"), entry.get("value")
    if not isinstance(key, str) or not 0 < len(key) <= METRIC_KEY_MAX:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    try:
        stamp, step = int(entry.get("timestamp") or 0), int(entry.get("step") or 0)
    except (TypeError, ValueError):
        stamp, step = 0, 0
    return key, (stamp, step, float(value))


NO_ERROR_MESSAGE = "the service gave no error message"
ERROR_MESSAGE_MAX = 2000


def run_error_message(run: object) -> str:
    """The service's own error message from a run-history body (``error.error.message``, as in the recorded
    children answer), at most ``ERROR_MESSAGE_MAX`` characters."""
    error = run.get("error") if isinstance(run, dict) else None
    inner = error.get("error") if isinstance(error, dict) and isinstance(error.get("error"), dict) else error
    message = inner.get("message") if isinstance(inner, dict) else None
    text = message.strip() if isinstance(message, str) else ""
    return text[:ERROR_MESSAGE_MAX] or NO_ERROR_MESSAGE


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or body)
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:500]
