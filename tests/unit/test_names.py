"""The one vocabulary: keys are stable and bounded, slugs are what Prefect accepts, every tag a writer sets is
read back by its reader, and one signal carries the same resource ids on every event it causes."""

from __future__ import annotations

import ast
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prefect.types.names import raise_on_name_alphanumeric_dashes_only, raise_on_name_alphanumeric_dashes_underscores_only

from drift_retrain import names
from drift_retrain.intake.feed import Handed, drift_detected
from drift_retrain.intake.handoff import HandedOff
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.lineage import lineage_tags
from drift_retrain.manual import manual_signal
from drift_retrain.policy import covered_by, decide
from drift_retrain.results import Check, Decision, DriftDetails, ModelVersion
from drift_retrain.testing import copy_result, dataset_drift, monitor_breach, training_result
from tests.contract.ml_fixtures import target

PACKAGE = Path(names.__file__).parent
TARGET = target({"kind": "pipeline_job", "component": "c:1"})


def _signal(run_id: str = "credit-default-drift_1717000000000"):
    return to_drift_signal(dataset_drift(run_id))


def test_the_digest_is_stable_bounded_and_one_length_everywhere() -> None:
    signal = _signal()
    assert signal.digest == names.digest(signal.identity) == names.digest(signal.identity)
    assert len(signal.digest) == names.DIGEST_LENGTH == 20 and int(signal.digest, 16) >= 0
    # a pinned value: changing the digest changes every run key, job name and idempotency key in flight
    assert names.digest("ws/runs/1") == "ad35eae6263af3807e4d"
    assert len(names.digest(f"{signal.workspace_id}/runs/{'r' * 2000}")) == names.DIGEST_LENGTH  # run ids: <= 256
    keys = [names.copy_run_key(signal), names.training_run_key(signal), names.training_job_name(signal, 3),
            signal.idempotency_key, names.signal_resource_id(signal)]
    assert all(key.endswith(signal.digest) or key.endswith(f"{signal.digest}-3") for key in keys)
    assert len({names.digest(f"ws/runs/{i}") for i in range(10_000)}) == 10_000


def test_identity_and_idempotency_key_ignore_workspace_casing_but_not_the_run() -> None:
    lower = _signal()
    upper = to_drift_signal(dataset_drift("credit-default-drift_1717000000000", workspace=lower.workspace_id.upper()))
    assert lower.identity == upper.identity and lower.idempotency_key == upper.idempotency_key
    assert lower.idempotency_key == f"drift:demo-workspace:credit-default-drift_1717000000000:{lower.digest}"
    assert _signal("other").idempotency_key != lower.idempotency_key


def test_run_keys_and_job_names_are_per_signal_and_per_attempt() -> None:
    signal = _signal()
    assert names.copy_run_key(signal) == f"copy-{signal.digest}"
    assert names.training_run_key(signal) == names.training_job_name(signal) == f"train-{signal.digest}"
    assert names.training_job_name(signal, 2) == f"train-{signal.digest}-2"
    assert names.ledger_variable_name(names.TRAINING_STEP, names.training_run_key(signal)) == (
        f"drift_retrain_run__training__train-{signal.digest}"
    )
    raise_on_name_alphanumeric_dashes_underscores_only(names.ledger_variable_name(names.COPY_STEP, names.copy_run_key(signal)))
    with pytest.raises(ValueError, match="Prefect Variable name"):
        names.ledger_variable_name("copy", "has a space")


SLUGGED = ["credit-default", "Credit_Default.v2", "  spaced  out  ", "ünïcode/model%&<>", "--a--", "a" * 300]


@pytest.mark.parametrize("text", SLUGGED)
def test_slugs_are_what_prefect_takes_for_artifact_keys_and_limit_names(text: str) -> None:
    for made in (names.slug(text), names.artifact_key(names.DECISION, text), names.limit_name(text)):
        assert made and raise_on_name_alphanumeric_dashes_only(made) == made
        assert not made.startswith("-") and not made.endswith("-")


def test_slugs_keep_the_names_that_already_exist() -> None:
    """Artifact keys and concurrency limits already on a Prefect server keep their names."""
    assert names.artifact_key(names.DECISION, "credit-default") == "decision-credit-default"
    assert names.artifact_key(names.PROMOTION, "credit-default") == "promote-credit-default"
    assert names.limit_name("Credit_Default.v2") == "drift-retrain-model-credit-default-v2"


def test_flow_run_tags_are_read_back_by_their_readers() -> None:
    signal = _signal()
    for via in (names.WEBHOOK, names.SWEEP, names.MANUAL):
        tags = names.flow_run_tags(TARGET, signal, via)
        assert names.started_by(tags) == via
        assert names.model_of_run(tags) == TARGET.model_name
    assert names.started_by(["drift-retrain"]) == names.MANUAL  # a run from the Run form carries no via: tag
    assert names.model_of_run([]) == ""
    assert names.flow_run_name(TARGET, signal, names.SWEEP) == f"{TARGET.model_name}-2019-07-04..05-{signal.digest[:8]}-sweep"


