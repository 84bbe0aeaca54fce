"""drift-to-retrain run in-process on a real (ephemeral) Prefect server with in-memory steps: the retrain, and
each way it stops early (at the first decision, in the model's slot, after the copy, at the gate). Each test
asserts what the flow returned, what the registry holds and what the run's artifacts say."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from drift_retrain.names import SIGNAL_TAG
from drift_retrain.backends.memory import MemoryCopy, MemoryDriftDetails, MemoryRegistry, MemoryTraining, memory_backends
from drift_retrain.concurrency import retrain_slot
from drift_retrain.results import DriftDetails, FeatureDrift, ModelVersion, Outcome
from drift_retrain.signals import DriftSignal
from tests.flow.conftest import WINDOW_END, Target, artifacts, run_flow

FEATURES = [
    FeatureDrift(feature="income", psi=0.41, wasserstein=0.8, contribution=0.55),
    FeatureDrift(feature="age", psi=0.22, contribution=0.30),
    FeatureDrift(feature="tenure", psi=0.01, contribution=0.15),
]


def details(signal: DriftSignal, coefficient: float = 0.62, rows: int | None = 2100) -> MemoryDriftDetails:
    """The drift run's record, as the monitor would have it."""
    record = DriftDetails(
        available=True, source=f"memory record of run {signal.run_id}", drift_coefficient=coefficient, threshold=0.3,
        rows_in_window=rows, features=FEATURES,
    )
    return MemoryDriftDetails({signal.run_id: record})


def earlier(target: Target, version: int, minutes_ago: float, signal: DriftSignal | None = None, days: int = 7,
            end: datetime = WINDOW_END - timedelta(days=14), **metrics: float) -> ModelVersion:
    """A version another retrain registered: of ``signal`` (else another drift run), trained on ``days`` days ending ``end``."""
    return ModelVersion(
        name=target.model, version=version, uri=f"memory://registry/{target.model}/{version}", metrics=metrics,
        created_at=datetime.now(timezone.utc) - timedelta(minutes=minutes_ago),
        tags={
            SIGNAL_TAG: signal.identity if signal else f"other-drift-run-{version}",
            "drift.window_start": (end - timedelta(days=days)).isoformat(),
            "drift.window_end": end.isoformat(),
        },
    )


def rules(markdown: str) -> dict[str, str]:
    """The decision artifact's table: rule -> "yes"/"no"."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]
    return {row[0]: row[1] for row in rows if row[0] != "rule"}


def keys(target: Target, run_artifacts: dict) -> set[str]:
    """Which of the run's report artifacts exist, by kind (their keys are ``<kind>-<model>``)."""
    return {key.removesuffix(f"-{target.model}") for key in run_artifacts}


def test_a_retrain_registers_one_version_with_its_lineage_and_reports_every_step(make_target, prefect_api) -> None:
    target = make_target(gate='metric = "roc_auc"')
    signal = target.signal("drift_happy")
    registry = MemoryRegistry([earlier(target, 1, minutes_ago=3 * 24 * 60, roc_auc=0.90)])
    backends = memory_backends(
        details(signal), MemoryCopy(rows=2100), MemoryTraining({"roc_auc": 0.93, "f1": 0.71}), registry
    )

    run = run_flow(backends, signal=signal)

    assert run.outcome.outcome is Outcome.RETRAINED
    assert run.outcome.model is not None and run.outcome.model.version == 2
    v1, v2 = registry.versions(target.model)
    assert v2 == run.outcome.model and v2.metrics == {"roc_auc": 0.93, "f1": 0.71}
    assert v2.tags[SIGNAL_TAG] == signal.identity and v2.tags["prefect.flow_run_id"] == run.id
    assert v2.tags["copy.rows_copied"] == "2100" and v2.tags["training.job_id"] == backends.training.submitted[0][0]
    assert v2.tags["drift.window_end"] == WINDOW_END.isoformat()

    found = artifacts(prefect_api, run.id)
    assert keys(target, found) == {"decision", "drift", "copy", "training", "model"}
    decision = found[f"decision-{target.model}"]["data"]
    assert decision.startswith(f"# Decision for `{target.model}`: **Retrain** (final)")
    assert rules(decision) == {
        "already_handled": "yes", "drift": "yes", "min_rows": "yes", "cooldown": "yes", "covered_by": "yes", "data_copied": "yes", "gate": "yes"
    }  # the rules checked in the slot, after the copy and at the gate, in the final decision
    assert "drift coefficient 0.620 (drift run)" in decision
    drift_rows = [line for line in found[f"drift-{target.model}"]["data"].splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[1] for row in drift_rows] == ["income", "age", "tenure"]
    (copy,) = found[f"copy-{target.model}"]["data"]
    assert copy["rows_copied"] == 2100 and copy["run_id"] == backends.copy.started[0]
    training = {row["metric"]: row for row in found[f"training-{target.model}"]["data"]}
    assert training["roc_auc"] == {"metric": "roc_auc", "challenger": 0.93, "champion": 0.90, "champion_version": 1}
    model = found[f"model-{target.model}"]["data"]
    assert model.startswith(f"# `{target.model}` v2 registered") and "roc_auc = 0.93" in model
    assert signal.identity in model  # the lineage table

    again = run_flow(backends, signal=signal)  # the same drift again (a rerun, a late redelivery): nothing twice
    assert again.outcome.outcome is Outcome.SKIPPED
    assert f"already handled: registered as {target.model} v2" in again.outcome.reason
    assert len(registry.versions(target.model)) == 2 and len(backends.copy.started) == 1
    assert keys(target, artifacts(prefect_api, again.id)) == {"decision", "drift"}


