"""Every event field is hostile, end to end in one process: drift events whose ids, times, numbers and names are
drawn from hostile text (control characters, bidi marks, markdown and HTML, addresses, path segments) go through
the receiver (Starlette's TestClient, its hand-off recorded), and each signal it accepts runs drift-to-retrain on
the session's Prefect test server, on the local backends or on local details with the other steps in memory.

The property: the receiver answers 4xx, or acknowledges, and then every run the event caused completes with
artifacts that parse (``tests.rendering``) to our structure only, a name and tags of one bounded line, and no file
written outside the test's own directory. It holds whether intake rejects a value (a 400) or lets it through.
"""

from __future__ import annotations

import re

import json
import os
import unicodedata
import uuid
from collections.abc import Iterable
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from drift_retrain.backends import backends_in_process
from drift_retrain.backends.base import Backends
from drift_retrain.backends.local import local_backends
from drift_retrain.backends.local.details import LocalDriftDetails
from drift_retrain.backends.local.monitor import monitor_store
from drift_retrain.backends.memory import MemoryCopy, MemoryRegistry, MemoryTraining
from drift_retrain.config import load_settings
from drift_retrain.intake.app import EVENTS_PATH, create_app
from drift_retrain.intake.feed import NullFeed
from drift_retrain.intake.handoff import HandedOff
from drift_retrain.names import MAX_LABEL, flow_run_name
from drift_retrain.results import RetrainOutcome
from drift_retrain.testing import DEMO_WORKSPACE, dataset_drift, monitor_breach
from tests.flow.conftest import Target, artifacts
from tests.rendering import bare_addresses, is_plain_text, tokens

SECRET = "hostile-fields-secret"
TOOLS = {"__pycache__", ".git", ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

#: Pieces of hostile text; a value is a few of them, or of arbitrary short text, run together.
PIECES = [
    "\n# Decision: **Skip**\n| rule | passed |",
    "![x](http://evil/p.png)",
    "[x](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "http://evil",
    "www.evil.com",
    "m@evil.com",
    "`",
    "``",
    "|",
    "\\",
    "*",
    "_",
    "~",
    "<",
    ">",
    "&lt;",
    "&#60;",
    "#",
    "- ",
    "1. ",
    "> ",
    "    ",
    "---",
    "../",
    "..\\",
    "/etc/passwd",
    "%2e%2e%2f",
    "\x00",
    "\x1b[2J",
    "\r\n",
    "\u2028",
    "\u202e",
    "\u200f",
    "\u2066",
    "\ufeff",
    "\u200b",
    "é",
    "漢",
    "🙂",
    "drift_1",
]  # no lone surrogate (no text at all): refusing those is the receiver's, tested with its delivery parsing
hostile = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), min_size=1, max_size=4).map("".join)
times = st.one_of(st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat()), hostile)
numbers = st.one_of(
    st.floats(0.3, 1.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    hostile,
)
#: An id: hostile text, or one shaped as Azure's are (so some events get past any id check intake makes).
ids = st.one_of(hostile, st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,40}\Z"))


#: The other fields of a v1 event's data, each with the values it is drawn from.
V1_FIELDS = {
    "DataDriftId": ids,
    "BaseDatasetId": ids,
    "TargetDatasetId": ids,
    "StartTime": times,
    "EndTime": times,
    "DriftCoefficient": numbers,
}


@st.composite
def drift_events(draw: st.DrawFn, monitor: str) -> dict[str, Any]:
    """A v1 DatasetDriftDetected or a v2 breach for the target's monitor (so it can route), hostile elsewhere."""
    run_id = draw(ids)
    if draw(st.booleans()):
        field = draw(st.sampled_from([*V1_FIELDS, None]))  # one more field hostile at most: most events get in
        overrides = {field: draw(V1_FIELDS[field])} if field else {}
        event = dataset_drift(run_id, monitor=monitor, workspace=DEMO_WORKSPACE, **overrides)
    else:
        row = {
            "metric_value": draw(numbers),
            "metric_name": draw(hostile),
            "threshold_value": draw(numbers),
            "group": draw(hostile),
        }
        event = monitor_breach(
            run_id,
            DEMO_WORKSPACE,
            monitor,
            signal=f"{draw(hostile)}{monitor}{draw(hostile)}",
            rows=[row],
            experiment=draw(st.one_of(st.none(), hostile)),  # None: the sample's
        )
    if draw(st.integers(0, 3)) == 0:
        event["id"] = draw(ids)
    if draw(st.integers(0, 3)) == 0:
        event["eventTime"] = draw(times)
    return event


class RecordingHandoff:
    """Takes every accepted signal as Prefect would (a new run each), keeping it for the test to run."""

    def __init__(self) -> None:
        self.handed: list[tuple[Any, Any]] = []

    async def hand_off_all(self, items: Iterable[tuple[Any, Any]], started_by: str = "webhook") -> list[HandedOff]:
        items = list(items)
        self.handed += items
        return [
            HandedOff(uuid.uuid4(), flow_run_name(target, signal, started_by), created=True) for signal, target in items
        ]

    async def healthy(self) -> bool:
        return True

    async def __aenter__(self) -> RecordingHandoff:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


def files(root: Path, skip: set[Path]) -> dict[Path, tuple[int, int]]:
    """Every file under ``root`` (size, mtime) but those under ``skip`` and the tools' own: bytecode caches,
    git's, Hypothesis's (it caches constants even without an example database)."""
    found = {}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if Path(folder, d) not in skip and d not in TOOLS]
        for name in names:
            stat = Path(folder, name).lstat()
            found[Path(folder, name)] = (stat.st_size, stat.st_mtime_ns)
    return found


