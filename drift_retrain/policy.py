"""The retrain policy: pure rules over the signal, its details and the model's history.

Every rule reports, pass or fail, so a skip is never silent and a retrain always says why.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drift_retrain.config import GateConfig, PolicyConfig
from drift_retrain.names import monitor_run_of, signal_of, window_of
from drift_retrain.results import Check, CopyResult, Decision, DriftDetails, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal, SignalKind, describe_rows


def decide(
    signal: DriftSignal,
    details: DriftDetails,
    policy: PolicyConfig,
    history: list[ModelVersion],
    *,
    force: bool = False,
    now: datetime | None = None,
) -> Decision:
    """Decide whether this signal retrains the model.

    ``history`` is the model's registered versions. ``force`` overrides drift, rows and cooldown but
    never "already handled" (a signal registers at most one model version) nor, after training, the
    quality gate (see ``after_training``).
    """
    now = now or datetime.now(UTC)
    handled = _already_handled(signal, history)
    checks = [handled, _drift(signal, details, policy), _rows(details, policy), _cooldown(history, policy, now)]
    if not handled.passed:
        return Decision(retrain=False, checks=checks, forced=force)
    if force:
        return Decision(
            retrain=True, checks=[*checks, Check(rule="force", passed=True, detail="forced by the caller")], forced=True
        )
    return Decision(retrain=all(c.passed for c in checks), checks=checks)


def _already_handled(signal: DriftSignal, history: list[ModelVersion]) -> Check:
    for version in history:
        if signal_of(version.tags) == signal.identity:
            return Check(
                rule="already_handled",
                passed=False,
                detail=f"already handled: registered as {version.name} v{version.version}",
            )
    return Check(rule="already_handled", passed=True, detail="no model version was registered for this drift run yet")


def _drift(signal: DriftSignal, details: DriftDetails, policy: PolicyConfig) -> Check:
    if signal.kind is SignalKind.MODEL_MONITOR:
        return _breach(signal)
    if signal.kind is SignalKind.MANUAL:
        return Check(rule="drift", passed=True, detail="retrain requested by hand: no drift run to check")
    coefficient = details.drift_coefficient if details.drift_coefficient is not None else signal.drift_coefficient
    source = "drift run" if details.drift_coefficient is not None else "event"
    if coefficient is None:
        return Check(rule="drift", passed=False, detail="no drift coefficient in the event or the drift run")
    passed = coefficient >= policy.drift_threshold
    relation = ">=" if passed else "<"
    return Check(
        rule="drift",
        passed=passed,
        detail=f"drift coefficient {coefficient:.3f} ({source}) {relation} threshold {policy.drift_threshold:.3f}",
    )


def _breach(signal: DriftSignal) -> Check:
    """A v2 breach passes: Azure ML tagged the run only because a metric crossed its threshold (the tag's
    presence is the breach), whether or not its rows could be read."""
    name = f"signal '{signal.signal_name}'" if signal.signal_name else "an unnamed signal"
    if signal.breached:
        rows = ", ".join(describe_rows(signal.breached))
        more = f"; rows unreadable: {signal.breach_unparsed}" if signal.breach_unparsed else ""
        return Check(rule="drift", passed=True, detail=f"{name} breached: {rows}{more}")
    why = signal.breach_unparsed or "the breach tag lists no rows"
    return Check(rule="drift", passed=True, detail=f"{name} breached; rows unreadable: {why}")


def _rows(details: DriftDetails, policy: PolicyConfig) -> Check:
    if details.rows_in_window is None:
        return Check(
            rule="min_rows", passed=True, detail=f"rows in window unknown ({details.source}); checked after the copy"
        )
    passed = details.rows_in_window >= policy.min_rows
    relation = ">=" if passed else "<"
    return Check(
        rule="min_rows",
        passed=passed,
        detail=f"{details.rows_in_window} rows in window {relation} minimum {policy.min_rows}",
    )


def _cooldown(history: list[ModelVersion], policy: PolicyConfig, now: datetime) -> Check:
    if not history:
        return Check(rule="cooldown", passed=True, detail="no earlier retrain of this model")
    latest = max(history, key=lambda v: v.created_at)
    age = now - latest.created_at
    window = timedelta(minutes=policy.cooldown_minutes)
    minutes = age.total_seconds() / 60
    if age < window:
        return Check(
            rule="cooldown",
            passed=False,
            detail=f"cooldown: v{latest.version} was registered {minutes:.0f} min ago, cooldown is {policy.cooldown_minutes:g} min",
        )
    return Check(rule="cooldown", passed=True, detail=f"last retrain v{latest.version} was {minutes:.0f} min ago")


def covered_by(signal: DriftSignal, history: list[ModelVersion]) -> Check:
    """A version registered for another signal of the same v2 monitor run (one run breaches several signals,
    one event each), or from a window that contains this signal's window (another monitor's signal for the
    same window, or a later, wider one), already trained on its data: retraining again adds nothing."""
    for version in sorted(history, key=lambda v: v.version, reverse=True):
        if signal.monitor_run_id and monitor_run_of(version.tags) == signal.monitor_run_id:
            return Check(
                rule="covered_by",
                passed=False,
                detail=f"covered by {version.name} v{version.version} (retrained for another signal of monitor run {signal.monitor_run_id})",
            )
    if signal.window_start is None or signal.window_end is None:
        return Check(
            rule="covered_by", passed=True, detail="no retrain covers this signal's monitor run, and it names no window"
        )
    for version in sorted(history, key=lambda v: v.version, reverse=True):
        window = window_of(version.tags)
        if window and window[0] <= signal.window_start and signal.window_end <= window[1]:
            return Check(
                rule="covered_by",
                passed=False,
                detail=f"covered by {version.name} v{version.version} (trained on [{window[0]:%Y-%m-%d %H:%M}, {window[1]:%Y-%m-%d %H:%M}))",
            )
    return Check(rule="covered_by", passed=True, detail="no registered version covers this window")


def in_slot(
    decision: Decision,
    signal: DriftSignal,
    policy: PolicyConfig,
    history: list[ModelVersion],
    *,
    now: datetime | None = None,
) -> Decision:
    """Re-decide once this signal holds its model's retrain slot: a retrain that finished while it waited
    may already cover its window, or have started the cooldown. This is what coalesces a storm into one
    retrain. "Already handled" is re-checked too (a rerun after a crash right after registration); a
    forced retrain overrides cooldown and coverage, never "already handled"."""
    now = now or datetime.now(UTC)
    handled = _already_handled(signal, history)
    fresh = [handled, covered_by(signal, history), _cooldown(history, policy, now)]
    kept = [c for c in decision.checks if c.rule not in {c.rule for c in fresh} | {"force"}]
    checks = [*kept, *fresh, *([c for c in decision.checks if c.rule == "force"])]
    if not handled.passed:
        return Decision(retrain=False, checks=checks, forced=decision.forced)
    return Decision(retrain=decision.forced or all(c.passed for c in checks), checks=checks, forced=decision.forced)


def data_copied(copy: CopyResult, policy: PolicyConfig) -> Check:
    """After the copy: training on (almost) nothing new is a waste and a risk. Rows decide when the copy
    counts them; a binary (as-is) copy counts none, so then it must at least have written files and bytes."""
    if copy.rows_copied is not None:
        minimum = max(policy.min_rows, 1)
        passed = copy.rows_copied >= minimum
        relation = ">=" if passed else "<"
        return Check(
            rule="data_copied", passed=passed, detail=f"{copy.rows_copied} rows copied {relation} minimum {minimum}"
        )
    return Check(
        rule="data_copied",
        passed=copy.files_written > 0 and copy.data_written > 0,
        detail=(
            f"binary copy: {copy.files_written} files, {copy.data_written} bytes written"
            " (rows not reported by the copy)"
        ),
    )


def after_copy(decision: Decision, copy: CopyResult, policy: PolicyConfig) -> Decision:
    """Re-decide once the copy says how much new data there really is (a forced retrain goes on)."""
    check = data_copied(copy, policy)
    return Decision(retrain=check.passed or decision.forced, checks=[*decision.checks, check], forced=decision.forced)


def champion(history: list[ModelVersion]) -> ModelVersion | None:
    """The version a new model must beat: the latest registered one."""
    return max(history, key=lambda v: (v.created_at, v.version)) if history else None


def gate(config: GateConfig, training: TrainingResult, current: ModelVersion | None) -> Check:
    """Champion/challenger: the new model must be at least as good as the latest version on one metric."""
    metric = config.metric
    challenger = training.metrics.get(metric)
    if challenger is None:
        reported = ", ".join(sorted(training.metrics)) or "none"
        return Check(
            rule="gate", passed=False, detail=f"job {training.job_id} reported no '{metric}' (reported: {reported})"
        )
    if current is None or metric not in current.metrics:
        why = "no champion yet" if current is None else f"champion v{current.version} has no '{metric}'"
        return Check(rule="gate", passed=True, detail=f"{metric} = {challenger:.4f}; {why}")
    best = current.metrics[metric]
    gain = challenger - best if config.higher_is_better else best - challenger
    passed = gain >= config.min_improvement
    relation = "beats" if passed else "does not beat"
    return Check(
        rule="gate",
        passed=passed,
        detail=(
            f"challenger {metric} = {challenger:.4f} {relation} champion v{current.version} = {best:.4f}"
            f" (needed {'+' if config.higher_is_better else '-'}{config.min_improvement:g})"
        ),
    )


def after_training(
    decision: Decision, training: TrainingResult, current: ModelVersion | None, config: GateConfig | None
) -> Decision:
    """Re-decide once the new model's metrics are known; without a gate the decision stands. Not even a
    forced retrain registers a model that fails the gate: the gate protects what is deployed."""
    if config is None:
        return decision
    check = gate(config, training, current)
    return Decision(retrain=decision.retrain and check.passed, checks=[*decision.checks, check], forced=decision.forced)
