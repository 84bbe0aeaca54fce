"""Which target and monitor a v2 breach belongs to (drift_retrain.routing): by its signal's name, since no
tag names the monitor; the receiver, the sweep and the flow all route through ``Settings.routing``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from drift_retrain import sweep
from drift_retrain.config import ConfigError, Settings, UnroutableSignal, load_settings
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.routing import NoRoute, Route
from drift_retrain.signals import DriftSignal
from drift_retrain.testing import DEMO_WORKSPACE, local_target, monitor_breach, write_config

TARGETS = (
    local_target("t-credit", ["credit"])
    + local_target("t-credit-default", ["credit-default"], extra='[targets.signals]\ncredit-default = ["age_drift"]\n')
    + local_target("t-churn", ["churn_monitor", "ab"])
    + local_target("t-other", ["bc"])
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path, extra=TARGETS))


def breach(signal: str, experiment: str | None = None, run_id: str = "eval-run-1") -> DriftSignal:
    return to_drift_signal(monitor_breach(run_id, DEMO_WORKSPACE, signal=signal, experiment=experiment))


def routed(settings: Settings, signal: DriftSignal) -> tuple[str, str, str]:
    found = settings.routing(signal)
    assert isinstance(found, Route), found
    return found.target.name, found.signal.monitor, found.rule


def test_a_configured_signal_name_routes_to_its_monitor(settings) -> None:
    assert routed(settings, breach("Age_Drift")) == (
        "t-credit-default",
        "credit-default",
        "signal 'Age_Drift' is configured for monitor 'credit-default'",
    )


@pytest.mark.parametrize(
    ("signal", "monitor"),
    [
        ("credit-default_data_drift", "credit-default"),  # `credit` is in it too: the longest name wins
        ("credit_data_drift", "credit"),
        ("CREDIT-DEFAULT_prediction_drift", "credit-default"),  # Event Grid compares strings case-insensitively
        ("churn_monitor_data_quality", "churn_monitor"),
    ],
)
def test_a_signal_named_after_its_monitor_routes_to_the_longest_monitor_name_in_it(settings, signal, monitor) -> None:
    target = settings.target_for(breach(signal))
    assert routed(settings, breach(signal)) == (
        target.name if target else None,
        monitor,
        f"signal '{signal}' contains monitor name '{monitor}'",
    )
    assert monitor in target.monitors


def test_a_configured_signal_wins_over_a_monitor_name_in_it(tmp_path) -> None:
    extra = local_target("a", ["fraud"]) + local_target("b", ["risk"], extra='[targets.signals]\nrisk = ["fraud_drift"]\n')
    settings = load_settings(write_config(tmp_path, extra=extra))
    assert routed(settings, breach("fraud_drift"))[:2] == ("b", "risk")


def test_equal_monitor_names_in_one_signal_are_ambiguous_and_say_so(settings) -> None:
    found = settings.routing(breach("abc_drift", experiment="exp-1"))
    assert isinstance(found, NoRoute)
    assert found.reason == (
        f"v2 signal 'abc_drift' of experiment 'exp-1' in workspace {DEMO_WORKSPACE} is ambiguous: it contains "
        "monitor names of equal length: 'ab' of target 't-churn', 'bc' of target 't-other'"
    )


def test_the_experiment_name_is_the_last_resort(settings) -> None:
    assert routed(settings, breach("drift_signal_1", experiment="credit")) == (
        "t-credit",
        "credit",
        "experiment 'credit' is a monitor name",
    )


def test_a_breach_nothing_takes_is_named_with_its_experiment(settings) -> None:
    signal = breach("fraud_data_drift", experiment="fraud-exp")
    found = settings.routing(signal)
    assert isinstance(found, NoRoute)
    assert found.reason == (
        f"v2 signal 'fraud_data_drift' of experiment 'fraud-exp' in workspace {DEMO_WORKSPACE} "
        "matches no configured signal or monitor name"
    )
    assert settings.target_for(signal) is None
    with pytest.raises(UnroutableSignal, match="no target in .* takes v2 signal 'fraud_data_drift' of experiment"):
        settings.routed(signal)


def test_an_unreadable_signal_name_routes_by_experiment_or_says_why(settings) -> None:
    event = monitor_breach("r1", DEMO_WORKSPACE, experiment="credit")
    event["data"]["runTags"] = {"azureml_modelmonitor_threshold_breached": 42}
    assert routed(settings, to_drift_signal(event))[:2] == ("t-credit", "credit")
    event["data"]["experimentName"] = "elsewhere"
    found = settings.routing(to_drift_signal(event))
    assert isinstance(found, NoRoute)
    assert "unreadable (the tag value is int, not text) of experiment 'elsewhere'" in found.reason


def test_routing_a_routed_signal_again_gives_the_same_target_and_monitor(settings) -> None:
    for signal in (breach("credit-default_data_drift"), breach("age_drift"), breach("x", experiment="credit")):
        once, target = settings.routed(signal)
        assert once.monitor in target.monitors and once.identity == signal.identity  # the monitor is not identity
        assert settings.routed(once) == (once, target)


def test_a_monitor_with_several_signals_routes_them_all_to_its_target(settings) -> None:
    signals = ["credit-default_data_drift", "credit-default_prediction_drift", "credit-default_data_quality", "age_drift"]
    found = [settings.routed(breach(s, run_id=f"eval-{i}")) for i, s in enumerate(signals)]
    assert {(t.name, s.monitor) for s, t in found} == {("t-credit-default", "credit-default")}
    assert [s.signal_name for s, _ in found] == signals


def test_the_sweep_routes_caught_up_breaches_as_the_receiver_does(settings, monkeypatch) -> None:
    class Source:
        blind_spot = None

        def signals_since(self, since: datetime) -> list[DriftSignal]:
            return [breach("credit_data_drift", run_id="a"), breach("nobody_drift", run_id="b")]

    monkeypatch.setattr(sweep, "missed_drift_sources", lambda s: [(s.target("t-credit"), Source())])
    found, unseen = sweep.missed_signals(settings, datetime.now(UTC))
    assert unseen == []
    assert [(s.run_id, s.monitor, t.name) for s, t in found] == [("a", "credit", "t-credit")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (local_target("x", ["m1"], extra='[targets.signals]\nm2 = ["s"]\n'), r"targets\.\d+: signals names monitor\(s\) m2 not in this target's monitors"),
        (
            local_target("x", ["m1"], extra='[targets.signals]\nm1 = ["Shared"]\n')
            + local_target("y", ["m2"], extra='[targets.signals]\nm2 = ["shared"]\n'),
            "signal 'shared' of workspace .* is configured for both 'm1' of 'x' and 'm2' of 'y'",
        ),
        (local_target("x", ["m1"], extra='[targets.signals]\nm1 = ["a\\nb"]\n'), r"targets\.\d+\.signals\.m1\.0"),
        (local_target("x", ["m1"], extra='[targets.signals]\nm1 = [""]\n'), r"targets\.\d+\.signals\.m1\.0"),
    ],
)
def test_bad_signal_configuration_names_the_field(tmp_path, extra, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(write_config(tmp_path, extra=extra))
