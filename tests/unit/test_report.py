"""What the run's report shows: the artifacts' markdown and tables, and the failure event, rendered from the
step results (no Prefect server: the tasks only hand these to Prefect). Resource ids are the names module's
to spell; these tests read the content a person or an automation sees."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone

from drift_retrain.breaches import BreachRow
from drift_retrain.names import SIGNAL_TAG
from drift_retrain.portal import Link
from drift_retrain.results import Check, Decision, DriftDetails, FeatureDrift, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal, SignalKind
from tasks import report
from tasks.report import (
    TOP_FEATURES,
    breach_description,
    breach_rows,
    cancelled_markdown,
    decision_markdown,
    drift_description,
    drift_rows,
    failure_event,
    model_markdown,
    training_rows,
)

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws-one"
START = datetime(2026, 11, 19, tzinfo=timezone.utc)


def signal(**fields) -> DriftSignal:
    base = dict(
        kind=SignalKind.DATASET_DRIFT, workspace_id=WS, monitor="credit-drift", run_id="drift_42", event_id="e1",
        drift_coefficient=0.61, window_start=START, window_end=START + timedelta(days=7),
    )
    return DriftSignal(**(base | fields))


DECISION = Decision(
    retrain=False,
    checks=[
        Check(rule="already_handled", passed=True, detail="no model version was registered for this drift run yet"),
        Check(rule="drift", passed=True, detail="drift coefficient 0.610 (drift run) >= threshold 0.300"),
        Check(rule="cooldown", passed=False, detail="cooldown: v3 was registered 12 min ago, cooldown is 60 min"),
    ],
)


def table(markdown: str) -> list[list[str]]:
    """The data rows of the markdown's tables, cell by cell (the header and separator rows left out)."""
    rows = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in markdown.splitlines() if line.startswith("|")]
    return [row for row in rows if not set("".join(row)) <= {"-"} and row[0] not in {"rule", "lineage tag", "step"}]


def test_the_decision_says_the_verdict_the_drift_run_its_window_and_every_rule_pass_or_fail() -> None:
    text = decision_markdown(signal(), DriftDetails(available=True, source="local monitor record of run drift_42"), DECISION, "credit")
    title, *_ = text.splitlines()
    assert title == "# Decision for `credit`: **Skip**"
    assert "Drift run drift_42 from monitor credit-drift in workspace ws-one (dataset_drift)" in text
    assert "over [2026-11-19 00:00, 2026-11-26 00:00) UTC" in text
    assert table(text) == [[c.rule, "yes" if c.passed else "no", c.detail] for c in DECISION.checks]
    assert "Drift details: local monitor record of run drift_42." in text
    assert f"Signal: {signal().identity}" in text


def test_a_retrain_decision_without_a_window_says_retrain_and_names_no_window() -> None:
    manual = signal(kind=SignalKind.MANUAL, window_start=None, window_end=None, drift_coefficient=None, run_id="manual-1")
    retrain = Decision(retrain=True, checks=[Check(rule="drift", passed=True, detail="retrain requested by hand")])
    text = decision_markdown(manual, DriftDetails(available=False, source="no drift run"), retrain, "credit")
    assert text.startswith("# Decision for `credit`: **Retrain**")
    assert "(manual)." in text and "over [" not in text
    assert table(text) == [["drift", "yes", "retrain requested by hand"]]


def test_the_drift_table_ranks_the_top_features_by_contribution_with_every_reported_statistic() -> None:
    features = [FeatureDrift(feature=f"f{i}", contribution=i / 100, psi=0.123456789 * i) for i in range(TOP_FEATURES + 2)]
    features.append(FeatureDrift(feature="azure-v2", contribution=0.5, metrics={"jensen_shannon_distance": 0.0312345}))
    details = DriftDetails(available=True, source="s", drift_coefficient=0.6149, threshold=0.3, features=features)

    rows = drift_rows(details)
    assert [r["rank"] for r in rows] == list(range(1, TOP_FEATURES + 1))
    assert [r["feature"] for r in rows[:3]] == ["azure-v2", "f11", "f10"]
    assert rows[0] == {"rank": 1, "feature": "azure-v2", "contribution": 0.5, "jensen_shannon_distance": 0.03123, "threshold": 0.3}
    assert rows[1] == {"rank": 2, "feature": "f11", "psi": 1.358, "contribution": 0.11, "threshold": 0.3}  # 4 significant digits
    assert "ks_statistic" not in rows[1]  # a statistic the source did not report is left out, never a made-up 0
    assert drift_description(details) == (
        f"Top {TOP_FEATURES} of {TOP_FEATURES + 3} features by drift; dataset drift coefficient 0.615 vs threshold 0.300"
    )
    unknown = DriftDetails(available=True, source="s", features=features[:2])
    assert drift_description(unknown).endswith("Top 2 of 2 features by drift; dataset drift coefficient n/a vs threshold n/a")


