"""The zombie-run automation's shape: Prefect's recipe plus pauses; its window follows the heartbeat setting."""

from __future__ import annotations

import pytest

from drift_retrain.zombies import default_window_seconds, zombie_automation


@pytest.mark.parametrize(("every", "window"), [("30", 90.0), ("60", 180.0), (None, 540.0)])
def test_the_window_is_three_heartbeats_at_this_processs_frequency(monkeypatch, every, window) -> None:
    if every is None:
        monkeypatch.delenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", raising=False)
    else:
        monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", every)
    assert default_window_seconds() == window


def test_a_pause_ends_the_wait_for_the_next_heartbeat() -> None:
    trigger = zombie_automation(90).trigger
    assert {"prefect.flow-run.Suspended", "prefect.flow-run.Paused"} <= trigger.expect
    assert trigger.after == {"prefect.flow-run.heartbeat"} and trigger.within.total_seconds() == 90
