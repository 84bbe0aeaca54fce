"""Fake Azure ML model monitoring: one monitor run's tree as the workspace's run history and MLflow hold it.

A monitor run is a top-level pipeline job (listed by ARM Jobs - List) with one sub-pipeline per signal, whose
steps include the *evaluate-metrics-threshold* step; that step tags its own run with the breach text when a
row breached. The metric outputter keeps one MLflow run per (monitor, signal, metric, feature) under a parent
run ``<monitor> - Metrics`` and appends a ``value``/``threshold`` point to it on every monitor run.
Sources (Azure/azureml-assets, ``assets/model_monitoring/components/``):
- signal sub-pipeline and its step names: ``data_drift/data_drift_signal_monitor/spec.yaml``
- the breach tag on the evaluate step's own run: ``src/model_monitor_evaluate_metrics_threshold/evaluate_metrics_threshold.py``
- metric runs, tags, parent run, ``value``/``threshold`` at step = ``int(monitor_current_time.timestamp())``:
  ``src/shared_utilities/run_metrics_utils.py`` + ``src/model_monitor_output_metrics/run.py`` (tag
  ``azureml.feature_name``: data/prediction drift, data quality, feature attribution) and
  ``src/model_monitor_metric_outputter/runmetric_client.py`` + ``run.py`` (tags ``azureml.group_0``...:
  model performance, generation safety/quality, GenAI tokens).

Tests build a tree with ``add_monitor_run`` and read the RunStatusChanged event Azure ML would publish for a
breached signal from ``FakeMonitorRun.breach_event``.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from drift_retrain.breaches import BREACH_TAG, breach_text, is_breach
from drift_retrain.fake_azure.run_history import history_run
from drift_retrain.fake_azure.scripts import RunScript, ScriptedRun

if TYPE_CHECKING:
    from drift_retrain.fake_azure.machinelearning import FakeJob, FakeMachineLearning

WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"

#: Which component published a signal's metric runs, and so how the feature is tagged (see the module doc).
OUTPUT_METRICS = "output_metrics"
METRIC_OUTPUTTER = "metric_outputter"

#: The parent metric run's azureml.metric_name and name (run_metrics_utils.py ``_get_or_create_parent_run_id``).
PARENT_METRIC_NAME = "azureml.metrics"
#: The signal pipeline's steps kept in the fake (data_drift_signal_monitor/spec.yaml ``jobs``).
STEPS = ("compute_drift_metrics", "output_signal_metrics", "evaluate_metric_thresholds")
EVALUATE = "evaluate_metric_thresholds"

#: MLflow's search limits (mlflow store/tracking/__init__.py SEARCH_MAX_RESULTS_DEFAULT / _THRESHOLD).
SEARCH_DEFAULT, SEARCH_MAX = 1000, 50000


@dataclass(frozen=True)
class MetricPoint:
    """One logged point (MLflow REST API ``Metric``: key, value, timestamp in ms, step)."""

    value: float
    timestamp: int
    step: int


@dataclass
class FakeRun:
    """A child run: run history's ``Run`` (recording_pipeline_job_create_get_children_excerpt.json) and, for
    the same id, an MLflow run (MLflow REST API ``Run``: info, data.metrics/params/tags)."""

    run_id: str
    workspace: str
    experiment_id: str
    parent_id: str | None
    root_id: str
    display_name: str
    run_type: str
    status: str
    created: datetime
    ended: datetime | None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[MetricPoint]] = field(default_factory=dict)

    def latest(self) -> list[dict[str, Any]]:
        """Each metric's latest point as MLflow answers it: the greatest (step, timestamp, value)
        (mlflow store/tracking/sqlalchemy_store.py ``_update_latest_metrics_if_necessary``)."""
        return [
            _metric(key, max(points, key=lambda p: (p.step, p.timestamp, p.value)))
            for key, points in self.metrics.items()
            if points
        ]


@dataclass
class FakeMonitorRun:
    """What ``add_monitor_run`` built: the top-level job, each signal's sub-pipeline and evaluate step."""

    job: FakeJob
    experiment_name: str
    experiment_id: str
    signals: dict[str, FakeRun]
    evaluate: dict[str, FakeRun]

    @property
    def breached(self) -> list[str]:
        """The signals whose evaluate step carries the breach tag."""
        return [name for name, step in self.evaluate.items() if BREACH_TAG in step.tags]

    def breach_event(self, signal: str, workspace: str | None = None) -> dict[str, Any]:
        """The RunStatusChanged event Azure ML publishes when the signal's evaluate step ends: the documented
        sample (tests/fixtures/eventgrid/eg_RunStatusChanged.json) carrying that run's ids, tags and status."""
        from drift_retrain.testing import sample

        step = self.evaluate[signal]
        event: dict[str, Any] = sample("eg_RunStatusChanged.json")[0]
        event["topic"] = workspace or step.workspace
        event["id"] = str(uuid.uuid4())
        event["subject"] = f"experiments/{step.experiment_id}/runs/{step.run_id}"
        event["eventTime"] = _iso(step.ended or step.created)
        event["data"] = {
            "experimentId": step.experiment_id,
            "experimentName": self.experiment_name,
            "runId": step.run_id,
            "runType": step.run_type,
            "runTags": dict(step.tags),
            "runProperties": dict(step.properties),
            "runStatus": step.status,
        }
        return event