BREACHED = [
    BreachRow(metric="JensenShannonDistance", value=0.3141592, threshold=0.1, group="age"),
    BreachRow(metric="TwoSampleKolmogorovSmirnovTest", value=0.01, threshold=0.05, group="a|b [x](http://e) <img src=x>"),
    BreachRow(metric="PopulationStabilityIndex", value=0.4, threshold=0.2),
]


def breach(**fields) -> DriftSignal:
    base = dict(kind=SignalKind.MODEL_MONITOR, monitor="credit-monitor", drift_coefficient=None, window_start=None,
                window_end=None, signal_name="credit-monitor_data_drift", breached=BREACHED)
    return signal(**(base | fields))


def test_a_breach_table_lists_every_breached_row_with_its_direction() -> None:
    """The rows as the tag states them; the artifact escapes them (tests/unit/test_artifact_escaping.py)."""
    assert breach_rows(breach(), DriftDetails(available=False, source="no access")) == [
        {"feature/group": "age", "metric": "JensenShannonDistance", "value": "0.3142", "threshold": "0.1",
         "breached": "yes", "direction": "alerts above the threshold"},
        {"feature/group": "a|b [x](http://e) <img src=x>", "metric": "TwoSampleKolmogorovSmirnovTest",
         "value": "0.01", "threshold": "0.05", "breached": "yes", "direction": "alerts below the threshold"},
        {"feature/group": "", "metric": "PopulationStabilityIndex", "value": "0.4", "threshold": "0.2",
         "breached": "yes", "direction": "alerts above the threshold"},
    ]
    hostile = breach(signal_name="*x* | `y`", breach_unparsed="row 3: not JSON")
    assert breach_description(hostile, DriftDetails(available=False, source="no <details>")) == (
        "Signal *x* | `y` of monitor credit-monitor: 3 breached row(s); unreadable: row 3: not JSON. "
        "Drift details: no <details>"
    )


def test_the_metric_runs_add_every_other_metric_and_threshold_after_the_breached_rows() -> None:
    details = DriftDetails(available=True, source="metric runs", features=[
        FeatureDrift(feature="age", metrics={"JensenShannonDistance": 0.3141592, "PopulationStabilityIndex": 0.05},
                     thresholds={"JensenShannonDistance": 0.1, "PopulationStabilityIndex": 0.2}),
        FeatureDrift(feature="income", metrics={"TwoSampleKolmogorovSmirnovTest": 0.01, "NullValueRate": 0.3},
                     thresholds={"TwoSampleKolmogorovSmirnovTest": 0.05}),
        FeatureDrift(feature="(overall)", metrics={"PopulationStabilityIndex": 0.4}, thresholds={"PopulationStabilityIndex": 0.2}),
    ])
    rows = breach_rows(breach(), details)
    assert [(r["feature/group"], r["metric"], r["threshold"], r["breached"]) for r in rows[3:]] == [
        ("age", "PopulationStabilityIndex", "0.2", "no"),
        ("income", "NullValueRate", "n/a", "n/a"),
        ("income", "TwoSampleKolmogorovSmirnovTest", "0.05", "yes"),  # below its threshold: a breach
    ]
    assert len(rows) == 6  # the tag's age/JSD and overall PSI rows are not repeated from the metric runs
    assert breach_rows(breach(), details.model_copy(update={"available": False})) == rows[:3]


def test_the_drift_artifact_of_a_breach_shows_its_rows_even_without_details(monkeypatch) -> None:
    made: dict[str, tuple] = {}
    monkeypatch.setattr(report, "create_table_artifact", lambda rows, key, description: made.setdefault(key, (rows, description)))
    monkeypatch.setattr(report, "create_markdown_artifact", lambda markdown, key, description: made.setdefault(key, (markdown,)))
    monkeypatch.setattr(report, "emit_event", lambda *a, **k: None)
    monkeypatch.setattr(report, "get_run_logger", lambda: logging.getLogger("test"))
    decision = Decision(retrain=True, checks=[Check(rule="drift", passed=True, detail="signal 'a|b' breached: x")])
    report.report_decision.fn(breach(), DriftDetails(available=False, source="unavailable"), decision, "credit")
    rows, description = made["drift-credit"]
    assert [r["metric"] for r in rows] == [r.metric for r in BREACHED] and "3 breached row(s)" in description
    assert rows[1]["feature/group"] == "a\\|b \\[x\\](http\u2060://e) &lt;img src=x>"  # a text cell, escaped
    assert table(made["decision-credit"][0]) == [["drift", "yes", "signal 'a\\|b' breached: x"]]  # one cell, escaped