@pytest.mark.parametrize(
    "case, coefficient, minutes_ago, failed_rule, reason",
    [
        ("low drift", 0.12, 3 * 24 * 60, "drift", r"drift coefficient 0\.120 \(drift run\) < threshold 0\.300"),
        ("cooldown", 0.62, 10, "cooldown", "cooldown: v1 was registered 1[01] min ago, cooldown is 60 min"),
    ],
    ids=["low-drift", "cooldown"],
)
def test_a_skip_at_the_first_decision_starts_nothing_and_says_why(
    make_target, prefect_api, case, coefficient, minutes_ago, failed_rule, reason
) -> None:
    target = make_target()
    signal = target.signal(f"drift_{case.replace(' ', '_')}")
    registry = MemoryRegistry([earlier(target, 1, minutes_ago=minutes_ago)])
    backends = memory_backends(details(signal, coefficient), registry=registry)

    run = run_flow(backends, signal=signal)

    assert run.outcome.outcome is Outcome.SKIPPED and re.fullmatch(f"skip: {reason}", run.outcome.reason), run.outcome.reason
    assert backends.copy.started == [] and backends.training.submitted == []
    assert len(registry.versions(target.model)) == 1
    found = artifacts(prefect_api, run.id)
    assert keys(target, found) == {"decision", "drift"}
    decision = found[f"decision-{target.model}"]["data"]
    assert "**Skip**" in decision and rules(decision)[failed_rule] == "no"
    assert [rule for rule, passed in rules(decision).items() if passed == "no"] == [failed_rule]
    assert found[f"decision-{target.model}"]["description"] == f"{run.outcome.reason} (final decision)"


def concurrent_retrain(target: Target, registry: MemoryRegistry, version: ModelVersion) -> threading.Thread:
    """Another retrain of the same model: it holds the model's slot (on the Prefect server) and registers
    ``version`` once the flow under test has made its first decision, then lets go of the slot."""
    holding = threading.Event()

    def retrain() -> None:
        with retrain_slot(target.model):
            holding.set()
            assert registry.wait_for_reads(1), "the flow never read the model's history"
            registry.add(version)

    thread = threading.Thread(target=retrain, daemon=True)
    thread.start()
    assert holding.wait(60), "the other retrain never got the slot"
    return thread


