"""The demo's output in the docs is what the demo prints today (issue 15 item 10): a real run of `demo` and of
`demo --azure-fake` (a real Prefect server, runner and receiver; the real SDKs against the loopback Azure),
compared with the README's and azure-setup.md's blocks and with the recorded runs those blocks were taken from
(tests/fixtures/demo/). The unit tests (tests/unit/test_docs.py) check the blocks against the recordings line by
line; these check the recordings against the code: the same rules, the same summary lines, the same Azure calls
(status polls counted once: how many a wait makes depends on timing).

DRIFT_RETRAIN_RECORD=<empty folder> rewrites both recordings from runs whose state lives there, on ports 4392/8392
(then paste each recording's `printed` into README.md and docs/getting-started.md, and docs/azure-setup.md).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from functools import partial
from pathlib import Path

import pytest

from drift_retrain.config import load_settings
from drift_retrain.devstack import demo
from drift_retrain.devstack.demo import run_demo
from drift_retrain.devstack.stack import free_port
from drift_retrain.fake_azure.demo import SECRET_ENV, azure_fake_world, publish_drift_run
from drift_retrain.testing import write_config

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "tests" / "fixtures" / "demo"
_BLOCK = re.compile(r"<!-- demo-output[^>]*-->\s*\n```[a-z]*\n(.*?)\n```", re.DOTALL)


def demo_block(page: Path, index: int = 0) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))[index].splitlines()


def rules(lines: list[str]) -> list[str]:
    """The decision's rules, in the order printed: `  [x] rule: detail`."""
    return [m.group(1) for line in lines if (m := re.match(r"  \[[x ]\] (\w+): ", line))]


def summary_labels(lines: list[str]) -> list[str]:
    """The summary's line kinds from `flow run  ...` on: the label before the padding, or the rule."""
    start = next(i for i, line in enumerate(lines) if line.startswith("flow run  "))
    end = next(i for i, line in enumerate(lines) if line.startswith("Prefect   "))
    return [re.match(r"(\s*\[[x ]\] \w+|\w+(?: \w+)?)", line).group(1) for line in lines[start : end + 1]]


def sdk_calls(fake) -> list[str]:
    """The Azure calls the SDKs made, as `demo --azure-fake` counts them (drift_retrain/cli.py demo)."""
    return [
        f"{r.method} {r.path.split('?')[0].rsplit('/providers/', 1)[-1]}" for r in fake.requests if "/oauth2/" not in r.path
    ]


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def once_per_wait(calls: list[str]) -> list[str]:
    """The part of the call sequence neither timing nor fresh ids move: consecutive repeats of one call (a wait's
    status polls) as one, and every uuid (a new Data Factory run's or job's id) as <uuid>."""
    return [call for call, _ in itertools.groupby(_UUID.sub("<uuid>", call) for call in calls)]


#: Recording: the folder the recorded run's state goes under (its paths are shown in the docs) and its ports.
RECORD_DIR = os.environ.get("DRIFT_RETRAIN_RECORD")
RECORD_PORTS = ("4392", "8392")


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports of this test's own (other stacks may be up on the defaults); the docs' ports when recording."""
    prefect, webhook = RECORD_PORTS if RECORD_DIR else (str(free_port()), str(free_port()))
    monkeypatch.setenv("DRIFT_RETRAIN_PREFECT_PORT", prefect)
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_PORT", webhook)
    monkeypatch.setenv(SECRET_ENV, "")  # azure_fake_world sets it; restored after the test


def test_the_demo_prints_the_rules_and_summary_the_readme_shows(
    tmp_path: Path, ports: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(RECORD_DIR) / "local" if RECORD_DIR else tmp_path
    home.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_config(home))
    printed: list[str] = []
    summarised = _spy_on_summary(monkeypatch)

    code = run_demo(settings, say=printed.append, timeout=900)

    assert code == 0, printed
    if RECORD_DIR:
        _record(RECORDED / "recorded.json", "README.md", printed, None, summarised)
    recorded = json.loads((RECORDED / "recorded.json").read_text(encoding="utf-8"))
    shown = demo_block(ROOT / "README.md")
    assert rules(printed) == rules(shown) == [c["rule"] for c in recorded["outcome"]["decision"]["checks"]], printed
    assert summary_labels(printed) == summary_labels(shown)


def test_the_azure_fake_demo_makes_the_calls_and_prints_the_summary_the_docs_show(
    tmp_path: Path, ports: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(RECORD_DIR) if RECORD_DIR else tmp_path
    home.mkdir(parents=True, exist_ok=True)
    settings = load_settings(write_config(home))
    printed: list[str] = []
    summarised = _spy_on_summary(monkeypatch)
    with azure_fake_world(settings) as (azure_settings, fake):
        code = run_demo(azure_settings, say=printed.append, timeout=900, on_drift=partial(publish_drift_run, fake))
        calls = sdk_calls(fake)
        cli_lines = [
            f"loopback Azure on {fake.url} (scripted statuses and metrics); config {azure_settings.source_file}",
            f"Azure calls made by the SDKs: {len(calls)}",
        ]

    assert code == 0, printed
    path = RECORDED / "recorded-azure-fake.json"
    if RECORD_DIR:
        _record(path, "docs/azure-setup.md", [cli_lines[0], *printed, cli_lines[1]], calls, summarised)
    recorded = json.loads(path.read_text(encoding="utf-8"))
    shown = demo_block(ROOT / "docs" / "azure-setup.md")
    assert rules(printed) == rules(shown) == [c["rule"] for c in recorded["outcome"]["decision"]["checks"]], printed
    assert summary_labels(printed) == summary_labels(shown)
    assert once_per_wait(calls) == once_per_wait(recorded["calls"]), "the SDKs' calls differ from the recorded run's"


def _spy_on_summary(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Keep the flow run and outcome the demo's summary is printed from, for a recording."""
    summarised: dict = {}
    summarise = demo._summarise

    def spy(*args):
        summarised["args"] = args[:3]
        summarise(*args)

    monkeypatch.setattr(demo, "_summarise", spy)
    return summarised


def _record(path: Path, page: str, printed: list[str], calls: list[str] | None, summarised: dict) -> None:
    """Write the recording in recorded.json's shape, plus what was printed (and the Azure calls, if any)."""
    flow_run, outcome, url = summarised["args"]
    document = {
        "_about": f"The demo run whose output {page} shows (tests/e2e/test_demo_output.py, DRIFT_RETRAIN_RECORD=<folder>).",
        "flow_run": {"name": flow_run.name, "state": flow_run.state.name, "url": url},
        "outcome": outcome.model_dump(mode="json"),
        "printed": printed,
        **({"calls": calls} if calls is not None else {}),
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