def training(metrics: dict[str, float]) -> TrainingResult:
    return TrainingResult(job_id="train-1", status="Completed", metrics=metrics, rows_train=75, rows_test=25, model_uri="m", duration=1)


def version(n: int, metrics: dict[str, float], **fields) -> ModelVersion:
    base = dict(name="credit", version=n, uri=f"/registry/credit/{n}/model.joblib", created_at=START, tags={}, metrics=metrics)
    return ModelVersion(**(base | fields))


def test_the_training_table_puts_each_metric_beside_the_champions() -> None:
    challenger = training({"roc_auc": 0.91, "f1": 0.7})
    assert training_rows(challenger, version(3, {"roc_auc": 0.93})) == [
        {"metric": "roc_auc", "challenger": 0.91, "champion": 0.93, "champion_version": 3},
        {"metric": "f1", "challenger": 0.7, "champion": None, "champion_version": 3},  # the champion never reported it
    ]
    assert training_rows(challenger, None)[0] == {"metric": "roc_auc", "challenger": 0.91, "champion": None, "champion_version": None}


def test_the_model_report_links_locates_and_lists_the_lineage_without_the_checks_blob() -> None:
    tags = {SIGNAL_TAG: signal().identity, "drift.run_id": "drift_42", "decision": "x" * 250, "decision.checks": "[{...}]"}
    model = version(4, {"roc_auc": 0.94, "f1": 0.71}, tags=tags)
    links = [Link(label="Azure ML model credit:4", url="https://ml.azure.com/model/credit:4/details?wsid=w")]
    text = model_markdown(model, links)
    lines = text.splitlines()
    assert lines[0] == "# `credit` v4 registered"
    assert "- [Azure ML model credit:4](https://ml.azure.com/model/credit:4/details?wsid=w)" in lines
    assert "- location: /registry/credit/4/model.joblib" in lines
    assert "- metrics: roc_auc = 0.94, f1 = 0.71" in lines
    cut = "x" * 199 + "…"  # cut to 200 characters, the cut marked
    assert table(text) == [["decision", cut], ["drift.run_id", "drift_42"], [SIGNAL_TAG, signal().identity]]  # sorted
    reused = model_markdown(model.model_copy(update={"already_registered": True}), [])
    assert reused.startswith("# `credit` v4 already registered (reused)")


def test_the_cancellation_report_names_the_run_what_interrupted_it_and_whether_the_cancel_went_through() -> None:
    text = cancelled_markdown("copy", "credit", "adf-run-1", "TerminationSignal: SIGTERM", "cancel requested")
    assert text.startswith("# `credit`: copy run cancelled")
    assert table(text) == [["copy", "adf-run-1", "TerminationSignal: SIGTERM", "cancel requested"]]
    assert table(cancelled_markdown("training", "credit", "job-1", "", "could not cancel"))[0][2] == "interruption"


def test_the_failure_event_names_the_model_the_signal_the_drift_run_and_the_flow_run() -> None:
    event = failure_event("credit", signal(), "run-123", "copy run adf-1 ended Failed: sink unreachable")
    assert event["resource"]["prefect.resource.name"] == "credit"
    assert event["payload"] == {"error": "copy run adf-1 ended Failed: sink unreachable", "signal": signal().identity, "flow_run_id": "run-123"}
    roles = {r["prefect.resource.role"]: r for r in event["related"]}
    assert set(roles) == {"signal", "workspace", "monitor", "drift-run", "flow-run"}
    assert roles["signal"]["prefect.resource.name"] == signal().identity
    assert roles["workspace"]["prefect.resource.name"] == "ws-one"
    assert roles["monitor"]["prefect.resource.name"] == "credit-drift"
    assert roles["drift-run"]["prefect.resource.name"] == "drift_42"
    assert "run-123" in roles["flow-run"]["prefect.resource.id"]


def test_a_failure_before_the_signal_was_read_is_still_reported_against_the_flow_run() -> None:
    event = failure_event(None, None, "run-9", "parameters could not be read")
    assert event["resource"]["prefect.resource.name"] == "unknown model"
    assert "run-9" in event["resource"]["prefect.resource.id"]
    assert event["related"] == [] and event["payload"] == {"error": "parameters could not be read", "signal": None, "flow_run_id": "run-9"}
    manual = failure_event("credit", signal(kind=SignalKind.MANUAL, run_id="manual-1"), "run-9", "boom")
    assert "drift-run" not in {r["prefect.resource.role"] for r in manual["related"]}  # a manual retrain has no drift run
