"""The retrain policy: every rule reports, and each can stop a retrain on its own."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from drift_retrain.breaches import BreachRow
from drift_retrain.names import MONITOR_RUN_TAG, SIGNAL_TAG, WINDOW_END_TAG, WINDOW_START_TAG
from drift_retrain.config import GateConfig, PolicyConfig
from drift_retrain.policy import after_copy, after_training, champion, covered_by, data_copied, decide, in_slot
from drift_retrain.results import CopyResult, DriftDetails, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal, SignalKind
from drift_retrain.testing import copy_result, training_result

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
POLICY = PolicyConfig(drift_threshold=0.3, min_rows=100, cooldown_minutes=60)


def signal(coefficient: float | None = 0.5, **fields) -> DriftSignal:
    base = dict(kind=SignalKind.DATASET_DRIFT, workspace_id=WS, monitor="m", run_id="m_1", event_id="e1", drift_coefficient=coefficient)
    return DriftSignal(**(base | fields))


def details(coefficient: float | None = None, rows: int | None = 1000) -> DriftDetails:
    return DriftDetails(available=rows is not None, source="test", drift_coefficient=coefficient, rows_in_window=rows)


def version(n: int, minutes_ago: float, identity: str = "other") -> ModelVersion:
    return ModelVersion(name="model", version=n, uri="x", created_at=NOW - timedelta(minutes=minutes_ago), tags={SIGNAL_TAG: identity})


def checks(decision) -> dict[str, bool]:
    return {c.rule: c.passed for c in decision.checks}


def test_all_rules_pass_retrains_and_says_why() -> None:
    decision = decide(signal(), details(0.6), POLICY, [version(1, 600)], now=NOW)
    assert decision.retrain
    assert checks(decision) == {"already_handled": True, "drift": True, "min_rows": True, "cooldown": True}
    assert "drift coefficient 0.600 (drift run) >= threshold 0.300" in decision.summary


def test_low_drift_skips() -> None:
    decision = decide(signal(0.9), details(0.1), POLICY, [], now=NOW)
    assert not decision.retrain
    assert decision.summary == "skip: drift coefficient 0.100 (drift run) < threshold 0.300"


def test_event_coefficient_used_when_details_missing() -> None:
    decision = decide(signal(0.25), details(None, rows=None), POLICY, [], now=NOW)
    assert not decision.retrain
    assert "drift coefficient 0.250 (event) < threshold" in decision.summary
    assert checks(decision)["min_rows"] is True  # unknown rows are checked after the copy


def test_too_few_rows_skips() -> None:
    decision = decide(signal(), details(0.6, rows=40), POLICY, [], now=NOW)
    assert not decision.retrain
    assert "40 rows in window < minimum 100" in decision.summary


def test_cooldown_skips_then_expires() -> None:
    inside = decide(signal(), details(0.6), POLICY, [version(1, 600), version(2, 10)], now=NOW)
    assert not inside.retrain
    assert "cooldown: v2 was registered 10 min ago, cooldown is 60 min" in inside.summary
    assert decide(signal(), details(0.6), POLICY, [version(2, 61)], now=NOW).retrain


def test_already_handled_wins_even_over_force() -> None:
    s = signal()
    decision = decide(s, details(0.6), POLICY, [version(3, 600, identity=s.identity)], force=True, now=NOW)
    assert not decision.retrain
    assert "already handled: registered as model v3" in decision.summary


def test_force_overrides_drift_rows_and_cooldown() -> None:
    decision = decide(signal(0.0), details(0.0, rows=1), POLICY, [version(1, 1)], force=True, now=NOW)
    assert decision.retrain and decision.forced
    assert checks(decision)["force"] is True


def drift_detail(s: DriftSignal) -> tuple[bool, str]:
    [check] = [c for c in decide(s, details(None, rows=None), POLICY, [], now=NOW).checks if c.rule == "drift"]
    return check.passed, check.detail


def test_model_monitor_breach_passes_with_its_rows_listed() -> None:
    rows = [BreachRow(metric="JensenShannonDistance", value=0.31, threshold=0.1, group="age"),
            BreachRow(metric="TwoSampleKolmogorovSmirnovTest", value=0.01, threshold=0.05, group="income")]
    s = signal(None, kind=SignalKind.MODEL_MONITOR, signal_name="credit_data_drift", breached=rows)
    assert drift_detail(s) == (True, "signal 'credit_data_drift' breached: age: JensenShannonDistance 0.31 > 0.1, "
                                     "income: TwoSampleKolmogorovSmirnovTest 0.01 < 0.05")
    assert decide(s, details(None, rows=None), POLICY, [], now=NOW).retrain


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"signal_name": "x", "breach_unparsed": "row 0: not JSON"}, "signal 'x' breached; rows unreadable: row 0: not JSON"),
        ({"breach_unparsed": "the tag value is int, not text"}, "an unnamed signal breached; rows unreadable: the tag value is int, not text"),
        ({"signal_name": "x"}, "signal 'x' breached; rows unreadable: the breach tag lists no rows"),
    ],
)
def test_a_model_monitor_breach_without_readable_rows_still_passes_and_says_why(fields, detail) -> None:
    """The breach tag's presence is the breach: Azure ML sets it only when a metric crossed its threshold."""
    assert drift_detail(signal(None, kind=SignalKind.MODEL_MONITOR, **fields)) == (True, detail)


