"""Parameter templates: configured strings like ``"{window_start_date}"`` filled in from a drift signal.

Pipelines differ in what they call their parameters, so the config maps each pipeline parameter to a
template over a fixed vocabulary. An unknown placeholder fails at config load, not mid-retrain.

The configuration is trusted; the event is not. A placeholder whose value comes from the event is listed in
``UNTRUSTED`` with the rule its value must meet each time it is rendered (a strict pattern: no ``/`` or ``\\``,
no ``..``, no ``azureml:``, so no event value can point a parameter somewhere else), and a rendered value never
decides what kind of input it becomes: ``configured_uri`` reads that from the template's own text and the
trusted placeholders (``{copy_output_uri}`` is where our own copy step put the data).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
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


_SEGMENT = r"[A-Za-z0-9_.()-]+"  # an ARM id's names (resource groups may hold '.' and '()'; no braces, no '/')
_WORKSPACE = (
    rf"/subscriptions/{_SEGMENT}/resourceGroups/{_SEGMENT}/providers/Microsoft\.MachineLearningServices/"
    rf"workspaces/{_SEGMENT}"
)
_TOKEN = r"(?!azureml:)[A-Za-z0-9][A-Za-z0-9_.:-]*"
_NO_TRAVERSAL = r"(?!.*\.\.)"
_ISO = r"(\d{4}-\d{2}-\d{2}(T[0-9:.]+([+-][0-9:]+)?)?)?"

#: The rule of each kind of event-derived value, stated as it is shown in an error and on docs/configuration.md.
_RULES: dict[str, tuple[str, str]] = {
    "token": (f"({_TOKEN})?", "an id (or nothing): letters, digits, '_', '-', '.', ':'; not starting with azureml:"),
    "workspace": (_WORKSPACE, "an Azure ML workspace ARM id of plain names"),
    "identity": (f"{_WORKSPACE}/runs/{_TOKEN}", "<workspace ARM id>/runs/<run id>"),
    "time": (_ISO, "an ISO 8601 date or date-time"),
    "number": (r"([0-9]+(\.[0-9]+)?(e-[0-9]+)?)?", "a number in [0, 1]"),
    "text": (r"(?!azureml:)[^/\\\x00-\x1f\x7f-\x9f]*", "text without '/', '\\' or control characters"),
}

#: Every placeholder whose value comes from the event, and the kind of rule it is checked against when rendered
#: (all of them: no '..' either). The others are the configuration's (model_name, target), our own (kind,
#: signal_key: a digest) or our copy step's (copy_output_uri, copy_run_id).
UNTRUSTED: dict[str, str] = {
    "signal_identity": "identity",
    "event_id": "token",
    "workspace_id": "workspace",
    "workspace_name": "token",
    "monitor": "token",
    "monitor_id": "token",
    "run_id": "token",
    "window_start": "time",
    "window_end": "time",
    "window_start_date": "time",
    "window_end_date": "time",
    "base_dataset_id": "token",
    "target_dataset_id": "token",
    "drift_coefficient": "number",
    "breached_metrics": "text",
}
_CHECKS = {kind: re.compile(_NO_TRAVERSAL + pattern, re.IGNORECASE) for kind, (pattern, _) in _RULES.items()}


class UntrustedValue(ValueError):
    """An event-derived value breaks its placeholder's rule; rendering it is refused."""


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def _checked(template: str, fields: Mapping[str, str]) -> None:
    for name in _placeholders(template):
        kind = UNTRUSTED.get(name)
        if kind is not None and not _CHECKS[kind].fullmatch(fields[name]):
            raise UntrustedValue(
                f"template {template!r}: {{{name}}} is {fields[name][:80]!r}, which the event set and which is "
                f"not {_RULES[kind][1]} without '..'; refused"
            )


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
    return {key: render_one(value, fields) if isinstance(value, str) else value for key, value in templates.items()}


def render_one(template: str, fields: Mapping[str, str]) -> str:
    """Fill one template, each event-derived value checked against its rule first (``UntrustedValue``)."""
    _checked(template, fields)
    return template.format_map(fields)


def configured_uri(template: str, fields: Mapping[str, str]) -> bool:
    """Whether the configuration makes this template a URI (``scheme://...`` or ``azureml:...``): judged on its
    own text with the trusted placeholders filled in and every event-derived one left empty, so no event value
    can turn a literal into a data input."""
    text = template.format_map({**fields, **dict.fromkeys(UNTRUSTED, "")})
    return "://" in text or text.lower().startswith("azureml:")


@dataclass(frozen=True)
class Filled:
    """A rendered input and whether the configuration (not the event) makes it a URI."""

    value: bool | int | float | str
    uri: bool


def fill(templates: Mapping[str, bool | int | float | str], fields: Mapping[str, str]) -> dict[str, Filled]:
    """``render``, keeping with each value whether its template is a URI by configuration (``configured_uri``)."""
    return {
        key: Filled(render_one(value, fields), configured_uri(value, fields))
        if isinstance(value, str)
        else Filled(value, False)
        for key, value in templates.items()
    }
