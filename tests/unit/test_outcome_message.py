"""The run's final state message and ``decision:`` verdict: the outcome at a glance in the run list (issue 15,
item 6): what was registered, why it was skipped, or what the gate refused; one bounded line."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from drift_retrain.config import GateConfig, PolicyConfig
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.policy import after_training, decide
from drift_retrain.results import MAX_STATE_MESSAGE, DriftDetails, ModelVersion, RetrainOutcome, TrainingResult
from drift_retrain.testing import dataset_drift

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
POLICY = PolicyConfig(drift_threshold=0.3, min_rows=100, cooldown_minutes=60)
DETAILS = DriftDetails(available=True, source="drift run", drift_coefficient=0.6, rows_in_window=1000)
SIGNAL = to_drift_signal(dataset_drift("credit-default-drift_1"))


def _version(number: int, minutes_ago: float, roc_auc: float) -> ModelVersion:
    return ModelVersion(
        name="credit-default", version=number, uri=f"registry/credit-default/{number}",
        created_at=NOW - timedelta(minutes=minutes_ago), tags={}, metrics={"roc_auc": roc_auc},
    )


def _training(roc_auc: float) -> TrainingResult:
    return TrainingResult(job_id="train-1", status="Completed", metrics={"roc_auc": roc_auc}, rows_train=800,
                          rows_test=200, model_uri="x", duration=1.0)


def _outcome(decision, **kwargs) -> RetrainOutcome:
    return RetrainOutcome.of(SIGNAL.identity, "credit-default", "credit-default", decision, details=DETAILS, **kwargs)


def test_a_retrain_says_which_version_it_registered() -> None:
    decision = decide(SIGNAL, DETAILS, POLICY, [], now=NOW)
    done = _outcome(decision, model=_version(2, 0, 0.81))
    assert (done.verdict, done.message) == ("retrain", "retrained → credit-default v2")
    reused = _outcome(decision, model=_version(2, 0, 0.81).model_copy(update={"already_registered": True}))
    assert reused.message == "retrained → credit-default v2 (registered before, reused)"


def test_a_skip_says_which_rule_and_its_numbers() -> None:
    decision = decide(SIGNAL, DETAILS, POLICY, [_version(1, 20, 0.80)], now=NOW)
    skipped = _outcome(decision)
    assert skipped.verdict == "skip"
    assert skipped.message == "skipped: cooldown: v1 was registered 20 min ago, cooldown is 60 min"


def test_a_gated_model_says_challenger_and_champion() -> None:
    champion = _version(1, 120, 0.804)
    decision = decide(SIGNAL, DETAILS, POLICY, [champion], now=NOW, force=True)
    gated = after_training(decision, _training(0.786), champion, GateConfig(metric="roc_auc"))
    outcome = _outcome(gated, training=_training(0.786))
    assert outcome.verdict == "gated" and gated.gate == "failed"
    assert outcome.message == "gated: challenger roc_auc = 0.7860 does not beat champion v1 = 0.8040 (needed +0)"


def test_the_message_is_one_bounded_line_whatever_a_rule_quotes() -> None:
    decision = decide(SIGNAL, DETAILS.model_copy(update={"rows_in_window": 1}), POLICY, [], now=NOW)
    hostile = decision.model_copy(update={"checks": [c.model_copy(update={"detail": "x\n\u202e" * 500}) for c in decision.checks]})
    message = _outcome(hostile).message
    assert "\n" not in message and "\u202e" not in message and len(message) <= MAX_STATE_MESSAGE
