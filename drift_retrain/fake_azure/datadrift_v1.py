"""Fake Azure ML v1 data drift service (``/datadrift/v1.0`` on the workspace's run history host), as
azureml-datadrift 1.62.0's rest client speaks it (``azureml/datadrift/_restclient/rest_client.py``):

- ``GET .../datadrifts/{id}`` (query ``api-version``): a DataDriftDto (``driftThreshold``, dataset ids, ...);
- ``GET .../datadrifts/{id}/metrics`` (query ``runId``, ``startDateString``, ``endDateString``, ``apiVersion``):
  a JSON array of DataDriftMetricDto (``models/data_drift_metric_dto.py``).

Tests publish a drift run's results with ``publish`` (in the shapes ``get_output()`` documents: a dataset-level
``datadrift_coefficient`` and per-column ``datadrift_contribution``, ``wasserstein_distance``,
``energy_distance``), or put raw records in ``metrics`` to replay an answer exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

WS = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
DATADRIFT = "/datadrift/v1.0" + WS


def _error(status: int, code: str, message: str) -> JSONResponse:
    # ErrorResponse (datadrift _restclient/models/error_response.py): {"error": {"code", "message", ...}}
    return JSONResponse({"error": {"code": code, "message": message, "details": []}}, status_code=status)


def metric_record(
    name: str,
    value: float,
    *,
    column: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    pipeline_start: datetime | None = None,
    base_dataset_id: str | None = None,
    target_dataset_id: str | None = None,
) -> dict[str, Any]:
    """One DataDriftMetricDto as the service answers it (data_drift_metric_dto.py _attribute_map keys);
    metricType "dataset" or "column" as the SDK's metric extended properties spell it
    (_utils/constants.py METRIC_TYPE_DATASET, METRIC_TYPE_COLUMN)."""
    return {
        "name": name,
        "value": value,
        "modelName": None,
        "modelVersion": None,
        "serviceName": None,
        "baseDatasetId": base_dataset_id,
        "targetDatasetId": target_dataset_id,
        "startDate": start.isoformat() if start else None,
        "endDate": end.isoformat() if end else None,
        "metricType": "column" if column else "dataset",
        "columnType": "Numerical" if column else None,
        "columnName": column,
        "pipelineStartTime": pipeline_start.isoformat() if pipeline_start else None,
        "customDimensions": {},
    }


@dataclass
class FakeDataDriftV1:
    """Scripting API: ``publish``, ``detectors``, ``metrics`` (drift id -> run id -> records), ``forbidden``."""

    detectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    #: Answer every datadrift call 403, as for an identity without a role on the workspace.
    forbidden: bool = False

    def reset(self) -> None:
        self.detectors.clear()
        self.metrics.clear()
        self.forbidden = False

    def publish(
        self,
        drift_id: str,
        run_id: str,
        coefficient: float,
        features: dict[str, dict[str, float]] | None = None,
        *,
        threshold: float = 0.3,
        start: datetime | None = None,
        end: datetime | None = None,
        pipeline_start: datetime | None = None,
    ) -> None:
        """The results of drift run ``run_id`` of monitor ``drift_id``: the coefficient and, per feature,
        metrics by their SDK names (``{"income": {"datadrift_contribution": 0.6, "wasserstein_distance": 0.4}}``)."""
        self.detectors.setdefault(drift_id, _detector(drift_id, threshold))
        records = [
            metric_record("datadrift_coefficient", coefficient, start=start, end=end, pipeline_start=pipeline_start)
        ]
        for column, values in (features or {}).items():
            records += [
                metric_record(name, value, column=column, start=start, end=end, pipeline_start=pipeline_start)
                for name, value in values.items()
            ]
        self.metrics.setdefault(drift_id, {})[run_id] = records

    def routes(self) -> list[BaseRoute]:
        return [
            # rest_client.py get: GET .../datadrifts/{id} -> DataDriftDto
            Route(DATADRIFT + "/datadrifts/{id}", self.get_detector, methods=["GET"]),
            # rest_client.py get_metrics: GET .../datadrifts/{id}/metrics -> [DataDriftMetricDto]
            Route(DATADRIFT + "/datadrifts/{id}/metrics", self.get_metrics, methods=["GET"]),
        ]

    def _refused(self, request: Request) -> Response | None:
        if self.forbidden:
            return _error(403, "AuthorizationFailed", "The caller may not read data drift monitors (fake)")
        if request.path_params["id"] not in self.detectors and request.path_params["id"] not in self.metrics:
            return _error(404, "NotFound", f"DataDrift {request.path_params['id']} not found (fake)")
        return None

    async def get_detector(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        drift_id = request.path_params["id"]
        return JSONResponse(self.detectors.get(drift_id) or _detector(drift_id, None))

    async def get_metrics(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        runs = self.metrics.get(request.path_params["id"], {})
        run_id = request.query_params.get("runId")
        if run_id is not None:
            return JSONResponse(runs.get(run_id, []))
        return JSONResponse([record for records in runs.values() for record in records])


def _detector(drift_id: str, threshold: float | None) -> dict[str, Any]:
    """A DataDriftDto (data_drift_dto.py _attribute_map keys) of a dataset-based monitor."""
    return {
        "id": drift_id,
        "name": f"monitor-{drift_id[:8]}",
        "type": "DatasetBased",
        "state": "Enabled",
        "frequency": "Day",
        "interval": 1,
        "driftThreshold": threshold,
        "features": [],
        "computeTargetName": "cpu-cluster",
        "experimentName": f"monitor-{drift_id[:8]}-Monitor-Runs",
    }