def test_some_rows_unreadable_are_named_beside_the_rows_read() -> None:
    row = BreachRow(metric="PopulationStabilityIndex", value=0.4, threshold=0.2)
    s = signal(None, kind=SignalKind.MODEL_MONITOR, signal_name="x", breached=[row], breach_unparsed="row 1: not JSON")
    assert drift_detail(s) == (True, "signal 'x' breached: PopulationStabilityIndex 0.4 > 0.2; rows unreadable: row 1: not JSON")


def copied(rows: int | None, files: int = 1, data: int = 100) -> CopyResult:
    """A finished copy; ``rows=None`` is a binary (as-is) copy, which counts files and bytes but no rows."""
    return copy_result(rows_read=rows, rows_copied=rows, data_read=data, data_written=data, files_read=files,
                       files_written=files, throughput=0.1)


@pytest.mark.parametrize(("rows", "passed"), [(0, False), (99, False), (100, True)])
def test_data_copied_counts_rows_when_the_copy_reports_them(rows: int, passed: bool) -> None:
    check = data_copied(copied(rows, files=5, data=10_000), POLICY)  # files and bytes do not stand in for rows
    assert (check.rule, check.passed) == ("data_copied", passed)
    assert data_copied(copied(0), PolicyConfig(min_rows=0)).passed is False  # nothing new is never worth it


@pytest.mark.parametrize(("files", "data", "passed"), [(3, 4096, True), (0, 0, False), (0, 4096, False), (3, 0, False)])
def test_data_copied_of_a_binary_copy_counts_files_and_bytes_written(files: int, data: int, passed: bool) -> None:
    check = data_copied(copied(None, files=files, data=data), POLICY)
    assert (check.rule, check.passed) == ("data_copied", passed)
    assert check.detail == f"binary copy: {files} files, {data} bytes written (rows not reported by the copy)"


def test_after_copy_skips_on_too_few_rows_unless_forced() -> None:
    retrain = decide(signal(), details(0.6), POLICY, [], now=NOW)
    skipped = after_copy(retrain, copied(0), POLICY)
    assert not skipped.retrain and skipped.summary == "skip: 0 rows copied < minimum 100"
    assert after_copy(retrain, copied(100), POLICY).retrain
    forced = decide(signal(0.0), details(0.0), POLICY, [], force=True, now=NOW)
    assert after_copy(forced, copied(0), POLICY).retrain


