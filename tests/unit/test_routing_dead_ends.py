"""Issue 15 item 4: a config whose monitors feed no target. `check` names every routing dead end (one failing
line each, naming the config field), and `demo` says "event ignored: <reason>" with exit code 2 instead of
failing with an IndexError on the receiver's empty ``accepted`` list."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from drift_retrain.cli import app
from drift_retrain.config import load_settings
from drift_retrain.devstack import demo
from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.testing import DEMO_WORKSPACE, SAMPLE_WORKSPACE, local_target, running, write_config
from tests.unit.receiver import SECRET, RecordingHandoff

TYPO = {r'monitors = \["credit-default-drift"\]': 'monitors = ["credit-default-drfit"]'}  # the config


def check(config: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["check", "--config", str(config)])
    return result.exit_code, result.output.strip().splitlines()


def test_the_shipped_config_has_no_dead_end(tmp_path: Path) -> None:
    code, lines = check(write_config(tmp_path))

    assert code == 0, lines
    assert "ok    routing: 1 local monitor(s) and 1 target monitor(s): every one reaches its target" in lines


def test_a_misspelt_target_monitor_fails_check_naming_the_local_monitor_and_the_target_monitor(tmp_path: Path) -> None:
    config = write_config(tmp_path, **TYPO)

    code, lines = check(config)

    assert code == 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 2, lines
    local, target = failed
    assert local.startswith("FAIL  routing local_monitors.0: local monitor 'credit-default-drift' (local_monitors.0.name)")
    assert f"it is in none of targets.0.monitors in {config}; a near name there is 'credit-default-drfit' (a typo on one side?)" in local
    assert "the receiver ignores it: monitor 'credit-default-drift' is not routed to any target" in local
    assert target.startswith(
        "FAIL  routing targets.0: monitor 'credit-default-drfit' of target 'credit-default' (targets.0.monitors) "
        "is no [[local_monitors]] name"
    )


def test_a_local_monitor_of_another_workspace_fails_check_naming_its_workspace_field(tmp_path: Path) -> None:
    config = write_config(tmp_path, **{r"(\[\[local_monitors\]\]\nname = .*\n)workspace = .*": rf'\1workspace = "{SAMPLE_WORKSPACE}"'})

    code, lines = check(config)

    assert code == 1
    assert (
        f"FAIL  routing local_monitors.0: local monitor 'credit-default-drift' feeds no target: local_monitors.0.workspace "
        f"{SAMPLE_WORKSPACE} is none of targets.0.workspace in {config}"
    ) in lines


def test_a_target_monitor_its_own_subscriptions_filter_out_and_a_signal_they_drop_fail_check(tmp_path: Path) -> None:
    """An azure-side dead end: the target's configured subscription delivers only another monitor's v1 drift, so
    neither kind of drift of 'churn' nor a breach of the configured signal 'age_drift' ever reaches the target."""
    extra = local_target(
        "filtered",
        ["credit-default-drift-2", "churn"],
        SAMPLE_WORKSPACE,
        extra='[targets.signals]\nchurn = ["age_drift"]\n\n[[targets.subscriptions]]\nname = "v1-only"\n'
        'included_event_types = ["Microsoft.MachineLearningServices.DatasetDriftDetected"]\n'
        'advanced_filters = [{ operator = "StringIn", key = "data.DataDriftName", values = ["credit-default-drift-2"] }]\n',
    )
    extra += '\n[[local_monitors]]\nname = "credit-default-drift-2"\nworkspace = "' + SAMPLE_WORKSPACE + '"\n'
    extra += 'reference = "r.csv"\nlanding = "l"\n[[local_monitors]]\nname = "churn"\nworkspace = "' + SAMPLE_WORKSPACE
    extra += '"\nreference = "r.csv"\nlanding = "l"\n'
    config = write_config(tmp_path, extra=extra)

    code, lines = check(config)

    assert code == 1
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 3, lines  # the local monitor 'churn', the target monitor 'churn', its signal
    assert failed[0].startswith("FAIL  routing local_monitors.2: local monitor 'churn' (local_monitors.2.name) feeds no target")
    assert "filtered out: filtered/v1-only" in failed[0]
    assert failed[1].startswith("FAIL  routing targets.1: no drift of monitor 'churn' (targets.1.monitors) reaches target 'filtered'")
    assert "a v1 event: the receiver ignores it: filtered out: filtered/v1-only" in failed[1]
    assert failed[2].startswith(
        "FAIL  routing targets.1: a breach of signal 'age_drift' (targets.1.signals.churn) does not reach monitor 'churn'"
    )


# ------------------------------------------------------------------------------------------------
# The demo against the real receiver (in a thread, a recording hand-off in place of Prefect)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def receiver_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingHandoff]:
    """The demo's stack reduced to the real webhook receiver: the demo posts its event to it over HTTP."""
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    recorder = RecordingHandoff()

    @contextmanager
    def stack(settings):
        with running(create_app(settings, recorder)) as url:
            yield SimpleNamespace(
                attached=False, ui_url="(no Prefect here)", webhook_url=url + EVENTS_PATH, secret=SECRET, prefect_port=1
            )

    monkeypatch.setattr(demo, "Stack", stack)
    yield recorder


def test_the_demo_says_the_event_was_ignored_and_why_when_no_target_takes_its_monitor(
    tmp_path: Path, receiver_stack: RecordingHandoff
) -> None:
    settings = load_settings(write_config(tmp_path, **TYPO))
    printed: list[str] = []

    code = demo.run_demo(settings, say=printed.append, timeout=60)

    assert code == 2
    assert "event ignored: monitor 'credit-default-drift' is not routed to any target" in printed
    assert printed[-1] == f"nothing was retrained: `drift-retrain check -c {settings.source_file}` names the config to fix"
    assert receiver_stack.signals == []


def test_the_demo_says_the_event_was_refused_when_its_workspace_is_no_targets(
    tmp_path: Path, receiver_stack: RecordingHandoff
) -> None:
    config = write_config(tmp_path, **{r"(\[\[local_monitors\]\]\nname = .*\n)workspace = .*": rf'\1workspace = "{SAMPLE_WORKSPACE}"'})
    printed: list[str] = []

    code = demo.run_demo(load_settings(config), say=printed.append, timeout=60)

    assert code == 2
    refused = [line for line in printed if line.startswith("event refused (400): ")]
    assert refused and f"source {SAMPLE_WORKSPACE} is not a configured workspace" in refused[0], printed


def test_a_routed_demo_event_is_handed_off_as_before(
    tmp_path: Path, receiver_stack: RecordingHandoff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receipt of an accepted event is its accepted entry: the demo names the flow run, then waits on it."""
    settings = load_settings(write_config(tmp_path))
    printed: list[str] = []

    async def no_prefect(flow_run_id, say, timeout):  # nothing to wait on: the hand-off only recorded the signal
        raise demo.DemoFailed("no Prefect here")

    monkeypatch.setattr(demo, "_wait_for", no_prefect)
    with pytest.raises(demo.DemoFailed, match="no Prefect here"):
        demo.run_demo(settings, say=printed.append, timeout=60)

    assert receiver_stack.targets == ["credit-default"]
    assert any(line.startswith("DatasetDriftDetected for drift run ") and "-> flow run 'credit-default-" in line for line in printed)
