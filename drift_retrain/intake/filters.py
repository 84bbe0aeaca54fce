"""Event Grid subscription filters, evaluated by the receiver as a second line of defence.

The same settings produce the Azure subscription (``drift_retrain.intake.subscription``) and decide here which
delivered events a target takes, with Event Grid's own semantics:

- included event types and subject begins/ends with; string comparisons are case-insensitive (the
  subject ones unless ``subject_case_sensitive``);
- advanced filters AND together; the values of one filter OR together (the negated operators AND:
  "in none of"); keys address the envelope (``subject``, ``eventType``/``type``, ``topic``/``source``,
  ``id``) or the data (``data.RunTags.x``), looked up case-insensitively;
- a key missing from the event fails every operator except the negated ones and ``IsNullOrUndefined``,
  which it satisfies; a value of the wrong type counts as missing;
- arrays are matched element by element only with ``advanced_filtering_on_arrays`` (as in Azure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_ADVANCED_FILTERS = 25
MAX_FILTER_VALUES = 25

Operator = Literal[
    "NumberIn",
    "NumberNotIn",
    "NumberLessThan",
    "NumberGreaterThan",
    "NumberLessThanOrEquals",
    "NumberGreaterThanOrEquals",
    "NumberInRange",
    "NumberNotInRange",
    "StringIn",
    "StringNotIn",
    "StringBeginsWith",
    "StringNotBeginsWith",
    "StringEndsWith",
    "StringNotEndsWith",
    "StringContains",
    "StringNotContains",
    "BoolEquals",
    "IsNullOrUndefined",
    "IsNotNull",
]

#: Operators that take one ``value``; the others take a list of ``values`` (the null checks take none).
SINGLE_VALUE = {
    "NumberLessThan",
    "NumberGreaterThan",
    "NumberLessThanOrEquals",
    "NumberGreaterThanOrEquals",
    "BoolEquals",
}
NO_VALUE = {"IsNullOrUndefined", "IsNotNull"}
NEGATED = {
    "NumberNotIn",
    "NumberNotInRange",
    "StringNotIn",
    "StringNotBeginsWith",
    "StringNotEndsWith",
    "StringNotContains",
}

_MISSING = object()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdvancedFilter(_Strict):
    """One Event Grid advanced filter, e.g. ``data.RunTags.x StringContains 'has failed'``."""

    operator: Operator = Field(description="Event Grid's advanced filter operator, e.g. StringContains.")
    key: str = Field(
        min_length=1,
        pattern=r"^[^.\s]+(\.[^.\s]+){0,9}$",
        description="The event field compared, e.g. data.ModelTags.key1.",
    )
    value: float | bool | None = Field(
        default=None, description="The one value of a single-value operator (NumberLessThan, BoolEquals, ...)."
    )
    values: list[str] | list[float] | list[list[float]] | None = Field(
        default=None, description="The values of the other operators ([low, high] pairs for the InRange ones)."
    )

    @model_validator(mode="after")
    def _arity(self) -> AdvancedFilter:
        if self.operator in NO_VALUE:
            if self.value is not None or self.values is not None:
                raise ValueError(f"{self.operator} takes neither value nor values")
        elif self.operator in SINGLE_VALUE:
            if self.value is None or self.values is not None:
                raise ValueError(f"{self.operator} takes one 'value'")
            if (self.operator == "BoolEquals") != isinstance(self.value, bool):
                raise ValueError(
                    f"{self.operator} needs a {'boolean' if self.operator == 'BoolEquals' else 'number'} value"
                )
        else:
            if not self.values or self.value is not None:
                raise ValueError(f"{self.operator} takes a non-empty list of 'values'")
            if len(self.values) > MAX_FILTER_VALUES:
                raise ValueError(f"at most {MAX_FILTER_VALUES} values per filter (Event Grid's limit)")
            self._check_value_types()
        return self

    def _check_value_types(self) -> None:
        assert self.values is not None
        if self.operator.startswith("String"):
            if not all(isinstance(v, str) for v in self.values):
                raise ValueError(f"{self.operator} values must be strings")
        elif self.operator.endswith("InRange"):
            if not all(isinstance(v, list) and len(v) == 2 and v[0] <= v[1] for v in self.values):
                raise ValueError(f"{self.operator} values must be [low, high] pairs")
        elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values):
            raise ValueError(f"{self.operator} values must be numbers")

    def ranges(self) -> list[tuple[float, float]]:
        """The ``[low, high]`` pairs of ``NumberInRange`` and ``NumberNotInRange`` (validated as such)."""
        return [(v[0], v[1]) for v in self.values or [] if isinstance(v, list)]

    def describe(self) -> str:
        shown = self.value if self.operator in SINGLE_VALUE else self.values
        return f"{self.key} {self.operator}" + ("" if self.operator in NO_VALUE else f" {json.dumps(shown)}")


class EventFilter(_Strict):
    """What one Event Grid subscription lets through (empty: everything)."""

    included_event_types: list[str] = Field(default=[], description="Event types let through; empty: all event types.")
    subject_begins_with: str = Field(default="", description="Let through only events whose subject begins with this.")
    subject_ends_with: str = Field(default="", description="Let through only events whose subject ends with this.")
    subject_case_sensitive: bool = Field(default=False, description="Compare the subject filters case-sensitively.")
    advanced_filters: list[AdvancedFilter] = Field(
        default=[], max_length=MAX_ADVANCED_FILTERS, description="Filters on event fields, all of which must hold."
    )
    advanced_filtering_on_arrays: bool = Field(
        default=False, description="Match array-valued event fields element by element in advanced filters."
    )


def lookup(event: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key, each level matched case-insensitively; ``_MISSING`` when absent."""
    current: Any = event
    for part in key.split("."):
        if not isinstance(current, Mapping):
            return _MISSING
        lowered = part.lower()
        for name, value in current.items():
            if str(name).lower() == lowered:
                current = value
                break
        else:
            return _MISSING
    return current


