"""Every verbatim Azure sample normalises, or is ignored, exactly as documented."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from drift_retrain.breaches import breach_text
from drift_retrain.signals import MONITOR_BREACH_TAG, DriftSignal, SignalKind
from drift_retrain.intake.parsing import InvalidEvent, NotADriftSignal, parse_envelope, to_drift_signal
from drift_retrain.testing import SAMPLE_WORKSPACE, monitor_breach, sample

ROWS = [
    {"metric_value": 0.31, "metric_name": "JensenShannonDistance", "threshold_value": 0.1, "group": "age"},
    {"metric_value": 0.01, "metric_name": "TwoSampleKolmogorovSmirnovTest", "threshold_value": 0.05, "group": "income"},
]
HEAD = "The signal 's' has failed due to one or more features violating metric thresholds.\n"
LIST = "The feature names and their corresponding computed metric values violating the threshold are \n"


def _one(document):
    return document[0] if isinstance(document, list) else document


@pytest.mark.parametrize(
    "name",
    [
        "eg_DatasetDriftDetected.json",
        "ce_DatasetDriftDetected.json",
        "ce_spec_example_dataset_drift_detected__specVersion_camelcase.json",
    ],
)
def test_dataset_drift_samples_normalise_to_one_signal(name: str) -> None:
    signal = to_drift_signal(_one(sample(name)))

    assert signal.kind is SignalKind.DATASET_DRIFT
    assert signal.workspace_id == SAMPLE_WORKSPACE
    assert signal.workspace_name == "{workspace-name}"
    assert signal.monitor == "myDriftMonitor"
    assert signal.monitor_id == "01d29aa4-e6a4-470a-9ef3-66660d21f8ef"
    assert signal.run_id == "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"
    assert signal.drift_coefficient == pytest.approx(0.835034906847)
    assert signal.window_start == datetime(2019, 7, 4, tzinfo=timezone.utc)
    assert signal.window_end == datetime(2019, 7, 5, tzinfo=timezone.utc)
    assert signal.base_dataset_id == "3c56d136-0f64-4657-a0e8-5162089a88a3"
    assert signal.event_id == "831e1650-001e-001b-66ab-eeb76e069631"
    assert signal.raw_event == _one(sample(name))


def test_both_schemas_give_the_same_identity_and_key() -> None:
    eg = to_drift_signal(_one(sample("eg_DatasetDriftDetected.json")))
    ce = to_drift_signal(_one(sample("ce_DatasetDriftDetected.json")))
    assert eg.identity == ce.identity
    assert eg.idempotency_key == ce.idempotency_key
    assert eg.idempotency_key.startswith("drift:{workspace-name}:01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380:")


def test_identity_ignores_workspace_id_casing_but_not_the_workspace() -> None:
    event = _one(sample("eg_DatasetDriftDetected.json"))
    upper = copy.deepcopy(event)
    upper["topic"] = event["topic"].upper()
    other = copy.deepcopy(event)
    other["topic"] = event["topic"].replace("{workspace-name}", "another")
    base = to_drift_signal(event)
    assert to_drift_signal(upper).idempotency_key == base.idempotency_key
    assert to_drift_signal(other).idempotency_key != base.idempotency_key


def test_same_workspace_name_in_another_resource_group_is_another_signal() -> None:
    event = _one(sample("eg_DatasetDriftDetected.json"))
    other = copy.deepcopy(event)
    other["topic"] = event["topic"].replace("/resourceGroups/", "/resourceGroups/other-")
    assert other["topic"] != event["topic"]
    base, moved = to_drift_signal(event), to_drift_signal(other)
    assert base.workspace_name == moved.workspace_name
    assert moved.identity != base.identity and moved.idempotency_key != base.idempotency_key


@pytest.mark.parametrize("event_type", ["Contoso.Custom.DatasetDriftDetected", "Microsoft.MachineLearningServices.DatasetDriftDetectedV2",
                                        "Microsoft.Storage.RunStatusChanged"])
def test_only_the_machine_learning_event_types_carry_drift(event_type: str) -> None:
    event = _one(sample("eg_DatasetDriftDetected.json"))
    event["eventType"] = event_type
    with pytest.raises(NotADriftSignal, match="carries no drift signal"):
        to_drift_signal(event)


@pytest.mark.parametrize("transform", [str.lower, str.upper, lambda k: k[0].lower() + k[1:]])
def test_data_keys_are_read_case_insensitively(transform) -> None:
    event = _one(sample("eg_DatasetDriftDetected.json"))
    event["data"] = {transform(k): v for k, v in event["data"].items()}
    signal = to_drift_signal(event)
    assert signal.run_id == "01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"
    assert signal.drift_coefficient == pytest.approx(0.835, abs=1e-3)


@pytest.mark.parametrize("name", ["eg_RunStatusChanged.json", "ce_RunStatusChanged.json"])
def test_run_status_changed_without_breach_is_not_a_signal(name: str) -> None:
    with pytest.raises(NotADriftSignal, match=MONITOR_BREACH_TAG):
        to_drift_signal(_one(sample(name)))


@pytest.mark.parametrize("name", ["eg_RunStatusChanged.json", "ce_RunStatusChanged.json"])
@pytest.mark.parametrize("tags_key", ["runTags", "RunTags"])
def test_model_monitor_breach_is_a_v2_signal(name: str, tags_key: str) -> None:
    event = _one(sample(name))
    del event["data"]["runTags"]
    event["data"][tags_key] = {MONITOR_BREACH_TAG: breach_text("credit_monitor_data_drift", ROWS)}
    signal = to_drift_signal(event)
    assert signal.kind is SignalKind.MODEL_MONITOR
    assert signal.run_id == "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
    assert signal.monitor == "automl-local-regression"  # the experiment name until routing names the monitor
    assert signal.signal_name == "credit_monitor_data_drift" and signal.breach_unparsed is None
    assert [(r.group, r.metric, r.value, r.threshold) for r in signal.breached] == [
        ("age", "JensenShannonDistance", 0.31, 0.1), ("income", "TwoSampleKolmogorovSmirnovTest", 0.01, 0.05)]
    assert signal.breached_metrics == ["age: JensenShannonDistance 0.31 > 0.1", "income: TwoSampleKolmogorovSmirnovTest 0.01 < 0.05"]
    assert signal.drift_coefficient is None


def test_no_tag_names_the_monitor_and_an_invented_one_is_not_read() -> None:
    """Azure ML sets only the breach tag on the evaluate step's run; a tag naming the monitor is not Azure's."""
    event = _one(sample("eg_RunStatusChanged.json"))
    event["data"]["runTags"] = {MONITOR_BREACH_TAG: breach_text("s", ROWS), "azureml_modelmonitor_name": "credit-monitor"}
    assert to_drift_signal(event).monitor == "automl-local-regression"


@pytest.mark.parametrize("experiment", [None, ""])
def test_a_breach_without_an_experiment_name_falls_back_to_the_run_id(experiment) -> None:
    event = _one(sample("eg_RunStatusChanged.json"))
    event["data"]["experimentName"] = experiment
    event["data"]["runTags"] = {MONITOR_BREACH_TAG: breach_text("s", ROWS)}
    assert to_drift_signal(event).monitor == "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"


@pytest.mark.parametrize(
    ("experiment", "rule"),
    [(["x"], "must be a string"), ("a\nb", "starting with a letter or digit"),
     ("x" * 257, "at most 256 characters"), ("  my-monitor ", "no whitespace")],
)
def test_an_unusable_experiment_name_is_refused_naming_it(experiment, rule) -> None:
    """Issue 14: an experiment name is an id like any other; a hostile one is refused, no longer dropped."""
    event = _one(sample("eg_RunStatusChanged.json"))
    event["data"]["experimentName"] = experiment
    event["data"]["runTags"] = {MONITOR_BREACH_TAG: breach_text("s", ROWS)}
    with pytest.raises(InvalidEvent, match="data.ExperimentName") as caught:
        to_drift_signal(event)
    assert rule in str(caught.value)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "NoneType, not text"),
        (42, "int, not text"),
        ({"signal": "s"}, "dict, not text"),
        ("", "does not start with"),
        ("Monitor x has failed due to one or more features violating metric thresholds", "does not start with"),
        (HEAD + LIST + "[1, 2]\n", "row 0: a int, not a JSON string"),
        (HEAD + LIST + "['{\"metric_name\": \"X\", \"metric_value\": NaN, \"threshold_value\": 1}']\n", "finite"),
        (HEAD + LIST + "['{\"metric_name\": \"X\", \"metric_value\": 1e999, \"threshold_value\": 1}']\n", "finite"),
        (HEAD.replace("'s'", "'a\nb'") + LIST + "[]\n", "control characters"),
    ],
)
def test_a_breach_tag_that_does_not_read_is_still_a_breach_and_says_why(value, why) -> None:
    """The tag's presence is the breach (the component sets it only when a threshold was breached)."""
    event = _one(sample("ce_RunStatusChanged.json"))
    event["data"]["runTags"] = {MONITOR_BREACH_TAG.upper(): value}
    signal = to_drift_signal(event)
    assert signal.kind is SignalKind.MODEL_MONITOR and signal.breached == [] and signal.breached_metrics == []
    assert why in signal.breach_unparsed


