"""Event Grid filter semantics: every operator, missing keys, casing, arrays, and the basic filters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drift_retrain.intake.filters import AdvancedFilter, EventFilter, lookup, matches, rejection
from drift_retrain.signals import MONITOR_BREACH_TAG
from drift_retrain.testing import sample

BREACH = "has failed due to one or more features violating metric thresholds"

EVENT = {
    "id": "e1",
    "topic": "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w",
    "subject": "models/sklearn_regression_model:20",
    "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
    "data": {
        "ModelName": "sklearn_regression_model",
        "ModelVersion": 20,
        "Ratio": 0.25,
        "Approved": True,
        "One": 1,  # a number, not a boolean
        "Nothing": None,
        "ModelTags": {"key1": "Value1", "area": "diabetes"},
        "RunTags": {MONITOR_BREACH_TAG: "Monitor credit has failed due to one or more features violating metric thresholds"},
        "Labels": ["blue", "green"],
    },
}


def rule(operator: str, key: str, value=None, values=None) -> AdvancedFilter:
    return AdvancedFilter(operator=operator, key=key, value=value, values=values)


@pytest.mark.parametrize(
    ("operator", "key", "value", "values", "expected"),
    [
        ("StringIn", "data.ModelTags.key1", None, ["value1"], True),  # case-insensitive
        ("StringIn", "data.ModelTags.key1", None, ["value2", "value3"], False),
        ("StringIn", "data.ModelTags.key1", None, ["value"], False),  # whole values, not substrings
        ("StringNotIn", "data.ModelTags.key1", None, ["value"], True),
        ("StringNotIn", "data.ModelTags.key1", None, ["value2"], True),
        ("StringNotIn", "data.ModelTags.key1", None, ["VALUE1"], False),
        ("StringContains", f"data.RunTags.{MONITOR_BREACH_TAG}", None, [BREACH], True),
        ("StringContains", f"data.RunTags.{MONITOR_BREACH_TAG}", None, ["succeeded"], False),
        ("StringNotContains", "data.ModelName", None, ["regression"], False),
        ("StringNotContains", "data.ModelName", None, ["xgboost"], True),
        ("StringBeginsWith", "data.ModelName", None, ["SKLEARN"], True),
        ("StringBeginsWith", "data.ModelName", None, ["model"], False),
        ("StringNotBeginsWith", "data.ModelName", None, ["sklearn"], False),
        ("StringEndsWith", "subject", None, [":20"], True),
        ("StringEndsWith", "subject", None, [":21"], False),
        ("StringNotEndsWith", "subject", None, [":21"], True),
        ("NumberGreaterThanOrEquals", "data.ModelVersion", 20, None, True),
        ("NumberGreaterThanOrEquals", "data.ModelVersion", 21, None, False),
        ("NumberGreaterThan", "data.ModelVersion", 20, None, False),
        ("NumberLessThan", "data.Ratio", 0.3, None, True),
        ("NumberLessThan", "data.Ratio", 0.25, None, False),
        ("NumberLessThanOrEquals", "data.Ratio", 0.25, None, True),
        ("NumberIn", "data.ModelVersion", None, [19, 20], True),
        ("NumberNotIn", "data.ModelVersion", None, [19, 20], False),
        ("NumberInRange", "data.Ratio", None, [[0, 0.2], [0.24, 0.26]], True),
        ("NumberNotInRange", "data.Ratio", None, [[0, 0.2]], True),
        ("BoolEquals", "data.Approved", True, None, True),
        ("BoolEquals", "data.Approved", False, None, False),
        ("BoolEquals", "data.One", True, None, False),  # 1 is not true
        ("IsNotNull", "data.ModelName", None, None, True),
        ("IsNotNull", "data.Nothing", None, None, False),
        ("IsNotNull", "data.Missing", None, None, False),
        ("IsNullOrUndefined", "data.Missing", None, None, True),
        ("IsNullOrUndefined", "data.Nothing", None, None, True),
        ("IsNullOrUndefined", "data.ModelName", None, None, False),
        ("StringIn", "eventtype", None, ["microsoft.machinelearningservices.modelregistered"], True),
        ("StringIn", "DATA.modeltags.KEY1", None, ["value1"], True),  # key lookup is case-insensitive
    ],
)
def test_each_operator_has_event_grids_semantics(operator, key, value, values, expected) -> None:
    assert matches(EVENT, rule(operator, key, value, values)) is expected


@pytest.mark.parametrize(
    ("operator", "value", "values", "expected"),
    [
        ("StringIn", None, ["x"], False),
        ("StringContains", None, ["x"], False),
        ("NumberGreaterThanOrEquals", 1, None, False),
        ("BoolEquals", True, None, False),
        ("StringNotIn", None, ["x"], True),
        ("StringNotContains", None, ["x"], True),
        ("NumberNotIn", None, [1], True),
    ],
)
def test_a_missing_key_fails_positive_operators_and_satisfies_negated_ones(operator, value, values, expected) -> None:
    assert matches(EVENT, rule(operator, "data.NoSuchKey", value, values)) is expected


def test_a_value_of_the_wrong_type_does_not_match() -> None:
    assert not matches(EVENT, rule("NumberGreaterThanOrEquals", "data.ModelName", 1))
    assert not matches(EVENT, rule("BoolEquals", "data.ModelVersion", True))
    assert not matches(EVENT, rule("StringIn", "data.ModelTags", values=["x"]))  # an object is never a string


def test_arrays_match_element_wise_only_when_enabled() -> None:
    has_green = rule("StringIn", "data.Labels", values=["GREEN"])
    assert not matches(EVENT, has_green)
    assert matches(EVENT, has_green, arrays=True)
    assert not matches(EVENT, rule("StringNotIn", "data.Labels", values=["green"]), arrays=True)


def test_lookup_is_case_insensitive_at_every_level() -> None:
    assert lookup(EVENT, "Data.MODELTAGS.Area") == "diabetes"


def test_filters_and_together_and_values_or_together() -> None:
    both = EventFilter(
        advanced_filters=[rule("StringIn", "data.ModelTags.key1", values=["nope", "value1"]), rule("NumberLessThan", "data.Ratio", 0.5)]
    )
    assert rejection(EVENT, EVENT["eventType"], EVENT["subject"], both) is None
    one_fails = EventFilter(
        advanced_filters=[rule("StringIn", "data.ModelTags.key1", values=["value1"]), rule("NumberLessThan", "data.Ratio", 0.1)]
    )
    assert rejection(EVENT, EVENT["eventType"], EVENT["subject"], one_fails) == "advanced filter not met: data.Ratio NumberLessThan 0.1"


def test_included_event_types_and_subject_filters() -> None:
    subject, kind = EVENT["subject"], EVENT["eventType"]
    assert rejection(EVENT, kind, subject, EventFilter(included_event_types=[kind.upper()])) is None
    assert "not in included_event_types" in rejection(EVENT, kind, subject, EventFilter(included_event_types=["Other"]))
    assert rejection(EVENT, kind, subject, EventFilter(subject_begins_with="MODELS/")) is None
    assert "does not begin with" in rejection(EVENT, kind, subject, EventFilter(subject_begins_with="datadrifts/"))
    assert rejection(EVENT, kind, subject, EventFilter(subject_ends_with=":20")) is None
    assert "does not end with" in rejection(EVENT, kind, subject, EventFilter(subject_ends_with=":2"))
    sensitive = EventFilter(subject_begins_with="MODELS/", subject_case_sensitive=True)
    assert "does not begin with" in rejection(EVENT, kind, subject, sensitive)


def test_the_documented_v2_breach_filter_passes_a_breach_and_stops_a_plain_status_change() -> None:
    breach_filter = EventFilter(
        included_event_types=["Microsoft.MachineLearningServices.RunStatusChanged"],
        advanced_filters=[rule("StringContains", f"data.RunTags.{MONITOR_BREACH_TAG}", values=[BREACH])],
    )
    plain = sample("eg_RunStatusChanged.json")[0]
    assert "advanced filter not met" in rejection(plain, plain["eventType"], plain["subject"], breach_filter)
    plain["data"]["runTags"] = {MONITOR_BREACH_TAG: f"Signal x {BREACH}"}  # camelCase runTags, as the sample has it
    assert rejection(plain, plain["eventType"], plain["subject"], breach_filter) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"operator": "StringIn", "key": "data.x"}, "non-empty list of 'values'"),
        ({"operator": "StringIn", "key": "data.x", "values": [1]}, "values must be strings"),
        ({"operator": "NumberLessThan", "key": "data.x", "values": [1]}, "takes one 'value'"),
        ({"operator": "BoolEquals", "key": "data.x", "value": 1}, "needs a boolean value"),
        ({"operator": "IsNotNull", "key": "data.x", "value": 1}, "takes neither"),
        ({"operator": "StringIn", "key": "data.x", "values": [str(i) for i in range(26)]}, "at most 25 values"),
        ({"operator": "NumberInRange", "key": "data.x", "values": [[2, 1]]}, r"\[low, high\] pairs"),
        ({"operator": "StringLike", "key": "data.x", "values": ["a"]}, "operator"),
    ],
)
def test_malformed_filters_are_refused(fields, message) -> None:
    with pytest.raises(ValidationError, match=message):
        AdvancedFilter(**fields)
