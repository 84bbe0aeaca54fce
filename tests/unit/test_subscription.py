"""`drift-retrain azure subscription`: the printed command and Bicep parameters carry exactly what the
receiver enforces, and never the secret."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drift_retrain.cli import app
from drift_retrain.config import load_settings
from drift_retrain.intake.filters import AdvancedFilter, rejection
from drift_retrain.intake.job_events import job_event
from drift_retrain.intake.parsing import parse_envelope
from drift_retrain.intake.subscription import (
    DEAD_LETTER_PLACEHOLDER,
    az_command,
    bicep_parameters,
    job_subscription,
    subscriptions_of,
)
from drift_retrain.testing import DEMO_WORKSPACE, INTAKE_TARGETS, ROOT, local_target, monitor_breach, sample, write_config
from tests.entra import LocalTenant

SECRET = "never-print-me-123"
SECRET_ENV = r'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"'


def options(command: str) -> dict[str, list[list[str]]]:
    """``--option values...`` groups of a rendered command, as a shell would split it (variables kept)."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:4] == ["az", "eventgrid", "event-subscription", "create"]
    found: dict[str, list[list[str]]] = {}
    current: list[str] = []
    for word in words[4:]:
        if word.startswith("--"):
            current = []
            found.setdefault(word, []).append(current)
        else:
            current.append(word)
    return found


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    extra = INTAKE_TARGETS.replace('name = "strong-drift-only"', 'name = "strong-drift-only"\nmax_delivery_attempts = 10\nevent_ttl_minutes = 120\n'
                                   'delivery_schema = "CloudEventSchemaV1_0"\nsubject_ends_with = "/x"\nadvanced_filtering_on_arrays = true\n'
                                   'dead_letter_endpoint = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/dl"')
    edit = {SECRET_ENV: f'{SECRET_ENV}\npublic_url = "https://drift.example.com/api/eventgrid"\nsecret_header = "X-Key"'}
    return load_settings(write_config(tmp_path, extra=extra, **edit))


def test_configured_subscription_renders_every_setting(settings) -> None:
    target = settings.target("filtered")
    (subscription,), configured = subscriptions_of(target)
    assert configured
    command = az_command(target, subscription, settings.receiver)
    assert SECRET not in command
    opts = options(command)
    assert opts["--name"] == [["strong-drift-only"]]
    assert opts["--source-resource-id"] == [[DEMO_WORKSPACE]]
    assert opts["--endpoint"] == [["https://drift.example.com/api/eventgrid?code=${DRIFT_RETRAIN_WEBHOOK_SECRET}"]]
    assert opts["--delivery-attribute-mapping"] == [["X-Key", "static", "${DRIFT_RETRAIN_WEBHOOK_SECRET}", "true"]]
    assert opts["--event-delivery-schema"] == [["cloudeventschemav1_0"]]
    assert opts["--included-event-types"] == [["Microsoft.MachineLearningServices.DatasetDriftDetected"]]
    assert opts["--subject-begins-with"] == [["datadrifts/"]] and opts["--subject-ends-with"] == [["/x"]]
    assert opts["--advanced-filter"] == [
        ["data.DriftCoefficient", "NumberGreaterThanOrEquals", "0.5"],
        ["data.DataDriftName", "StringIn", "filtered-monitor"],
    ]
    assert opts["--enable-advanced-filtering-on-arrays"] == [["true"]]
    assert opts["--max-delivery-attempts"] == [["10"]] and opts["--event-ttl"] == [["120"]]
    assert opts["--deadletter-endpoint"] == [[subscription.dead_letter_endpoint]]
    assert opts["--max-events-per-batch"] == [[str(subscription.max_events_per_batch)]]
    assert opts["--preferred-batch-size-in-kilobytes"] == [[str(subscription.preferred_batch_size_kb)]]


def test_unconfigured_target_gets_one_default_subscription_per_signal_kind(settings) -> None:
    subscriptions, configured = subscriptions_of(settings.target("credit-default"))
    assert not configured
    v1, v2 = (options(az_command(settings.target("credit-default"), s, settings.receiver, "https://h/api/eventgrid")) for s in subscriptions)
    assert v1["--advanced-filter"] == [["data.DataDriftName", "StringIn", "credit-default-drift"]]
    assert v2["--included-event-types"] == [["Microsoft.MachineLearningServices.RunStatusChanged"]]
    assert v2["--advanced-filter"] == [["data.RunTags.azureml_modelmonitor_threshold_breached", "StringContains",
                                        "has failed due to one or more features violating metric thresholds"],
                                       ["data.RunTags.azureml_modelmonitor_threshold_breached", "StringContains",
                                        "credit-default-drift"]]
    assert v1["--deadletter-endpoint"] == [[DEAD_LETTER_PLACEHOLDER]]
    assert v1["--max-delivery-attempts"] == [["30"]] and v1["--event-ttl"] == [["1440"]]