def _lineage(signal) -> dict[str, str]:
    copy = copy_result(run_id=names.copy_run_key(signal), output_uri="x")
    training = training_result(job_id=names.training_run_key(signal))
    decision = Decision(retrain=True, checks=[Check(rule="r", passed=True, detail="d")])
    return lineage_tags(signal, TARGET, decision, copy, training, "f")


def test_lineage_tags_are_read_back_by_the_policy() -> None:
    """The writer (lineage) and the readers (the policy's "already handled" and "covered by") agree."""
    signal = _signal()
    tags = _lineage(signal)
    assert names.signal_of(tags) == signal.identity
    assert names.window_of(tags) == (signal.window_start, signal.window_end)
    version = ModelVersion(name=TARGET.model_name, version=1, uri="x", created_at=datetime.now(timezone.utc), tags=tags)
    details = DriftDetails(source="event", available=False)
    handled = decide(signal, details, TARGET.policy, [version], force=True)
    assert not handled.retrain and handled.checks[0].detail.startswith("already handled: registered as")
    assert not covered_by(signal, [version]).passed
    assert names.signal_of({}) is None and names.window_of({names.WINDOW_START_TAG: "x"}) is None


def test_one_signal_has_the_same_resource_ids_on_the_feed_and_in_the_flow_reports() -> None:
    """What the receiver's azureml.drift.detected relates is what the decision and registration events relate
    (tasks/report.py emits them with ``names.signal_related``), so an automation can follow the signal."""
    signal = _signal()
    event = drift_detected(Handed(signal, TARGET, HandedOff(uuid.uuid4(), "run", created=True)))
    feed_ids = {r["prefect.resource.id"] for r in event.related} | {event.resource["prefect.resource.id"]}
    report_ids = {r[names.ID] for r in names.signal_related(signal)}
    assert report_ids <= feed_ids
    assert report_ids == {
        f"drift-retrain.signal.{signal.digest}",
        "azureml.workspace.demo-workspace",
        "azureml.monitor.demo-workspace.credit-default-drift",
        "azureml.drift-run.demo-workspace.credit-default-drift_1717000000000",
    }
    assert names.model_resource_id(TARGET.model_name) in feed_ids


def test_a_manual_signal_relates_no_drift_run_and_a_v2_breach_does() -> None:
    manual = manual_signal(TARGET, datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 8, tzinfo=timezone.utc))
    assert manual.run_id == f"manual-{TARGET.name}-20260101T0000Z-20260108T0000Z"
    assert manual.kind == names.MANUAL_KIND  # names cannot import SignalKind (signals imports names)
    assert names.DRIFT_RUN_ROLE not in {r[names.ROLE] for r in names.signal_related(manual)}
    breach = to_drift_signal(monitor_breach("monitor-run-1"))
    assert names.DRIFT_RUN_ROLE in {r[names.ROLE] for r in names.signal_related(breach)}


def test_the_model_resource_is_what_the_promote_trigger_matches() -> None:
    """prefect.yaml: ``prefect.resource.id: drift-retrain.model.*``, model from ``event.resource.name``."""
    trigger = (PACKAGE.parent / "prefect.yaml").read_text()
    assert "prefect.resource.id: drift-retrain.model.*" in trigger and names.MODEL_REGISTERED in trigger
    resource = names.model_resource("credit-default")
    assert resource == {"prefect.resource.id": "drift-retrain.model.credit-default", "prefect.resource.name": "credit-default"}


def test_the_drift_detected_event_id_is_the_signals() -> None:
    assert names.drift_detected_event_id(_signal()) == names.drift_detected_event_id(_signal())
    assert names.drift_detected_event_id(_signal()) != names.drift_detected_event_id(_signal("other"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return found | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_names_is_pure_and_lineage_does_not_reach_into_backends() -> None:
    imported = _imports(PACKAGE / "names.py")
    assert not any(m.split(".")[0] in {"prefect", "azure"} or m.startswith(("drift_retrain.backends", "drift_retrain.intake"))
                   for m in imported), imported
    assert not any(m.startswith("drift_retrain.backends") for m in _imports(PACKAGE / "lineage.py"))


def test_no_module_spells_a_resource_id_or_signal_tag_of_its_own() -> None:
    """Writers and readers go through names: no other module of the package, flows or tasks spells these."""
    spelled = ('"drift_retrain.signal"', '"drift_retrain.target"', "azureml.monitor.", "azureml.drift-run.", "azureml.run.",
               "drift-retrain.signal.", "drift-retrain.model.{", "prefect.flow-run.{", "hexdigest()")
    roots = [PACKAGE, PACKAGE.parent / "flows", PACKAGE.parent / "tasks"]
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}: {text}"
        for root in roots
        for path in root.rglob("*.py")
        if path.name != "names.py" and "fake_azure" not in path.parts
        for text in spelled
        if text in path.read_text()
    ]
    assert offenders == []


