"""Issue 15 item 11: `make demo` installs the package alone (not the test extra: pytest, hypothesis, playwright),
`make test` adds the extra on top, either order works; and the build reads a PEP 639 license (an SPDX string),
so setuptools prints no `project.license` deprecation warning per build step."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def dry_run(project: Path, target: str) -> list[str]:
    """The commands `make <target>` would run in ``project`` (make -n: nothing is run)."""
    result = subprocess.run(
        ["make", "-n", target], cwd=project, capture_output=True, text=True, check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    return result.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    """What each `pip install` of the commands installs: `-e <spec>`."""
    return [re.search(r"-e (\S+)$", c).group(1).strip("'") for c in commands if " pip install " in c and " -e " in c]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The Makefile and pyproject.toml in a folder of their own with a venv's python in place (a stand-in file:
    make -n only compares timestamps)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    return tmp_path


def test_make_demo_installs_the_package_without_the_test_extra(project: Path) -> None:
    assert installs(dry_run(project, "demo")) == ["."]


def test_make_test_installs_the_test_extra_and_after_make_demo_only_that(project: Path) -> None:
    # the test stamp adds the redis extra: prefect-redis, for the scale tier's server (tests/scale)
    assert installs(dry_run(project, "test")) == [".", ".[test,redis]"]
    (project / ".venv" / ".installed").touch()  # `make demo` ran

    assert installs(dry_run(project, "test")) == [".[test,redis]"]
    (project / ".venv" / ".installed-test").touch()
    assert installs(dry_run(project, "test")) == [] and installs(dry_run(project, "demo")) == []


def test_pip_is_asked_to_print_only_errors(project: Path) -> None:
    commands = [c for c in dry_run(project, "test") if " pip install " in c]
    assert commands and all("-qq" in c and "--progress-bar off" in c for c in commands)


def test_the_license_is_an_spdx_expression_and_the_build_uses_a_setuptools_that_reads_it() -> None:
    """A table (`{ text = ... }`) is deprecated since setuptools 77 and printed a warning per build step."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "Apache-2.0"
    (license_file,) = pyproject["project"]["license-files"]
    assert (ROOT / license_file).read_text(encoding="utf-8").split()[:4] == ["Apache", "License", "Version", "2.0,"]
    (requirement,) = pyproject["build-system"]["requires"]
    minimum = re.fullmatch(r"setuptools>=(\d+)", requirement)
    assert minimum and int(minimum.group(1)) >= 77, requirement
