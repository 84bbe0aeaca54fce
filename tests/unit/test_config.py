"""Bad configuration fails at start with a message naming the file and the field; a target is a union on
``backend``, so each target carries exactly its own backend's sections."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from drift_retrain.config import (
    AzureRegistryConfig,
    AzureTarget,
    BatchEndpointConfig,
    ConfigError,
    DataFactoryCopyConfig,
    LocalCopyConfig,
    LocalRegistryConfig,
    LocalTarget,
    LocalTrainingConfig,
    PipelineJobConfig,
    PublishedPipelineConfig,
    Settings,
    UnroutableSignal,
    load_settings,
)
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import DEMO_WORKSPACE, ROOT, sample, write_config


def test_shipped_config_loads_and_resolves_paths_under_state_dir(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    target = settings.target("credit-default")
    assert settings.state_dir == tmp_path / "state"
    assert settings.resolve(target.copy_step.source) == tmp_path / "state/data/landing/credit-default"
    assert target.policy.drift_threshold == 0.3
    assert settings.monitor("credit-default-drift").workspace == DEMO_WORKSPACE


def test_state_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "drift-retrain.toml"
    path.write_text((ROOT / "drift-retrain.toml").read_text())
    assert load_settings(path).state_dir == tmp_path / ".drift-retrain"


def test_env_var_names_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_CONFIG", str(write_config(tmp_path)))
    assert load_settings().source_file == tmp_path / "drift-retrain.toml"


SECRET_ENV = r'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"'
SUBSCRIPTION = """[[targets.subscriptions]]
name = "s1"
advanced_filters = [{rule}]
"""


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({r'model_name = "credit-default"\n': ""}, r"targets\.0\.model_name: required field is missing"),
        ({r'backend = "local"': 'backend = "gcp"'}, r"targets\.0\.backend: Input should be 'local' or 'azure'$"),
        ({r'backend = "local"\n': ""}, r"targets\.0\.backend: required field is missing \(should be 'local' or 'azure'\)"),
        ({r"cooldown_minutes = 60": "cooldown_minutes = 60\n\n[targets.schedule]\ncron = '@daily'"}, r"targets\.0\.schedule: unknown field$"),
        ({r'state_dir = "[^"]*"': r'\g<0>\nsource_file = "elsewhere.toml"'}, r"^  source_file: unknown field$"),
        ({r"drift_threshold = 0\.3 ": "drift_threshold = 3 "}, r"targets\.0\.policy\.drift_threshold: .*less than or equal to 1"),
        ({r"min_rows = 500": 'min_rows = "many"'}, r"targets\.0\.policy\.min_rows: .*valid integer"),
        ({r"cooldown_minutes = 60": "cooldown_minutes = 60\ncooldown_hours = 1"}, r"targets\.0\.policy\.cooldown_hours: unknown field"),
        ({r'workspace = "/subscriptions/[^"]*"\nmonitors': 'workspace = "demo-workspace"\nmonitors'}, r"targets\.0\.workspace: must be an Azure ML workspace ARM id"),
        ({r'monitors = \["credit-default-drift"\]': "monitors = []"}, r"targets\.0\.monitors: .*at least 1 item"),
        ({r'label = "defaulted"\n\n\[targets\.registry\]': '\n[targets.registry]'}, r"targets\.0\.training\.label: required field is missing"),
        ({SECRET_ENV: f'{SECRET_ENV}\nauth = "jwt"'}, r"receiver\.auth: Input should be 'secret', 'entra' or 'none'"),
        ({SECRET_ENV: f'{SECRET_ENV}\npublic_url = "http://h/api/eventgrid"'}, r"receiver: public_url must be an https:// URL"),
        ({SECRET_ENV: f'{SECRET_ENV}\nmax_batch_bytes = 2048'}, r"receiver: max_batch_bytes must be at least max_event_bytes"),
        ({SECRET_ENV: f'{SECRET_ENV}\nhandoff = {{ deadline_seconds = 45 }}'}, r"receiver\.handoff\.deadline_seconds: .*less than or equal to 28"),
        ({r"\[targets\.policy\]": SUBSCRIPTION.format(rule='{ operator = "StringIn", key = "data.x", value = 1 }') + "[targets.policy]"},
         r"targets\.0\.subscriptions\.0\.advanced_filters\.0: StringIn takes a non-empty list of 'values'"),
        ({r"\[targets\.policy\]": SUBSCRIPTION.format(rule='{ operator = "StringLike", key = "data.x", values = ["a"] }') + "[targets.policy]"},
         r"targets\.0\.subscriptions\.0\.advanced_filters\.0\.operator: Input should be"),
        ({r"\[targets\.policy\]": SUBSCRIPTION.format(rule="") + "max_delivery_attempts = 31\n[targets.policy]"},
         r"targets\.0\.subscriptions\.0\.max_delivery_attempts: .*less than or equal to 30"),
    ],
)
def test_bad_field_is_named_with_the_file(tmp_path: Path, edit: dict[str, str], expected: str) -> None:
    path = write_config(tmp_path, **edit)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid configuration")
    assert re.search(expected, message, re.MULTILINE), message


def test_monitor_routed_to_two_targets_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "drift-retrain.toml").read_text()
    block = text[text.index("[[targets]]") : text.index("# The embedded default's drift monitor")]
    path = tmp_path / "c.toml"
    path.write_text(text + "\n" + block.replace('name = "credit-default"', 'name = "second"', 1))
    with pytest.raises(ConfigError, match="monitor 'credit-default-drift' .* routed to both 'credit-default' and 'second'"):
        load_settings(path)


def test_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("targets = [")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_routing_by_workspace_and_monitor(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    event = sample("eg_DatasetDriftDetected.json")[0]
    assert not settings.knows_workspace(event["topic"])
    event["topic"] = DEMO_WORKSPACE.upper()  # ARM ids compare case-insensitively
    event["data"]["DataDriftName"] = "credit-default-drift"
    assert settings.target_for(to_drift_signal(event)).name == "credit-default"
    event["data"]["DataDriftName"] = "some-other-monitor"
    assert settings.knows_workspace(event["topic"])
    assert settings.target_for(to_drift_signal(event)) is None


def test_route_names_what_could_not_be_routed(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    signal = to_drift_signal(sample("eg_DatasetDriftDetected.json")[0])
    with pytest.raises(UnroutableSignal, match="no target in .* takes monitor 'myDriftMonitor' of workspace /subscriptions/"):
        settings.route(signal)


AZURE_EXAMPLE = ROOT / "examples" / "drift-retrain.azure.toml"


def test_azure_example_loads_with_each_training_kind() -> None:
    settings = load_settings(AZURE_EXAMPLE)
    kinds = {t.name: (type(t), type(t.copy_step), type(t.training), type(t.registry)) for t in settings.targets}
    assert kinds == {
        "credit-default": (AzureTarget, DataFactoryCopyConfig, PublishedPipelineConfig, AzureRegistryConfig),
        "churn": (AzureTarget, DataFactoryCopyConfig, PipelineJobConfig, AzureRegistryConfig),
        "fraud": (AzureTarget, DataFactoryCopyConfig, BatchEndpointConfig, AzureRegistryConfig),  # registry by default
    }
    assert settings.target("fraud").registry == AzureRegistryConfig(kind="azure_ml", model_type="mlflow_model", path="")
    assert settings.target("credit-default").gate.metric == "roc_auc"
    assert settings.azure.credential.kind == "default"


def _azure_config(tmp_path: Path, old: str, new: str) -> Path:
    text = AZURE_EXAMPLE.read_text()
    assert old in text, old
    path = tmp_path / "azure.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('"{window_start}"', '"{window_begin}"', r"targets\.0\.copy\.parameters\.windowStart: .*unknown placeholder\(s\) \{window_begin\}"),
        ('"{copy_output_uri}"', '"{copy_output_uri"', r"targets\.0\.training\.inputs\.training_data: not a valid template"),
        ('kind = "data_factory"', 'kind = "local"', r"targets\.0\.copy\.kind: Input should be 'data_factory' \(this target's backend is 'azure'\)"),
        ('kind = "published_pipeline"', 'kind = "airflow"',
         r"targets\.0\.training\.kind: Input should be 'published_pipeline', 'pipeline_job' or 'batch_endpoint'"),
        ('kind = "published_pipeline"\n', "",
         r"targets\.0\.training\.kind: required field is missing \(should be 'published_pipeline', 'pipeline_job' or 'batch_endpoint'\)"),
        ('kind = "published_pipeline"', 'kind = "batch_endpoint"', r"targets\.0\.training\.endpoint: required field is missing"),
        ('compute = "cpu-cluster"', 'compute = "cpu-cluster"\ncomputer = "x"', r"targets\.1\.training\.computer: unknown field$"),
        ('model_type = "mlflow_model"', 'model_type = "onnx"', r"targets\.0\.registry\.model_type: Input should be 'mlflow_model' or 'custom_model'"),
        ('pipeline_id = "8b2f', 'pipeline_endpoint_id = "x"\npipeline_id = "8b2f', r"targets\.0\.training: .*exactly one of pipeline_id and pipeline_endpoint_id"),
        ('factory = "/subscriptions/1', 'factory = "adf-prod"\n#', r"targets\.0\.copy\.factory: String should match pattern"),
        ('kind = "default"', 'kind = "client_secret"', r"azure\.credential: .*needs tenant_id, client_id, client_secret_env"),
        ('backend = "azure"', 'backend = "local"', r"targets\.0\.copy\.kind: Input should be 'local' \(this target's backend is 'local'\)"),
        ("max_interval = 30 ", "max_interval = 1 ", r"azure\.polling: .*max_interval must be >= initial_interval"),
        ("max_patient_interval = 1200", "max_patient_interval = 10", r"azure\.polling: .*max_patient_interval must be >= max_interval"),
        ("patience = 2 ", "patience = -1 ", r"azure\.polling\.patience: Input should be greater than or equal to 0"),
    ],
)
def test_bad_azure_field_is_named(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = _azure_config(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: invalid configuration")
    assert re.search(expected, str(caught.value), re.MULTILINE), str(caught.value)


def test_local_target_refuses_azure_sections(tmp_path: Path) -> None:
    path = write_config(tmp_path, **{r'\[targets\.registry\]\npath = "registry"': '[targets.registry]\nkind = "azure_ml"\nmodel_type = "custom_model"'})
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).splitlines() == [
        f"{path}: invalid configuration",
        "  targets.0.registry.kind: Input should be 'local' (this target's backend is 'local')",
        "  targets.0.registry.model_type: unknown field (it belongs to backend 'azure'; this target's backend is 'local')",
    ]


def test_local_target_refuses_an_azure_only_field_naming_it(tmp_path: Path) -> None:
    path = write_config(tmp_path, **{r'sink = "data/training-store/credit-default"\n': r'\g<0>polling = { max_interval = 5 }\n'})
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).splitlines() == [
        f"{path}: invalid configuration",
        "  targets.0.copy.polling: unknown field (it belongs to backend 'azure'; this target's backend is 'local')",
    ]


def test_azure_target_refuses_a_local_section_naming_its_fields(tmp_path: Path) -> None:
    text = AZURE_EXAMPLE.read_text()
    section = text[text.index("[targets.copy]") : text.index("[targets.training]")]  # the first target's copy
    path = tmp_path / "azure.toml"
    path.write_text(text.replace(section, '[targets.copy]\nsource = "landing"\nsink = "store"\n\n', 1))
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).splitlines() == [
        f"{path}: invalid configuration",
        "  targets.0.copy.factory: required field is missing",
        "  targets.0.copy.pipeline: required field is missing",
        "  targets.0.copy.output_uri: required field is missing",
        "  targets.0.copy.source: unknown field (it belongs to backend 'local'; this target's backend is 'azure')",
        "  targets.0.copy.sink: unknown field (it belongs to backend 'local'; this target's backend is 'azure')",
    ]


def test_shipped_config_is_a_local_target_with_local_sections(tmp_path: Path) -> None:
    target = load_settings(write_config(tmp_path)).target("credit-default")
    assert isinstance(target, LocalTarget)
    assert (type(target.copy_step), type(target.training), type(target.registry)) == (
        LocalCopyConfig, LocalTrainingConfig, LocalRegistryConfig
    )
    assert target.training.label == "defaulted" and target.registry.path == Path("registry")


def test_local_sections_may_name_their_kind(tmp_path: Path) -> None:
    """``kind = "local"`` was how a local section said what it was; such files still load."""
    path = write_config(tmp_path, **{r"\[targets\.(copy|training|registry)\].*\n": '\\g<0>kind = "local"\n'})
    assert load_settings(path).target("credit-default") == load_settings(write_config(tmp_path)).target("credit-default")


def test_the_union_narrows_on_backend() -> None:
    """The same sections validate into the backend's own models, whether read from TOML or built in code."""
    common = {"name": "m", "workspace": DEMO_WORKSPACE, "monitors": ["m-drift"], "model_name": "m"}
    factory = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataFactory/factories/f"
    settings = Settings.model_validate({"targets": [
        {**common, "backend": "azure",
         "copy": {"factory": factory, "pipeline": "copy", "output_uri": "azureml://x/{window_end_date}/"},
         "training": {"kind": "pipeline_job", "component": "train:1"}},
        {**common, "name": "n", "monitors": ["n-drift"], "backend": "local",
         "copy": {"source": "in", "sink": "out"}, "training": {"reference": "r.csv", "label": "y"}},
    ]})
    azure, local = settings.targets
    assert isinstance(azure, AzureTarget) and isinstance(local, LocalTarget)
    assert isinstance(azure.copy_step, DataFactoryCopyConfig) and azure.copy_step.kind == "data_factory"
    assert isinstance(azure.training, PipelineJobConfig) and isinstance(azure.registry, AzureRegistryConfig)
    assert isinstance(local.copy_step, LocalCopyConfig) and isinstance(local.registry, LocalRegistryConfig)


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """Every model reachable from ``model``'s fields (through lists, unions, ``| None`` and ``Annotated``)."""
    if model in seen:
        return seen
    seen.add(model)
    pending: list[Any] = [field.annotation for field in model.model_fields.values()]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _models(annotation, seen)
        elif get_origin(annotation) is not None:
            pending.extend(get_args(annotation))
    return seen


def test_every_config_field_says_what_it_is_for() -> None:
    """The docs' configuration reference is generated from these descriptions."""
    models = _models(Settings, set())
    assert {LocalTarget, AzureTarget, PublishedPipelineConfig, BatchEndpointConfig, LocalTrainingConfig} <= models
    undocumented = [
        f"{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not (field.description and field.description.strip().endswith("."))
    ]
    assert undocumented == []
    schema = Settings.model_json_schema()
    for model in [schema, *schema["$defs"].values()]:
        assert all("description" in spec for spec in model.get("properties", {}).values()), model.get("title")
