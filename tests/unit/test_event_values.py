"""Issue 14, "one place" and item 6: every event field is validated into a typed, bounded value where a signal is
made (``DriftSignal``'s types, the parsing layer, the configured ``SignalLimits``), on every path that makes one:
the receiver (a 400 naming the field and the rule, nothing handed off), the sweep's catch-up and manual runs.

Item 6 as it was: a window 0001-01-01 to 9999-12-31 was accepted, registered a version, and every later signal of
the model was skipped as "covered by" it; StartTime after EndTime was accepted; DriftCoefficient 42, -5, "0.95",
true, NaN, Infinity and 1e999 were accepted (stored as null, a run still created).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from drift_retrain.backends.azure.missed import run_status_changed
from drift_retrain.backends.azure.monitor_runs import ChildRun
from drift_retrain.backends.local.missed import LocalMonitorRecords
from drift_retrain.backends.local.monitor import MonitorRun, monitor_store
from drift_retrain.config import ConfigError, Settings, load_settings
from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.intake.parsing import InvalidEvent, NotADriftSignal, parse_envelope, to_drift_signal
from drift_retrain.manual import InvalidRequest, manual_signal, requested_signal
from drift_retrain.signals import MONITOR_BREACH_TAG, DriftSignal, SignalKind, SignalLimits
from drift_retrain.testing import (
    DEMO_WORKSPACE,
    INTAKE_TARGETS,
    SAMPLES,
    dataset_drift,
    monitor_breach,
    write_config,
)
from tests.unit.receiver import RecordingHandoff

SECRET = "s3cret-value"
SECRET_ENV = r'secret_env = "DRIFT_RETRAIN_WEBHOOK_SECRET"'
WINDOW = {"StartTime": "2026-11-01T00:00:00Z", "EndTime": "2026-11-08T00:00:00Z"}


def _post(client: TestClient, events: list[dict] | str) -> tuple[int, str]:
    body = events if isinstance(events, str) else json.dumps(events)
    response = client.post(
        EVENTS_PATH, params={"code": SECRET}, content=body, headers={"Content-Type": "application/json"}
    )
    return response.status_code, response.json().get("error", "")


def drift(**data: object) -> dict:
    return dataset_drift("credit-default-drift_1717000000000", **{**WINDOW, **data})


# -- what Azure really sends is accepted ---------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_azure_sample_reads_as_a_signal_or_as_no_drift_never_as_invalid(path: Path) -> None:
    """The documented samples' ids (GUIDs, <DataDriftId>_<epoch-ms>, AutoML_<guid>_5), names and times pass."""
    document = json.loads(path.read_text())
    for event in document if isinstance(document, list) else [document]:
        if "validationResponse" in event:
            continue  # our answer to a handshake, not an event
        parse_envelope(event)
        try:
            signal = to_drift_signal(event)
        except NotADriftSignal:
            continue
        assert signal.run_id == (event["data"].get("RunId") or event["data"].get("runId"))


def test_the_samples_are_accepted_by_the_receiver(client, recorder) -> None:
    for name in ("eg_DatasetDriftDetected.json", "ce_DatasetDriftDetected.json", "eg_RunStatusChanged_model_monitor_breaches.json"):
        status, error = _post(client, json.loads((SAMPLES / name).read_text()))
        assert status == 200, error
    assert [s.run_id for s in recorder.signals] == ["01d29aa4-e6a4-470a-9ef3-66660d21f8ef_1571590300380"] * 2


