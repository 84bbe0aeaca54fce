"""Fake Data Factory (ARM, api-version 2018-06-01): the calls azure-mgmt-datafactory 10.0.0 makes.

Bodies follow the REST spec examples (``reference/azure/datafactory/``); a Copy activity's output follows
the copy-monitoring doc sample. Tests script what the next run of a pipeline does with ``script()`` and
inspect every run afterwards in ``runs`` (parameters, query flags, cancel and status calls).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from drift_retrain.fake_azure.scripts import FollowsScript, RunScript, ScriptedRun

if TYPE_CHECKING:
    from drift_retrain.fake_azure.server import FakeAzure

API_VERSION = "2018-06-01"
TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})
DEFAULT_SCRIPT = RunScript(steps=(("Queued", 0.2), ("InProgress", 0.5)), final="Succeeded")
BYTES_PER_ROW = 100
_FACTORY = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.DataFactory/factories/{factory}"


@dataclass(frozen=True)
class RunPlan:
    """What one scripted run does: its statuses over time and what its Copy activities report."""

    script: RunScript = DEFAULT_SCRIPT
    rows: tuple[int, ...] = (1000,)  # one Copy activity per entry
    error_code: str = "2200"  # the failing Copy activity's errorCode (ADF's user-error codes are numeric)
    failed_activity: str = "CopyWindow"
    binary: bool = False  # the Copy activities copy files as-is: their outputs count files and bytes, no rows
    outputs: tuple[dict[str, Any], ...] | None = None  # verbatim Copy outputs (one activity each), instead of rows'

    def copies(self) -> int:
        return len(self.outputs) if self.outputs is not None else len(self.rows)

    def output(self, index: int, seconds: int) -> dict[str, Any]:
        """The output the index-th Copy activity reports when it succeeds."""
        if self.outputs is not None:
            return dict(self.outputs[index])
        return copy_output(self.rows[index], seconds, binary=self.binary)


@dataclass
class FakePipelineRun(FollowsScript):
    """One pipeline run as the fake keeps it; ``run`` holds the scripted status and the call counters."""

    run: ScriptedRun
    subscription: str
    resource_group: str
    factory: str
    pipeline: str
    parameters: dict[str, Any]
    query: dict[str, str]
    plan: RunPlan
    created: datetime

    def wall(self, monotonic: float) -> datetime:
        return self.created + timedelta(seconds=monotonic - self.run.started)

    def ended(self) -> datetime | None:
        end = self.run.ended_at
        return None if end is None or self.status() not in TERMINAL else self.wall(end)

    def message(self) -> str:
        status = self.status()
        if status == "Failed":
            return (
                f"Operation on target {self.plan.failed_activity} failed: "
                f"{self.run.script.message or 'ErrorCode=UserErrorSourceBlobNotExists'}"
            )
        if status == "Cancelled":
            return "The pipeline run was cancelled (fake)."
        return ""

    def body(self) -> dict[str, Any]:
        end = self.ended()
        last = end or datetime.now(UTC)
        return {
            "runId": self.run_id,
            "runGroupId": self.query.get("referencePipelineRunId") or self.run_id,
            "isLatest": True,
            "pipelineName": self.pipeline,
            # ADF reports every parameter value as a string (the spec example shows a JSON-encoded list)
            "parameters": {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.parameters.items()},
            "runDimensions": {},
            "invokedBy": {"id": uuid.uuid4().hex, "name": "Manual", "invokedByType": "Manual"},
            "runStart": _iso(self.created),
            "runEnd": _iso(end) if end else None,
            "durationInMs": int((end - self.created).total_seconds() * 1000) if end else None,
            "status": self.status(),
            "message": self.message(),
            "lastUpdated": _iso(last),
            "annotations": [],
        }

    def activities(self) -> list[dict[str, Any]]:
        """The run's activity runs: a Lookup (not a copy) then one Copy activity per planned row count."""
        status = self.status()
        if status == "Queued":
            return []
        end = self.ended() or datetime.now(UTC)
        started = self.created + timedelta(milliseconds=50)
        lookup = _activity(self, "LookupWindow", "Lookup", "Succeeded", started, started + timedelta(milliseconds=10))
        lookup["output"] = {"firstRow": {"rows": sum(self.plan.rows)}, "effectiveIntegrationRuntime": _IR}
        out = [lookup]
        for index in range(self.plan.copies()):
            name = "CopyWindow" if index == 0 else f"CopyWindow{index + 1}"
            act_status = {"Queued": "Queued", "Canceling": "InProgress"}.get(status, status)
            if status == "Failed" and name != self.plan.failed_activity:
                act_status = "Succeeded"
            activity = _activity(self, name, "Copy", act_status, started, end if act_status in TERMINAL else None)
            # a binary copy's source and sink: MicrosoftDocs/azure-docs articles/data-factory/format-binary.md
            if self.plan.binary:
                activity["input"] = {"source": {"type": "BinarySource"}, "sink": {"type": "BinarySink"}}
            if act_status == "Succeeded":
                activity["output"] = self.plan.output(index, max(1, int((end - started).total_seconds())))
            if act_status == "Failed":
                activity["error"] = {
                    "errorCode": self.plan.error_code,
                    "message": self.run.script.message
                    or "ErrorCode=UserErrorSourceBlobNotExists,'The required Blob is missing.'",
                    "failureType": "UserError",
                    "target": name,
                    "details": "",
                }
            out.append(activity)
        return out


