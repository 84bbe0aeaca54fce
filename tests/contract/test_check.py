"""`drift-retrain check` through the real CLI: config errors, sign-in, and reads of the workspace, factory and
pipeline against the fake, with a message naming the role, the missing resource or the unreachable endpoint."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from drift_retrain.cli import app
from drift_retrain.fake_azure import CLIENT_ID, TENANT, FakeAzure
from drift_retrain.testing import DEMO_WORKSPACE, write_config
from tests.contract.conftest import FACTORY, PIPELINE, SECRET_ENV



@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    with FakeAzure() as fake:
        yield fake


def azure_config(tmp_path: Path, fake: FakeAzure, resource_manager: str | None = None) -> Path:
    path = tmp_path / "drift-retrain.toml"
    path.write_text(
        f"""
state_dir = "{tmp_path / 'state'}"

[azure]
authority_host = "{fake.url}"
resource_manager = "{resource_manager or fake.url}"
ca_bundle = "{fake.ca_path}"

[azure.credential]
kind = "client_secret"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret_env = "{SECRET_ENV}"

[[targets]]
name = "credit-default"
backend = "azure"
workspace = "{DEMO_WORKSPACE}"
monitors = ["credit-default-drift"]
model_name = "credit-default"

[targets.copy]
kind = "data_factory"
factory = "{FACTORY}"
pipeline = "{PIPELINE}"
output_uri = "abfss://training@driftretrain.dfs.core.windows.net/increments/{{signal_key}}"