def test_entra_mode_names_the_tenant_and_app_and_sends_no_secret(tmp_path) -> None:
    tenant = LocalTenant()
    try:
        path = write_config(tmp_path, extra=tenant.entra_table(), **{SECRET_ENV: f'{SECRET_ENV}\nauth = "entra"'})
    finally:
        tenant.close()
    settings = load_settings(path)
    target = settings.targets[0]
    opts = options(az_command(target, subscriptions_of(target)[0][0], settings.receiver, "https://h/api/eventgrid"))
    assert opts["--endpoint"] == [["https://h/api/eventgrid"]]
    assert opts["--azure-active-directory-tenant-id"] == [[settings.receiver.entra.tenant_id]]
    assert opts["--azure-active-directory-application-id-or-uri"] == [[settings.receiver.entra.audiences[0]]]


def test_bicep_parameters_match_the_template(settings) -> None:
    target = settings.target("filtered")
    parameters = bicep_parameters(target, target.subscriptions[0], settings.receiver)["parameters"]
    template = (ROOT / "deployments" / "eventgrid-subscription.bicep").read_text()
    declared = set(re.findall(r"^param (\w+)", template, re.M))
    assert set(parameters) <= declared and "webhookSecret" in declared and "webhookSecret" not in parameters
    assert parameters["workspaceName"] == {"value": "demo-workspace"}
    values = {name: parameter["value"] for name, parameter in parameters.items()}
    assert values["subscriptionName"] == "strong-drift-only"
    assert values["endpointUrl"] == "https://drift.example.com/api/eventgrid"
    assert (values["authMode"], values["secretHeader"]) == ("secret", "X-Key")
    assert values["deliverySchema"] == "CloudEventSchemaV1_0"
    assert values["includedEventTypes"] == ["Microsoft.MachineLearningServices.DatasetDriftDetected"]
    assert (values["subjectBeginsWith"], values["subjectEndsWith"]) == ("datadrifts/", "/x")
    assert values["advancedFilteringOnArrays"] is True
    assert (values["maxDeliveryAttempts"], values["eventTtlMinutes"]) == (10, 120)
    assert values["deadLetterContainerId"] == target.subscriptions[0].dead_letter_endpoint
    assert parameters["advancedFilters"]["value"] == [
        {"operatorType": "NumberGreaterThanOrEquals", "key": "data.DriftCoefficient", "value": 0.5},
        {"operatorType": "StringIn", "key": "data.DataDriftName", "values": ["filtered-monitor"]},
    ]
    assert SECRET not in json.dumps(parameters)


def test_cli_prints_commands_for_a_target(settings) -> None:
    result = CliRunner().invoke(app, ["azure", "subscription", "--config", str(settings.source_file), "--target", "filtered"])
    assert result.exit_code == 0, result.output
    assert result.output.count("az eventgrid event-subscription create") == 1
    assert "# target filtered: subscription strong-drift-only" in result.output
    assert SECRET not in result.output
    params = CliRunner().invoke(app, ["azure", "subscription", "-c", str(settings.source_file), "-t", "filtered", "--format", "bicep-params"])
    assert json.loads(params.output)["strong-drift-only"]["parameters"]["subscriptionName"] == {"value": "strong-drift-only"}
    unknown = CliRunner().invoke(app, ["azure", "subscription", "-c", str(settings.source_file), "-t", "nope"])
    assert unknown.exit_code != 0


MONITORS = local_target(
    "credit", ["credit_monitor", "churn_monitor"], extra='[targets.signals]\ncredit_monitor = ["age_drift", "credit_monitor_quality"]\n'
)
BREACH_KEY = "data.RunTags.azureml_modelmonitor_threshold_breached"