def test_after_copy_retrains_on_a_binary_copy_that_wrote_files_and_skips_one_that_wrote_nothing() -> None:
    retrain = decide(signal(), details(0.6, rows=None), POLICY, [], now=NOW)  # rows unknown until the copy
    binary = after_copy(retrain, copied(None, files=2, data=5_000), POLICY)
    assert binary.retrain and binary.checks[-1].rule == "data_copied"
    assert "binary copy: 2 files, 5000 bytes written (rows not reported by the copy)" in binary.summary
    empty = after_copy(retrain, copied(None, files=0, data=0), POLICY)
    assert not empty.retrain and empty.summary == "skip: binary copy: 0 files, 0 bytes written (rows not reported by the copy)"
    forced = decide(signal(0.0), details(0.0), POLICY, [], force=True, now=NOW)
    assert after_copy(forced, copied(None, files=0, data=0), POLICY).retrain


def _training(**metrics: float) -> TrainingResult:
    return training_result(job_id="job-1", metrics=metrics, model_uri="u")


def _champion(roc_auc: float | None) -> ModelVersion:
    return version(3, 600).model_copy(update={"metrics": {} if roc_auc is None else {"roc_auc": roc_auc}})


GATE = GateConfig(metric="roc_auc", min_improvement=0.01)


@pytest.mark.parametrize(
    ("challenger", "champion_auc", "passes", "detail"),
    [
        (0.80, 0.78, True, "challenger roc_auc = 0.8000 beats champion v3 = 0.7800"),
        (0.785, 0.78, False, "challenger roc_auc = 0.7850 does not beat champion v3 = 0.7800 (needed +0.01)"),
        (0.70, None, True, "champion v3 has no 'roc_auc'"),
    ],
)
def test_gate_compares_challenger_with_champion(challenger: float, champion_auc: float | None, passes: bool, detail: str) -> None:
    retrain = decide(signal(), details(0.6), POLICY, [version(1, 600)], now=NOW)
    decision = after_training(retrain, _training(roc_auc=challenger), _champion(champion_auc), GATE)
    assert decision.retrain is passes
    assert detail in decision.checks[-1].detail and decision.checks[-1].rule == "gate"


def test_gate_fails_when_the_job_reports_no_such_metric_even_if_forced() -> None:
    forced = decide(signal(0.01), details(0.01), POLICY, [], force=True, now=NOW)
    decision = after_training(forced, _training(accuracy=0.9), None, GATE)
    assert not decision.retrain
    assert "reported no 'roc_auc' (reported: accuracy)" in decision.summary


def test_lower_is_better_metric_and_no_gate() -> None:
    retrain = decide(signal(), details(0.6), POLICY, [], now=NOW)
    rmse_gate = GateConfig(metric="rmse", higher_is_better=False)
    current = version(2, 600).model_copy(update={"metrics": {"rmse": 1.0}})
    assert after_training(retrain, _training(rmse=0.9), current, rmse_gate).retrain
    assert not after_training(retrain, _training(rmse=1.1), current, rmse_gate).retrain
    assert after_training(retrain, _training(rmse=5.0), current, None) == retrain
    assert champion([version(1, 60), version(2, 30)]).version == 2 and champion([]) is None


# -- inside the model's retrain slot: coverage and the cooldown again ----------------------------------

DAY = timedelta(days=1)
WINDOW_END = datetime(2026, 11, 26, tzinfo=timezone.utc)


def windowed(run_id: str = "m_1", days: int = 7, end: datetime = WINDOW_END, **fields) -> DriftSignal:
    return signal(run_id=run_id, window_start=end - days * DAY, window_end=end, **fields)


def trained_on(n: int, minutes_ago: float, start: datetime, end: datetime, identity: str = "other") -> ModelVersion:
    tags = {SIGNAL_TAG: identity, WINDOW_START_TAG: start.isoformat(), WINDOW_END_TAG: end.isoformat()}
    return ModelVersion(name="model", version=n, uri="x", created_at=NOW - timedelta(minutes=minutes_ago), tags=tags)


