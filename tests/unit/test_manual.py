"""A retrain by hand from the Run form: its signal identity, its window, its errors, and the deployment's
parameter schema accepting both the form's shape and the receiver's ``{"signal": ..., "force": ...}``."""

from __future__ import annotations

from pathlib import Path

from datetime import datetime, timezone

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import ValidationError, validate

from drift_retrain.config import ConfigError, Settings
from drift_retrain.names import MANUAL, SWEEP, WEBHOOK, flow_run_name, flow_run_tags, started_by
from drift_retrain.manual import InvalidRequest, manual_signal, requested_signal
from drift_retrain.policy import decide
from drift_retrain.results import DriftDetails
from drift_retrain.signals import SignalKind
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import dataset_drift

NOON = datetime(2026, 11, 26, 12, 30, tzinfo=timezone.utc)


def test_the_default_window_is_the_last_seven_days_up_to_the_coming_midnight(settings: Settings) -> None:
    signal = manual_signal(settings.targets[0], now=NOON)
    assert (signal.window_start, signal.window_end) == (
        datetime(2026, 11, 20, tzinfo=timezone.utc), datetime(2026, 11, 27, tzinfo=timezone.utc)
    )
    assert signal.kind is SignalKind.MANUAL
    assert signal.run_id == "manual-credit-default-20261120T0000Z-20261127T0000Z"
    assert settings.route(signal) is settings.targets[0]  # routed like a drift signal of the target's monitor


def test_the_same_target_and_window_is_the_same_signal_whoever_asks_and_when(settings: Settings) -> None:
    target = settings.targets[0]
    morning = manual_signal(target, now=NOON.replace(hour=1), request_id="run-a")
    evening = manual_signal(target, now=NOON.replace(hour=23), request_id="run-b")
    assert morning.identity == evening.identity and morning.digest == evening.digest
    assert morning.event_id != evening.event_id  # each request is its own delivery
    other_window = manual_signal(target, datetime(2026, 11, 1), datetime(2026, 11, 8), now=NOON)
    assert other_window.identity != morning.identity
    assert other_window.window_start == datetime(2026, 11, 1, tzinfo=timezone.utc)  # naive means UTC


def test_a_window_that_ends_before_it_starts_is_refused(settings: Settings) -> None:
    with pytest.raises(InvalidRequest, match="window_start 2026-11-08.* must be before window_end 2026-11-01"):
        manual_signal(settings.targets[0], datetime(2026, 11, 8), datetime(2026, 11, 1))


def test_a_run_is_about_a_signal_or_a_target_never_both_nor_neither(settings: Settings) -> None:
    drift = dataset_drift("credit-default-drift_1717000000000")
    signal = to_drift_signal(drift)
    assert requested_signal(settings, signal.model_dump(mode="json"), None) == signal
    # the form always has a target selected (its default): with a signal it is ignored, a window is not
    assert requested_signal(settings, signal, "credit-default") == signal
    with pytest.raises(InvalidRequest, match="not both"):
        requested_signal(settings, signal, "credit-default", window_end="2026-11-08T00:00:00Z")
    with pytest.raises(InvalidRequest, match=r"choose a 'target' \(credit-default\)"):
        requested_signal(settings, None, None)
    with pytest.raises(ConfigError, match="no target named 'nope'"):
        requested_signal(settings, None, "nope")
    by_hand = requested_signal(settings, None, "credit-default", "2026-11-01T00:00:00Z", "2026-11-08T00:00:00Z")
    assert by_hand.run_id == "manual-credit-default-20261101T0000Z-20261108T0000Z"


def test_a_manual_request_passes_the_drift_rule_but_not_the_others(settings: Settings) -> None:
    signal = manual_signal(settings.targets[0], now=NOON)
    details = DriftDetails(available=False, source="no drift run", rows_in_window=3)
    decision = decide(signal, details, settings.targets[0].policy, [])
    checks = {c.rule: c for c in decision.checks}
    assert checks["drift"].passed and "by hand" in checks["drift"].detail
    assert not checks["min_rows"].passed and not decision.retrain  # force is the person's explicit choice


def test_names_and_tags_say_who_started_the_run(settings: Settings) -> None:
    target = settings.targets[0]
    signal = to_drift_signal(dataset_drift("credit-default-drift_1717000000000"))
    short = signal.digest[:8]
    assert flow_run_name(target, signal) == f"credit-default-2019-07-04..05-{short}"
    assert flow_run_name(target, signal, SWEEP) == f"credit-default-2019-07-04..05-{short}-sweep"
    assert "via:sweep" in flow_run_tags(target, signal, SWEEP)
    assert started_by(["drift-retrain", "via:sweep"]) == SWEEP
    assert started_by(["drift-retrain", "via:webhook"]) == WEBHOOK
    assert started_by(["drift-retrain"]) == MANUAL  # the Run form adds no via: tag
    manual = manual_signal(target, now=NOON)
    # the target is said once (its model's name), not again from the manual run id
    assert flow_run_name(target, manual, MANUAL) == f"credit-default-manual-2026-11-20..27-{manual.digest[:8]}"
    assert "kind:manual" in flow_run_tags(target, manual, MANUAL)


def _schema() -> dict:
    from flows.drift_to_retrain import drift_to_retrain

    return parameter_schema(drift_to_retrain).model_dump_for_openapi()


def test_the_run_form_schema_takes_the_receivers_shape_and_the_forms(monkeypatch, settings: Settings) -> None:
    monkeypatch.setenv("DRIFT_RETRAIN_CONFIG", str(settings.source_file))
    schema = _schema()
    signal = to_drift_signal(dataset_drift("credit-default-drift_1717000000000"))
    validate({"signal": signal.model_dump(mode="json"), "force": False}, schema, raise_on_error=True)
    validate({"target": "credit-default", "window_end": "2026-11-08T00:00:00Z", "force": True}, schema, raise_on_error=True)
    with pytest.raises(ValidationError):
        validate({"target": "not-configured"}, schema, raise_on_error=True)

    described = {name: prop.get("description", "") for name, prop in schema["properties"].items()}
    assert all(described.values()), described  # the form shows a description under every field
    assert "webhook receiver" in described["signal"] and "by hand" in described["target"]


def test_the_run_form_shows_the_target_drop_down_at_once() -> None:
    """A plain enum with a default: no ``anyOf`` with null, which the form hides behind a "str" toggle."""
    target = _schema()["properties"]["target"]
    # the targets of whichever config the flow module was first imported under (another test's, in one process)
    assert "anyOf" not in target and target["enum"] and target["default"] == target["enum"][0]


def test_the_shipped_config_offers_its_target_preselected(monkeypatch) -> None:
    from pydantic import TypeAdapter

    from drift_retrain.manual import target_choice, target_default

    monkeypatch.setenv("DRIFT_RETRAIN_CONFIG", str(Path(__file__).resolve().parents[2] / "drift-retrain.toml"))
    assert TypeAdapter(target_choice()).json_schema()["enum"] == ["credit-default"]
    assert target_default() == "credit-default"
