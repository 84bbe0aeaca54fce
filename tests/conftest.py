"""Shared fixtures: a config in a temporary state dir, seeded demo data. Builders live in drift_retrain.testing.

No process left behind: SIGTERM ends a test run the way Ctrl-C does (fixtures torn down, so stacks and
servers stopped), and at the session's end any process group a test started and did not stop is stopped."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from drift_retrain.config import Settings, load_settings
from drift_retrain.devstack import demo_data
from drift_retrain.testing import stop_strays, write_config


def pytest_configure(config: pytest.Config) -> None:
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(*_: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """Set up first, torn down last: after every stack and server fixture has had its own go."""
    yield
    strays = stop_strays()
    if strays:
        print(f"\nstopped {len(strays)} process group(s) a test left running: {strays}", file=sys.__stderr__)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(write_config(tmp_path))


@pytest.fixture
def demo_settings(settings: Settings) -> Settings:
    """Settings whose local monitor has seeded demo data to look at."""
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    return settings