# -- run names people read at a glance (issue 15, item 6) ---------------------------------------------

UTC_ = timezone.utc


@pytest.mark.parametrize(
    ("start", "end", "span"),
    [
        (datetime(2026, 11, 19, tzinfo=UTC_), datetime(2026, 11, 26, tzinfo=UTC_), "2026-11-19..26"),
        (datetime(2026, 11, 28, tzinfo=UTC_), datetime(2026, 12, 5, tzinfo=UTC_), "2026-11-28..12-05"),
        (datetime(2026, 12, 28, tzinfo=UTC_), datetime(2027, 1, 4, tzinfo=UTC_), "2026-12-28..2027-01-04"),
        # days are UTC days, whatever zone the event wrote its times in
        (datetime.fromisoformat("2026-11-19T01:00+02:00"), datetime.fromisoformat("2026-11-26T01:00+02:00"), "2026-11-18..25"),
    ],
)
def test_a_window_reads_as_its_days(start: datetime, end: datetime, span: str) -> None:
    assert names.window_span(start, end) == span


def test_run_names_carry_the_model_the_window_and_a_digest_never_epoch_milliseconds() -> None:
    webhook = to_drift_signal(dataset_drift(
        "2f5fa437-97e5-5e02-af43-3fd1c017ed9d_1795996800000",
        StartTime="2026-11-19T00:00:00Z", EndTime="2026-11-26T00:00:00Z",
    ))
    short = webhook.digest[:8]
    assert names.flow_run_name(TARGET, webhook) == f"credit-default-2026-11-19..26-{short}"
    assert names.flow_run_name(TARGET, webhook, names.SWEEP) == f"credit-default-2026-11-19..26-{short}-sweep"
    assert names.unrouted_run_name(webhook) == f"unrouted-2026-11-19..26-{short}"
    assert "1795996800000" not in names.flow_run_name(TARGET, webhook)
    # a drift signal's run started through the API without a via: tag is named by its signal, not "manual"
    assert names.flow_run_name(TARGET, webhook, names.MANUAL) == names.flow_run_name(TARGET, webhook)
    other = to_drift_signal(dataset_drift("other_1795996800000", StartTime="2026-11-19T00:00:00Z", EndTime="2026-11-26T00:00:00Z"))
    assert names.flow_run_name(TARGET, other) != names.flow_run_name(TARGET, webhook)  # same window, other drift run
    # a retrain by hand says the target once ("credit-default-manual-credit-default-..." before)
    by_hand = manual_signal(TARGET, datetime(2026, 11, 19), datetime(2026, 11, 26))
    assert names.flow_run_name(TARGET, by_hand, names.MANUAL) == f"credit-default-manual-2026-11-19..26-{by_hand.digest[:8]}"
    # a v2 breach may name no window: the day of its event instead
    breach = to_drift_signal(monitor_breach("breach-run-1"))
    assert breach.window_start is None and breach.event_time is not None
    assert names.flow_run_name(TARGET, breach) == f"credit-default-{breach.event_time:%Y-%m-%d}-{breach.digest[:8]}"
    for name in (names.flow_run_name(TARGET, s, via) for s in (webhook, by_hand, breach) for via in (names.WEBHOOK, names.SWEEP, names.MANUAL)):
        assert len(name) <= len(TARGET.model_name) + len("-manual-2026-12-28..2027-01-04-12345678-sweep")


def test_a_sweep_run_is_named_by_when_it_was_due() -> None:
    assert names.sweep_run_name(datetime(2026, 11, 30, 10, 30, 12, tzinfo=UTC_)) == "sweep-2026-11-30T10:30Z"


def test_the_decision_tag_is_one_per_run_and_only_the_three_verdicts() -> None:
    tags = ["drift-retrain", "model:m", "decision:skip"]
    assert names.with_decision_tag(tags, names.RETRAIN) == ["drift-retrain", "model:m", "decision:retrain"]
    assert names.with_decision_tag(["drift-retrain"], names.GATED) == ["drift-retrain", "decision:gated"]
    with pytest.raises(ValueError):
        names.decision_tag("maybe")


def test_the_registered_events_model_resource_says_whether_the_gate_passed() -> None:
    assert names.model_resource("m") == {names.ID: "drift-retrain.model.m", names.NAME: "m"}
    assert names.model_resource("m", names.GATE_PASSED)[names.GATE_LABEL] == "passed"
