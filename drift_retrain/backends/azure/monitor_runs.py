"""A model monitor's runs in a workspace, read over REST: run-history children and the MLflow metric runs.

azure-ai-ml lists a job's children through run history (``jobs.list(parent_job_name=...)`` ->
``GET {api}/history/v1.0{workspace}/runs/{id}/children``; Azure/azure-sdk-for-python
sdk/ml/azure-ai-ml/azure/ai/ml/operations/_job_operations.py ``list`` and
_restclient/runhistory/operations/_runs_operations.py ``get_child``), but it first GETs the parent as an ARM
job and keeps little of each child; the same route is called here and its raw ``Run`` bodies are read
(recording_pipeline_job_create_get_children_excerpt.json). Metric runs come from MLflow's Search Runs and
Get Metric History on the tracking URI (https://mlflow.org/docs/latest/rest-api.html#search-runs).

Every field is hostile: ids and names are bounded text without control characters, tags a bounded map of
text, metric values finite floats; what fails validation is dropped, never raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from drift_retrain.backends.azure.workspace_rest import WorkspaceRest
from drift_retrain.text import finite_number, plain_name

MAX_ID = 256
MAX_NAME = 256
MAX_TAGS = 200
#: A tag value is kept up to this length: the breach text of a wide table (``breaches.MAX_TEXT``).
MAX_TAG_VALUE = 256 * 1024
#: Runs asked for per MLflow search page (MLflow's default page, mlflow store/tracking/__init__.py).
SEARCH_PAGE = 1000
#: What the recording's children call sends (GET .../runs/{id}/children?api-version=v1.0).
HISTORY_API_VERSION = "v1.0"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class ChildRun:
    """A run-history ``Run``, as far as it could be read."""

    run_id: str
    parent_run_id: str | None
    experiment_id: str | None
    status: str | None
    run_type: str | None
    created: datetime | None
    ended: datetime | None
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    """One logged metric point (MLflow ``Metric``): ``step`` orders the monitor's runs, ``timestamp`` ties."""

    value: float
    step: int
    timestamp: int


@dataclass(frozen=True)
class MetricRun:
    """An MLflow run: its id, tags and the latest point of each metric."""

    run_id: str
    tags: dict[str, str]
    latest: dict[str, Point]


@dataclass
class Budget:
    """Runs that may still be read; ``exhausted`` says a listing stopped at the cap."""

    left: int
    exhausted: bool = False

    def take(self, count: int) -> int:
        granted = min(count, self.left)
        self.left -= granted
        self.exhausted = self.exhausted or granted < count
        return granted


class MonitorRuns:
    """Run-history and MLflow reads for one workspace, over its ``WorkspaceRest``."""

    def __init__(self, rest: WorkspaceRest) -> None:
        self.rest = rest

    def children(self, run_id: str, budget: Budget) -> list[ChildRun]:
        """The run's direct children, every page (``nextLink``, else ``continuationToken``), within ``budget``."""
        api = self.rest.endpoints().api
        url = f"{api}/history/v1.0{self.rest.workspace_id}/runs/{quote(run_id, safe='')}/children"
        params: dict[str, str] | None = {"api-version": HISTORY_API_VERSION}
        found: list[ChildRun] = []
        while budget.left > 0:
            body = self.rest.request("GET", url, params=params)  # params None: httpx keeps the link's own query
            values = body.get("value") if isinstance(body, dict) else None
            items = values if isinstance(values, list) else []
            found += [run for run in (child_run(item) for item in items[: budget.take(len(items))]) if run]
            next_link = _text(body.get("nextLink"), 8192) if isinstance(body, dict) else None
            token = _text(body.get("continuationToken"), 8192) if isinstance(body, dict) else None
            if next_link and next_link.startswith(api + "/"):  # never send the token to another host
                url, params = next_link, None
            elif token:
                params = {"api-version": HISTORY_API_VERSION, "$continuationtoken": token}
            else:
                break
        else:
            budget.exhausted = True
        return found

    def search(self, experiment_id: str, filter_string: str, budget: Budget) -> list[MetricRun]:
        """MLflow Search Runs in one experiment, every page (``next_page_token``), within ``budget``."""
        url = f"{self.rest.endpoints().mlflow}/api/2.0/mlflow/runs/search"
        body: dict[str, Any] = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": SEARCH_PAGE}
        found: list[MetricRun] = []
        while budget.left > 0:
            answer = self.rest.request("POST", url, json=body)
            runs = answer.get("runs") if isinstance(answer, dict) else None
            items = runs if isinstance(runs, list) else []
            found += [run for run in (metric_run(item) for item in items[: budget.take(len(items))]) if run]
            token = _text(answer.get("next_page_token"), 8192) if isinstance(answer, dict) else None
            if not token:
                break
            body = {**body, "page_token": token}
        else:
            budget.exhausted = True
        return found

    def history(self, run_id: str, key: str, budget: Budget) -> list[Point]:
        """MLflow Get Metric History of one metric, every page, within ``budget`` (counted in points)."""
        url = f"{self.rest.endpoints().mlflow}/api/2.0/mlflow/metrics/get-history"
        params = {"run_id": run_id, "metric_key": key}
        points: list[Point] = []
        while budget.left > 0:
            answer = self.rest.request("GET", url, params=params)
            metrics = answer.get("metrics") if isinstance(answer, dict) else None
            items = metrics if isinstance(metrics, list) else []
            points += [p for p in (_point(item) for item in items[: budget.take(len(items))]) if p]
            token = _text(answer.get("next_page_token"), 8192) if isinstance(answer, dict) else None
            if not token:
                break
            params = {**params, "page_token": token}
        return points


