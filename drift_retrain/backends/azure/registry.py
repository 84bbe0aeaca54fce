"""The workspace's model registry through azure-ai-ml: list versions, register a job's model output.

Registration is idempotent on the signal tag: a rerun finds the version this signal registered before
(``already_registered=True``) instead of adding another. Metrics travel as string properties
``metric.<name>`` (Azure ML tags and properties are strings) and are read back from them. A tag value
longer than ``MAX_TAG_VALUE`` is shortened in the tags and kept whole in the properties.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from drift_retrain.backends.azure.mlclient import ml_client
from drift_retrain.backends.azure.session import AzureSession
from drift_retrain.config import AzureTarget
from drift_retrain.names import SIGNAL_TAG, signal_of
from drift_retrain.results import ModelVersion, TrainingResult

METRIC_PREFIX = "metric."
MAX_TAG_VALUE = 256
TRUNCATED = "... (full value in the version's properties)"


class AzureModelRegistry:
    def __init__(self, session: AzureSession, target: AzureTarget) -> None:
        self.session, self.target, self.config = session, target, target.registry

    @property
    def ml(self) -> Any:
        return ml_client(self.session, self.target.workspace)

    def versions(self, name: str) -> list[ModelVersion]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            models = list(self.ml.models.list(name=name))
        except ResourceNotFoundError:
            return []
        return sorted((_version(m) for m in models), key=lambda v: v.version)

    def register(self, name: str, training: TrainingResult, tags: dict[str, str]) -> ModelVersion:
        from azure.ai.ml.entities import Model

        signal = signal_of(tags)
        if signal:
            for version in self.versions(name):
                if signal_of(version.tags) == signal:
                    return version.model_copy(update={"already_registered": True})
        short_tags, long_values = _fit_tags(tags)
        properties = {
            **long_values,
            "drift_retrain.job_id": training.job_id,
            "drift_retrain.rows_train": str(training.rows_train),
            "drift_retrain.rows_test": str(training.rows_test),
            **{f"{METRIC_PREFIX}{k}": repr(float(v)) for k, v in training.metrics.items() if math.isfinite(v)},
        }
        model = self.ml.models.create_or_update(
            Model(
                name=name,
                path=training.model_uri,
                type=self.config.model_type,
                description=f"Retrained by drift-retrain ({self.target.name}) from job {training.job_id}",
                tags=short_tags,
                properties=properties,
            )
        )
        return _version(model)


def _fit_tags(tags: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Tags as strings no longer than MAX_TAG_VALUE, and the whole values of the ones that were not."""
    short: dict[str, str] = {}
    long: dict[str, str] = {}
    for key, value in tags.items():
        text = str(value)
        if len(text) > MAX_TAG_VALUE and key != SIGNAL_TAG:
            short[key] = text[: MAX_TAG_VALUE - len(TRUNCATED)] + TRUNCATED
            long[key] = text
        else:
            short[key] = text
    return short, long


def _version(model: Any) -> ModelVersion:
    created = getattr(getattr(model, "creation_context", None), "created_at", None)
    if not isinstance(created, datetime):
        created = datetime.now(UTC)
    elif created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    metrics: dict[str, float] = {}
    for key, value in (model.properties or {}).items():
        if key.startswith(METRIC_PREFIX):
            try:
                metrics[key.removeprefix(METRIC_PREFIX)] = float(value)
            except (TypeError, ValueError):
                continue
    return ModelVersion(
        name=model.name,
        version=int(model.version),
        uri=str(model.path),
        created_at=created,
        tags={k: str(v) for k, v in (model.tags or {}).items()},
        metrics=metrics,
    )
