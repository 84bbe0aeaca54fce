"""The stack stops cleanly and comes back with everything it recorded: a completed run stays completed
(the runner is drained before it stops) and a redelivery after the restart still finds that run."""

from __future__ import annotations

from pathlib import Path

import pytest

from drift_retrain.devstack import demo_data
from drift_retrain.backends.local.monitor import drift_event, run_monitor
from drift_retrain.config import load_settings
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.devstack.stack import Stack, free_port
from drift_retrain.testing import write_config
from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e


def test_completed_run_survives_stop_and_redelivery_after_restart(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path))
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    event = drift_event(run_monitor(monitor, settings))
    ports = dict(prefect_port=free_port(), webhook_port=free_port())

    with Stack(settings, **ports) as stack:
        (accepted,) = deliver_events(stack.webhook_url, [event], stack.secret).json()["accepted"]
        assert Api(stack.api_url).wait(accepted["flow_run_id"])["state"]["type"] == "COMPLETED"
    # Stopped at once, as `make demo` does after reporting: the run must not be marked Cancelled.

    with Stack(settings, **ports) as stack:
        api = Api(stack.api_url)
        assert api.flow_run(accepted["flow_run_id"])["state"]["type"] == "COMPLETED"
        (again,) = deliver_events(stack.webhook_url, [event], stack.secret, delivery_count=1).json()["accepted"]
        assert again["duplicate"] and again["flow_run_id"] == accepted["flow_run_id"]
        assert len(api.flow_runs()) == 1