_IR = "DefaultIntegrationRuntime (West Europe)"


def copy_output(rows: int, seconds: int, binary: bool = False) -> dict[str, Any]:
    """A Copy activity's output in the shape of the copy-monitoring doc sample (bytes, seconds, KB/s). A binary
    copy moves the same bytes and files but counts no rows."""
    data = rows * BYTES_PER_ROW
    files = 1 if rows else 0
    # rowsRead/rowsCopied "not apply when copying files as-is" (binary): MicrosoftDocs/azure-docs
    # articles/data-factory/copy-activity-monitoring.md, "Monitor programmatically"
    counted = {} if binary else {"rowsRead": rows, "rowsCopied": rows, "rowsSkipped": 0}
    return {
        "dataRead": data,
        "dataWritten": data,
        "filesRead": files,
        "filesWritten": files,
        "filesSkipped": 0,
        **counted,
        "sourcePeakConnections": 1,
        "sinkPeakConnections": 1,
        "copyDuration": seconds,
        "throughput": round(data / 1024 / seconds, 3),
        "errors": [],
        "effectiveIntegrationRuntime": _IR,
        "usedDataIntegrationUnits": 4,
        "billingReference": json.dumps({"activityType": "DataMovement", "billableDuration": [{"Managed": 0.0667}]}),
        "usedParallelCopies": 1,
        "executionDetails": [
            {
                "source": {"type": "AzureBlobFS"},
                "sink": {"type": "AzureBlobFS", "region": "West Europe"},
                "status": "Succeeded",
                "duration": seconds,
                "usedDataIntegrationUnits": 4,
                "usedParallelCopies": 1,
                "detailedDurations": {"queuingDuration": 0, "transferDuration": seconds},
            }
        ],
        "durationInQueue": {"integrationRuntimeQueue": 0},
    }


def _activity(
    run: FakePipelineRun, name: str, kind: str, status: str, start: datetime, end: datetime | None
) -> dict[str, Any]:
    return {
        "activityRunEnd": _iso(end) if end else None,
        "activityName": name,
        "activityRunStart": _iso(start),
        "activityType": kind,
        "durationInMs": int((end - start).total_seconds() * 1000) if end else None,
        "retryAttempt": None,
        "error": {"errorCode": "", "message": "", "failureType": "", "target": name},
        "activityRunId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run.run_id}/{name}")),
        "input": {"source": {"type": "BlobSource"}, "sink": {"type": "BlobSink"}} if kind == "Copy" else {},
        "linkedServiceName": "",
        "output": {},
        "userProperties": {},
        "pipelineName": run.pipeline,
        "pipelineRunId": run.run_id,
        "status": status,
        "_lastUpdated": end or datetime.now(UTC),  # for the fake's own filtering, removed before sending
    }