# -- reading hostile bodies ---------------------------------------------------------------------


def child_run(body: object) -> ChildRun | None:
    """A run-history ``Run`` body (runId, parentRunId, experimentId, status, runType, createdUtc, endTimeUtc,
    tags, properties: the recording's field names), or None when it has no usable run id."""
    if not isinstance(body, dict):
        return None
    run_id = plain_name(body.get("runId"), MAX_ID)
    if run_id is None:
        return None
    return ChildRun(
        run_id=run_id,
        parent_run_id=plain_name(body.get("parentRunId"), MAX_ID),
        experiment_id=plain_name(body.get("experimentId"), MAX_ID),
        status=plain_name(body.get("status"), 64),
        run_type=plain_name(body.get("runType"), MAX_NAME),
        created=_moment(body.get("createdUtc")),
        ended=_moment(body.get("endTimeUtc")),
        tags=_string_map(body.get("tags")),
        properties=_string_map(body.get("properties")),
    )


def metric_run(body: object) -> MetricRun | None:
    """An MLflow ``Run`` body (info.run_id, data.tags [{key, value}], data.metrics [{key, value, step,
    timestamp}]), or None when it has no usable run id."""
    if not isinstance(body, dict):
        return None
    info, data = body.get("info"), body.get("data")
    info, data = (info if isinstance(info, dict) else {}), (data if isinstance(data, dict) else {})
    run_id = plain_name(info.get("run_id") or info.get("run_uuid"), MAX_ID)
    if run_id is None:
        return None
    tags = _string_map({t.get("key"): t.get("value") for t in _list(data.get("tags")) if isinstance(t, dict)})
    latest: dict[str, Point] = {}
    for item in _list(data.get("metrics"))[:MAX_TAGS]:
        key = plain_name(item.get("key"), MAX_NAME) if isinstance(item, dict) else None
        point = _point(item)
        if key and point and (key not in latest or _order(point) > _order(latest[key])):
            latest[key] = point
    return MetricRun(run_id, tags, latest)


def _point(item: object) -> Point | None:
    if not isinstance(item, dict):
        return None
    number = finite_number(item.get("value"))
    step, stamp = _integer(item.get("step")), _integer(item.get("timestamp"))
    if number is None or step is None:
        return None
    return Point(number, step, stamp or 0)


def _order(point: Point) -> tuple[int, int, float]:
    """MLflow's "latest": the greatest (step, timestamp, value) (mlflow store/tracking/sqlalchemy_store.py
    ``_update_latest_metrics_if_necessary``)."""
    return (point.step, point.timestamp, point.value)


def _integer(value: object) -> int | None:
    """An int64 (MLflow's step and timestamp; JSON may carry them as strings, proto3's int64 mapping)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        value = int(value)
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    return None


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    kept: dict[str, str] = {}
    for key, item in list(value.items())[: MAX_TAGS * 5]:
        clean = plain_name(key, MAX_NAME)
        if clean and isinstance(item, str) and len(item) <= MAX_TAG_VALUE and len(kept) < MAX_TAGS:
            kept[clean] = item
    return kept


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit and not _CONTROL.search(value) else None


def _moment(value: object) -> datetime | None:
    """An ISO 8601 time as aware UTC (run history writes 7 fractional digits, the recording's createdUtc:
    Python 3.11's ``fromisoformat`` reads them, truncating past 6)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