# -- item 6: windows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "field", "rule"),
    [
        (
            {"StartTime": "0001-01-01T00:00:00Z", "EndTime": "9999-12-31T23:59:59Z"},
            "data.StartTime",
            "receiver.earliest_time",
        ),
        ({"StartTime": "0001-01-01T00:00:00Z"}, "data.StartTime", "must not be before 2000-01-01"),
        ({"EndTime": "9999-12-31T23:59:59Z"}, "data.EndTime", "receiver.max_future_hours"),
        (
            {"StartTime": "2026-11-08T00:00:00Z", "EndTime": "2026-11-01T00:00:00Z"},
            "data.EndTime",
            "must be after window_start",
        ),
        (
            {"StartTime": "2026-11-01T00:00:00Z", "EndTime": "2026-11-01T00:00:00Z"},
            "data.EndTime",
            "must be after window_start",
        ),
        (
            {"StartTime": "2026-01-01T00:00:00Z", "EndTime": "2026-11-01T00:00:00Z"},
            "data.EndTime",
            "receiver.max_window_days",
        ),
        ({"StartTime": None}, "data.EndTime", "come together"),
        ({"StartTime": 1700000000}, "data.StartTime", "ISO 8601"),
        ({"EndTime": "1700000000"}, "data.EndTime", "ISO 8601"),
    ],
)
def test_a_window_out_of_bounds_is_a_400_naming_the_field_and_nothing_is_handed_off(
    client, recorder, window, field, rule
) -> None:
    status, error = _post(client, [drift(**window)])
    assert status == 400 and field in error and rule in error, error
    assert recorder.signals == []


def test_a_month_long_window_from_a_monthly_monitor_is_accepted(client, recorder) -> None:
    status, error = _post(client, [drift(StartTime="2026-10-01T00:00:00Z", EndTime="2026-11-01T00:00:00Z")])
    assert status == 200, error
    assert recorder.signals[0].window_end - recorder.signals[0].window_start == timedelta(days=31)


def test_an_event_time_far_ahead_is_refused(client, recorder) -> None:
    event = drift()
    event["eventTime"] = "9999-01-01T00:00:00Z"
    status, error = _post(client, [event])
    assert status == 400 and "eventTime" in error and "max_future_hours" in error, error
    assert recorder.signals == []


def test_a_time_without_an_offset_is_utc() -> None:
    signal = to_drift_signal(drift(StartTime="2026-11-01T00:00:00", EndTime="2026-11-08T00:00:00+00:00"))
    assert signal.window_start == datetime(2026, 11, 1, tzinfo=UTC)  # comparable with the aware end, no TypeError


def test_the_limits_are_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    wide = f"{SECRET_ENV}\nmax_window_days = 92\nearliest_time = 1990-01-01T00:00:00Z\nmax_future_hours = 48"
    settings = load_settings(write_config(tmp_path, extra=INTAKE_TARGETS, **{SECRET_ENV: wide}))
    assert settings.receiver.signal_limits.max_window == timedelta(days=92)
    recorder = RecordingHandoff()
    soon = (datetime.now(UTC) + timedelta(hours=30)).isoformat()
    with TestClient(create_app(settings, recorder)) as client:
        assert _post(client, [drift(StartTime="2026-08-01T00:00:00Z", EndTime="2026-10-01T00:00:00Z")])[0] == 200
        assert (
            _post(client, [dataset_drift("m_2", StartTime="1995-01-01T00:00:00Z", EndTime="1995-01-08T00:00:00Z")])[0]
            == 200
        )
        assert _post(client, [dataset_drift("m_3", StartTime="2026-11-25T00:00:00Z", EndTime=soon)])[0] == 200
        assert (
            _post(client, [dataset_drift("m_4", StartTime="2026-01-01T00:00:00Z", EndTime="2026-11-01T00:00:00Z")])[0]
            == 400
        )
    assert len(recorder.signals) == 3


def test_a_local_monitor_whose_window_exceeds_the_limit_fails_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="window_days 40 exceeds receiver.max_window_days 31"):
        load_settings(write_config(tmp_path, **{r"window_days = 7": "window_days = 40"}))


# -- item 6: DriftCoefficient ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("42", "less than or equal to 1"),
        ("-5", "greater than or equal to 0"),
        ('"0.95"', "valid number"),
        ("true", "valid number"),
        ("1.0000001", "less than or equal to 1"),
    ],
)
def test_a_drift_coefficient_out_of_range_or_not_a_number_is_a_400_naming_it(client, recorder, text, rule) -> None:
    body = json.dumps([drift(DriftCoefficient="@@")]).replace('"@@"', text)
    status, error = _post(client, body)
    assert status == 400 and "data.DriftCoefficient" in error and rule in error, error
    assert recorder.signals == []


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_drift_coefficient_that_is_not_finite_is_a_400_and_no_run(client, recorder, text) -> None:
    body = json.dumps([drift(DriftCoefficient="@@")]).replace('"@@"', text)
    status, _ = _post(client, body)  # refused here, or by the JSON reader before: a 400 either way
    assert status == 400
    assert recorder.signals == []
    event = drift()
    event["data"]["DriftCoefficient"] = json.loads(text)
    with pytest.raises(InvalidEvent, match=r"data\.DriftCoefficient .*finite number"):
        to_drift_signal(event)