def test_the_v2_subscription_filters_per_monitor_in_both_formats(tmp_path) -> None:
    """Microsoft's how-to: "String contains" the breach text, and again a monitor signal's name (signals are
    named <monitor-name>_<signal-description>): the names of the target's monitors, plus configured signals
    that do not contain one, in the az command and in the Bicep parameters alike."""
    settings = load_settings(write_config(tmp_path, extra=MONITORS))
    target = settings.target("credit")
    v1, v2 = subscriptions_of(target)[0]
    names = ["credit_monitor", "churn_monitor", "age_drift"]  # credit_monitor_quality contains credit_monitor
    assert options(az_command(target, v2, settings.receiver, "https://h/api/eventgrid"))["--advanced-filter"] == [
        [BREACH_KEY, "StringContains", "has failed due to one or more features violating metric thresholds"],
        [BREACH_KEY, "StringContains", *names],
    ]
    assert bicep_parameters(target, v2, settings.receiver)["parameters"]["advancedFilters"]["value"] == [
        {"operatorType": "StringContains", "key": BREACH_KEY, "values": ["has failed due to one or more features violating metric thresholds"]},
        {"operatorType": "StringContains", "key": BREACH_KEY, "values": names},
    ]
    cli = CliRunner().invoke(app, ["azure", "subscription", "-c", str(settings.source_file), "-t", "credit", "--endpoint", "https://h/x"])
    assert cli.exit_code == 0, cli.output
    assert "--advanced-filter data.RunTags.azureml_modelmonitor_threshold_breached StringContains credit_monitor churn_monitor age_drift" in cli.output


def test_more_names_than_a_filter_holds_are_split_over_subscriptions(tmp_path) -> None:
    """Event Grid takes 25 values a filter (drift_retrain.intake.filters): the names go 25 to a subscription."""
    monitors = [f"m{i:02d}" for i in range(20)]
    signals = [f"s{i:02d}" for i in range(10)]
    extra = f"[targets.signals]\nm00 = {json.dumps(signals)}\n"
    settings = load_settings(write_config(tmp_path, extra=local_target("wide", monitors, extra=extra)))
    subscriptions, _ = subscriptions_of(settings.target("wide"))
    v2 = [s for s in subscriptions if s.included_event_types == ["Microsoft.MachineLearningServices.RunStatusChanged"]]
    assert [s.name for s in v2] == ["wide-v2-monitor", "wide-v2-monitor-2"]
    names = monitors + signals
    assert [s.advanced_filters[1].values for s in v2] == [names[:25], names[25:]]