class FakeDataFactory:
    """The Data Factory side of ``FakeAzure``. Every factory and pipeline exists unless ``add()`` registered
    some, then only those do (others answer 404). ``forbidden = True`` answers every call with ARM's 403."""

    def __init__(self, fake: FakeAzure) -> None:
        self.fake = fake
        self.runs: dict[str, FakePipelineRun] = {}
        self.forbidden = False
        self.principal = "00000000-0000-0000-0000-0000000c11e0"
        self.lose_create_responses = 0  # createRun calls that create the run, then answer 500 (response lost)
        #: What ARM's permissions API reports for the caller on a factory (Data Factory Contributor's actions).
        self.permissions: list[dict[str, list[str]]] = [
            {
                "actions": ["Microsoft.DataFactory/factories/*", "Microsoft.Authorization/*/read"],
                "notActions": [],
                "dataActions": [],
                "notDataActions": [],
            }
        ]
        self.default_plan = RunPlan()  # what an unscripted run does
        #: Parameters a pipeline declares (name -> {"type", "defaultValue"?}), served by the pipeline GET.
        self.declared: dict[str, dict[str, dict[str, Any]]] = {}
        self._plans: dict[str, deque[RunPlan]] = defaultdict(deque)
        #: Runs that ended before the fake started, per factory name (lower case): ``add_history()``.
        self.history: list[tuple[str, dict[str, Any]]] = []
        self.page_size = 100  # runs per queryPipelineRuns page
        self.query_runs_body: str | None = None  # answer every queryPipelineRuns with this body, verbatim
        self._known: dict[str, set[str]] = {}

    # -- what tests use -----------------------------------------------------------------------

    def script(
        self,
        pipeline: str,
        script: RunScript = DEFAULT_SCRIPT,
        rows: int | Sequence[int] = 1000,
        error_code: str = "2200",
        failed_activity: str = "CopyWindow",
        binary: bool = False,
        outputs: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Queue what the next run of ``pipeline`` does (unscripted runs follow ``default_plan``:
        DEFAULT_SCRIPT, 1000 rows). ``binary``: an as-is file copy, whose outputs count no rows; ``outputs``:
        what each Copy activity reports, verbatim (a docs sample, a hostile value), instead of ``rows``."""
        counts = (rows,) if isinstance(rows, int) else tuple(rows)
        verbatim = None if outputs is None else tuple(outputs)
        self._plans[pipeline].append(RunPlan(script, counts, error_code, failed_activity, binary, verbatim))

    def add(self, factory: str, *pipelines: str) -> None:
        """Register a factory and its pipelines; from then on unknown ones answer 404."""
        self._known.setdefault(factory.lower(), set()).update(p.lower() for p in pipelines)

    def created(self, pipeline: str | None = None) -> list[FakePipelineRun]:
        """The runs created so far (of one pipeline), oldest first."""
        return [r for r in self.runs.values() if pipeline is None or r.pipeline == pipeline]

    # -- routes -------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route(_FACTORY, self._get_factory, methods=["GET"]),
            Route(_FACTORY + "/pipelines/{pipeline}", self._get_pipeline, methods=["GET"]),
            Route(_FACTORY + "/pipelines/{pipeline}/createRun", self._create_run, methods=["POST"]),
            Route(_FACTORY + "/pipelineruns/{run_id}", self._get_run, methods=["GET"]),
            Route(_FACTORY + "/pipelineruns/{run_id}/cancel", self._cancel, methods=["POST"]),
            Route(_FACTORY + "/pipelineruns/{run_id}/queryActivityruns", self._query_activities, methods=["POST"]),
            Route(_FACTORY + "/queryPipelineRuns", self._query_runs, methods=["POST"]),
            Route(_FACTORY + "/providers/Microsoft.Authorization/permissions", self._permissions, methods=["GET"]),
        ]

    def _refuse(self, request: Request, action: str) -> Response | None:
        """api-version, 403 and 404 checks shared by every route."""
        version = request.query_params.get("api-version")
        if version != API_VERSION:
            return _error(
                400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid. Use '{API_VERSION}'."
            )
        p = request.path_params
        scope = _FACTORY.format(sub=p["sub"], rg=p["rg"], factory=p["factory"])
        if self.forbidden:
            return _error(
                403,
                "AuthorizationFailed",
                f"The client '{self.principal}' with object id '{self.principal}' does not have authorization to "
                f"perform action 'Microsoft.DataFactory/factories/{action}' over scope '{scope}' or the scope is invalid. "
                "If access was recently granted, please refresh your credentials.",
            )
        if self._known:
            factory = p["factory"].lower()
            if factory not in self._known:
                return _error(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.DataFactory/factories/{p['factory']}' under resource group '{p['rg']}' was not found.",
                )
            pipeline = p.get("pipeline")
            if pipeline is not None and pipeline.lower() not in self._known[factory]:
                return _error(404, "EntityNotFound", f"Entity {pipeline} not found")
        return None

    async def _get_factory(self, request: Request) -> Response:
        if (refused := self._refuse(request, "read")) is not None:
            return refused
        p = request.path_params
        return JSONResponse(
            {
                "id": _FACTORY.format(sub=p["sub"], rg=p["rg"], factory=p["factory"]),
                "name": p["factory"],
                "type": "Microsoft.DataFactory/factories",
                "location": "westeurope",
                "tags": {},
                "eTag": '"0a0062d4-0000-0000-0000-5b245bcf0000"',
                "properties": {
                    "provisioningState": "Succeeded",
                    "createTime": "2018-06-16T00:37:41.2830843Z",
                    "version": API_VERSION,
                },
            }
        )

    async def _permissions(self, request: Request) -> Response:
        """ARM Permissions - List For Resource (api-version 2022-04-01): the caller's effective actions."""
        if request.query_params.get("api-version") != "2022-04-01":
            return _error(400, "InvalidApiVersionParameter", "Use api-version 2022-04-01 (fake).")
        if self.forbidden:
            return _error(
                403,
                "AuthorizationFailed",
                f"The client '{self.principal}' does not have authorization to perform action 'Microsoft.Authorization/permissions/read'.",
            )
        return JSONResponse({"value": self.permissions, "nextLink": None})

    async def _get_pipeline(self, request: Request) -> Response:
        if (refused := self._refuse(request, "pipelines/read")) is not None:
            return refused
        p = request.path_params
        return JSONResponse(
            {
                "id": _FACTORY.format(sub=p["sub"], rg=p["rg"], factory=p["factory"]) + f"/pipelines/{p['pipeline']}",
                "name": p["pipeline"],
                "type": "Microsoft.DataFactory/factories/pipelines",
                "etag": '"0a006cd4-0000-0000-0000-5b245bd60000"',
                "properties": {
                    "activities": [{"name": "CopyWindow", "type": "Copy", "typeProperties": {}}],
                    "parameters": self.declared.get(p["pipeline"], {}),
                },
            }
        )

    async def _create_run(self, request: Request) -> Response:
        if (refused := self._refuse(request, "pipelines/createrun/action")) is not None:
            return refused
        p = request.path_params
        raw = await request.body()
        parameters = json.loads(raw) if raw else {}
        query = {k: v for k, v in request.query_params.items() if k != "api-version"}
        reference = query.get("referencePipelineRunId")
        if reference is not None and reference not in self.runs:
            return _error(404, "PipelineRunNotFound", f"Pipeline run {reference} not found")
        if reference is not None and not parameters:
            parameters = dict(self.runs[reference].parameters)  # ADF reuses the referenced run's parameters
        plans = self._plans[p["pipeline"]]
        plan = plans.popleft() if plans else self.default_plan
        run_id = str(uuid.uuid4())
        self.runs[run_id] = FakePipelineRun(
            run=ScriptedRun(
                run_id=run_id,
                script=plan.script,
                started=self.fake.clock(),
                cancel_statuses=("Canceling", "Cancelled"),
                terminal=TERMINAL,
                clock=self.fake.clock,
            ),
            subscription=p["sub"],
            resource_group=p["rg"],
            factory=p["factory"],
            pipeline=p["pipeline"],
            parameters=parameters,
            query=query,
            plan=plan,
            created=datetime.now(UTC),
        )
        if self.lose_create_responses > 0:
            self.lose_create_responses -= 1
            return _error(500, "InternalServerError", "The run was created but the response was lost (fake).")
        return JSONResponse({"runId": run_id})

    def _run(self, request: Request) -> FakePipelineRun | Response:
        if (refused := self._refuse(request, "pipelineruns/read")) is not None:
            return refused
        run = self.runs.get(request.path_params["run_id"])
        if run is None or run.factory.lower() != request.path_params["factory"].lower():
            rid = request.path_params["run_id"]
            return _error(
                404,
                "PipelineRunNotFound",
                f"Pipeline run {rid} does not exist in factory {request.path_params['factory']}.",
            )
        return run

    async def _get_run(self, request: Request) -> Response:
        run = self._run(request)
        if isinstance(run, Response):
            return run
        run.run.status_calls += 1
        return JSONResponse(run.body())

    async def _cancel(self, request: Request) -> Response:
        run = self._run(request)
        if isinstance(run, Response):
            return run
        run.run.cancel_calls += 1
        status = run.status()
        if status in TERMINAL:
            return _error(
                400,
                "PipelineRunNotRunning",
                f"Pipeline run has already completed with status '{status}'.Only pipeline runs that are in progress or queued can be canceled.",
            )
        run.run.cancel_calls -= 1  # ScriptedRun.cancel counts the call itself
        run.run.cancel()
        return Response(status_code=200)

    async def _query_activities(self, request: Request) -> Response:
        run = self._run(request)
        if isinstance(run, Response):
            return run
        after, before = _window(await request.json())
        if after is None or before is None:
            return _error(400, "InvalidParameter", "lastUpdatedAfter and lastUpdatedBefore are required")
        value = []
        for activity in run.activities():
            updated = activity.pop("_lastUpdated")
            if after <= updated <= before:
                value.append(activity)
        # json.dumps allows NaN/Infinity (starlette's JSONResponse refuses them) for scripted hostile outputs; the
        # SDK reads them back (json.loads: azure-mgmt-datafactory 10.0.0 azure/mgmt/datafactory/_utils/serialization.py)
        body = json.dumps({"value": value, "continuationToken": None}, separators=(",", ":"))
        return Response(body, media_type="application/json")

    async def _query_runs(self, request: Request) -> Response:
        """PipelineRuns_QueryByFactory as the spec has it (Azure/azure-rest-api-specs specification/datafactory/
        resource-manager/Microsoft.DataFactory/stable/2018-06-01/datafactory.json): the runs last updated in the
        window, ``filters`` (PipelineName, Status, RunGroupId with Equals/NotEquals/In/NotIn), ``orderBy``
        (RunStart, RunEnd, PipelineName, Status; ASC/DESC), pages of ``page_size`` with a continuationToken."""
        if (refused := self._refuse(request, "pipelineruns/read")) is not None:
            return refused
        if self.query_runs_body is not None:
            return Response(self.query_runs_body, media_type="application/json")
        body = await request.json()
        after, before = _window(body)
        if after is None or before is None:
            return _error(400, "InvalidParameter", "lastUpdatedAfter and lastUpdatedBefore are required")
        factory = request.path_params["factory"].lower()
        bodies = [run.body() for run in self.runs.values() if run.factory.lower() == factory]
        bodies += [dict(b) for f, b in self.history if f == factory]
        fields = {"PipelineName": "pipelineName", "Status": "status", "RunGroupId": "runGroupId"}
        for f in body.get("filters") or []:
            name, operator, values = fields.get(f.get("operand")), f.get("operator"), set(f.get("values") or [])
            if name is None or operator not in ("Equals", "NotEquals", "In", "NotIn"):
                return _error(400, "InvalidParameter", f"Unsupported filter {f!r} (fake)")
            keep = operator in ("Equals", "In")
            bodies = [b for b in bodies if (b.get(name) in values) == keep]
        value = [b for b in bodies if after <= (_parse(b["lastUpdated"]) or after) <= before]
        orders = {"RunStart": "runStart", "RunEnd": "runEnd", "PipelineName": "pipelineName", "Status": "status"}
        for order in reversed(body.get("orderBy") or []):
            key = orders.get(order.get("orderBy"))
            if key is None or order.get("order") not in ("ASC", "DESC"):
                return _error(400, "InvalidParameter", f"Unsupported orderBy {order!r} (fake)")
            value.sort(key=lambda b: (b.get(key) is not None, b.get(key) or ""), reverse=order["order"] == "DESC")
        start = int(body.get("continuationToken") or 0)
        page = value[start : start + self.page_size]
        token = str(start + self.page_size) if start + self.page_size < len(value) else None
        return JSONResponse({"value": page, "continuationToken": token})

    def add_history(self, factory: str, pipeline: str, seconds: Sequence[float], status: str = "Succeeded") -> None:
        """Runs of ``pipeline`` that ended before this fake started, ``seconds`` long each (newest first, an
        hour apart), as queryPipelineRuns lists them (the spec example's PipelineRun fields)."""
        name = factory.rstrip("/").rsplit("/", 1)[-1].lower()
        end = datetime.now(UTC) - timedelta(minutes=1)
        for index, length in enumerate(seconds):
            ended = end - timedelta(hours=index)
            began = ended - timedelta(seconds=length)
            run_id = str(uuid.uuid4())
            self.history.append(
                (
                    name,
                    {
                        "runId": run_id,
                        "runGroupId": run_id,
                        "isLatest": True,
                        "pipelineName": pipeline,
                        "parameters": {},
                        "invokedBy": {"id": uuid.uuid4().hex, "name": "Manual", "invokedByType": "Manual"},
                        "runStart": _iso(began),
                        "runEnd": _iso(ended),
                        "durationInMs": int(length * 1000),
                        "status": status,
                        "message": "",
                        "lastUpdated": _iso(ended),
                        "annotations": [],
                    },
                )
            )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _window(body: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    return _parse(body.get("lastUpdatedAfter")), _parse(body.get("lastUpdatedBefore"))


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "target": None, "details": None}}, status_code=status
    )