class FakeMonitoring:
    """Scripting API: ``add_monitor_run``, ``runs``; ``forbidden`` answers MLflow with 403, ``page_size``
    pages run-history children and MLflow answers."""

    def __init__(self, ml: FakeMachineLearning) -> None:
        self.ml = ml
        self.runs: dict[str, FakeRun] = {}
        self._parents: dict[tuple[str, str, str], str] = {}  # (workspace, experiment id, monitor) -> parent run
        #: (workspace, experiment id, monitor, signal, metric, *groups) -> metric run
        self._metric_runs: dict[tuple[str, ...], str] = {}
        self._lock = threading.Lock()
        #: Most runs per page of run-history children and of MLflow search/history (None: what was asked).
        self.page_size: int | None = None
        #: Answer MLflow with 403 PERMISSION_DENIED (an identity without read access to runs).
        self.forbidden = False

    def reset(self) -> None:
        with self._lock:
            self.runs.clear()
            self._parents.clear()
            self._metric_runs.clear()
        self.page_size, self.forbidden = None, False

    # -- scripting ------------------------------------------------------------------------------

    def add_monitor_run(
        self,
        workspace: str,
        monitor: str,
        signals: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        experiment: str | None = None,
        created: datetime | None = None,
        status: str = "Completed",
        name: str | None = None,
        outputter: str = OUTPUT_METRICS,
    ) -> FakeMonitorRun:
        """One ended run of ``monitor`` in ``workspace`` (ARM id). ``signals``: signal name -> its computed rows
        (``metric_name``, ``metric_value``, ``threshold_value``, ``group`` = the feature; the compute step's
        columns, data_drift_compute_metrics/io_utils.py). A row past its threshold (``breaches.is_breach``)
        tags the signal's evaluate step with ``breaches.breach_text`` of the breached rows. ``experiment``: the
        pipeline's experiment (the monitor's name by default); ``created``: the monitor's current time."""
        from drift_retrain.fake_azure.machinelearning import ML_CANCEL, TERMINAL, FakeJob

        created = created or datetime.now(UTC)
        experiment = experiment or monitor
        experiment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{workspace.lower()}/experiments/{experiment}"))
        root = name or f"{_slug(monitor)}-{uuid.uuid4().hex[:12]}"
        run = ScriptedRun(
            root, RunScript(steps=(("Running", 0.0),), final=status), time.monotonic(), ML_CANCEL, TERMINAL
        )
        body = {
            "properties": {
                "jobType": "Pipeline",
                "experimentName": experiment,
                "displayName": root,
                "jobs": {},
                "inputs": {},
                "outputs": {},
                "settings": {},
            }
        }
        job = FakeJob(root, "monitor_run", workspace, experiment, body, run, experiment_id=experiment_id)
        job.created = created.isoformat()
        tree = FakeMonitorRun(job, experiment, experiment_id, {}, {})
        with self._lock:
            self.ml.jobs[root] = job
            for offset, (signal, rows) in enumerate(signals.items()):
                start = created + timedelta(seconds=1 + offset)
                pipeline = self._add_run(workspace, experiment_id, root, root, signal, "azureml.PipelineRun", start)
                tree.signals[signal] = pipeline
                for index, step_name in enumerate(STEPS):
                    step = self._add_run(
                        workspace, experiment_id, pipeline.run_id, root, step_name, "azureml.StepRun", start
                    )
                    step.ended = start + timedelta(seconds=2 + index)
                    step.properties.update(
                        {
                            "azureml.nodeid": step_name,
                            "azureml.pipelinerunid": pipeline.run_id,
                            "azureml.rootpipelinerunid": root,
                            "azureml.runsource": "azureml.StepRun",
                        }
                    )
                    step.tags.update({"azureml.nodeid": step_name, "azureml.pipeline": root})
                    if step_name == EVALUATE:
                        tree.evaluate[signal] = step
                pipeline.ended = start + timedelta(seconds=2 + len(STEPS))
                breached = [r for r in rows if is_breach(r["metric_name"], r["metric_value"], r["threshold_value"])]
                if breached:
                    tree.evaluate[signal].tags[BREACH_TAG] = breach_text(signal, breached)
                self._publish_metrics(workspace, experiment_id, monitor, signal, rows, created, outputter)
        return tree

    def _add_run(
        self, workspace: str, experiment_id: str, parent: str, root: str, name: str, run_type: str, start: datetime
    ) -> FakeRun:
        run = FakeRun(
            str(uuid.uuid4()), workspace, experiment_id, parent, root, name, run_type, "Completed", start, None
        )
        self.runs[run.run_id] = run
        return run

    def _publish_metrics(
        self,
        workspace: str,
        experiment_id: str,
        monitor: str,
        signal: str,
        rows: Sequence[Mapping[str, Any]],
        monitor_time: datetime,
        outputter: str,
    ) -> None:
        """What the outputter does for each row: get or create the (monitor, signal, metric, feature) run under
        the ``<monitor> - Metrics`` parent and log ``value`` and ``threshold`` at the monitor time's step
        (run_metrics_utils.py ``get_or_create_run_id``, ``publish_metric``; output_metrics/run.py step)."""
        step = int(monitor_time.timestamp())
        logged = int(time.time() * 1000)
        parent = self._parent(workspace, experiment_id, monitor, monitor_time)
        for row in rows:
            metric, group = str(row["metric_name"]), row.get("group")
            groups = () if group in (None, "") else (str(group),)
            key = (workspace.lower(), experiment_id, monitor, signal, metric, *groups)
            run_id = self._metric_runs.get(key)
            if run_id is None:
                tags = {"azureml.monitor_name": monitor, "azureml.signal_name": signal, "azureml.metric_name": metric}
                if outputter == OUTPUT_METRICS:
                    tags.update({"azureml.feature_name": groups[0]} if groups else {})
                else:
                    tags.update({f"azureml.group_{i}": g for i, g in enumerate(groups)})
                tags.update({"mlflow.runName": f"{signal}_{metric}", "mlflow.parentRunId": parent})
                run = FakeRun(
                    str(uuid.uuid4()), workspace, experiment_id, parent, parent, f"{signal}_{metric}", "mlflow",
                    "Completed", monitor_time, monitor_time, tags=tags,
                )  # fmt: skip
                self.runs[run.run_id] = run
                run_id = self._metric_runs[key] = run.run_id
            run = self.runs[run_id]
            run.metrics.setdefault("value", []).append(MetricPoint(float(row["metric_value"]), logged, step))
            if row.get("threshold_value") is not None:
                run.metrics.setdefault("threshold", []).append(MetricPoint(float(row["threshold_value"]), logged, step))

    def _parent(self, workspace: str, experiment_id: str, monitor: str, created: datetime) -> str:
        key = (workspace.lower(), experiment_id, monitor)
        if key not in self._parents:
            name = f"{monitor} - Metrics"
            tags = {"azureml.monitor_name": monitor, "azureml.metric_name": PARENT_METRIC_NAME, "mlflow.runName": name}
            run = FakeRun(
                str(uuid.uuid4()), workspace, experiment_id, None, "", name, "mlflow", "Completed", created, created,
                tags=tags,
            )  # fmt: skip
            run.root_id = run.run_id
            self.runs[run.run_id] = run
            self._parents[key] = run.run_id
        return self._parents[key]

    # -- routes ---------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            # MLflow REST API (https://mlflow.org/docs/latest/rest-api.html#search-runs, #get-metric-history)
            # under the workspace's tracking URI.
            Route("/mlflow/v1.0" + WS + "/api/2.0/mlflow/runs/search", self.search_runs, methods=["POST"]),
            Route("/mlflow/v1.0" + WS + "/api/2.0/mlflow/metrics/get-history", self.metric_history, methods=["GET"]),
        ]

    async def children(self, request: Request) -> Response:
        """Run history children of a monitor run (routed by FakeMachineLearning.run_children: azure-ai-ml's
        runhistory _runs_operations.py get_child, the recording's GET .../runs/{id}/children?api-version=v1.0).
        ``{"value": [Run...], "continuationToken", "nextLink"}`` (runhistory models PaginatedRunList)."""
        p, query = request.path_params, request.query_params
        workspace = _ws_path(p).lower()
        parent = p["run"]
        if parent not in self.runs and parent not in self.ml.jobs:
            return _history_error(404, f"Run {parent} was not found (fake)")
        listed = [r for r in list(self.runs.values()) if r.parent_id == parent and r.workspace.lower() == workspace]
        listed.sort(key=lambda r: r.created)
        skip = _int(query.get("$continuationtoken"), 0)
        size = self.page_size or 100
        page = listed[skip : skip + size]
        token = str(skip + size) if skip + size < len(listed) else None
        next_link = None
        if token is not None:
            next_link = str(request.url.replace(query=urlencode({**query, "$continuationtoken": token})))
        body = {"value": [history_body(r) for r in page], "continuationToken": token, "nextLink": next_link}
        return JSONResponse(body)

    async def search_runs(self, request: Request) -> Response:
        """MLflow Search Runs over this fake's runs, with the filter subset the monitoring components and
        drift-retrain send (``tags.<key> = '<value>'`` joined by AND); anything else is refused with MLflow's
        400 INVALID_PARAMETER_VALUE."""
        if self.forbidden:
            return _mlflow_error(403, "PERMISSION_DENIED", "The caller has no permission to read runs (fake).")
        try:
            body = await request.json()
        except ValueError:
            return _mlflow_error(400, "MALFORMED_REQUEST", "The request body is not JSON.")
        if not isinstance(body, dict):
            return _mlflow_error(400, "MALFORMED_REQUEST", "The request body is not a JSON object.")
        experiments = body.get("experiment_ids")
        if not isinstance(experiments, list) or not experiments or not all(isinstance(e, str) for e in experiments):
            return _mlflow_error(400, "INVALID_PARAMETER_VALUE", "experiment_ids must be a non-empty list of ids.")
        conditions = parse_filter(body.get("filter") or "")
        if isinstance(conditions, str):
            return _mlflow_error(400, "INVALID_PARAMETER_VALUE", conditions)
        for order in body.get("order_by") or []:
            if not _ORDER.match(str(order)):
                return _mlflow_error(400, "INVALID_PARAMETER_VALUE", f"Invalid order_by clause '{order}' (fake).")
        wanted = _int(body.get("max_results"), SEARCH_DEFAULT)
        if not 0 < wanted <= SEARCH_MAX:
            return _mlflow_error(
                400, "INVALID_PARAMETER_VALUE", f"max_results must be between 1 and {SEARCH_MAX}, got {wanted}."
            )
        workspace = _ws_path(request.path_params).lower()
        found = [  # every run of the experiments: metric runs, and the pipelines' child runs (MLflow runs too)
            r
            for r in list(self.runs.values())
            if r.workspace.lower() == workspace
            and r.experiment_id in experiments
            and all(r.tags.get(key) == value for key, value in conditions)
        ]
        found.sort(key=lambda r: r.created)
        skip = _int(body.get("page_token"), 0)
        size = min(wanted, self.page_size or wanted)
        answer: dict[str, Any] = {"runs": [mlflow_run(r) for r in found[skip : skip + size]]}
        if skip + size < len(found):
            answer["next_page_token"] = str(skip + size)
        return JSONResponse(answer)

    async def metric_history(self, request: Request) -> Response:
        """MLflow Get Metric History: ``{"metrics": [Metric...], "next_page_token"}``."""
        if self.forbidden:
            return _mlflow_error(403, "PERMISSION_DENIED", "The caller has no permission to read runs (fake).")
        query = request.query_params
        run = self.runs.get(query.get("run_id") or query.get("run_uuid") or "")
        key = query.get("metric_key")
        if run is None:
            return _mlflow_error(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{query.get('run_id')}' not found.")
        if not key:
            return _mlflow_error(400, "INVALID_PARAMETER_VALUE", "metric_key is required.")
        points = sorted(run.metrics.get(key, []), key=lambda m: (m.step, m.timestamp))
        skip = _int(query.get("page_token"), 0)
        size = self.page_size or _int(query.get("max_results"), 25000)
        answer: dict[str, Any] = {"metrics": [_metric(key, m) for m in points[skip : skip + size]]}
        if skip + size < len(points):
            answer["next_page_token"] = str(skip + size)
        return JSONResponse(answer)


# -- bodies -------------------------------------------------------------------------------------


def history_body(run: FakeRun) -> dict[str, Any]:
    """A child run as run history answers it (the fields of the recording's children that callers read)."""
    return history_run(
        run_id=run.run_id,
        parent_id=run.parent_id,
        root_id=run.root_id,
        experiment_id=run.experiment_id,
        status=run.status,
        created=_iso(run.created),
        ended=_iso(run.ended) if run.ended else None,
        display_name=run.display_name,
        name=run.display_name,
        run_type=run.run_type,
        properties=run.properties,
        tags=run.tags,
    )


def mlflow_run(run: FakeRun) -> dict[str, Any]:
    """A run as MLflow's REST API answers it (``Run``: ``info``, ``data`` with the latest metrics)."""
    millis = int(run.created.timestamp() * 1000)
    return {
        "info": {
            "run_id": run.run_id,
            "run_uuid": run.run_id,
            "run_name": run.display_name,
            "experiment_id": run.experiment_id,
            "status": "FINISHED",
            "start_time": millis,
            "end_time": int(run.ended.timestamp() * 1000) if run.ended else None,
            "lifecycle_stage": "active",
        },
        "data": {
            "metrics": run.latest(),
            "params": [],
            "tags": [{"key": k, "value": v} for k, v in run.tags.items()],
        },
    }


# -- MLflow's filter, the subset served ---------------------------------------------------------

#: ``tags.<key> = <string>``: the key bare or in backticks/double quotes, the string in single or double
#: quotes with no escapes (mlflow utils/search_utils.py ``_get_identifier``, ``_strip_quotes``: the quotes are
#: trimmed, nothing inside is unescaped), as the components send it (run_metrics_utils.py ``_create_filter_query``).
_CONDITION = re.compile(r"""\s*tags\.(?P<key>`[^`]+`|"[^"]+"|[A-Za-z0-9_.\-]+)\s*=\s*(?P<value>'[^']*'|"[^"]*")\s*""")
_AND = re.compile(r"and\b", re.IGNORECASE)
_ORDER = re.compile(r"^\s*(attributes\.)?start_time(\s+(ASC|DESC))?\s*$", re.IGNORECASE)


def parse_filter(text: object) -> list[tuple[str, str]] | str:
    """The (tag, value) pairs of a filter, or why it is refused (MLflow's message for an invalid clause)."""
    if not isinstance(text, str):
        return "filter must be a string"
    conditions, at = [], 0
    while at < len(text):
        found = _CONDITION.match(text, at)
        if found is None:
            return f"Invalid clause(s) in filter string: '{text[at:]}' (the fake serves tags.<key> = '<value>' and AND)"
        conditions.append((found.group("key").strip('`"'), found.group("value")[1:-1]))
        at = found.end()
        if at < len(text):
            joined = _AND.match(text, at)
            if joined is None:
                return f"Invalid clause(s) in filter string: '{text[at:]}'"
            at = joined.end()
            if at >= len(text.rstrip()):
                return "Invalid filter: it ends with AND"
    return conditions


# -- helpers ------------------------------------------------------------------------------------


def _metric(key: str, point: MetricPoint) -> dict[str, Any]:
    return {"key": key, "value": point.value, "timestamp": point.timestamp, "step": point.step}


def _mlflow_error(status: int, code: str, message: str) -> JSONResponse:
    """MLflow's error body (mlflow exceptions.py: the error code's HTTP status, ``error_code`` + ``message``)."""
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def _history_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "UserError", "message": message}}, status_code=status)


def _ws_path(p: Mapping[str, str]) -> str:
    return WS.format(sub=p["sub"], rg=p["rg"], ws=p["ws"])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _int(value: object, default: int) -> int:
    try:
        return int(str(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "monitor"
