"""The scale tier's gate (tests/scale/conftest.py): without PostgreSQL or redis-server its tests are skipped,
saying what is missing; with DRIFT_RETRAIN_REQUIRE_SCALE=1, as .ci/run sets it, they fail instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# pytest in a process of its own, on a machine that "lacks" redis-server: the services module says so.
PRETEND_MISSING = (
    "import sys, pytest; from drift_retrain.devstack import services;"
    "services.missing_binaries = lambda: ['redis-server'];"
    "sys.exit(pytest.main(['-p', 'no:cacheprovider', '-rs', 'tests/scale/test_up_database.py']))"
)


def _run(require: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DRIFT_RETRAIN_REQUIRE_SCALE"}
    if require:
        env["DRIFT_RETRAIN_REQUIRE_SCALE"] = "1"
    return subprocess.run(
        [sys.executable, "-c", PRETEND_MISSING],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("require", [False, True])
def test_without_the_binaries_the_tier_is_skipped_saying_why_unless_ci_requires_it(require: bool) -> None:
    result = _run(require)
    if require:
        assert result.returncode == 1, result.stdout[-2000:]
        assert "DRIFT_RETRAIN_REQUIRE_SCALE is set but the scale tier needs redis-server" in result.stdout
        assert "1 error" in result.stdout
    else:
        assert result.returncode == 0, result.stdout[-2000:]
        assert "SKIPPED" in result.stdout and "the scale tier needs redis-server; not installed" in result.stdout
        assert "1 skipped" in result.stdout