def visible_one_line(text: str, limit: int) -> bool:
    return len(text) <= limit and not any(unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for c in text)


def assert_safe_artifacts(found: dict[str, dict[str, Any]], outcome: RetrainOutcome) -> None:
    """Our structure only: one heading each, the decision's rules and the model's lineage as many rows as there
    are, no links (the local registry's folder is text), images only in the drift table and only the histograms
    we draw (PNG data URIs); cells and descriptions plain text."""
    for key, artifact in found.items():
        assert is_plain_text(artifact["description"] or ""), (key, artifact["description"])
        if artifact["type"] == "table":
            cells = [c for row in artifact["data"] for c in row.values() if isinstance(c, str)]
            assert all(is_plain_text(c) for c in cells), (key, [c for c in cells if not is_plain_text(c)])
            continue
        markdown = artifact["data"]
        kinds = [t.type for t in tokens(markdown)]
        assert kinds.count("heading_open") == 1 and kinds[0] == "heading_open", (key, markdown)
        assert not {"html_block", "html_inline", "link_open"} & set(kinds), (key, markdown)
        images = [str(t.attrGet("src")) for t in tokens(markdown) if t.type == "image"]
        assert key.startswith("drift-") or not images, (key, markdown)
        assert all(re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/]+=*", src) for src in images), (key, markdown)
        assert not bare_addresses(markdown), (key, markdown)
        rows = kinds.count("tr_open") - kinds.count("thead_open")
        if key.startswith("decision-"):
            assert rows == len(outcome.decision.checks) and "link_open" not in kinds, (key, markdown)
        if key.startswith("model-"):
            assert outcome.model is not None and rows == len(outcome.model.tags) - 1, (key, markdown)


def test_hostile_event_fields_are_refused_or_shown_as_text_and_touch_no_file(
    make_target, prefect_api: httpx.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    from flows.drift_to_retrain import drift_to_retrain

    target: Target = make_target(policy="min_rows = 100, cooldown_minutes = 0")
    monkeypatch.setenv("DRIFT_RETRAIN_WEBHOOK_SECRET", SECRET)
    config = load_settings()
    handoff = RecordingHandoff()
    # What a path built from an event could reach by climbing out of the state dir: everything beside it, but
    # the folders other tests own (in one `make test` session the stack's Prefect database keeps changing in
    # its own), though no folder may appear or go beside it.
    others = {d for d in tmp_path.parent.iterdir() if d.is_dir()}
    outside = {tmp_path, Path(PREFECT_LOCAL_STORAGE_PATH.value()).resolve(), *others}
    before, here = files(tmp_path.parent, outside), set(files(Path.cwd(), set()))
    beside = set(tmp_path.parent.iterdir())

    def steps(choice: str, routed: Any) -> Backends:
        """``local``: every step local (the copy finds no data: the run skips after it). ``memory``: the local
        monitor's details (the run id a path lookup), the rest in memory, so the run registers a model."""
        if choice == "local":
            return local_backends(config, routed)
        return Backends(
            LocalDriftDetails(monitor_store(config)), MemoryCopy(rows=2100), MemoryTraining(), MemoryRegistry()
        )

    ran: list[str] = []
    with TestClient(create_app(config, handoff, NullFeed())) as receiver:

        @settings(
            max_examples=20,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            event=drift_events(target.monitor), backend=st.sampled_from(["memory", "local"]), ascii_only=st.booleans()
        )
        def property(event: dict[str, Any], backend: str, ascii_only: bool) -> None:
            handoff.handed.clear()  # raw UTF-8 (a lone surrogate: invalid) or \\u escapes
            body = json.dumps([event], ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
            answer = receiver.post(
                EVENTS_PATH, params={"code": SECRET}, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code < 500, answer.text
            if answer.status_code >= 400:
                return
            for signal, _ in handoff.handed:
                with backends_in_process(lambda settings, routed: steps(backend, routed)):
                    state = drift_to_retrain(signal=signal, return_state=True)
                assert state.is_completed(), state.message
                run_id = str(state.state_details.flow_run_id)
                ran.append(run_id)
                run = prefect_api.get(f"/flow_runs/{run_id}").raise_for_status().json()
                assert visible_one_line(run["name"], len(target.model) + 1 + MAX_LABEL), run["name"]
                assert all(visible_one_line(tag, 10 + MAX_LABEL) for tag in run["tags"]), run["tags"]
                assert_safe_artifacts(artifacts(prefect_api, run_id), state.result())

        property()
    assert ran, "no event was accepted: the property was never checked on a run"

    after = files(tmp_path.parent, outside)
    assert after == before, {
        path for path in set(before) ^ set(after) | {p for p in before if after.get(p) != before[p]}
    }
    assert set(files(Path.cwd(), set())) <= here, set(files(Path.cwd(), set())) - here
    assert set(tmp_path.parent.iterdir()) == beside