@pytest.mark.parametrize("value", [0, 1, 0.0, 1.0, 0.835])
def test_coefficients_azure_can_send_are_accepted(value) -> None:
    assert to_drift_signal(drift(DriftCoefficient=value)).drift_coefficient == value


# -- ids and strings ------------------------------------------------------------------------------

HOSTILE_IDS = [
    ("../../../../tmp/x/evil", "no whitespace, control characters, '/'"),
    ("..", "starting with a letter or digit"),
    ("a..b", "must not contain '..'"),
    ("a b", "no whitespace"),
    ("a\tb", "no whitespace"),
    ("a\x00b", "control characters"),
    ("a\\b", "or '\\'"),
    ("x" * 257, "at most 256 characters"),
    ("azureml://datastores/x", "no whitespace, control characters, '/'"),
]


@pytest.mark.parametrize(("value", "rule"), HOSTILE_IDS)
@pytest.mark.parametrize("field", ["RunId", "DataDriftId", "DataDriftName", "BaseDatasetId", "TargetDatasetId"])
def test_a_hostile_id_is_a_400_naming_the_field_and_nothing_is_handed_off(client, recorder, field, value, rule) -> None:
    event = drift()
    event["data"][field] = value
    status, error = _post(client, [event])
    assert status == 400 and f"data.{field}" in error and rule in error, error
    assert recorder.signals == []


@pytest.mark.parametrize(("value", "rule"), [*HOSTILE_IDS[:-2], ("x" * 321, "at most 320 characters")])
def test_a_hostile_event_id_is_a_400(client, recorder, value, rule) -> None:
    event = drift()
    event["id"] = value
    status, error = _post(client, [event])
    assert status == 400 and "field 'id'" in error and rule.replace("'/'", "") in error, error
    assert "\x00" not in error and "\t" not in error  # the value is shown escaped, never raw
    assert recorder.signals == []


@pytest.mark.parametrize(
    ("field", "value"), [("runId", "../x"), ("experimentName", "a/b"), ("experimentName", "x" * 257)]
)
def test_a_hostile_v2_run_id_or_experiment_name_is_a_400(client, recorder, field, value) -> None:
    event = monitor_breach("eval-run-1", experiment="docs-monitor")
    event["data"][field] = value
    status, error = _post(client, [event])
    assert status == 400 and f"data.{field[0].upper()}{field[1:]}" in error, error
    assert recorder.signals == []


@pytest.mark.parametrize(("field", "value"), [("subject", "datadrifts/a\nb"), ("eventType", "Microsoft.\x00X")])
def test_envelope_text_with_control_characters_is_a_400(client, recorder, field, value) -> None:
    event = drift()
    event[field] = value
    status, error = _post(client, [event])
    assert status == 400 and "control characters" in error, error
    assert recorder.signals == []


def test_a_signal_built_directly_gets_the_same_rules() -> None:
    """The rules are DriftSignal's own types: no path that builds one can skip them (model_construct aside)."""
    base = dict(kind=SignalKind.DATASET_DRIFT, workspace_id=DEMO_WORKSPACE, monitor="m", event_id="e1")
    with pytest.raises(ValueError, match="run_id"):
        DriftSignal(**base, run_id="../evil")
    with pytest.raises(ValueError, match="workspace_id"):
        DriftSignal(**{**base, "workspace_id": DEMO_WORKSPACE + "/../x"}, run_id="r1")
    with pytest.raises(ValueError, match="drift_coefficient"):
        DriftSignal(**base, run_id="r1", drift_coefficient=float("nan"))
    with pytest.raises(ValueError, match="window_end"):
        DriftSignal(
            **base,
            run_id="r1",
            window_start=datetime(2026, 1, 2, tzinfo=UTC),
            window_end=datetime(2026, 1, 1, tzinfo=UTC),
        )
    limits = SignalLimits().context()
    with pytest.raises(ValueError, match="receiver.max_window_days"):
        DriftSignal.model_validate(
            {**base, "run_id": "r1", "window_start": "2001-01-01T00:00:00Z", "window_end": "2026-01-01T00:00:00Z"},
            context=limits,
        )