def test_a_signal_name_with_quotes_is_read_whole() -> None:
    event = _one(sample("eg_RunStatusChanged.json"))
    event["data"]["runTags"] = {MONITOR_BREACH_TAG: breach_text("it's \"ours\" | <b>", ROWS[:1])}
    signal = to_drift_signal(event)
    assert signal.signal_name == "it's \"ours\" | <b>" and len(signal.breached) == 1


@pytest.mark.parametrize(("tags", "field"), [(["x"], "data.RunTags"), ("tags", "data.RunTags")])
def test_run_tags_that_are_not_an_object_are_an_invalid_event(tags, field) -> None:
    event = _one(sample("eg_RunStatusChanged.json"))
    event["data"]["runTags"] = tags
    with pytest.raises(InvalidEvent, match=field):
        to_drift_signal(event)


@pytest.mark.parametrize("run_id", [7, ["r"], {"r": 1}])
def test_a_breach_whose_run_id_is_not_text_is_an_invalid_event(run_id) -> None:
    event = _one(sample("eg_RunStatusChanged.json"))
    event["data"]["runId"] = run_id
    event["data"]["runTags"] = {MONITOR_BREACH_TAG: breach_text("s", ROWS)}
    with pytest.raises(InvalidEvent, match="data.RunId must be a string"):
        to_drift_signal(event)


