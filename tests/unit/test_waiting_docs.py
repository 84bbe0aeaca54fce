"""docs/waiting.md stays true: its samples are what the code prints and parses, its defaults the model's."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from drift_retrain.config import PollingConfig
from drift_retrain.waiting import Waiting, WaiterPass

PAGE = Path(__file__).resolve().parents[2] / "docs" / "waiting.md"


def sample(name: str) -> str:
    found = re.search(
        rf"<!-- waiting-sample: {name} -->\s*\n```[a-z]*\n(.*?)\n```", PAGE.read_text(encoding="utf-8"), re.DOTALL
    )
    assert found, f"docs/waiting.md has no {name} sample"
    return found.group(1)


def test_the_state_message_sample_is_what_a_suspended_retrain_shows() -> None:
    job = re.fullmatch(r"waiting for ML job (\S+) \(suspended\)", sample("message"))
    assert job
    assert Waiting.of("training", job.group(1), "Running", 600, 3600).message == sample("message")


def test_the_waiter_sample_is_a_pass_summary() -> None:
    assert WaiterPass(["a"], [], ["b", "c"]).summary == sample("waiter")


def test_the_config_sample_parses_and_shows_the_defaults() -> None:
    polling = PollingConfig(**tomllib.loads(sample("config"))["azure"]["polling"])
    assert polling == PollingConfig()


def test_the_fallback_sample_is_what_the_default_policy_asks_for() -> None:
    """Each line's next check is ``PollingConfig().fallback`` of its age (what a suspending ML wait asks for)."""
    lines = sample("fallback").splitlines()
    assert len(lines) >= 3
    for line in lines:
        found = re.fullmatch(r"waited (\d+) (min|h): next check in (\d+) min", line)
        assert found, line
        age = int(found.group(1)) * (60 if found.group(2) == "min" else 3600)
        assert PollingConfig().fallback(age) == int(found.group(3)) * 60, line


@pytest.mark.parametrize(
    "knob", ["hold_seconds", "hold_look_seconds", "fallback_minutes", "fallback_share", "fallback_max_minutes", "timeout_minutes"]
)
def test_the_knob_table_states_each_default(knob: str) -> None:
    row = re.search(rf"^\| `{knob}` \| ([0-9.]+) \|", PAGE.read_text(encoding="utf-8"), re.MULTILINE)
    assert row and float(row.group(1)) == PollingConfig.model_fields[knob].default
