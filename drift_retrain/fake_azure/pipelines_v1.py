"""Fake Azure ML v1 pipelines service (the "aeva" REST API on the workspace's regional host): submitting a
published pipeline or a pipeline endpoint, a pipeline run's status, and its cancel, as azureml-pipeline-core
1.62.0 speaks them (``_restclients/aeva/aml_pipelines_api10.py`` and its models).

A submitted run is a ``FakeJob`` of kind ``published_pipeline`` in ``FakeMachineLearning.jobs``, following the
next script like any job; run history and MLflow (in machinelearning.py) know it too. Its status is answered
in the pipelines service's own vocabulary (``StatusCode``), translated from the script's job statuses.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from drift_retrain.fake_azure.machinelearning import FakeJob, FakeMachineLearning

WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
PIPELINES = "/pipelines/v1.0" + WS

#: A scripted job status as a PipelineRunStatus.status_code (pipeline_run_status.py: NotStarted, Running, Failed,
#: Finished, Canceled). The enum has no cancelling state: a run being cancelled reads Running here (the fake's
#: choice); statuses outside the enum (Queued, Unknown, NotResponding, ...) are passed on as they are.
STATUS_CODE = {"Completed": "Finished", "CancelRequested": "Running"}


def _error(status: int, code: str, message: str) -> JSONResponse:
    # ErrorResponse (aeva models/error_response.py): {"error": {"code", "message", ...}}
    return JSONResponse({"error": {"code": code, "message": message, "details": []}}, status_code=status)


def _ws_path(p: dict[str, str]) -> str:
    return WS.format(sub=p["sub"], rg=p["rg"], ws=p["ws"])


class FakePipelinesV1:
    """The routes; runs live in the ML fake's ``jobs``."""

    def __init__(self, ml: FakeMachineLearning) -> None:
        self.ml = ml
        self.pipeline_of: dict[str, str] = {}  # run id -> the published pipeline or endpoint id it was submitted to

    def routes(self) -> list[BaseRoute]:
        return [
            # aml_pipelines_api10.py ..._pipeline_runs_pipeline_submit_by_pipeline_id_post (published pipeline)
            Route(PIPELINES + "/PipelineRuns/PipelineSubmit/{pipeline}", self.submit, methods=["POST"]),
            # aml_pipelines_api10.py ..._pipeline_endpoint_submit_by_pipeline_run_id_post (pipeline endpoint)
            Route(PIPELINES + "/PipelineRuns/PipelineEndpointSubmit/Id/{pipeline}", self.submit, methods=["POST"]),
            # aml_pipelines_api10.py ..._pipeline_runs_by_pipeline_run_id_get (PipelineRun.get_status)
            Route(PIPELINES + "/PipelineRuns/{run}", self.get_run, methods=["GET"]),
            # aml_pipelines_api10.py ..._pipeline_runs_by_pipeline_run_id_execution_delete (PipelineRun.cancel), 200
            Route(PIPELINES + "/PipelineRuns/{run}/Execution", self.cancel_run, methods=["DELETE"]),
        ]

    async def submit(self, request: Request) -> Response:
        """A PipelineSubmissionInfo in (pipeline_submission_info.py), a PipelineRunEntity out (200)."""
        p = request.path_params
        body = await request.json()
        if not isinstance(body, dict) or not body.get("ExperimentName"):
            return _error(400, "BadArgument", "ExperimentName is required (fake)")
        assignments = body.get("ParameterAssignments") or {}
        # ParameterAssignments is typed {str} (pipeline_submission_info.py): the SDK sends str(value) for every kind.
        if not isinstance(assignments, dict) or not all(isinstance(v, str) for v in assignments.values()):
            return _error(400, "BadArgument", "ParameterAssignments values must be strings (fake)")
        tags = body.get("tags") or {}  # 'tags': {'key': 'tags'}, lowercase (pipeline_submission_info.py)
        with self.ml._lock:
            run_id = str(uuid.uuid4())
            job = self.ml._new_job(run_id, "published_pipeline", _ws_path(p), body["ExperimentName"], body, tags)
            self.pipeline_of[run_id] = p["pipeline"]
        return JSONResponse(self.entity(job))

    async def get_run(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return _error(404, "NotFound", f"Pipeline run {request.path_params['run']} not found (fake)")
        job.run.status_calls += 1
        return JSONResponse(self.entity(job))

    async def cancel_run(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return _error(404, "NotFound", f"Pipeline run {request.path_params['run']} not found (fake)")
        job.run.cancel()
        return Response(status_code=200)

    def _job(self, request: Request) -> FakeJob | None:
        job = self.ml.jobs.get(request.path_params["run"])
        return job if job is not None and job.kind == "published_pipeline" else None

    def entity(self, job: FakeJob) -> dict[str, Any]:
        """A PipelineRunEntity (pipeline_run_entity.py _attribute_map) with its PipelineRunStatus."""
        status = job.status()
        return {
            "Id": job.name,
            "Description": job.body.get("Description"),
            "Status": {
                "StatusCode": STATUS_CODE.get(status, status),
                "StatusDetail": job.error_message(),
                "CreationTime": job.created,
                "EndTime": None,
            },
            "GraphId": str(uuid.uuid5(uuid.NAMESPACE_URL, job.name)),
            "IsSubmitted": True,
            "HasErrors": status == "Failed",
            "HasWarnings": False,
            "UploadState": "Completed",
            "ParameterAssignments": job.body.get("ParameterAssignments") or {},
            "DataSetDefinitionValueAssignments": {},
            "RunHistoryExperimentName": job.experiment,
            "PipelineId": self.pipeline_of.get(job.name),
            "RunSource": "Unavailable",
            "RunType": "HTTP",
            "TotalRunSteps": len(self.ml.steps.of_job.get(job.name, [])),
            "ScheduleId": None,
            "tags": job.tags,
            "Properties": {},
            "EntityStatus": "Active",
            "Etag": None,
            "CreatedDate": job.created,
            "LastModifiedDate": job.created,
        }
