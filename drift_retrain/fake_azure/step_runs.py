"""Fake step runs: the children a pipeline job's run has in run history, and the MLflow metrics each logged.

Metrics belong to the run that logged them, often a step rather than the pipeline root
(Azure/azure-sdk-for-python#39198), so a test can put a job's metrics on its steps: ``script_next_job(...,
steps={"train": {...}, "evaluate": {...}})``; a name ``"a/b"`` is step ``b`` inside sub-pipeline step ``a``.
Children are listed as run history lists them (``GET .../runs/{runId}/children``, a PaginatedRunList
``{value, continuationToken, nextLink}``; azure-ai-ml's runhistory ``get_child``), with the run fields of
reference/azure/machinelearning/recording_pipeline_job_create_get_children_excerpt.json.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from drift_retrain.fake_azure.run_history import history_run

if TYPE_CHECKING:
    from drift_retrain.fake_azure.machinelearning import FakeJob

WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"


@dataclass
class FakeStepRun:
    run_id: str
    name: str
    job: FakeJob  # the pipeline run it belongs to (its status is the step's)
    parent_id: str
    metrics: dict[str, float]
    order: int  # the steps end in the order they were scripted
    children: list[FakeStepRun] = field(default_factory=list)


class FakeStepRuns:
    """Every job's step runs, by run id; ``children_page_size`` steps per page of a children listing."""

    def __init__(self) -> None:
        self.runs: dict[str, FakeStepRun] = {}
        self.of_job: dict[str, list[FakeStepRun]] = {}
        self.children_page_size = 100

    def reset(self) -> None:
        self.runs.clear()
        self.of_job.clear()
        self.children_page_size = 100

    def add(self, job: FakeJob, steps: dict[str, dict[str, float]]) -> None:
        """Give ``job`` the scripted steps (``"a/b"``: step b of sub-pipeline a; parents made as needed)."""
        by_path: dict[str, FakeStepRun] = {}
        top: list[FakeStepRun] = []
        for order, (path, metrics) in enumerate(steps.items()):
            parent: FakeStepRun | None = None
            parts = path.split("/")
            for depth, name in enumerate(parts):
                key = "/".join(parts[: depth + 1])
                if key not in by_path:
                    step = FakeStepRun(str(uuid.uuid4()), name, job, parent.run_id if parent else job.name, {}, order)
                    by_path[key] = step
                    (parent.children if parent else top).append(step)
                    self.runs[step.run_id] = step
                parent = by_path[key]
            assert parent is not None
            parent.metrics.update(metrics)
        self.of_job[job.name] = top

    def metrics_of(self, run_id: str) -> dict[str, float] | None:
        step = self.runs.get(run_id)
        return None if step is None else step.metrics

    async def list_children(self, request: Request) -> Response:
        """A job's or step's children (azure-ai-ml runhistory _runs_operations.py build_get_child_request:
        GET .../runs/{runId}/children), routed here by FakeMachineLearning.run_children."""
        run_id = request.path_params["run"]
        step = self.runs.get(run_id)
        children = step.children if step is not None else self.of_job.get(run_id)
        if children is None:
            return JSONResponse(
                {"error": {"code": "UserError", "message": f"Run {run_id} was not found (fake)"}}, status_code=404
            )
        skip = int(request.query_params.get("$continuationtoken") or 0)
        page = children[skip : skip + self.children_page_size]
        token = str(skip + self.children_page_size) if skip + self.children_page_size < len(children) else None
        link = str(request.url.replace(query=urlencode({"$continuationtoken": token}))) if token else None
        return JSONResponse({"value": [self._body(s) for s in page], "continuationToken": token, "nextLink": link})

    def _body(self, step: FakeStepRun) -> dict[str, Any]:
        """A run-history Run of a step, with the fields of the recorded children answer."""
        job = step.job
        status = job.status()
        ended = None
        if status in ("Completed", "Failed", "Canceled"):
            ended = (datetime.fromisoformat(job.created) + timedelta(seconds=1 + step.order)).isoformat()
        return history_run(
            run_id=step.run_id,
            parent_id=step.parent_id,
            root_id=job.name,
            experiment_id=job.experiment_id,
            status=status,
            created=job.created,
            ended=ended,
            display_name=step.name,
            name="azureml_anonymous",
            run_type="azureml.StepRun",
            properties={"azureml.runsource": "azureml.StepRun", "azureml.pipelinerunid": job.name},
            tags={"azureml.pipeline": job.name},
        )
