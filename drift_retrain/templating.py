"""Parameter templates: configured strings like ``"{window_start_date}"`` filled in from a drift signal.

Pipelines differ in what they call their parameters, so the config maps each pipeline parameter to a
template over a fixed vocabulary. An unknown placeholder fails at config load, not mid-retrain.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator

from drift_retrain.signals import DriftSignal

#: Every placeholder a template may use, and what it means (shown in errors and, generated, on docs/configuration.md).
FIELDS: dict[str, str] = {
    "signal_identity": "workspace/runs/<drift run>: the signal's identity",
    "signal_key": "a 20-hex digest of the identity, safe in any name",
    "event_id": "the Event Grid event id",
    "workspace_id": "the workspace ARM id",
    "workspace_name": "the workspace name",
    "monitor": "the drift monitor's name (DataDriftName, or the v2 monitor)",
    "monitor_id": "DataDriftId (v1), empty for v2",
    "run_id": "the drift / monitor run id",
    "kind": "dataset_drift, model_monitor or manual",
    "window_start": "start of the drift window, ISO 8601 (empty when the event has none)",
    "window_end": "end of the drift window, ISO 8601",
    "window_start_date": "start of the window, YYYY-MM-DD",
    "window_end_date": "end of the window, YYYY-MM-DD",
    "base_dataset_id": "BaseDatasetId (v1)",
    "target_dataset_id": "TargetDatasetId (v1)",
    "drift_coefficient": "DriftCoefficient (v1), empty for v2",
    "breached_metrics": "the breached rows (v2), comma-separated: 'age: JensenShannonDistance 0.31 > 0.1'",
    "model_name": "the target's model name",
    "target": "the target's name",
    "copy_output_uri": "where the copy step put the data (training step only)",
    "copy_run_id": "the Data Factory run id (training step only)",
}


def _check(template: str) -> str:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write literal braces as {{{{ }}}}") from None
    unknown = sorted({n for n in names if n not in FIELDS})
    if unknown:
        raise ValueError(
            f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; known: {', '.join(FIELDS)}"
        )
    return template


def _check_strings(value: object) -> object:
    return _check(value) if isinstance(value, str) else value


Template = Annotated[str, AfterValidator(_check)]
#: Parameter name -> template; numbers and booleans are passed as they are.
TemplateMap = dict[str, Annotated[bool | int | float | str, AfterValidator(_check_strings)]]


def signal_fields(signal: DriftSignal, model_name: str, target: str, **extra: str) -> dict[str, str]:
    """The values templates are filled with, as strings (empty when the signal lacks one)."""

    def iso(value: object) -> str:
        return value.isoformat() if value is not None else ""  # type: ignore[attr-defined]

    return {
        "signal_identity": signal.identity,
        "signal_key": signal.digest,
        "event_id": signal.event_id,
        "workspace_id": signal.workspace_id,
        "workspace_name": signal.workspace_name,
        "monitor": signal.monitor,
        "monitor_id": signal.monitor_id or "",
        "run_id": signal.run_id,
        "kind": signal.kind.value,
        "window_start": iso(signal.window_start),
        "window_end": iso(signal.window_end),
        "window_start_date": signal.window_start.date().isoformat() if signal.window_start else "",
        "window_end_date": signal.window_end.date().isoformat() if signal.window_end else "",
        "base_dataset_id": signal.base_dataset_id or "",
        "target_dataset_id": signal.target_dataset_id or "",
        "drift_coefficient": "" if signal.drift_coefficient is None else repr(signal.drift_coefficient),
        "breached_metrics": ",".join(signal.breached_metrics),
        "model_name": model_name,
        "target": target,
        "copy_output_uri": "",
        "copy_run_id": "",
        **extra,
    }


def render(templates: Mapping[str, object], fields: Mapping[str, str]) -> dict[str, object]:
    """Fill every string template; numbers and booleans pass through unchanged."""
    return {key: value.format_map(fields) if isinstance(value, str) else value for key, value in templates.items()}


def render_one(template: str, fields: Mapping[str, str]) -> str:
    return template.format_map(fields)
