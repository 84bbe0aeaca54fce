"""The v2 breach tag, read the way Azure ML's evaluate step writes it (drift_retrain.breaches)."""

from __future__ import annotations

import pytest

from drift_retrain.breaches import ALERTS_BELOW, MAX_TEXT, breach_text, is_breach, parse_breach

ROWS = [
    {"metric_value": 0.31, "metric_name": "JensenShannonDistance", "threshold_value": 0.1, "group": "age"},
    {"metric_value": 0.01, "metric_name": "TwoSampleKolmogorovSmirnovTest", "threshold_value": 0.05, "group": "income"},
]
HEAD = "The signal 's' has failed due to one or more features violating metric thresholds.\n"
LIST = "The feature names and their corresponding computed metric values violating the threshold are \n"


def test_the_component_text_round_trips_into_rows() -> None:
    breach = parse_breach(breach_text("credit-monitor-data-drift", ROWS))
    assert breach.signal == "credit-monitor-data-drift" and breach.unparsed is None
    assert [r.describe() for r in breach.rows] == [
        "age: JensenShannonDistance 0.31 > 0.1",
        "income: TwoSampleKolmogorovSmirnovTest 0.01 < 0.05",
    ]


def test_the_text_is_python_str_of_spark_tojson_rows() -> None:
    """Column order metric_value, metric_name, threshold_value, group; compact JSON; str() of the list."""
    text = breach_text("s", ROWS[:1])
    assert text == HEAD + LIST + (
        '[\'{"metric_value":0.31,"metric_name":"JensenShannonDistance","threshold_value":0.1,"group":"age"}\']\n'
    )


def test_quotes_in_names_survive() -> None:
    breach = parse_breach(breach_text('it\'s "mine"', [{**ROWS[0], "group": 'o\'brien "x"'}]))
    assert breach.signal == 'it\'s "mine"' and breach.rows[0].group == 'o\'brien "x"'


def test_direction_rule() -> None:
    assert is_breach("JensenShannonDistance", 0.3, 0.1) and not is_breach("JensenShannonDistance", 0.05, 0.1)
    assert is_breach("TwoSampleKolmogorovSmirnovTest", 0.01, 0.05)
    assert not is_breach("PearsonsChiSquaredTest", 0.5, 0.05) and "PearsonsChiSquaredTest" in ALERTS_BELOW
    assert not is_breach("PopulationStabilityIndex", float("nan"), 0.1)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (42, "int, not text"),
        ("x" * (MAX_TEXT + 1), "over the"),
        ("junk", "does not start with"),
        (HEAD.replace("'s'", "'a\nb'"), "control characters"),
        (HEAD, "no list"),
        (HEAD + LIST + "__import__('os')", "not a bracketed list"),
        (HEAD + LIST + "[__import__('os')]", "not a list of strings"),
        (HEAD + LIST + "[]\n", "empty"),
        (HEAD + LIST + '[1, \'[]\', \'{"metric_name": "X", "metric_value": NaN, "threshold_value": 1}\']', "row 0"),
        (HEAD + LIST + '[\'{"metric_name": "X", "metric_value": 1e999, "threshold_value": 1}\']', "finite"),
        (HEAD + LIST + '[\'{"metric_name": "X", "metric_value": ' + "9" * 400 + ', "threshold_value": 1}\']', "finite"),
        (HEAD + LIST + '[\'{"metric_name": "X", "metric_value": true, "threshold_value": 1}\']', "finite"),
        (HEAD + LIST + '[\'{"metric_name": "a\\\\u0000b", "metric_value": 1, "threshold_value": 0}\']', "control"),
        (HEAD.replace("'s'", "'a\ud800'"), "control characters"),  # a lone surrogate: no valid text
        (HEAD + LIST + '[\'{"metric_name": "a\\\\ud800", "metric_value": 1, "threshold_value": 0}\']', "control"),
    ],
)
def test_hostile_text_is_named_not_raised(text: object, why: str) -> None:
    breach = parse_breach(text)
    assert breach.rows == [] and breach.unparsed is not None and why in breach.unparsed


def test_one_bad_row_keeps_the_good_ones() -> None:
    breach = parse_breach(breach_text("s", ROWS)[:-2] + ", 'oops']\n")
    assert len(breach.rows) == 2 and breach.unparsed == "row 2: not JSON"