def rejection(event: Mapping[str, Any], event_type: str, subject: str, rules: EventFilter) -> str | None:
    """Why ``rules`` keep this event out, or None when it passes every filter."""
    if rules.included_event_types and event_type.lower() not in {t.lower() for t in rules.included_event_types}:
        return f"event type {event_type} is not in included_event_types"
    fold = (lambda s: s) if rules.subject_case_sensitive else str.lower
    if rules.subject_begins_with and not fold(subject).startswith(fold(rules.subject_begins_with)):
        return f"subject '{subject}' does not begin with '{rules.subject_begins_with}'"
    if rules.subject_ends_with and not fold(subject).endswith(fold(rules.subject_ends_with)):
        return f"subject '{subject}' does not end with '{rules.subject_ends_with}'"
    for rule in rules.advanced_filters:
        if not matches(event, rule, arrays=rules.advanced_filtering_on_arrays):
            return f"advanced filter not met: {rule.describe()}"
    return None


def matches(event: Mapping[str, Any], rule: AdvancedFilter, *, arrays: bool = False) -> bool:
    """Whether one advanced filter holds for the event."""
    value = lookup(event, rule.key)
    if rule.operator == "IsNullOrUndefined":
        return value is _MISSING or value is None
    if rule.operator == "IsNotNull":
        return value is not _MISSING and value is not None
    if isinstance(value, list):
        if not arrays:
            return rule.operator in NEGATED  # Azure compares arrays only when array filtering is on
        candidates = value
        if rule.operator in NEGATED:
            return all(_holds(rule, v) for v in candidates)
        return any(_holds(rule, v) for v in candidates)
    return _holds(rule, value)


def _holds(rule: AdvancedFilter, value: Any) -> bool:
    op = rule.operator
    if op == "BoolEquals":
        return isinstance(value, bool) and value == rule.value
    if op.startswith("Number"):
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is None:
            return op in NEGATED
        return _number(op, number, rule)
    text = _as_text(value)
    if text is None:
        return op in NEGATED
    return _string(op, text.lower(), [str(v).lower() for v in rule.values or []])


def _number(op: str, number: float, rule: AdvancedFilter) -> bool:
    if op in SINGLE_VALUE:
        if rule.value is None:  # the validator gives every single-value operator its value
            raise ValueError(f"{op} has no value")
        limit = float(rule.value)
        return {
            "NumberLessThan": number < limit,
            "NumberGreaterThan": number > limit,
            "NumberLessThanOrEquals": number <= limit,
            "NumberGreaterThanOrEquals": number >= limit,
        }[op]
    if op in ("NumberInRange", "NumberNotInRange"):
        inside = any(low <= number <= high for low, high in rule.ranges())
        return inside if op == "NumberInRange" else not inside
    listed = any(number == v for v in rule.values or [])
    return listed if op == "NumberIn" else not listed


def _string(op: str, text: str, values: list[str]) -> bool:
    test = {
        "StringIn": lambda v: text == v,
        "StringBeginsWith": text.startswith,
        "StringEndsWith": text.endswith,
        "StringContains": lambda v: v in text,
    }
    positive = op.replace("Not", "")
    hit = any(test[positive](v) for v in values)
    return not hit if op in NEGATED else hit


def _as_text(value: Any) -> str | None:
    """Strings compare as they are; numbers and booleans as their JSON text; objects never."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None
