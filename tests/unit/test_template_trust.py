"""Issue 14 item 12: an event value never decides what a pipeline input is, nor where it points.

As it was: ``training._input`` typed an input from its rendered VALUE, so an event value containing ``://`` or
starting with ``azureml:`` turned a literal into a ``uri_folder`` pointing wherever the event said, and
``{run_id}``, ``{target_dataset_id}``, ``{monitor_id}`` were filled in unchecked. The signals here are built with
``model_construct`` (as if intake validation were bypassed), to show the template layer holds on its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from azure.ai.ml import Input

from drift_retrain.backends.azure.training import PipelineJobTraining, _batch_input, _input
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.signals import DriftSignal
from drift_retrain.templating import UNTRUSTED, Filled, UntrustedValue, configured_uri, fill, render, signal_fields
from drift_retrain.testing import DEMO_WORKSPACE, dataset_drift, monitor_breach

ROOT = Path(__file__).resolve().parents[2]
COPY_URI = "azureml://datastores/training/paths/credit-default/2026-11-08_0123456789abcdef0123/"
HOSTILE = [
    "azureml://datastores/attacker/paths/poison/",
    "azureml:attacker_asset:1",
    "https://evil.example/data",
    "../../other-model/data",
    "a/b",
    "..",
]


def _signal() -> DriftSignal:
    return to_drift_signal(
        dataset_drift(
            "credit-default-drift_1717000000000", StartTime="2026-11-01T00:00:00Z", EndTime="2026-11-08T00:00:00Z"
        )
    )


def _hostile(field: str, value: str) -> DriftSignal:
    """The same signal with one field set to what no intake would accept."""
    return DriftSignal.model_construct(**{**dict(_signal()), field: value})


def _fields(signal: DriftSignal) -> dict[str, str]:
    return signal_fields(signal, "credit-default", "credit", copy_output_uri=COPY_URI, copy_run_id="adf-run-1")


# -- a hostile value is refused when rendered ----------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "field", ["run_id", "target_dataset_id", "monitor_id", "base_dataset_id", "event_id", "monitor"]
)
def test_a_hostile_event_value_is_refused_when_rendered_anywhere(field, value) -> None:
    fields = _fields(_hostile(field, value))
    for template in (f"{{{field}}}", f"azureml://datastores/training/paths/{{{field}}}/", f"churn/{{{field}}}"):
        with pytest.raises(UntrustedValue, match=re.escape(f"{{{field}}}")):
            fill({"x": template}, fields)
        with pytest.raises(UntrustedValue):
            render({"sinkFolder": template}, fields)  # Data Factory parameters and v1 ParameterAssignments too


def test_breached_metrics_with_a_path_in_a_feature_name_is_refused_when_rendered() -> None:
    fields = _fields(_hostile("breached_metrics", ["../x: JensenShannonDistance 0.31 > 0.1"]))  # type: ignore[arg-type]
    fields["breached_metrics"] = "../x: JensenShannonDistance 0.31 > 0.1"
    with pytest.raises(UntrustedValue, match="breached_metrics"):
        render({"why": "{breached_metrics}"}, fields)


def test_real_values_render() -> None:
    v1 = _fields(_signal())
    rendered = render({k: f"{{{k}}}" for k in UNTRUSTED}, v1)
    assert rendered["run_id"] == "credit-default-drift_1717000000000" and rendered["window_end_date"] == "2026-11-08"
    breach = monitor_breach("7f3c9a51-0d2e-4b8f-9a61-2c4e8d1b5f01", DEMO_WORKSPACE)  # the docs' {workspace-name}: no
    v2 = signal_fields(to_drift_signal(breach), "m", "t")
    assert render({k: f"{{{k}}}" for k in UNTRUSTED}, v2)["monitor_id"] == ""  # v1-only fields render empty


# -- the type comes from the configuration ---------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE[:3])
def test_a_hostile_value_cannot_turn_an_input_into_a_uri_folder(value) -> None:
    """Even were the render check bypassed: the type is judged on the template, and these templates are literals."""
    fields = _fields(_hostile("target_dataset_id", value))
    assert not configured_uri("{target_dataset_id}", fields)
    assert not configured_uri("dataset-{target_dataset_id}", fields)
    bypassed = Filled(value, configured_uri("{target_dataset_id}", fields))
    assert _input(bypassed, None) == value  # a literal string, not an Input
    batch = _batch_input(bypassed)
    assert isinstance(batch, Input) and batch.type == "string" and batch.default == value and batch.path is None


def test_a_hostile_value_cannot_change_where_a_configured_uri_points() -> None:
    template = "azureml://datastores/training/paths/{model_name}/{run_id}/"
    with pytest.raises(UntrustedValue):
        fill({"training_data": template}, _fields(_hostile("run_id", "../../attacker")))
    [filled] = fill({"training_data": template}, _fields(_signal())).values()
    data = _input(filled, None)
    assert isinstance(data, Input) and data.type == "uri_folder"
    assert data.path == "azureml://datastores/training/paths/credit-default/credit-default-drift_1717000000000/"


@pytest.mark.parametrize("declared", ["uri_folder", None])
def test_the_copy_output_uri_still_makes_a_data_input(declared) -> None:
    """{copy_output_uri} is where our own copy step put the data: trusted, declared or not (a batch endpoint's
    inputs are not typed by anything but the template)."""
    [filled] = fill({"training_data": "{copy_output_uri}"}, _fields(_signal())).values()
    assert filled == Filled(COPY_URI, True)
    data = _input(filled, declared)
    assert isinstance(data, Input) and (data.type, data.path) == ("uri_folder", COPY_URI)
    batch = _batch_input(filled)
    assert isinstance(batch, Input) and (batch.type, batch.path) == ("uri_folder", COPY_URI)


@pytest.mark.parametrize(("declared", "expected"), [("uri_file", "uri_file"), ("mltable", "mltable")])
def test_a_declared_data_type_wins(declared, expected) -> None:
    data = _input(Filled(COPY_URI, True), declared)
    assert isinstance(data, Input) and data.type == expected
    assert _input(Filled(COPY_URI, True), "string") == COPY_URI  # declared a literal: a literal


def test_a_pipeline_job_yaml_gets_its_types_from_the_yaml_and_the_templates(tmp_path: Path) -> None:
    """The real ``_from_yaml`` (azure-ai-ml's load_job, no service): the declared uri_folder takes the copy's
    output, the literal inputs stay literals whatever the value says."""
    yaml = tmp_path / "job.yml"
    yaml.write_text(
        "type: pipeline\n"
        "inputs:\n"
        "  training_data:\n    type: uri_folder\n    path: azureml://datastores/x/paths/placeholder/\n"
        "  drift_run: placeholder\n"
        "  dataset: placeholder\n"
        "jobs:\n  train:\n    type: command\n    component: azureml:train_model:1\n"
        "    inputs:\n      data: ${{parent.inputs.training_data}}\n"
    )
    inputs = fill({"training_data": "{copy_output_uri}", "drift_run": "{run_id}"}, _fields(_signal()))
    inputs["dataset"] = Filled("azureml://datastores/attacker/paths/poison/", False)  # a value the check would refuse
    job = PipelineJobTraining.__new__(PipelineJobTraining)._from_yaml(yaml, inputs)
    assert isinstance(job.inputs["training_data"]._data, Input)
    assert (job.inputs["training_data"]._data.type, job.inputs["training_data"]._data.path) == ("uri_folder", COPY_URI)
    assert job.inputs["drift_run"]._data == "credit-default-drift_1717000000000"
    assert job.inputs["dataset"]._data == "azureml://datastores/attacker/paths/poison/"  # a literal, not an Input


# -- documented -----------------------------------------------------------------------------------


def test_the_untrusted_placeholders_are_named_on_the_configuration_page() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    paragraph = page[page.index("**Untrusted placeholders.**") :].split("\n\n", 1)[0]
    assert [name for name in UNTRUSTED if f"`{{{name}}}`" not in paragraph] == []
