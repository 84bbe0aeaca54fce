"""Bad configuration fails at start with a message naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from drift_retrain.config import ConfigError, UnroutableSignal, load_settings
from drift_retrain.signals import to_drift_signal
from tests.conftest import DEMO_WORKSPACE, ROOT, sample, write_config


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
        ({r'backend = "local"': 'backend = "gcp"'}, r"targets\.0\.backend: Input should be 'local'"),
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
    assert __import__("re").search(expected, message), message


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
