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
from drift_retrain.results import (
    Check, CopyResult, Decision, Distribution, DriftDetails, FeatureDrift, Histogram, ModelVersion, TrainingResult,
)
from drift_retrain.signals import DriftSignal, SignalKind
from tasks import report
from tasks.report import (
    TOP_FEATURES,
    breach_description,
    breach_rows,
    cancelled_markdown,
    copy_description,
    copy_row,
    decision_markdown,
    drift_description,
    drift_markdown,
    failure_event,
    model_markdown,
    training_description,
    training_rows,
)
from tests.rendering import links, tokens

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
    assert title == "# Decision for `credit`: **Skip** (final)"
    assert "Drift run drift_42 from monitor credit-drift in workspace ws-one (dataset_drift)" in text
    assert "over [2026-11-19 00:00, 2026-11-26 00:00) UTC" in text
    assert table(text) == [[c.rule, "yes" if c.passed else "no", c.detail] for c in DECISION.checks]
    assert "Drift details: local monitor record of run drift_42." in text
    assert f"Signal: {signal().identity}" in text


def test_a_retrain_decision_without_a_window_says_retrain_and_names_no_window() -> None:
    manual = signal(kind=SignalKind.MANUAL, window_start=None, window_end=None, drift_coefficient=None, run_id="manual-1")
    retrain = Decision(retrain=True, checks=[Check(rule="drift", passed=True, detail="retrain requested by hand")])
    text = decision_markdown(manual, DriftDetails(available=False, source="no drift run"), retrain, "credit")
    assert text.startswith("# Decision for `credit`: **Retrain** (final)")
    assert "(manual)." in text and "over [" not in text
    preliminary = decision_markdown(manual, DriftDetails(available=False, source="no drift run"), retrain, "credit", final=False)
    assert preliminary.startswith("# Decision for `credit`: **Retrain** (preliminary)")
    assert "rewritten with the final decision once the copy and the gate are checked" in preliminary
    assert table(text) == [["drift", "yes", "retrain requested by hand"]]


