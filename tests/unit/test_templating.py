"""Parameter templates are filled from the signal; unknown placeholders never reach a pipeline."""

from __future__ import annotations

import pytest

from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.templating import FIELDS, render, render_one, signal_fields
from drift_retrain.testing import dataset_drift


def test_every_placeholder_is_filled_from_a_v1_signal() -> None:
    signal = to_drift_signal(dataset_drift("mon_1700000000000", StartTime="2026-11-01T00:00:00Z", EndTime="2026-11-08T00:00:00Z"))
    fields = signal_fields(signal, "credit-default", "credit", copy_output_uri="azureml://x/")
    assert set(fields) == set(FIELDS)
    rendered = render(
        {"start": "{window_start}", "day": "{window_end_date}", "out": "{copy_output_uri}", "n": 3, "flag": True, "lit": "{{x}}"},
        fields,
    )
    assert rendered == {
        "start": "2026-11-01T00:00:00+00:00",
        "day": "2026-11-08",
        "out": "azureml://x/",
        "n": 3,
        "flag": True,
        "lit": "{x}",
    }
    assert render_one("{model_name}/{signal_key}", fields) == f"credit-default/{fields['signal_key']}"
    assert len(fields["signal_key"]) == 20 and fields["run_id"] == "mon_1700000000000"


def test_v2_signal_leaves_v1_only_fields_empty() -> None:
    from drift_retrain.testing import monitor_breach

    rows = [{"metric_value": 0.31, "metric_name": "JensenShannonDistance", "threshold_value": 0.1, "group": "age"},
            {"metric_value": 0.4, "metric_name": "NormalizedWassersteinDistance", "threshold_value": 0.2, "group": "income"}]
    fields = signal_fields(to_drift_signal(monitor_breach("r1", rows=rows)), "m", "t")
    assert fields["drift_coefficient"] == "" and fields["window_start"] == "" and fields["kind"] == "model_monitor"
    assert fields["breached_metrics"] == "age: JensenShannonDistance 0.31 > 0.1,income: NormalizedWassersteinDistance 0.4 > 0.2"


@pytest.mark.parametrize("template", ["{nope}", "{window_start", "{0}"])
def test_bad_templates_are_refused(template: str) -> None:
    from pydantic import TypeAdapter, ValidationError

    from drift_retrain.templating import Template

    with pytest.raises(ValidationError):
        TypeAdapter(Template).validate_python(template)