[targets.training]
kind = "pipeline_job"
component = "train_pipeline:1"
"""
    )
    return path


def check(config: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["check", "--config", str(config)])
    return result.exit_code, result.output.strip().splitlines()


def test_everything_readable_passes_with_one_line_per_check(tmp_path: Path, fake: FakeAzure) -> None:
    code, lines = check(azure_config(tmp_path, fake))

    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == [
        "ok    config",
        "ok    routing",
        "ok    azure sign-in",
        "ok    credit-default",
        "ok    credit-default",
        "ok    credit-default",
        "ok    credit-default",
        "ok    credit-default",
    ]
    assert lines[-1] == "ok    credit-default: run permission: may start, watch and cancel pipeline runs"
    assert lines[3] == f"ok    credit-default: workspace: {DEMO_WORKSPACE} readable"
    assert lines[4] == "ok    credit-default: workspace permission: may submit jobs and register models"
    assert fake.sent("GET", f"{DEMO_WORKSPACE}?api-version=2024-10-01-preview")
    assert fake.sent("GET", f"{FACTORY}?api-version=2018-06-01")
    assert fake.sent("GET", f"{FACTORY}/pipelines/{PIPELINE}?api-version=2018-06-01")
    assert not fake.sent("POST", "/createRun")  # check starts nothing


def test_a_forbidden_factory_names_the_role_the_resource_and_the_identity(tmp_path: Path, fake: FakeAzure) -> None:
    fake.datafactory.forbidden = True

    code, lines = check(azure_config(tmp_path, fake))

    assert code == 1
    assert f"FAIL  credit-default: data factory: AuthorizationFailed: grant 'Data Factory Contributor' on {FACTORY} to app {CLIENT_ID}" in lines
    assert not any("pipeline" in line for line in lines)  # nothing more to learn past the factory


def test_an_identity_that_can_only_read_the_factory_is_told_it_cannot_run_it(tmp_path: Path, fake: FakeAzure) -> None:
    fake.datafactory.permissions = [{"actions": ["*/read"], "notActions": []}]  # the Reader role

    code, lines = check(azure_config(tmp_path, fake))

    assert code == 1
    assert lines[-1] == (
        "FAIL  credit-default: run permission: may read but not Microsoft.DataFactory/factories/pipelines/createrun/action, "
        "Microsoft.DataFactory/factories/pipelineruns/cancel/action, "
        "Microsoft.DataFactory/factories/pipelineruns/queryactivityruns/action, "
        "Microsoft.DataFactory/factories/querypipelineruns/action: "
        f"grant 'Data Factory Contributor' on {FACTORY} to app {CLIENT_ID}"
    )
    assert fake.sent("GET", f"{FACTORY}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01")


def test_a_role_that_cannot_query_pipeline_runs_fails_naming_the_action(tmp_path: Path, fake: FakeAzure) -> None:
    """A lost createRun answer is resolved by querying the factory's runs (POST .../queryPipelineRuns): with a
    custom role that may start, watch and cancel runs but not query them, that copy would fail with a 403."""
    fake.datafactory.permissions = [{"actions": [
        "*/read",
        "Microsoft.DataFactory/factories/pipelines/createrun/action",
        "Microsoft.DataFactory/factories/pipelineruns/cancel/action",
        "Microsoft.DataFactory/factories/pipelineruns/queryactivityruns/action",
    ], "notActions": []}]

    code, lines = check(azure_config(tmp_path, fake))

    assert code == 1
    assert lines[-1] == (
        "FAIL  credit-default: run permission: may read but not Microsoft.DataFactory/factories/querypipelineruns/action: "
        f"grant 'Data Factory Contributor' on {FACTORY} to app {CLIENT_ID}"
    )


def test_not_actions_take_precedence_over_wildcards() -> None:
    from drift_retrain.check import allowed

    action = "Microsoft.DataFactory/factories/pipelines/createrun/action"
    assert allowed(action, [{"actions": ["*"], "notActions": []}])
    assert allowed(action, [{"actions": ["microsoft.datafactory/factories/*"]}])
    assert not allowed(action, [{"actions": ["*"], "notActions": ["Microsoft.DataFactory/*/action"]}])
    assert allowed(action, [{"actions": ["*/read"]}, {"actions": ["Microsoft.DataFactory/factories/pipelines/*"]}])


def test_a_forbidden_workspace_names_the_azure_ml_role(tmp_path: Path, fake: FakeAzure) -> None:
    fake.ml.forbidden = True

    code, lines = check(azure_config(tmp_path, fake))

    assert code == 1
    assert f"FAIL  credit-default: workspace: AuthorizationFailed: grant 'AzureML Data Scientist' on {DEMO_WORKSPACE} to app {CLIENT_ID}" in lines


def test_an_identity_that_can_only_read_the_workspace_is_told_it_cannot_train_or_register(tmp_path: Path, fake: FakeAzure) -> None:
    fake.ml.permissions = [{"actions": ["*/read"], "notActions": []}]  # the Reader role

    code, lines = check(azure_config(tmp_path, fake))

    assert code == 1
    assert (
        "FAIL  credit-default: workspace permission: may read but not "
        "Microsoft.MachineLearningServices/workspaces/jobs/write, "
        "Microsoft.MachineLearningServices/workspaces/models/versions/write: "
        f"grant 'AzureML Data Scientist' on {DEMO_WORKSPACE} to app {CLIENT_ID}"
    ) in lines
    assert fake.sent("GET", f"{DEMO_WORKSPACE}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01")


def test_a_missing_factory_or_pipeline_is_named_with_its_config_field(tmp_path: Path, fake: FakeAzure) -> None:
    fake.datafactory.add("another-factory", PIPELINE)
    code, lines = check(azure_config(tmp_path, fake))
    assert code == 1
    assert any(l.startswith(f"FAIL  credit-default: data factory: {FACTORY} not found (ResourceNotFound); check targets.0.copy.factory") for l in lines)

    fake.datafactory.add("drift-retrain-adf", "SomeOtherPipeline")
    code, lines = check(azure_config(tmp_path, fake))
    assert code == 1
    assert any(l.startswith(f"FAIL  credit-default: pipeline {PIPELINE}: {FACTORY}/pipelines/{PIPELINE} not found") for l in lines)
    assert any("check targets.0.copy.pipeline" in l for l in lines)


def test_a_pipeline_parameter_without_default_that_the_config_does_not_set_fails(tmp_path: Path, fake: FakeAzure) -> None:
    fake.datafactory.declared[PIPELINE] = {
        "windowStart": {"type": "String"},
        "sinkFolder": {"type": "String", "defaultValue": "increments"},
    }
    code, lines = check(azure_config(tmp_path, fake))
    assert code == 1
    assert f"FAIL  credit-default: pipeline {PIPELINE}: parameter(s) windowStart have no default; set them in targets.0.copy.parameters" in lines


def test_an_unreachable_resource_manager_is_said_so(tmp_path: Path, fake: FakeAzure) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{sock.getsockname()[1]}"
    code, lines = check(azure_config(tmp_path, fake, resource_manager=closed))

    assert code == 1
    assert any(l.startswith(f"FAIL  credit-default: workspace: {closed} unreachable: ConnectError") for l in lines), lines


def test_a_refused_sign_in_fails_clearly(tmp_path: Path, fake: FakeAzure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "wrong")
    code, lines = check(azure_config(tmp_path, fake))
    assert code == 1
    assert lines[-1].startswith(f"FAIL  azure sign-in: no token for {fake.url}/.default as app {CLIENT_ID}")
    assert "AADSTS7000215" in lines[-1]


def test_a_missing_secret_variable_fails_the_sign_in_check(tmp_path: Path, fake: FakeAzure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV)
    code, lines = check(azure_config(tmp_path, fake))
    assert code == 1
    assert lines[-1] == f"FAIL  azure sign-in: azure.credential: the client secret variable ${SECRET_ENV} is not set"


def test_a_bad_config_fails_with_the_field_and_exit_2(tmp_path: Path) -> None:
    code, lines = check(write_config(tmp_path, **{r"min_rows = 500": "min_rows = -1"}))
    assert code == 2
    assert lines[0].startswith("FAIL  config: ") and any("targets.0.policy.min_rows" in l for l in lines)


def test_a_local_only_config_needs_no_azure(tmp_path: Path) -> None:
    code, lines = check(write_config(tmp_path))
    assert code == 0
    assert lines[1] == "ok    target credit-default: local backend, nothing to reach"