def test_bicep_params_of_a_target_with_two_subscriptions_is_one_json_document_keyed_by_subscription(tmp_path) -> None:
    """Issue 15 item 9: the demo's target has two (suggested) subscriptions; the output was two JSON documents back to
    back, which no JSON reader (nor `az deployment ... -p @params.json`) takes."""
    config = write_config(tmp_path)
    result = CliRunner().invoke(app, ["azure", "subscription", "-c", str(config), "--format", "bicep-params"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)  # one document, or this raises "Extra data"
    assert list(document) == ["credit-default-v1-drift", "credit-default-v2-monitor"]
    for name, parameters in document.items():
        assert parameters["contentVersion"] == "1.0.0.0"
        assert parameters["parameters"]["subscriptionName"] == {"value": name}


def test_bicep_params_out_writes_one_deployable_parameters_file_per_subscription(tmp_path) -> None:
    config = write_config(tmp_path)
    out = tmp_path / "params"
    result = CliRunner().invoke(app, ["azure", "subscription", "-c", str(config), "--format", "bicep-params", "--out", str(out)])

    assert result.exit_code == 0, result.output
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["credit-default-v1-drift.parameters.json", "credit-default-v2-monitor.parameters.json"]
    assert result.output.splitlines() == [str(p) for p in written]
    for path in written:
        parameters = json.loads(path.read_text())["parameters"]
        assert parameters["subscriptionName"]["value"] == path.name.removesuffix(".parameters.json")
    refused = CliRunner().invoke(app, ["azure", "subscription", "-c", str(config), "--out", str(out)])
    assert refused.exit_code == 2  # --out only with bicep-params


# -- the job-event subscription (issue 16 item 1) ---------------------------------------------------

AZURE_EXAMPLE = ROOT / "examples" / "drift-retrain.azure.toml"
JOB_TYPES = ["Microsoft.MachineLearningServices.RunStatusChanged", "Microsoft.MachineLearningServices.RunCompleted"]


@pytest.fixture
def azure_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    return load_settings(AZURE_EXAMPLE)


def test_a_v2_target_gets_a_job_subscription_filtered_on_the_run_id_prefix_of_our_job_names(azure_settings) -> None:
    """Run events' subject is experiments/<experiment GUID>/runs/<runId>: no subject prefix can select our job names,
    so the subscription filters data.runId StringBeginsWith train- (a v2 job's run id is its name)."""
    for name in ("churn", "fraud"):  # a pipeline job and a batch endpoint target
        target = azure_settings.target(name)
        jobs = job_subscription(target)
        opts = options(az_command(target, jobs, azure_settings.receiver, "https://h/api/eventgrid"))
        assert opts["--name"] == [[f"{name}-jobs"]]
        assert opts["--included-event-types"] == [JOB_TYPES]
        assert opts["--advanced-filter"] == [["data.runId", "StringBeginsWith", "train-"]]
        assert "--subject-begins-with" not in opts and SECRET not in json.dumps(opts)
        values = bicep_parameters(target, jobs, azure_settings.receiver)["parameters"]
        assert values["includedEventTypes"]["value"] == JOB_TYPES
        assert values["advancedFilters"]["value"] == [{"operatorType": "StringBeginsWith", "key": "data.runId", "values": ["train-"]}]


def test_the_job_subscription_lets_through_exactly_our_jobs_statuses_and_no_breach(azure_settings) -> None:
    """The printed filter, applied with Event Grid's semantics (intake.filters), agrees with the receiver's
    recognition: our job's statuses pass; another run's, and a breach of a monitor's step run, do not."""
    jobs = job_subscription(azure_settings.target("churn"))
    ours = sample("eg_RunCompleted.json")[0] | {"data": {**sample("eg_RunCompleted.json")[0]["data"], "runId": "train-0123456789abcdef0123"}}
    for event in (ours, {**ours, "eventType": JOB_TYPES[0]}):
        assert rejection(event, event["eventType"], event["subject"], jobs) is None
        assert job_event(parse_envelope(event)) is not None
    for event in (sample("eg_RunCompleted.json")[0], monitor_breach("monitor-step-run-1")):
        assert rejection(event, event["eventType"], event["subject"], jobs) is not None


def test_a_v1_target_filters_its_job_events_on_its_experiment_when_every_signal_shares_it(azure_settings, tmp_path) -> None:
    """A v1 run id is a GUID the service picks: the run's experiment (retrain-{model_name}) is filtered on instead;
    an experiment named after a signal's fields cannot be, and the receiver then keeps ours by their signal tag."""
    target = azure_settings.target("credit-default")
    assert job_subscription(target).advanced_filters == [
        AdvancedFilter(operator="StringIn", key="data.experimentName", values=["retrain-credit-default"])
    ]
    per_signal = AZURE_EXAMPLE.read_text().replace('experiment_name = "retrain-{model_name}"', 'experiment_name = "retrain-{signal_key}"')
    (tmp_path / "azure.toml").write_text(per_signal)
    unfiltered = job_subscription(load_settings(tmp_path / "azure.toml").target("credit-default"))
    assert unfiltered.included_event_types == JOB_TYPES and unfiltered.advanced_filters == []


def test_a_local_target_has_no_job_subscription(settings) -> None:
    assert job_subscription(settings.target("credit-default")) is None


def test_the_cli_prints_each_azure_targets_job_subscription_in_both_formats(azure_settings) -> None:
    az = CliRunner().invoke(app, ["azure", "subscription", "-c", str(AZURE_EXAMPLE), "--endpoint", "https://h/x"])
    assert az.exit_code == 0, az.output
    for name in ("credit-default", "churn", "fraud"):
        assert f"# target {name}: subscription {name}-jobs (its training jobs' statuses" in az.output
    params = CliRunner().invoke(app, ["azure", "subscription", "-c", str(AZURE_EXAMPLE), "--format", "bicep-params"])
    assert params.exit_code == 0, params.output
    document = json.loads(params.output)
    assert {"credit-default-jobs", "churn-jobs", "fraud-jobs"} <= set(document)
    assert document["churn-jobs"]["parameters"]["includedEventTypes"]["value"] == JOB_TYPES


def test_the_job_subscription_shown_in_the_docs_is_what_the_cli_prints() -> None:
    page = (ROOT / "docs" / "azure-setup.md").read_text(encoding="utf-8")
    (shown,) = re.findall(r"<!-- job-subscription-output[^>]*-->\s*\n```[a-z]*\n(.*?)\n```", page, re.DOTALL)
    command, _, expected = shown.partition("\n")
    args = [str(ROOT / a) if a.endswith(".toml") else a for a in command.removeprefix("$ drift-retrain ").split()]
    result = CliRunner().invoke(app, args, env={"DRIFT_RETRAIN_WEBHOOK_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert expected.strip() in result.output  # the target's job subscription, as printed (its drift ones precede it)
    assert "-jobs" in expected and "StringBeginsWith train-" in expected
