"""Azure ML v2 model-monitor breaches: the tag text the monitor writes, its rows, and which way a metric alerts.

The monitor's *evaluate-metrics-threshold* step tags its own run with ``azureml_modelmonitor_threshold_breached``;
the value is prose around a Python ``str()`` of a list of JSON strings, one per breached (metric, group) row.
Source: Azure/azureml-assets
``assets/model_monitoring/components/src/model_monitor_evaluate_metrics_threshold/evaluate_metrics_threshold.py``
(``_generate_error_message``, ``send_email_for_breached``) and ``.../src/shared_utilities/constants.py``.

Everything here is pure: it reads hostile text into bounded, typed rows and never raises on bad text (a tag
whose rows cannot be read is still a breach: its presence is the breach).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from drift_retrain.text import finite_number, plain_name

#: The run tag the evaluate step sets when a signal breached (evaluate_metrics_threshold.py ``send_email_for_breached``).
BREACH_TAG = "azureml_modelmonitor_threshold_breached"
#: Set on the monitor's root run only when notification emails are configured, one per signal
#: (azureml-assets .../src/shared_utilities/event_utils.py ``post_email_event``).
ROOT_BREACH_TAG_PREFIX = "azureml.modelmonitor.threshold.breached."

#: Metrics that alert when the value falls *below* the threshold; every other metric alerts above it
#: (evaluate_metrics_threshold.py ``Metric_Value_Should_Greater_Than_Threshold``; names from shared_utilities/constants.py).
ALERTS_BELOW = frozenset(
    {
        "TwoSampleKolmogorovSmirnovTest",
        "PearsonsChiSquaredTest",
        "NormalizedDiscountedCumulativeGain",
        "AggregatedCoherencePassRate",
        "AggregatedGroundednessPassRate",
        "AggregatedFluencyPassRate",
        "AggregatedSimilarityPassRate",
        "AggregatedRelevancePassRate",
        "AverageCoherenceScore",
        "AverageGroundednessScore",
        "AverageFluencyScore",
        "AverageRelevanceScore",
        "AverageSimilarityScore",
    }
)

#: The longest tag text read; a monitor with every feature of a wide table breaching stays far below it.
MAX_TEXT = 256 * 1024
MAX_ROWS = 1000
MAX_NAME = 256

_HEAD = re.compile(
    r"^The signal '(?P<signal>.*?)' has failed due to one or more features violating metric thresholds\.\n", re.DOTALL
)
_LIST = re.compile(
    r"The feature names and their corresponding computed metric values violating the threshold are \n(?P<rows>.*)$",
    re.DOTALL,
)


class BreachRow(BaseModel):
    """One breached row: a metric of one feature (or group) past its threshold."""

    model_config = ConfigDict(frozen=True)

    metric: str = Field(
        max_length=MAX_NAME, description="metric_name, as the monitor spells it (JensenShannonDistance)"
    )
    value: float = Field(description="metric_value, finite")
    threshold: float = Field(description="threshold_value, finite")
    group: str | None = Field(
        default=None, max_length=MAX_NAME, description="the feature (or group) it was computed on"
    )

    @property
    def alerts_below(self) -> bool:
        return self.metric in ALERTS_BELOW

    def describe(self) -> str:
        """``age: JensenShannonDistance 0.31 > 0.1`` (the relation is the component's direction rule)."""
        relation = "<" if self.alerts_below else ">"
        where = f"{self.group}: " if self.group else ""
        return f"{where}{self.metric} {self.value:.4g} {relation} {self.threshold:.4g}"


class Breach(BaseModel):
    """What a breach tag says: the signal's name and its breached rows, or why the rows could not be read."""

    model_config = ConfigDict(frozen=True)

    signal: str | None = Field(default=None, max_length=MAX_NAME, description="The monitor signal's name")
    rows: list[BreachRow] = Field(default_factory=list)
    unparsed: str | None = Field(default=None, description="Why (some) rows could not be read, None when all were")


def is_breach(metric: str, value: float, threshold: float) -> bool:
    """The component's rule: below the threshold for ``ALERTS_BELOW`` metrics, above it for the rest."""
    if not (math.isfinite(value) and math.isfinite(threshold)):
        return False
    return value < threshold if metric in ALERTS_BELOW else value > threshold


def parse_breach(text: object) -> Breach:
    """Read a breach tag's value. Never raises: what cannot be read is named in ``Breach.unparsed``."""
    if not isinstance(text, str):
        return Breach(unparsed=f"the tag value is {type(text).__name__}, not text")
    if len(text) > MAX_TEXT:
        return Breach(unparsed=f"the tag value is {len(text)} characters, over the {MAX_TEXT} read")
    head = _HEAD.match(text)
    signal = plain_name(head.group("signal"), MAX_NAME) if head else None
    if head is None:
        return Breach(unparsed="the tag text does not start with \"The signal '<name>' has failed ...\"")
    if signal is None:
        return Breach(unparsed="the signal name is empty, too long or has control characters")
    found = _LIST.search(text, head.end())
    if found is None:
        return Breach(signal=signal, unparsed="the tag text has no list of violating features")
    items = _literal_list(found.group("rows").strip())
    if isinstance(items, str):
        return Breach(signal=signal, unparsed=items)
    rows: list[BreachRow] = []
    problems: list[str] = []
    for index, item in enumerate(items[:MAX_ROWS]):
        row = _row(item)
        if isinstance(row, str):
            problems.append(f"row {index}: {row}")
        else:
            rows.append(row)
    if len(items) > MAX_ROWS:
        problems.append(f"{len(items) - MAX_ROWS} rows past the first {MAX_ROWS} not read")
    if not items:
        problems.append("the list of violating features is empty")
    return Breach(signal=signal, rows=rows, unparsed="; ".join(problems[:5]) or None)


def breach_text(signal: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """The tag value exactly as the component builds it: its prose around ``str()`` of Spark ``toJSON()`` rows
    (compact JSON, columns metric_value, metric_name, threshold_value[, group]; nulls omitted). For fakes and
    fixtures: what a real workspace sends."""
    order = ("metric_value", "metric_name", "threshold_value", "group")
    documents = [
        json.dumps({key: row[key] for key in order if row.get(key) is not None}, separators=(",", ":")) for row in rows
    ]
    return (
        f"The signal '{signal}' has failed due to one or more features violating metric thresholds.\n"
        "The feature names and their corresponding computed metric values violating "
        f"the threshold are \n{documents}\n"
    )


def _literal_list(text: str) -> list[object] | str:
    """The ``str()`` of a list of strings, read as a literal (never evaluated as code)."""
    if not (text.startswith("[") and text.endswith("]")):
        return "the violating features are not a bracketed list"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        return f"the violating features are not a list of strings ({type(exc).__name__})"
    if not isinstance(value, list):
        return "the violating features are not a list"
    return value


def _row(item: object) -> BreachRow | str:
    if not isinstance(item, str):
        return f"a {type(item).__name__}, not a JSON string"
    try:
        data = json.loads(item)
    except ValueError:
        return "not JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    metric = plain_name(data.get("metric_name"), MAX_NAME)
    if metric is None:
        return "metric_name missing, not text, too long or has control characters"
    value, threshold = finite_number(data.get("metric_value")), finite_number(data.get("threshold_value"))
    if value is None or threshold is None:
        return f"{metric}: metric_value and threshold_value must be finite numbers"
    group = data.get("group")
    clean_group = plain_name(group, MAX_NAME) if group is not None else None
    if group is not None and clean_group is None:
        return f"{metric}: group is not text, too long or has control characters"
    return BreachRow(metric=metric, value=value, threshold=threshold, group=clean_group)