def drift_table(markdown: str) -> list[dict[str, str]]:
    """The drift artifact's table as rows by column name (the cells as written)."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    split = lambda line: [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
    header = split(lines[0])
    return [dict(zip(header, split(line), strict=True)) for line in lines[2:]]


def test_the_drift_table_ranks_the_top_features_by_contribution_with_every_reported_statistic() -> None:
    features = [FeatureDrift(feature=f"f{i}", contribution=i / 100, psi=0.123456789 * i) for i in range(TOP_FEATURES + 2)]
    features.append(FeatureDrift(feature="azure-v2", contribution=0.5, metrics={"jensen_shannon_distance": 0.0312345}))
    details = DriftDetails(available=True, source="s", drift_coefficient=0.6149, threshold=0.3, features=features,
                           distributions_missing="not available from Azure ML")

    text = drift_markdown(details, "credit")
    rows = drift_table(text)
    assert [r["rank"] for r in rows] == [str(n) for n in range(1, TOP_FEATURES + 1)]
    assert [r["feature"] for r in rows[:3]] == ["azure-v2", "f11", "f10"]
    assert rows[0] == {"rank": "1", "feature": "azure-v2", "contribution": "0.5", "PSI": "n/a", "jensen_shannon_distance": "0.0312",
                       "reference": "not available from Azure ML", "current": "not available from Azure ML",
                       "histogram": "not available from Azure ML"}
    assert rows[1]["PSI"] == "1.36" and rows[1]["contribution"] == "0.11"  # 3 significant digits
    assert "KS statistic" not in rows[1]  # a statistic no source reported is no column, never a made-up 0
    assert drift_description(details) == (
        f"Top {TOP_FEATURES} of {TOP_FEATURES + 3} features by drift; dataset drift coefficient 0.615 vs threshold 0.300"
    )
    unknown = DriftDetails(available=True, source="s", features=features[:2])
    assert drift_description(unknown).endswith("Top 2 of 2 features by drift; dataset drift coefficient n/a vs threshold n/a")


def test_the_drift_table_states_the_dataset_threshold_once_and_what_moved_per_feature() -> None:
    """Issue 15 item 8: the threshold is the dataset's, said once, not in every feature's row; each row shows the
    reference against the current window (mean and quantiles, or top categories) and both histograms as an image."""
    histogram = Histogram(edges=[0, 1, 2, 3], reference=[0.2, 0.5, 0.3], current=[0.1, 0.3, 0.6])
    income = FeatureDrift(
        feature="income", contribution=0.7, psi=0.47,
        reference=Distribution(rows=2000, mean=59928.4, quantiles={"p10": 30945.2, "p50": 53426.0, "p90": 97205.9}),
        current=Distribution(rows=2100, mean=44050.1, quantiles={"p10": 22676.0, "p50": 40148.3, "p90": 70215.0}),
        histogram=histogram,
    )
    late = FeatureDrift(
        feature="late_payments", contribution=0.3, psi=0.03,
        reference=Distribution(rows=2000, top={"0": 0.6, "1": 0.3, "2": 0.08}),
        current=Distribution(rows=2100, top={"0": 0.51, "1": 0.34, "2": 0.12}),
        histogram=histogram,
    )
    details = DriftDetails(available=True, source="local", drift_coefficient=0.585, threshold=0.3, features=[late, income])

    text = drift_markdown(details, "credit")
    income_row, late_row = drift_table(text)
    assert "threshold" not in income_row and text.count("0.300") == 1  # once, in the paragraph above the table
    assert "Dataset drift coefficient **0.585** vs threshold **0.300** (the dataset's threshold, not a feature's)" in text
    assert income_row["reference"] == "mean 59,928 · p10 30,945 · p50 53,426 · p90 97,206"
    assert income_row["current"] == "mean 44,050 · p10 22,676 · p50 40,148 · p90 70,215"
    assert late_row["reference"] == "0: 60% · 1: 30% · 2: 8%" and late_row["current"] == "0: 51% · 1: 34% · 2: 12%"
    images = [t for t in tokens(text) if t.type == "image"]
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in links(text))
    assert [t.content for t in images] == ["histogram 1", "histogram 2"]  # alt text of our own words
    missing = drift_markdown(details.model_copy(update={"features": [FeatureDrift(feature="x", contribution=1.0)]}), "m")
    assert drift_table(missing)[0]["histogram"] == "not recorded" and links(missing) == []


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
    monkeypatch.setattr(report, "create_markdown_artifact", lambda markdown, key, description: made.setdefault(key, (markdown,)) and ("decision-markdown",))
    monkeypatch.setattr(report, "emit_event", lambda *a, **k: None)
    monkeypatch.setattr(report, "get_run_logger", lambda: logging.getLogger("test"))
    decision = Decision(retrain=True, checks=[Check(rule="drift", passed=True, detail="signal 'a|b' breached: x")])
    card = report.report_decision.fn(breach(), DriftDetails(available=False, source="unavailable"), decision, "credit")
    assert card == ("decision-markdown",)  # the card's id, for rewriting it later
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


def test_the_training_report_says_the_algorithm_the_rows_the_holdout_and_where_the_data_lives() -> None:
    trained = training({"roc_auc": 0.91}).model_copy(update={
        "algorithm": "HistGradientBoostingClassifier", "rows_train": 3075, "rows_test": 1025, "rows_reference": 2000,
        "rows_window": 2100, "data_location": "/data/reference.csv + /data/increments/copy-1",
    })
    assert training_description(trained, version(3, {})) == (
        "HistGradientBoostingClassifier on 4,100 rows (2,000 reference + 2,100 window), 1,025 held out for the metrics; "
        "training data: /data/reference.csv + /data/increments/copy-1. Metrics of job train-1 vs champion v3"
    )
    assert training_description(training({}), None) == (  # a pipeline that reports less (Azure): said, not guessed
        "algorithm not reported on 100 rows, 25 held out for the metrics; training data: not reported. "
        "Metrics of job train-1 (no champion yet)"
    )


def test_the_copy_report_puts_the_landing_first_and_gives_bytes_units() -> None:
    copy = CopyResult(
        run_id="copy-1", status="Succeeded", rows_read=2100, rows_copied=2100, data_read=12_345_678, data_written=999,
        files_read=7, files_written=7, copy_duration=0.0123, throughput=980_000.4, output_uri="/store/increments/copy-1",
        source_uri="/landing/credit",
    )
    row = copy_row(copy)
    assert list(row)[:2] == ["landing", "copied_to"]
    assert row["landing"] == "/landing/credit" and row["copied_to"] == "/store/increments/copy-1"
    assert (row["data_read"], row["data_written"]) == ("12.3 MB", "999 B")
    assert (row["duration"], row["throughput"]) == ("0.0123 s", "980,000 KB/s")
    assert copy_description(copy) == "Copy run copy-1: 2,100 rows, 999 B from /landing/credit to /store/increments/copy-1"
    binary = copy.model_copy(update={"rows_copied": None, "source_uri": None})
    assert copy_row(binary)["landing"] == "not reported"
    assert copy_description(binary).startswith("Copy run copy-1: rows not reported, 999 B from (landing not reported) to")


def test_the_model_report_shows_a_local_folder_as_text_and_keeps_portal_links() -> None:
    """Issue 15 item 8: a file:// link does not open from the Prefect UI, so the folder is shown as its path."""
    model = version(4, {"roc_auc": 0.94})
    folder = Link(label="credit v4 in the local registry", url="file:///state/registry/credit/4")
    text = model_markdown(model, [folder])
    assert "- credit v4 in the local registry: /state/registry/credit/4" in text.splitlines()
    assert links(text) == []
    portal = Link(label="Azure ML model credit:4", url="https://ml.azure.com/model/credit:4/details?wsid=w")
    assert links(model_markdown(model, [portal])) == [portal.url]


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