def test_a_version_trained_on_a_window_that_contains_the_signals_covers_it() -> None:
    wider = trained_on(3, 600, WINDOW_END - 14 * DAY, WINDOW_END)
    check = covered_by(windowed(days=7), [wider])
    assert not check.passed
    assert check.detail.startswith("covered by model v3")


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (WINDOW_END - 7 * DAY, WINDOW_END - DAY),  # ends before the signal's window does: misses new data
        (WINDOW_END - 6 * DAY, WINDOW_END),  # starts after the signal's window does
    ],
)
def test_a_version_that_misses_part_of_the_window_does_not_cover_it(start, end) -> None:
    assert covered_by(windowed(days=7), [trained_on(1, 600, start, end)]).passed


def test_a_signal_without_a_window_and_versions_without_window_tags_are_never_covered() -> None:
    assert covered_by(signal(), [trained_on(1, 1, WINDOW_END - DAY, WINDOW_END)]).passed
    assert covered_by(windowed(), [version(1, 1)]).passed


def test_a_version_retrained_for_another_signal_of_the_same_monitor_run_covers_it() -> None:
    """One v2 monitor run breaches several signals, one event each: the first retrains, the rest are covered."""
    first = ModelVersion(name="model", version=4, uri="x", created_at=NOW, tags={SIGNAL_TAG: "a", MONITOR_RUN_TAG: "mon_run_1"})
    breach = signal(kind=SignalKind.MODEL_MONITOR, run_id="eval_step_2", monitor_run_id="mon_run_1")
    check = covered_by(breach, [first])
    assert not check.passed
    assert check.detail == "covered by model v4 (retrained for another signal of monitor run mon_run_1)"
    assert covered_by(breach.model_copy(update={"monitor_run_id": "mon_run_2"}), [first]).passed  # the next run
    assert covered_by(breach.model_copy(update={"monitor_run_id": None}), [first]).passed


def test_in_the_slot_a_retrain_that_finished_meanwhile_skips_with_covered_by() -> None:
    decision = decide(windowed(), details(0.6), POLICY, [], now=NOW)
    assert decision.retrain
    meanwhile = [trained_on(1, 2, WINDOW_END - 7 * DAY, WINDOW_END)]
    again = in_slot(decision, windowed(), POLICY, meanwhile, now=NOW)
    assert not again.retrain
    assert checks(again) == {"drift": True, "min_rows": True, "already_handled": True, "covered_by": False, "cooldown": False}
    assert "covered by model v1" in again.summary


def test_in_the_slot_the_cooldown_alone_coalesces_a_burst_of_other_windows() -> None:
    decision = decide(windowed("m_2", end=WINDOW_END + DAY), details(0.6), POLICY, [], now=NOW)
    again = in_slot(decision, windowed("m_2", end=WINDOW_END + DAY), POLICY, [trained_on(1, 5, WINDOW_END - 7 * DAY, WINDOW_END)], now=NOW)
    assert not again.retrain
    assert checks(again)["covered_by"] and not checks(again)["cooldown"]


def test_in_the_slot_nothing_new_keeps_the_retrain() -> None:
    decision = decide(windowed(), details(0.6), POLICY, [version(1, 600)], now=NOW)
    again = in_slot(decision, windowed(), POLICY, [version(1, 600)], now=NOW)
    assert again.retrain and again.checks.count(again.checks[0]) == 1
    assert [c.rule for c in again.checks].count("cooldown") == 1


def test_in_the_slot_force_overrides_coverage_but_not_already_handled() -> None:
    forced = decide(windowed(), details(0.1), POLICY, [], force=True, now=NOW)
    covered = [trained_on(1, 1, WINDOW_END - 7 * DAY, WINDOW_END)]
    assert in_slot(forced, windowed(), POLICY, covered, now=NOW).retrain
    mine = [trained_on(1, 1, WINDOW_END - 7 * DAY, WINDOW_END, identity=windowed().identity)]
    again = in_slot(forced, windowed(), POLICY, mine, now=NOW)
    assert not again.retrain and "already handled" in again.summary
