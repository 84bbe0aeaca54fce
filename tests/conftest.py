"""Shared fixtures: the verbatim Azure samples, a config in a temporary state dir, seeded demo data."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from drift_retrain import demo_data
from drift_retrain.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "fixtures" / "eventgrid"
SAMPLE_WORKSPACE = (
    "/subscriptions/{subscription-id}/resourceGroups/{resource-group-name}"
    "/providers/Microsoft.MachineLearningServices/workspaces/{workspace-name}"
)
DEMO_WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/drift-retrain-demo"
    "/providers/Microsoft.MachineLearningServices/workspaces/demo-workspace"
)


def sample(name: str) -> Any:
    """A verbatim Microsoft docs sample from tests/fixtures/eventgrid/."""
    return json.loads((SAMPLES / name).read_text())


def dataset_drift(run_id: str, monitor: str = "credit-default-drift", workspace: str = DEMO_WORKSPACE, **data: Any) -> dict:
    """The documented DatasetDriftDetected sample for our workspace and monitor, with a fresh event id
    (as a new publication would have) and any other data fields overridden."""
    event = sample("eg_DatasetDriftDetected.json")[0]
    event["topic"] = workspace
    event["id"] = str(uuid.uuid4())
    event["data"].update(RunId=run_id, DataDriftName=monitor, **data)
    return event


def write_config(directory: Path, extra: str = "", **replace: str) -> Path:
    """The shipped drift-retrain.toml with its state_dir moved into ``directory``, regex edits applied
    and ``extra`` TOML appended."""
    text = (ROOT / "drift-retrain.toml").read_text() + extra
    text = text.replace('state_dir = ".drift-retrain"', f'state_dir = "{directory / "state"}"')
    for pattern, value in replace.items():
        text, count = re.subn(pattern, value, text)
        assert count, f"config edit {pattern!r} matched nothing"
    path = directory / "drift-retrain.toml"
    path.write_text(text)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path))


@pytest.fixture
def demo_settings(settings: Settings) -> Settings:
    """Settings whose local monitor has seeded demo data to look at."""
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    return settings


def local_target(
    name: str,
    monitors: list[str],
    workspace: str = DEMO_WORKSPACE,
    *,
    model_name: str | None = None,
    data: str | None = None,
    landing: str | None = None,
    reference: str | None = None,
    label: str = "y",
    policy: str = "",
    extra: str = "",
) -> str:
    """One ``[[targets]]`` block on the local backend, as TOML to append to a test config. ``data`` names
    its landing and training-store folders (``landing`` another landing folder); ``policy`` is an inline
    table body; ``extra`` follows the block (e.g. its ``[[targets.subscriptions]]``)."""
    data = data or name
    reference = reference or f"data/training-store/{data}/reference.csv"
    lines = [
        "",
        "[[targets]]",
        f'name = "{name}"',
        'backend = "local"',
        f'workspace = "{workspace}"',
        f"monitors = {json.dumps(monitors)}",
        f'model_name = "{model_name or name + "-model"}"',
        *([f"policy = {{ {policy} }}"] if policy else []),
        f'copy = {{ source = "data/landing/{landing or data}", sink = "data/training-store/{data}" }}',
        f'training = {{ reference = "{reference}", label = "{label}" }}',
    ]
    return "\n".join(lines) + "\n" + extra


# Targets for the intake tests: the docs samples' workspace (so every verbatim sample is routable) and
# a target behind a subscription filter in the demo workspace.
INTAKE_TARGETS = local_target(
    "docs-sample", ["myDriftMonitor", "docs-monitor"], SAMPLE_WORKSPACE, model_name="docs-model", data="docs"
) + local_target(
    "filtered",
    ["filtered-monitor"],
    extra="""
[[targets.subscriptions]]
name = "strong-drift-only"
included_event_types = ["Microsoft.MachineLearningServices.DatasetDriftDetected"]
subject_begins_with = "datadrifts/"
advanced_filters = [
  { operator = "NumberGreaterThanOrEquals", key = "data.DriftCoefficient", value = 0.5 },
  { operator = "StringIn", key = "data.DataDriftName", values = ["filtered-monitor"] },
]
""",
)

BREACH_TEXT = "has failed due to one or more features violating metric thresholds"


def monitor_breach(run_id: str, workspace: str = SAMPLE_WORKSPACE, monitor: str = "docs-monitor", cloudevents: bool = False) -> dict:
    """The documented RunStatusChanged sample turned into an Azure ML v2 model-monitor breach."""
    event = sample("ce_RunStatusChanged.json" if cloudevents else "eg_RunStatusChanged.json")[0]
    event["source" if cloudevents else "topic"] = workspace
    event["id"] = str(uuid.uuid4())
    event["data"]["runId"] = run_id
    event["data"]["runTags"] = {
        "azureml_modelmonitor_threshold_breached": f"Monitor {monitor} {BREACH_TEXT}: normalized_wasserstein_distance",
        "azureml_modelmonitor_name": monitor,
    }
    return event
