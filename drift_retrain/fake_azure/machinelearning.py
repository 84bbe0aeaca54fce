"""Fake Azure Machine Learning: the ARM workspace, jobs, models, components and batch endpoints, plus the
regional ("discovery") services the v1 pipelines, run history and MLflow live on.

Everything answers in the shapes of the recorded service responses (``reference/azure/machinelearning``):
job bodies carry ``services.Studio``, model versions carry ``"flavors": {}`` (the SDK needs it), a missing
model container is a 404 ``ModelNotFound``. The workspace's ``discoveryUrl`` and ``mlFlowTrackingUri``
point back at this server, so the "regional host" of a v1 pipeline resolves to the fake too.

Tests script what the next job does (``script_next_job``), add ended model-monitor runs with their whole
run tree (``add_monitor_run``, ``monitoring.py``), and read what the SDKs sent from ``jobs``, ``models`` and
the server's request log.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from drift_retrain.fake_azure.datadrift_v1 import FakeDataDriftV1
from drift_retrain.fake_azure.monitoring import FakeMonitoring, FakeMonitorRun, history_body, mlflow_run
from drift_retrain.fake_azure.pipelines_v1 import FakePipelinesV1
from drift_retrain.fake_azure.scripts import FollowsScript, RunScript, ScriptedRun
from drift_retrain.fake_azure.step_runs import FakeStepRuns

if TYPE_CHECKING:
    from drift_retrain.fake_azure.server import FakeAzure

WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
JOB_TYPE = "Microsoft.MachineLearningServices/workspaces/jobs"
LOCATION = "westus"

#: Azure ML job statuses a job never leaves: NotResponding and Paused are not final (JobStatus, azure-ai-ml 1.35.2
#: azure/ai/ml/_restclient/arm_ml_service/models/_enums.py: "a run can go from NotResponding to any of the previous
#: states"; Paused: "the job is paused by users"), so a cancel still takes them.
TERMINAL = frozenset({"Completed", "Failed", "Canceled"})
ML_CANCEL = ("CancelRequested", "Canceled")
DEFAULT_SCRIPT = RunScript(steps=(("NotStarted", 0.05), ("Running", 0.15)), final="Completed")

#: MLflow's run status for an Azure ML status (MLflow REST API, RunStatus).
MLFLOW_STATUS = {
    "Completed": "FINISHED",
    "Failed": "FAILED",
    "Canceled": "KILLED",
    "NotStarted": "SCHEDULED",
    "Queued": "SCHEDULED",
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _error(status: int, code: str, message: str, inner: str | None = None) -> JSONResponse:
    details = [{"code": inner, "message": message, "details": [], "additionalInfo": []}] if inner else []
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status)


def _ws_path(p: dict[str, str]) -> str:
    return WS.format(sub=p["sub"], rg=p["rg"], ws=p["ws"])


@dataclass
class FakeJob(FollowsScript):
    """One job (v2 pipeline job, batch endpoint job) or v1 pipeline run on the fake."""

    name: str
    kind: str  # "pipeline_job" | "batch_endpoint" | "published_pipeline" | "monitor_run"
    workspace: str  # ARM path of the workspace
    experiment: str
    body: dict[str, Any]  # what the client sent to create it
    run: ScriptedRun
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    experiment_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=_now_iso)
    creates: int = 1  # create requests that reached this job (a second PUT is refused, but counted)

    def error_message(self) -> str | None:
        status = self.status()
        if status in ("Failed", "NotResponding", "Paused"):
            return self.run.script.message or f"job ended {status} (fake)"
        if status == "Canceled":
            return "The run was canceled by the user (fake)"
        return None


class FakeMachineLearning:
    """Scripting API: ``script_next_job``, ``add_monitor_run``, ``jobs``, ``models``, ``drift_runs``,
    ``components``, ``add_batch_endpoint``."""

    def __init__(self, fake: FakeAzure) -> None:
        self.fake = fake
        self.jobs: dict[str, FakeJob] = {}
        self.models: dict[str, list[dict[str, Any]]] = {}  # name -> version bodies, in creation order
        self.drift_runs: dict[str, dict[str, float]] = {}  # run id -> metrics (MLflow) of a drift/monitor run
        self.components: dict[tuple[str, str], dict[str, Any]] = {}  # (name, version) -> ARM body
        self.batch_endpoints: dict[str, dict[str, Any]] = {}
        #: Model monitoring's run tree: signal pipelines, evaluate steps, metric runs (``monitoring.py``).
        self.monitoring = FakeMonitoring(self)
        self._scripts: deque[tuple[RunScript, dict[str, float], dict[str, dict[str, float]]]] = deque()
        self.pipelines = FakePipelinesV1(self)  # v1 published pipelines (pipelines_v1.py)
        self.datadrift = FakeDataDriftV1()  # v1 drift results (datadrift_v1.py)
        self.steps = FakeStepRuns()  # jobs' step runs and their metrics (step_runs.py)
        #: What an unscripted job does and logs (the demo's ``--azure-fake`` runs rely on these).
        self.default_script = DEFAULT_SCRIPT
        self.default_metrics: dict[str, float] = {}
        self._lock = threading.Lock()
        self._v1_ids = itertools.count(1)
        #: Jobs per page of ARM Jobs - List; the rest is behind the page's ``nextLink``.
        self.jobs_page_size = 100
        #: Answer the workspace GET with ARM's 403, as for an identity without a role on the workspace.
        self.forbidden = False
        #: The workspace's regional host (discovery ``api``, MLflow tracking) when it should differ from the
        #: ARM URL, e.g. ``https://localhost:<port>``: the same server under another name, so a test sees
        #: which host a call went to. None: this server's own URL.
        self.regional_host: str | None = None
        #: What ARM's permissions API reports for the caller on a workspace (AzureML Data Scientist's actions).
        self.permissions: list[dict[str, list[str]]] = [
            {
                "actions": [
                    "Microsoft.MachineLearningServices/workspaces/*/read",
                    "Microsoft.MachineLearningServices/workspaces/*/action",
                    "Microsoft.MachineLearningServices/workspaces/*/delete",
                    "Microsoft.MachineLearningServices/workspaces/*/write",
                ],
                "notActions": [
                    "Microsoft.MachineLearningServices/workspaces/delete",
                    "Microsoft.MachineLearningServices/workspaces/write",
                    "Microsoft.MachineLearningServices/workspaces/computes/*/write",
                    "Microsoft.MachineLearningServices/workspaces/computes/*/delete",
                    "Microsoft.MachineLearningServices/workspaces/listKeys/action",
                ],
                "dataActions": [],
                "notDataActions": [],
            }
        ]

    # -- scripting ------------------------------------------------------------------------------

    def script_next_job(
        self,
        script: RunScript,
        metrics: dict[str, float] | None = None,
        steps: dict[str, dict[str, float]] | None = None,
    ) -> None:
        """The next job created (any kind) follows ``script``; its root run logs ``metrics``, and each of its
        ``steps`` (step name -> metrics; ``"a/b"`` inside sub-pipeline ``a``) is a child run logging its own."""
        self._scripts.append((script, dict(metrics or {}), dict(steps or {})))

    def add_monitor_run(self, workspace: str, monitor: str, signals: Any, **kwargs: Any) -> FakeMonitorRun:
        """A model-monitor run's whole tree (``FakeMonitoring.add_monitor_run``)."""
        return self.monitoring.add_monitor_run(workspace, monitor, signals, **kwargs)

    def add_batch_endpoint(self, name: str, deployments: tuple[str, ...] = ("train",)) -> None:
        self.batch_endpoints[name] = {
            "deployments": list(deployments),
            "default": deployments[0] if deployments else None,
        }

    def add_pipeline_component(
        self, name: str, version: str, workspace: str, inputs: dict[str, str], outputs: dict[str, str]
    ) -> None:
        """Register a pipeline component: ``inputs``/``outputs`` map port names to types (uri_folder, string)."""
        self.components[(name, version)] = _component_body(name, version, workspace, inputs, outputs)

    def _new_job(
        self, name: str, kind: str, workspace: str, experiment: str, body: dict[str, Any], tags: dict[str, str]
    ) -> FakeJob:
        script, metrics, steps = (
            self._scripts.popleft() if self._scripts else (self.default_script, dict(self.default_metrics), {})
        )
        run = ScriptedRun(name, script, self.fake.clock(), ML_CANCEL, TERMINAL, clock=self.fake.clock)
        job = FakeJob(name, kind, workspace, experiment, body, run, metrics, dict(tags or {}))
        self.jobs[name] = job
        self.steps.add(job, steps)
        return job

    # -- routes ---------------------------------------------------------------------------------

    async def run_children(self, request: Request) -> Response:
        run = request.path_params["run"]
        if run in self.steps.runs or run in self.steps.of_job:
            return await self.steps.list_children(request)
        return await self.monitoring.children(request)

    def routes(self) -> list[BaseRoute]:
        return [
            # Run history children (azure-ai-ml runhistory _runs_operations.py get_child): one route, two
            # kinds of parent: a training job's steps (step_runs.py) or a monitor run's tree (monitoring.py).
            Route("/history/v1.0" + WS + "/runs/{run}/children", self.run_children, methods=["GET"]),
            *self.monitoring.routes(),
            Route(WS, self.get_workspace, methods=["GET"]),
            Route(WS + "/providers/Microsoft.Authorization/permissions", self.get_permissions, methods=["GET"]),
            Route("/discovery", self.discovery, methods=["GET"]),
            Route(WS + "/jobs", self.list_jobs, methods=["GET"]),
            Route(WS + "/jobs/{name}", self.put_job, methods=["PUT"]),
            Route(WS + "/jobs/{name}", self.get_job, methods=["GET"]),
            Route(WS + "/jobs/{name}/cancel", self.cancel_job, methods=["POST"]),
            Route(
                "/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{loc}/mfeOperationResults/{op}",
                self.operation_result,
                methods=["GET"],
            ),
            Route(WS + "/models/{name}/versions", self.list_model_versions, methods=["GET"]),
            Route(WS + "/models/{name}", self.get_model_container, methods=["GET"]),
            Route(WS + "/models/{name}/versions/{version}", self.put_model_version, methods=["PUT"]),
            Route(WS + "/models/{name}/versions/{version}", self.get_model_version, methods=["GET"]),
            Route(WS + "/components/{name}/versions/{version}", self.get_component, methods=["GET"]),
            Route(WS + "/batchEndpoints/{endpoint}", self.get_batch_endpoint, methods=["GET"]),
            Route(WS + "/batchEndpoints/{endpoint}/deployments", self.list_batch_deployments, methods=["GET"]),
            Route("/batchscoring" + WS + "/{endpoint}/jobs", self.invoke_batch, methods=["POST"]),
            *self.pipelines.routes(),
            *self.datadrift.routes(),
            # Run history, the routes azure-ai-ml's own runhistory client uses
            # (azure/ai/ml/_restclient/runhistory/operations/_runs_operations.py: build_get_request, and
            # _run_operations.py: cancel_run_with_uri_by_experiment_id / _name).
            Route("/history/v1.0" + WS + "/runs/{run}", self.get_history_run, methods=["GET"]),
            Route(
                "/history/v1.0" + WS + "/experimentids/{exp}/runs/{run}/cancel",
                self.cancel_history_run,
                methods=["POST"],
            ),
            Route(
                "/history/v1.0" + WS + "/experiments/{exp}/runs/{run}/cancel", self.cancel_history_run, methods=["POST"]
            ),
            # MLflow REST (https://mlflow.org/docs/latest/rest-api.html#get-run) under the tracking URI.
            Route("/mlflow/v1.0" + WS + "/api/2.0/mlflow/runs/get", self.mlflow_get_run, methods=["GET"]),
        ]

    # -- workspace ------------------------------------------------------------------------------

    async def get_workspace(self, request: Request) -> Response:
        p = request.path_params
        if self.forbidden:
            from drift_retrain.fake_azure.server import CLIENT_ID

            return JSONResponse(
                {
                    "error": {
                        "code": "AuthorizationFailed",
                        "message": f"The client '{CLIENT_ID}' with object id "
                        f"'{CLIENT_ID}' does not have authorization to perform action "
                        f"'Microsoft.MachineLearningServices/workspaces/read' over scope '{_ws_path(p)}'.",
                    }
                },
                status_code=403,
            )
        regional = self.regional_host or self.fake.url
        host = regional.removeprefix("https://")
        return JSONResponse(
            {
                "id": _ws_path(p),
                "name": p["ws"],
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": LOCATION,
                "tags": {},
                "properties": {
                    "friendlyName": p["ws"],
                    "provisioningState": "Succeeded",
                    "workspaceId": str(uuid.uuid5(uuid.NAMESPACE_URL, _ws_path(p))),
                    "v1LegacyMode": False,
                    "publicNetworkAccess": "Enabled",
                    "discoveryUrl": f"{regional}/discovery",
                    "mlFlowTrackingUri": f"azureml://{host}/mlflow/v1.0{_ws_path(p)}",
                },
                "identity": {"type": "SystemAssigned"},
                "kind": "Default",
                "sku": {"name": "Basic", "tier": "Basic"},
            }
        )

    async def get_permissions(self, request: Request) -> Response:
        """ARM Permissions - List For Resource (api-version 2022-04-01): the caller's effective actions."""
        if request.query_params.get("api-version") != "2022-04-01":
            return _error(400, "InvalidApiVersionParameter", "Use api-version 2022-04-01 (fake).")
        return JSONResponse({"value": self.permissions, "nextLink": None})

    async def discovery(self, request: Request) -> Response:
        url = self.regional_host or self.fake.url
        return JSONResponse(
            {
                "api": url,
                "catalog": url,
                "experimentation": url,
                "history": url,
                "hyperdrive": url,
                "labeling": url,
                "modelmanagement": url,
                "pipelines": url,
                "studio": "https://ml.azure.com",
            }
        )

    # -- jobs -----------------------------------------------------------------------------------

    async def list_jobs(self, request: Request) -> Response:
        """ARM Jobs - List: ``{"value": [JobBase...], "nextLink"}``, newest first. Honours ``tag`` (jobs that
        carry that tag key), ``jobType`` and ``$skip`` (the continuation token the previous page's ``nextLink``
        carries); the query parameters azure-ai-ml's generated client sends (azure/ai/ml/_restclient/
        arm_ml_service/operations/_operations.py ``build_jobs_list_request``)."""
        workspace, query = _ws_path(request.path_params).lower(), request.query_params
        tag, skip, job_type = query.get("tag"), int(query.get("$skip") or 0), query.get("jobType")
        listed = sorted(
            (
                j
                for j in list(self.jobs.values())
                if j.kind != "published_pipeline"
                and j.workspace.lower() == workspace
                and (tag is None or tag in j.tags)
                and (job_type is None or job_type == "Pipeline")  # every job body here is jobType Pipeline
            ),
            key=lambda j: j.created,
            reverse=True,
        )
        page = listed[skip : skip + self.jobs_page_size]
        next_link = None
        if skip + self.jobs_page_size < len(listed):
            params = {**query, "$skip": str(skip + self.jobs_page_size)}
            next_link = str(request.url.replace(query=urlencode(params)))
        return JSONResponse({"value": [self._job_body(j) for j in page], "nextLink": next_link})

    async def put_job(self, request: Request) -> Response:
        p = request.path_params
        body = await request.json()
        name = p["name"]
        with self._lock:
            existing = self.jobs.get(name)
            if existing is not None:
                existing.creates += 1
                # What the service answers when a PUT would change an existing job (see
                # azure-sdk-for-python#47389 and MicrosoftDocs/azure-docs#122250).
                return _error(
                    400,
                    "UserError",
                    "A job with this name already exists. If you are trying to create a new job, use a "
                    "different name. If you are trying to update an existing job, the existing job's "
                    "Settings, Inputs, Outputs, Jobs, InputBindings, OutputBindings cannot be changed. "
                    "Only description, tags, displayName, properties, and isArchived can be updated.",
                    inner="Immutable",
                )
            props = body.get("properties", {})
            job = self._new_job(
                name,
                "pipeline_job",
                _ws_path(p),
                props.get("experimentName") or "Default",
                body,
                props.get("tags") or {},
            )
        return JSONResponse(self._job_body(job), status_code=201)

    async def get_job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["name"])
        if job is None or job.kind == "published_pipeline":
            return _error(404, "UserError", f"Job {request.path_params['name']} not found (fake)", inner="NotFound")
        job.run.status_calls += 1
        return JSONResponse(self._job_body(job))

    async def cancel_job(self, request: Request) -> Response:
        p = request.path_params
        job = self.jobs.get(p["name"])
        if job is None:
            return _error(404, "UserError", f"Job {p['name']} not found (fake)", inner="NotFound")
        job.run.cancel()
        op = (
            f"{self.fake.url}/subscriptions/{p['sub']}/providers/Microsoft.MachineLearningServices/locations/"
            f"{LOCATION}/mfeOperationResults/jc:{uuid.uuid4()}?api-version=2023-02-01-preview"
        )
        return Response(status_code=202, headers={"Location": op, "Retry-After": "0"})

    async def operation_result(self, request: Request) -> Response:
        return Response(status_code=200)

    def _job_body(self, job: FakeJob) -> dict[str, Any]:
        """A job as ARM returns it: the submitted properties plus status, services and outputs."""
        sent = dict(job.body.get("properties") or {})
        ws = job.workspace
        outputs = {
            name: {
                "uri": None,
                "mode": "ReadWriteMount",
                "jobOutputType": "uri_folder",
                "description": None,
                "assetName": None,
                "assetVersion": None,
                "pathOnCompute": None,
            }
            for name in (sent.get("outputs") or {})
        }
        properties = {
            **sent,
            "description": sent.get("description"),
            "tags": job.tags,
            "properties": {
                **(sent.get("properties") or {}),
                "azureml.DevPlatv2": "true",
                "runSource": "MFE",
                "azureml.runsource": "azureml.PipelineRun",
            },
            "displayName": sent.get("displayName") or job.name,
            "status": job.status(),
            "experimentName": job.experiment,
            "services": {
                "Tracking": {
                    "jobServiceType": "Tracking",
                    "port": None,
                    "status": None,
                    "errorMessage": None,
                    "properties": None,
                    "nodes": None,
                    "endpoint": f"azureml://{self.fake.url.removeprefix('https://')}/mlflow/v1.0{ws}?",
                },
                "Studio": {
                    "jobServiceType": "Studio",
                    "port": None,
                    "status": None,
                    "errorMessage": None,
                    "properties": None,
                    "nodes": None,
                    "endpoint": f"https://ml.azure.com/runs/{job.name}?wsid={ws.replace('resourceGroups', 'resourcegroups')}",
                },
            },
            "isArchived": False,
            "jobType": "Pipeline",
            "jobs": sent.get("jobs") or {},
            "inputs": sent.get("inputs"),
            "outputs": outputs,
            "settings": sent.get("settings") or {},
            "sourceJobId": None,
        }
        return {
            "id": f"{ws}/jobs/{job.name}",
            "name": job.name,
            "type": JOB_TYPE,
            "properties": properties,
            "systemData": {"createdAt": job.created, "createdBy": "fake", "createdByType": "User"},
        }

    # -- models ---------------------------------------------------------------------------------

    def _model_not_found(self, name: str) -> Response:
        return _error(404, "UserError", "The specified resource was not found.", inner="ModelNotFound")

    async def list_model_versions(self, request: Request) -> Response:
        name = request.path_params["name"]
        versions = self.models.get(name)
        top = request.query_params.get("$top")
        if versions is None:
            if top is not None:  # the recorded service answers the "latest version" query with 404
                return self._model_not_found(name)
            return JSONResponse({"value": []})
        newest_first = list(reversed(versions))
        if top is not None:
            newest_first = newest_first[: int(top)]
        return JSONResponse({"value": newest_first})

    async def get_model_container(self, request: Request) -> Response:
        p = request.path_params
        versions = self.models.get(p["name"])
        if not versions:
            return self._model_not_found(p["name"])
        latest = max(int(v["name"]) for v in versions)
        return JSONResponse(
            {
                "id": f"{_ws_path(p)}/models/{p['name']}",
                "name": p["name"],
                "type": "Microsoft.MachineLearningServices/workspaces/models",
                "properties": {
                    "description": None,
                    "tags": {},
                    "properties": {},
                    "isArchived": False,
                    "latestVersion": str(latest),
                    "nextVersion": str(latest + 1),
                    "provisioningState": "Succeeded",
                },
                "systemData": {
                    "createdAt": versions[0]["systemData"]["createdAt"],
                    "createdBy": "fake",
                    "createdByType": "User",
                },
            }
        )

    async def put_model_version(self, request: Request) -> Response:
        p = request.path_params
        sent = (await request.json()).get("properties", {})
        with self._lock:
            versions = self.models.setdefault(p["name"], [])
            if any(v["name"] == p["version"] for v in versions):
                return _error(
                    409, "UserError", f"Model {p['name']}:{p['version']} already exists (fake)", inner="Conflict"
                )
            now = _now_iso()
            body = {
                "id": f"{_ws_path(p)}/models/{p['name']}/versions/{p['version']}",
                "name": p["version"],
                "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
                "properties": {
                    "description": sent.get("description"),
                    "tags": sent.get("tags") or {},
                    "properties": sent.get("properties") or {},
                    "isArchived": False,
                    "isAnonymous": False,
                    # azure-ai-ml 1.35.2 entities/_assets/_artifacts/model.py: _from_rest_object iterates flavors
                    "flavors": sent.get("flavors") or {},
                    "modelType": sent.get("modelType"),
                    "modelUri": sent.get("modelUri"),
                    "jobName": sent.get("jobName"),
                    "provisioningState": "Succeeded",
                    "stage": "Development",
                },
                "systemData": {
                    "createdAt": now,
                    "createdBy": "fake",
                    "createdByType": "User",
                    "lastModifiedAt": now,
                    "lastModifiedBy": "fake",
                    "lastModifiedByType": "User",
                },
            }
            versions.append(body)
        return JSONResponse(body, status_code=201)

    async def get_model_version(self, request: Request) -> Response:
        p = request.path_params
        for body in self.models.get(p["name"], []):
            if body["name"] == p["version"]:
                return JSONResponse(body)
        return self._model_not_found(p["name"])

    # -- components -----------------------------------------------------------------------------

    async def get_component(self, request: Request) -> Response:
        p = request.path_params
        body = self.components.get((p["name"], p["version"]))
        if body is None:
            return _error(
                404, "UserError", f"Component {p['name']}:{p['version']} not found (fake)", inner="ComponentNotFound"
            )
        return JSONResponse(body)

    # -- batch endpoints ------------------------------------------------------------------------

    async def get_batch_endpoint(self, request: Request) -> Response:
        p = request.path_params
        endpoint = self.batch_endpoints.get(p["endpoint"])
        if endpoint is None:
            return _error(404, "UserError", f"Batch endpoint {p['endpoint']} not found (fake)", inner="NotFound")
        ws = _ws_path(p)
        return JSONResponse(
            {
                "id": f"{ws}/batchEndpoints/{p['endpoint']}",
                "name": p["endpoint"],
                "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints",
                "location": LOCATION,
                "tags": {},
                "identity": {"type": "SystemAssigned"},
                "kind": "Default",
                "properties": {
                    "authMode": "AADToken",
                    "description": None,
                    "properties": {},
                    "defaults": {"deploymentName": endpoint["default"]},
                    "scoringUri": f"{self.fake.url}/batchscoring{ws}/{p['endpoint']}/jobs",
                    "swaggerUri": None,
                    "provisioningState": "Succeeded",
                },
                "systemData": {"createdAt": _now_iso(), "createdBy": "fake", "createdByType": "User"},
            }
        )

    async def list_batch_deployments(self, request: Request) -> Response:
        p = request.path_params
        endpoint = self.batch_endpoints.get(p["endpoint"])
        if endpoint is None:
            return _error(404, "UserError", f"Batch endpoint {p['endpoint']} not found (fake)", inner="NotFound")
        ws = _ws_path(p)
        return JSONResponse(
            {
                "value": [
                    {
                        "id": f"{ws}/batchEndpoints/{p['endpoint']}/deployments/{d}",
                        "name": d,
                        "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments",
                        "location": LOCATION,
                        "tags": {},
                        "properties": {"provisioningState": "Succeeded", "properties": {}},
                    }
                    for d in endpoint["deployments"]
                ]
            }
        )

    async def invoke_batch(self, request: Request) -> Response:
        p = request.path_params
        endpoint = self.batch_endpoints.get(p["endpoint"])
        if endpoint is None:
            return _error(404, "UserError", f"Batch endpoint {p['endpoint']} not found (fake)", inner="NotFound")
        body = await request.json()
        props = body.get("properties") or {}
        deployment = request.headers.get("azureml-model-deployment") or endpoint["default"]
        if deployment not in endpoint["deployments"]:
            return _error(400, "UserError", f"Deployment {deployment} not found (fake)", inner="NotFound")
        with self._lock:
            name = props.get("name") or str(uuid.uuid4())
            if name in self.jobs:
                self.jobs[name].creates += 1
                return _error(409, "UserError", f"A job with name {name} already exists (fake)", inner="Conflict")
            experiment = (props.get("properties") or {}).get("experimentName") or p["endpoint"]
            job = self._new_job(name, "batch_endpoint", _ws_path(p), experiment, body, {})
            job.tags = {"azureml.batchEndpoint": p["endpoint"], "azureml.batchDeployment": deployment}
        return JSONResponse(
            {
                "id": f"{_ws_path(p)}/jobs/{name}",
                "name": name,
                "type": JOB_TYPE,
                "properties": {"status": job.status(), "experimentName": experiment},
            }
        )

    # -- run history ------------------------------------------------------------------------------

    async def get_history_run(self, request: Request) -> Response:
        p = request.path_params
        job = self.jobs.get(p["run"])
        if job is None and p["run"] in self.monitoring.runs:  # a monitor run's child: signal pipeline or step
            return JSONResponse(history_body(self.monitoring.runs[p["run"]]))
        if job is None:
            return _error(404, "UserError", f"Run {p['run']} was not found (fake)", inner="RunNotFound")
        job.run.status_calls += 1
        return JSONResponse(self._history_body(job))

    async def cancel_history_run(self, request: Request) -> Response:
        p = request.path_params
        job = self.jobs.get(p["run"])
        if job is None or p["exp"] not in (job.experiment, job.experiment_id):
            return _error(
                404, "UserError", f"Run {p['run']} was not found in experiment {p['exp']} (fake)", inner="RunNotFound"
            )
        job.run.cancel()
        return JSONResponse(self._history_body(job))

    def _history_body(self, job: FakeJob) -> dict[str, Any]:
        message = job.error_message()
        return {
            "runId": job.name,
            "rootRunId": job.name,
            "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, job.name)),
            "experimentId": job.experiment_id,
            "status": job.status(),
            "error": {"error": {"code": "UserError", "message": message}} if message else None,
            "createdUtc": job.created,
            "startTimeUtc": job.created,
            "endTimeUtc": None,
            "displayName": job.name,
            "runType": "azureml.PipelineRun",
            "properties": {"azureml.runsource": "azureml.PipelineRun"},
            "tags": job.tags,
        }

    async def mlflow_get_run(self, request: Request) -> Response:
        run_id = request.query_params.get("run_id") or request.query_params.get("run_uuid") or ""
        job = self.jobs.get(run_id)
        if run_id in self.monitoring.runs:
            return JSONResponse({"run": mlflow_run(self.monitoring.runs[run_id])})
        step = self.steps.runs.get(run_id)
        if run_id in self.drift_runs:
            metrics, status, tags = self.drift_runs[run_id], "FINISHED", {}
        elif step is not None:
            metrics, tags = step.metrics, dict[str, str]()
            status = MLFLOW_STATUS.get(step.job.status(), "RUNNING")
        elif job is not None:
            metrics, tags = job.metrics, job.tags
            status = MLFLOW_STATUS.get(job.status(), "RUNNING")
        else:
            return JSONResponse(
                {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run '{run_id}' not found."}, status_code=404
            )
        stamp = int(time.time() * 1000)
        return JSONResponse(
            {
                "run": {
                    "info": {
                        "run_id": run_id,
                        "run_uuid": run_id,
                        "experiment_id": "fake",
                        "status": status,
                        "start_time": stamp,
                        "lifecycle_stage": "active",
                    },
                    "data": {
                        "metrics": [{"key": k, "value": v, "timestamp": stamp, "step": 0} for k, v in metrics.items()],
                        "params": [],
                        "tags": [{"key": k, "value": v} for k, v in tags.items()],
                    },
                }
            }
        )


def _component_body(
    name: str, version: str, workspace: str, inputs: dict[str, str], outputs: dict[str, str]
) -> dict[str, Any]:
    """A registered pipeline component as ARM returns it (componentSpec is the component's YAML as JSON)."""
    return {
        "id": f"{workspace}/components/{name}/versions/{version}",
        "name": version,
        "type": "Microsoft.MachineLearningServices/workspaces/components/versions",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isArchived": False,
            "isAnonymous": False,
            "componentSpec": {
                "$schema": "https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json",
                "name": name,
                "version": version,
                "display_name": name,
                "type": "pipeline",
                "inputs": {k: {"type": t} for k, t in inputs.items()},
                "outputs": {k: {"type": t} for k, t in outputs.items()},
                "jobs": {},
                "is_deterministic": True,
            },
            "provisioningState": "Succeeded",
        },
        "systemData": {"createdAt": _now_iso(), "createdBy": "fake", "createdByType": "User"},
    }
