"""The workspace's regional services, over plain REST: run history, MLflow metrics, v1 pipelines.

azure-ai-ml has no public API for run metrics or v1 published pipelines, so these calls go straight to
the documented endpoints with an ARM-scoped token from ``AzureSession.bearer()``. Where they live is
read from the workspace itself (ARM GET: ``discoveryUrl`` -> the regional ``api`` host,
``mlFlowTrackingUri``), once per workspace, so nothing region-specific is configured.

Routes used (the same ones azure-ai-ml's generated runhistory client targets, and MLflow's REST API):
- run details: ``GET {api}/history/v1.0{workspace}/runs/{runId}``
- cancel:      ``POST {api}/history/v1.0{workspace}/experimentids/{experimentId}/runs/{runId}/cancel``
- metrics:     ``GET {mlflow}/api/2.0/mlflow/runs/get?run_id={runId}`` (latest value of every metric)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx

from drift_retrain.backends.azure.session import AzureSession

#: What azure-ai-ml 1.35.2 sends for a workspace GET (reference/azure/machinelearning/sdk-requests_*);
#: also what `drift-retrain check` reads the workspace with.
WORKSPACE_API_VERSION = "2024-10-01-preview"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class RestError(RuntimeError):
    """A regional-service call answered with an error; carries the HTTP status and the service's message."""

    def __init__(self, status_code: int, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code, self.message, self.response = status_code, message, response


@dataclass(frozen=True)
class Endpoints:
    api: str  # regional host, e.g. https://westeurope.api.azureml.ms
    mlflow: str  # https form of the workspace's mlFlowTrackingUri


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
                api = self._regional_host
                if api is None:
                    discovery = self.request("GET", props["discoveryUrl"])
                    api = str(discovery["api"]).rstrip("/")
                tracking = str(
                    props.get("mlFlowTrackingUri")
                    or f"azureml://{api.removeprefix('https://')}/mlflow/v1.0{self.workspace_id}"
                )
                self._endpoints = Endpoints(
                    api=api, mlflow="https://" + tracking.removeprefix("azureml://").rstrip("/")
                )
            return self._endpoints

    # -- run history ----------------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        """Run-history details of a run (status, error, experimentId, tags)."""
        return self.request("GET", f"{self.endpoints().api}/history/v1.0{self.workspace_id}/runs/{run_id}")

    def cancel_run(self, run_id: str) -> None:
        run = self.run(run_id)
        self.request(
            "POST",
            f"{self.endpoints().api}/history/v1.0{self.workspace_id}/experimentids/{run['experimentId']}/runs/{run_id}/cancel",
        )

    def metrics(self, run_id: str) -> tuple[dict[str, float], dict[str, Any]]:
        """The run's metrics (latest value of each) and its MLflow run info, via MLflow's ``runs/get``."""
        body = self.request("GET", f"{self.endpoints().mlflow}/api/2.0/mlflow/runs/get", params={"run_id": run_id})
        run = body.get("run") or {}
        latest: dict[str, tuple[int, int, float]] = {}
        for metric in (run.get("data") or {}).get("metrics") or []:
            key = str(metric["key"])
            stamp = (int(metric.get("timestamp") or 0), int(metric.get("step") or 0), float(metric["value"]))
            if key not in latest or stamp[:2] >= latest[key][:2]:
                latest[key] = stamp
        return {k: v[2] for k, v in latest.items()}, run.get("info") or {}


def run_error_message(run: dict[str, Any]) -> str:
    """The service's own error message from a run-history body."""
    error = run.get("error") or {}
    inner = error.get("error") if isinstance(error.get("error"), dict) else error
    return str((inner or {}).get("message") or "").strip() or "the service gave no error message"


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
