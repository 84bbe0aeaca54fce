"""Issue 14 item 2: an id that becomes a path stays under its root, even when intake validation is bypassed.

The attack: the local monitor record is read from ``<state>/monitor/<monitor>/runs/<RunId>.json``, so a RunId
``../../../../planted/evil`` read a record planted outside the state dir, and its coefficient and rows decided
the retrain. Here the signal is built with ``model_construct`` (no validation at all) and handed to the real
local details step: the path is refused and nothing outside the state dir is read or written.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drift_retrain.atomic import write_json
from drift_retrain.backends.ledger import FileRunLedger
from drift_retrain.backends.local import local_backends
from drift_retrain.backends.local import monitor as monitor_module
from drift_retrain.backends.local.details import LocalDriftDetails
from drift_retrain.backends.local.monitor import MonitorRun, MonitorStore, monitor_store
from drift_retrain.config import load_settings
from drift_retrain.safepath import UnsafePath, under
from drift_retrain.signals import DriftSignal, SignalKind
from drift_retrain.testing import DEMO_WORKSPACE, write_config

PLANTED = "../../../../planted/evil"


def _tree(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def _planted_run(monitor: str) -> MonitorRun:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    return MonitorRun(
        run_id="evil",
        monitor=monitor,
        monitor_id="x",
        workspace=DEMO_WORKSPACE,
        window_start=moment,
        window_end=moment,
        drift_coefficient=0.99,
        threshold=0.0,
        has_drift=True,
        rows_reference=1,
        rows_in_window=1_000_000,
        base_dataset_id="b",
        target_dataset_id="t",
        features=[],
        computed_at=moment,
    )


def _crafted(run_id: str, monitor: str = "credit-default-drift") -> DriftSignal:
    """A signal no intake would build: ``model_construct`` skips every validator."""
    return DriftSignal.model_construct(
        kind=SignalKind.DATASET_DRIFT,
        workspace_id=DEMO_WORKSPACE,
        monitor=monitor,
        run_id=run_id,
        event_id="e1",
        window_start=None,
        window_end=None,
        drift_coefficient=0.1,
        breached_metrics=[],
        breached=[],
        monitor_id=None,
        signal_name=None,
        breach_unparsed=None,
        base_dataset_id=None,
        target_dataset_id=None,
        event_time=None,
        raw_event={},
    )


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(write_config(tmp_path))


def test_the_planted_record_attack_through_the_local_details_step_is_refused(settings, tmp_path, monkeypatch) -> None:
    store = monitor_store(settings)
    planted = store.root / "credit-default-drift" / "runs" / f"{PLANTED}.json"
    assert planted.resolve() == (tmp_path / "planted" / "evil.json").resolve()  # the attack's target, outside state/
    write_json(tmp_path / "planted" / "evil.json", _planted_run("credit-default-drift").model_dump(mode="json"))
    reads: list[Path] = []
    real_read = monitor_module.read_json
    monkeypatch.setattr(monitor_module, "read_json", lambda path: reads.append(path) or real_read(path))
    before = _tree(tmp_path)

    with pytest.raises(UnsafePath, match=r"contains a path separator"):
        LocalDriftDetails(store).fetch(_crafted(PLANTED))

    assert reads == []  # the planted record was not read
    assert _tree(tmp_path) == before  # nothing was written anywhere either


@pytest.mark.parametrize("monitor", ["../../..", "..", "/tmp", "a/b"])
def test_a_crafted_monitor_name_cannot_leave_the_monitor_root(settings, monitor) -> None:
    store = monitor_store(settings)
    with pytest.raises(UnsafePath):
        store.load(monitor, "run_1")
    with pytest.raises(UnsafePath):
        store.runs(monitor)


def test_a_real_record_is_still_read(settings) -> None:
    store = monitor_store(settings)
    run = _planted_run("credit-default-drift").model_copy(update={"run_id": "credit-default-drift_1717000000000"})
    store.save(run)
    details = LocalDriftDetails(store).fetch(_crafted(run.run_id))
    assert details.available and details.rows_in_window == 1_000_000


def test_local_copy_training_registry_and_ledger_refuse_a_crafted_key(settings, tmp_path: Path) -> None:
    backends = local_backends(settings, settings.targets[0])  # wired as the flow wires them
    before = _tree(tmp_path)
    with pytest.raises(UnsafePath):
        backends.copy.wait("../../../escaped")
    with pytest.raises(UnsafePath):
        backends.training.wait("../../escaped")
    with pytest.raises(UnsafePath):
        backends.registry.register("../outside", None, {})  # type: ignore[arg-type]
    ledger = FileRunLedger(tmp_path / "ledger")
    with pytest.raises(UnsafePath):
        ledger.put("copy", "../../x", "run-1")
    with pytest.raises(UnsafePath):
        ledger.get("..", "x")
    assert _tree(tmp_path) == before  # nothing was created, inside or out


# -- the helper itself ----------------------------------------------------------------------------


def test_under_joins_plain_names(tmp_path: Path) -> None:
    assert under(tmp_path, "monitor", "runs", "r_1.json") == tmp_path / "monitor" / "runs" / "r_1.json"
    assert under(tmp_path, "a..b") == tmp_path / "a..b"  # not a traversal: one name with two dots in it


@pytest.mark.parametrize(
    ("part", "rule"),
    [
        ("..", "'.' or '..'"),
        (".", "'.' or '..'"),
        ("", "non-empty"),
        ("../x", "path separator"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("/etc/passwd", "path separator"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("C:evil", "drive"),
    ],
)
def test_under_refuses_a_part_that_could_leave_the_root(tmp_path: Path, part: str, rule: str) -> None:
    with pytest.raises(UnsafePath, match=rule.replace(".", r"\.").replace("(", r"\(")):
        under(tmp_path, "ok", part)


def test_under_refuses_a_symlink_that_leads_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafePath, match="outside"):
        under(root, "link", "record.json")
    os.symlink(root / "inner", root / "inside")
    assert under(root, "inside", "x") == root / "inside" / "x"  # a link that stays inside is fine


def test_under_is_what_the_store_uses(tmp_path: Path) -> None:
    store = MonitorStore(tmp_path)
    assert store._path("m", "r_1") == under(tmp_path, "m", "runs", "r_1.json")
