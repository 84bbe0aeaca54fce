"""Issue 15 item 12: `monitor` prints the demo's one line for its run and what the receiver did with the event
(`--json`: one document); `sample-event` prints a ready event for a configured monitor that `send-event` delivers
to a real receiver, which routes it to that monitor's target."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drift_retrain.cli import app
from drift_retrain.config import load_settings
from drift_retrain.devstack import demo_data
from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.testing import INTAKE_TARGETS, running, write_config
from tests.unit.receiver import SECRET, RecordingHandoff, post

#: The demo's monitor line (drift_retrain/devstack/demo.py monitor_line): window, coefficient, top features.
MONITOR_LINE = re.compile(
    r"drift monitor 'credit-default-drift' over \[\d{4}-\d\d-\d\d, \d{4}-\d\d-\d\d\): coefficient \d\.\d{3} "
    r"\(threshold 0\.3\), top features: \w+ \d+%, \w+ \d+%, \w+ \d+%"
)


@pytest.fixture
def demo_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A demo config with its seeded data, and the receiver's secret in the environment."""
    def make(**replace: str) -> Path:
        monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
        config = write_config(tmp_path, **replace)
        settings = load_settings(config)
        monitor = settings.local_monitors[0]
        demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
        return config

    return make


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_monitor_prints_the_demos_line_not_raw_json(demo_config) -> None:
    result = invoke("monitor", "-c", str(demo_config()), "--no-send")

    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert MONITOR_LINE.fullmatch(first), first
    assert second == "drift detected: not sent (--no-send)"


def test_monitor_json_is_one_document_with_the_run_and_the_delivery(demo_config) -> None:
    result = invoke("monitor", "-c", str(demo_config()), "--no-send", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["delivery"] is None
    assert document["run"]["monitor"] == "credit-default-drift" and document["run"]["has_drift"] is True


def test_monitor_names_the_flow_run_the_receiver_handed_its_drift_to(demo_config) -> None:
    config = demo_config()
    recorder = RecordingHandoff()
    with running(create_app(load_settings(config), recorder)) as url:
        result = invoke("monitor", "-c", str(config), "--url", url + EVENTS_PATH)
        again = invoke("monitor", "-c", str(config), "--url", url + EVENTS_PATH, "--json")

    assert result.exit_code == 0, result.output
    line, handed = result.output.splitlines()
    assert MONITOR_LINE.fullmatch(line)
    assert re.fullmatch(r"DatasetDriftDetected for drift run \S+ -> flow run 'credit-default-\S+'", handed), handed
    assert recorder.targets == ["credit-default", "credit-default"]
    delivery = json.loads(again.output)["delivery"]
    assert delivery["status"] == 200 and delivery["answer"]["accepted"][0]["duplicate"] is True


def test_monitor_says_why_the_receiver_ignored_its_event(demo_config) -> None:
    config = demo_config(**{r'monitors = \["credit-default-drift"\]': 'monitors = ["credit-default-drfit"]'})
    with running(create_app(load_settings(config), RecordingHandoff())) as url:
        result = invoke("monitor", "-c", str(config), "--url", url + EVENTS_PATH)

    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "event ignored: monitor 'credit-default-drift' is not routed to any target"


# ------------------------------------------------------------------------------------------------
# sample-event | send-event
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["v2", "v1"])
@pytest.mark.parametrize(
    "monitor,target", [("credit-default-drift", "credit-default"), ("docs-monitor", "docs-sample")]
)
def test_a_sample_event_sent_by_send_event_is_routed_to_its_monitors_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schema: str, monitor: str, target: str
) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    config = write_config(tmp_path, extra=INTAKE_TARGETS)
    sampled = invoke("sample-event", "-c", str(config), "--schema", schema, "--monitor", monitor)
    assert sampled.exit_code == 0, sampled.output
    event_file = tmp_path / "event.json"
    event_file.write_text(sampled.output)

    recorder = RecordingHandoff()
    with running(create_app(load_settings(config), recorder)) as url:
        sent = invoke("send-event", str(event_file), "-c", str(config), "--url", url + EVENTS_PATH)

    assert sent.exit_code == 0, sent.output
    status, _, answer = sent.output.strip().partition(" ")
    assert status == "200" and len(json.loads(answer)["accepted"]) == 1, sent.output
    assert recorder.targets == [target]
    (signal,) = recorder.signals
    assert signal.monitor == monitor and signal.kind.value == ("model_monitor" if schema == "v2" else "dataset_drift")


def test_the_default_sample_is_a_v2_breach_of_the_first_monitor(configured, client, recorder) -> None:
    """Without options: the live source (a v2 breach) of the first target's first monitor; the receiver (in
    process) accepts it and routes it to that target."""
    events = json.loads(invoke("sample-event", "-c", str(configured.source_file)).output)

    response = post(client, events)

    assert response.status_code == 200, response.text
    assert [e["eventType"] for e in events] == ["Microsoft.MachineLearningServices.RunStatusChanged"]
    assert len(response.json()["accepted"]) == 1
    assert recorder.targets == ["credit-default"]


def test_a_sample_that_its_targets_subscriptions_filter_out_is_refused_with_the_reason(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra=INTAKE_TARGETS)

    result = invoke("sample-event", "-c", str(config), "--monitor", "filtered-monitor")

    assert result.exit_code == 1
    assert "a v2 event of monitor 'filtered-monitor' would not reach target 'filtered'" in result.output
    assert "filtered out: filtered/strong-drift-only" in result.output
    assert invoke("sample-event", "-c", str(config), "--monitor", "filtered-monitor", "--schema", "v1").exit_code == 0