@pytest.mark.parametrize(
    "name",
    [
        "eg_ModelRegistered.json",
        "ce_ModelRegistered.json",
        "eg_ModelDeployed.json",
        "ce_ModelDeployed.json",
        "eg_RunCompleted.json",
        "ce_RunCompleted.json",
        "subscription_validation_event.json",
    ],
)
def test_other_events_are_not_signals(name: str) -> None:
    with pytest.raises(NotADriftSignal) as caught:
        to_drift_signal(_one(sample(name)))
    assert caught.value.event_type == _one(sample(name)).get("eventType", _one(sample(name)).get("type"))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("topic"), "missing required field.*topic"),
        (lambda e: e.pop("id"), "missing required field.*id"),
        (lambda e: e.pop("eventType"), "missing required field.*eventType"),
        (lambda e: e["data"].pop("RunId"), "data is missing RunId"),
        (lambda e: e["data"].pop("DriftCoefficient"), "data is missing DriftCoefficient"),
        (lambda e: e["data"].update(DriftCoefficient="lots"), "drift_coefficient"),
        (lambda e: e["data"].update(StartTime="yesterday"), "window_start"),
        (lambda e: e.update(data=[1, 2]), "'data' must be a JSON object"),
    ],
)
def test_unreadable_drift_events_say_what_is_wrong(mutate, message: str) -> None:
    event = _one(sample("eg_DatasetDriftDetected.json"))
    mutate(event)
    with pytest.raises(InvalidEvent, match=message):
        to_drift_signal(event)


def test_cloudevent_missing_source_is_named_in_cloudevents_terms() -> None:
    event = _one(sample("ce_DatasetDriftDetected.json"))
    event.pop("source")
    with pytest.raises(InvalidEvent, match="cloudevents event is missing required field.*source"):
        parse_envelope(event)


def test_non_object_event_is_invalid() -> None:
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        parse_envelope(["not", "an", "event"])  # type: ignore[arg-type]


def test_signal_round_trips_through_json_as_flow_parameters_do() -> None:
    signal = to_drift_signal(_one(sample("eg_DatasetDriftDetected.json")))
    again = DriftSignal.model_validate(signal.model_dump(mode="json"))
    assert again == signal
    assert again.identity == signal.identity


def test_a_breachs_monitor_run_is_read_from_its_step_runs_root_pipeline_property() -> None:
    """A step run names its top-level pipeline run in ``azureml.rootpipelinerunid`` (a recorded step run's
    properties, replayed here): for an evaluate step, the monitor's run that several signals share."""
    recorded = json.loads((Path(__file__).parents[1] / "fixtures/machinelearning/history_children_recorded.json").read_text())
    properties = recorded["body"]["value"][0]["properties"]
    event = monitor_breach("eval_step_1")
    event["data"]["runProperties"] = properties
    assert to_drift_signal(event).monitor_run_id == properties["azureml.rootpipelinerunid"] == "test_680454434153"
    for hostile in ("../x", "a..b", "a b", "", 7, None, "x" * 300):
        event["data"]["runProperties"] = {"azureml.rootpipelinerunid": hostile}
        assert to_drift_signal(event).monitor_run_id is None  # dropped: it only groups signals, never fails one