# -- the other paths that make signals: sweep catch-up and manual runs ---------------------------


def test_the_local_sweep_leaves_out_a_record_whose_window_breaks_the_limits_and_says_so(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    store = monitor_store(settings)
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    good = MonitorRun(
        run_id="good_1",
        monitor="credit-default-drift",
        monitor_id="01d29aa4-e6a4-470a-9ef3-66660d21f8ef",
        workspace=DEMO_WORKSPACE,
        window_start=moment - timedelta(days=7),
        window_end=moment,
        drift_coefficient=0.9,
        threshold=0.3,
        has_drift=True,
        rows_reference=1,
        rows_in_window=1,
        base_dataset_id="b1",
        target_dataset_id="t1",
        features=[],
        computed_at=moment,
    )
    store.save(good)
    store.save(
        good.model_copy(
            update={
                "run_id": "forever_1",
                "window_start": datetime(1, 1, 1, tzinfo=UTC),
                "window_end": datetime(9999, 12, 31, tzinfo=UTC),
            }
        )
    )
    records = LocalMonitorRecords(settings, settings.targets[0])
    signals = records.signals_since(moment - timedelta(days=1))
    assert [s.run_id for s in signals] == ["good_1"]
    assert records.blind_spot and "1 monitor records could not be read" in records.blind_spot
    assert "data.StartTime" in records.blind_spot


def test_the_azure_sweep_reads_a_hostile_run_through_the_same_rules() -> None:
    step = ChildRun(
        run_id="../../evil",
        parent_run_id="p",
        experiment_id="e",
        status="Completed",
        run_type=None,
        created=None,
        ended=datetime(2026, 11, 1, tzinfo=UTC),
        tags={MONITOR_BREACH_TAG: "x"},
    )
    with pytest.raises(InvalidEvent, match="must be letters, digits"):  # its event id sweep-<run id> already
        to_drift_signal(run_status_changed(step, "monitor-exp", DEMO_WORKSPACE))


@pytest.fixture
def demo_settings(tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path))


def test_a_manual_window_beyond_the_limits_is_refused(demo_settings: Settings) -> None:
    target = demo_settings.targets[0]
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    with pytest.raises(InvalidRequest, match="receiver.max_window_days"):
        manual_signal(target, datetime(2026, 1, 1), datetime(2026, 11, 1), now=now)
    with pytest.raises(InvalidRequest, match="receiver.max_future_hours"):
        manual_signal(target, datetime(2026, 11, 20), datetime(2026, 11, 29), now=now)
    with pytest.raises(InvalidRequest, match="receiver.earliest_time"):
        manual_signal(target, datetime(1999, 12, 1), datetime(1999, 12, 8), now=now)
    assert manual_signal(target, now=now).window_end == datetime(2026, 11, 27, tzinfo=UTC)  # the default still fits


def test_a_signal_parameter_is_checked_again_against_the_run_settings(demo_settings: Settings) -> None:
    """Anyone who can create a flow run can set the ``signal`` parameter; it gets no easier path than an event."""
    signal = to_drift_signal(dataset_drift("credit-default-drift_1717000000000", **WINDOW))
    assert requested_signal(demo_settings, signal.model_dump(mode="json"), None) == signal
    hostile = {**signal.model_dump(mode="json"), "run_id": "../../../../tmp/x/evil"}
    with pytest.raises(InvalidRequest, match="run_id"):
        requested_signal(demo_settings, hostile, None)
    forever = {
        **signal.model_dump(mode="json"),
        "window_start": "2001-01-01T00:00:00Z",
        "window_end": "2026-11-01T00:00:00Z",
    }
    with pytest.raises(InvalidRequest, match="receiver.max_window_days"):
        requested_signal(demo_settings, forever, None)
    crafted = DriftSignal.model_construct(**{**signal.model_dump(), "run_id": "../evil"})
    with pytest.raises(InvalidRequest, match="run_id"):
        requested_signal(demo_settings, crafted, None)
