"""Shared fixtures: a config in a temporary state dir, seeded demo data. Builders live in drift_retrain.testing."""

from __future__ import annotations

from pathlib import Path

import pytest

from drift_retrain.config import Settings, load_settings
from drift_retrain.devstack import demo_data
from drift_retrain.testing import write_config


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path))


@pytest.fixture
def demo_settings(settings: Settings) -> Settings:
    """Settings whose local monitor has seeded demo data to look at."""
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    return settings