@pytest.mark.parametrize(
    "case, cooldown, failed, reason",
    [
        ("same signal", 60, {"already_handled", "covered_by", "cooldown"}, r"already handled: registered as {model} v1"),
        ("older window", 60, {"cooldown"}, r"cooldown: v1 was registered \d+ min ago, cooldown is 60 min"),
        ("wider window", 0, {"covered_by"}, r"covered by {model} v1 \(trained on \[2026-11-09 00:00, 2026-11-23 00:00\)\)"),
    ],
    ids=["same-signal", "older-window", "wider-window"],
)
def test_a_retrain_that_finished_while_this_one_waited_for_the_slot_is_seen_in_the_slot(
    make_target, prefect_api, case, cooldown, failed, reason
) -> None:
    target = make_target(policy=f"min_rows = 100, cooldown_minutes = {cooldown}")
    signal = target.signal(f"drift_slot_{case.replace(' ', '_')}")
    registry = MemoryRegistry()
    finished = {
        "same signal": earlier(target, 1, 0, signal=signal, end=WINDOW_END),
        "older window": earlier(target, 1, 0),
        "wider window": earlier(target, 1, 0, days=14, end=WINDOW_END),
    }[case]
    backends = memory_backends(details(signal), registry=registry)

    other = concurrent_retrain(target, registry, finished)
    run = run_flow(backends, signal=signal)
    other.join(10)

    assert run.outcome.outcome is Outcome.SKIPPED
    assert {c.rule for c in run.outcome.decision.checks if not c.passed} == failed
    assert re.search(reason.format(model=re.escape(target.model)), run.outcome.reason), run.outcome.reason
    assert backends.copy.started == [] and registry.versions(target.model) == [finished]
    found = artifacts(prefect_api, run.id)
    assert keys(target, found) == {"decision", "drift"}
    decision = found[f"decision-{target.model}"]["data"]  # rewritten in the slot: the skip and its reason
    assert "**Skip**" in decision and {rule for rule, passed in rules(decision).items() if passed == "no"} == failed


def test_a_copy_that_moved_nothing_skips_before_training(make_target, prefect_api) -> None:
    target = make_target()
    signal = target.signal("drift_empty_window")
    backends = memory_backends(details(signal, rows=None), MemoryCopy(rows=0))  # rows unknown until the copy

    run = run_flow(backends, signal=signal)

    assert run.outcome.outcome is Outcome.SKIPPED and run.outcome.reason == "skip: 0 rows copied < minimum 100"
    assert run.outcome.copy_result is not None and run.outcome.copy_result.rows_copied == 0
    assert backends.training.submitted == [] and backends.registry.versions(target.model) == []
    found = artifacts(prefect_api, run.id)
    assert keys(target, found) == {"decision", "drift", "copy"}
    assert found[f"copy-{target.model}"]["data"][0]["rows_copied"] == 0
    assert rules(found[f"decision-{target.model}"]["data"])["data_copied"] == "no"


def test_a_binary_copy_that_wrote_files_retrains_and_says_rows_were_not_reported(make_target, prefect_api) -> None:
    """Data Factory counts no rows for an as-is file copy: the files and bytes it wrote decide instead."""
    target = make_target()
    signal = target.signal("drift_binary_copy")
    backends = memory_backends(details(signal, rows=None), MemoryCopy(rows=2100, binary=True))

    run = run_flow(backends, signal=signal)

    assert run.outcome.outcome is Outcome.RETRAINED
    assert run.outcome.copy_result is not None and run.outcome.copy_result.rows_copied is None
    [version] = backends.registry.versions(target.model)
    assert version.tags["copy.rows_copied"] == "n/a" and version.tags["copy.files_written"] == "1"
    found = artifacts(prefect_api, run.id)
    (copy,) = found[f"copy-{target.model}"]["data"]
    assert copy["rows_copied"] is None and copy["data_written"] == "134 kB"  # 2100 * 64 bytes
    decision = found[f"decision-{target.model}"]["data"]
    assert rules(decision)["data_copied"] == "yes"
    assert f"binary copy: 1 files, {2100 * 64} bytes written (rows not reported by the copy)" in decision


def test_a_challenger_that_does_not_beat_the_champion_is_not_registered(make_target, prefect_api) -> None:
    target = make_target(gate='metric = "roc_auc"\nmin_improvement = 0.01')
    signal = target.signal("drift_worse_model")
    registry = MemoryRegistry([earlier(target, 1, minutes_ago=3 * 24 * 60, roc_auc=0.95)])
    backends = memory_backends(details(signal), MemoryCopy(rows=2100), MemoryTraining({"roc_auc": 0.90}), registry)

    run = run_flow(backends, signal=signal)

    assert run.outcome.outcome is Outcome.SKIPPED and run.outcome.training is not None
    assert run.outcome.reason == "skip: challenger roc_auc = 0.9000 does not beat champion v1 = 0.9500 (needed +0.01)"
    assert [v.version for v in registry.versions(target.model)] == [1]
    found = artifacts(prefect_api, run.id)
    assert keys(target, found) == {"decision", "drift", "copy", "training"}
    assert found[f"training-{target.model}"]["data"] == [{"metric": "roc_auc", "challenger": 0.90, "champion": 0.95, "champion_version": 1}]
    assert rules(found[f"decision-{target.model}"]["data"])["gate"] == "no"
