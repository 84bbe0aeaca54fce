"""Fixtures of the unit tests that post to the receiver in process (``tests/unit/receiver.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from drift_retrain.config import Settings, load_settings
from drift_retrain.intake.app import create_app
from drift_retrain.testing import INTAKE_TARGETS, write_config
from tests.unit.receiver import SECRET, RecordingHandoff


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    return load_settings(write_config(tmp_path, extra=INTAKE_TARGETS))


@pytest.fixture
def recorder() -> RecordingHandoff:
    return RecordingHandoff()


@pytest.fixture
def client(configured: Settings, recorder: RecordingHandoff):
    with TestClient(create_app(configured, recorder)) as test_client:
        yield test_client
