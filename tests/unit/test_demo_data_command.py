"""Issue 17: `drift-retrain demo-data` prepares the demo's seeded data set for a config's state dir, so a fleet
trial produces a drift event (`demo-data`, then `monitor`) without the demo's one-machine stack."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from drift_retrain.backends.local.monitor import run_monitor
from drift_retrain.cli import app
from drift_retrain.config import load_settings
from drift_retrain.testing import write_config


def test_demo_data_writes_the_reference_and_a_drifted_week_the_local_monitor_flags(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    settings = load_settings(config)
    monitor = settings.local_monitors[0]
    reference, landing = settings.resolve(monitor.reference), settings.resolve(monitor.landing)
    assert not reference.exists()

    result = CliRunner().invoke(app, ["demo-data", "-c", str(config)])

    assert result.exit_code == 0, result.output
    assert f"wrote {reference}" in result.output
    assert reference.is_file() and reference.is_relative_to(settings.state_dir)
    assert len(list(landing.glob("date=*/part-0000.csv"))) == 7  # a week of daily partitions
    run = run_monitor(monitor, settings)
    assert run.has_drift, run


def test_demo_data_keeps_existing_data_so_the_drift_run_stays_the_same(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    CliRunner().invoke(app, ["demo-data", "-c", str(config)])
    settings = load_settings(config)
    reference = settings.resolve(settings.local_monitors[0].reference)
    before = reference.read_bytes()

    again = CliRunner().invoke(app, ["demo-data", "-c", str(config)])

    assert again.exit_code == 0 and "kept (already there)" in again.output
    assert reference.read_bytes() == before


def test_demo_data_names_an_unknown_monitor_and_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = CliRunner().invoke(app, ["demo-data", "-c", str(config), "--name", "no-such-monitor"])
    assert result.exit_code == 2
    assert "no local monitor named 'no-such-monitor'" in result.output
