"""Step 6: report in the Prefect UI: artifacts keyed per model (so they are found across runs) and
events other automations can trigger on."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from drift_retrain.breaches import ALERTS_BELOW, is_breach
from drift_retrain.config import TargetConfig
from drift_retrain.markdown import escape_md
from drift_retrain.names import (
    CANCELLED,
    COPY,
    DECISION,
    DECISION_MADE,
    DRIFT,
    ID,
    MODEL,
    MODEL_REGISTERED,
    NAME,
    RETRAIN_FAILED,
    TRAINING,
    artifact_key,
    flow_run_related,
    flow_run_resource_id,
    flow_run_tags,
    model_resource,
    signal_related,
    started_by,
)
from drift_retrain.portal import Link
from drift_retrain.results import OVERALL, Check, CopyResult, Decision, DriftDetails, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal, SignalKind

TOP_FEATURES = 10  # rows of the drift table
MAX_BREACH_ROWS = 100  # rows of a v2 breach's drift table


@task(name="label-run", cache_policy=NO_CACHE)
def label_run(flow_run_id: str, tags: list[str], target: TargetConfig, signal: DriftSignal) -> None:
    """A run started from the Run form carries only the deployment's tags: add the ones the receiver and
    the sweep set (``via:manual``), so every retrain is found by model, target, workspace and kind."""
    wanted = flow_run_tags(target, signal, started_by(tags))
    missing = [tag for tag in wanted if tag not in tags]
    if missing:
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(flow_run_id), tags=[*tags, *missing])


@task(name="report-decision", cache_policy=NO_CACHE)
def report_decision(
    signal: DriftSignal, details: DriftDetails, decision: Decision, model_name: str, announce: bool = True
) -> None:
    """The decision with every rule, pass or fail, and the drift table behind it. ``announce=False`` only
    rewrites the decision artifact with the rules checked since (the copy, the gate): the decision itself
    did not change, so the drift table stays and automations do not hear it twice."""
    get_run_logger().info("decision for %s on drift run %s: %s", model_name, signal.run_id, decision.summary)
    markdown = decision_markdown(signal, details, decision, model_name)
    create_markdown_artifact(markdown, key=artifact_key(DECISION, model_name), description=decision.summary)
    if not announce:
        return
    if signal.breached:  # a v2 breach states its rows itself: shown whether or not details could be had
        create_table_artifact(
            breach_rows(signal, details),
            key=artifact_key(DRIFT, model_name),
            description=breach_description(signal, details),
        )
    elif details.features:
        create_table_artifact(
            drift_rows(details), key=artifact_key(DRIFT, model_name), description=drift_description(details)
        )
    emit_event(
        DECISION_MADE,
        resource=model_resource(model_name),
        related=signal_related(signal),
        payload={"retrain": decision.retrain, "summary": decision.summary, "signal": signal.identity},
    )


def decision_markdown(signal: DriftSignal, details: DriftDetails, decision: Decision, model_name: str) -> str:
    """The decision artifact: the verdict, the drift run it is about, one table row per rule, the details' source."""
    verdict = "**Retrain**" if decision.retrain else "**Skip**"
    window = (
        f" over [{signal.window_start:%Y-%m-%d %H:%M}, {signal.window_end:%Y-%m-%d %H:%M}) UTC"
        if signal.window_start and signal.window_end
        else ""
    )
    lines = [
        f"# Decision for `{model_name}`: {verdict}",
        "",
        (
            f"Drift run `{signal.run_id}` from monitor `{signal.monitor}` in workspace `{signal.workspace_name}`"
            f" ({signal.kind.value}){window}."
        ),
        "",
        "| rule | passed | detail |",
        "|---|---|---|",
        *[f"| {c.rule} | {'yes' if c.passed else 'no'} | {_detail(signal, c)} |" for c in decision.checks],
        "",
        f"Drift details: {details.source}.",
        "",
        f"Signal: `{signal.identity}`",
    ]
    return "\n".join(lines)


def _detail(signal: DriftSignal, check: Check) -> str:
    """A v2 breach's drift detail quotes the breach tag (signal and group names: event text), so it is escaped;
    the other details are the policy's own words."""
    return (
        escape_md(check.detail) if check.rule == "drift" and signal.kind is SignalKind.MODEL_MONITOR else check.detail
    )


def drift_description(details: DriftDetails) -> str:
    return (
        f"Top {min(len(details.features), TOP_FEATURES)} of {len(details.features)} features by drift; "
        f"dataset drift coefficient {_number(details.drift_coefficient)} vs threshold {_number(details.threshold)}"
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def drift_rows(details: DriftDetails) -> list[dict[str, Any]]:
    """One row per top feature: its share of the drift, every statistic the source reported, and the
    dataset-level threshold the coefficient was held against."""
    rows = []
    for rank, feature in enumerate(details.top_features(TOP_FEATURES), start=1):
        statistics = {
            **feature.model_dump(exclude={"feature", "metrics", "thresholds"}, exclude_none=True),
            **feature.metrics,
        }
        readable = {name: float(f"{value:.4g}") for name, value in statistics.items()}
        rows.append({"rank": rank, "feature": feature.feature, **readable, "threshold": details.threshold})
    return rows


def breach_rows(signal: DriftSignal, details: DriftDetails) -> list[dict[str, str]]:
    """One row per (feature or group, metric) of a v2 breach: first the breached rows as its tag states them
    (always there, even without workspace access), then every other metric and threshold the monitor's metric
    runs add when the details could be read. Every cell is event or workspace text, so every cell is escaped."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for row in signal.breached[:MAX_BREACH_ROWS]:
        rows[(row.group or "", row.metric)] = _breach_row(row.group or "", row.metric, row.value, row.threshold, True)
    for feature in details.features if details.available else []:
        group = "" if feature.feature == OVERALL else feature.feature
        for metric, value in sorted(feature.metrics.items()):
            if len(rows) >= MAX_BREACH_ROWS or (group, metric) in rows:
                continue
            threshold = feature.thresholds.get(metric)
            breached = None if threshold is None else is_breach(metric, value, threshold)
            rows[(group, metric)] = _breach_row(group, metric, value, threshold, breached)
    return list(rows.values())


def _breach_row(
    group: str, metric: str, value: float, threshold: float | None, breached: bool | None
) -> dict[str, str]:
    return {
        "feature/group": escape_md(group),
        "metric": escape_md(metric),
        "value": escape_md(f"{value:.4g}"),
        "threshold": "n/a" if threshold is None else escape_md(f"{threshold:.4g}"),
        "breached": "n/a" if breached is None else ("yes" if breached else "no"),
        "direction": "alerts below the threshold" if metric in ALERTS_BELOW else "alerts above the threshold",
    }


def breach_description(signal: DriftSignal, details: DriftDetails) -> str:
    shown = min(len(signal.breached), MAX_BREACH_ROWS)
    name = escape_md(signal.signal_name or "(unreadable name)")
    rows = f"{len(signal.breached)} breached row(s)" + (
        f", the first {shown} shown" if shown < len(signal.breached) else ""
    )
    unread = f"; unreadable: {escape_md(signal.breach_unparsed)}" if signal.breach_unparsed else ""
    return f"Signal {name} of monitor {escape_md(signal.monitor)}: {rows}{unread}. Drift details: {escape_md(details.source)}"


@task(name="report-copy", cache_policy=NO_CACHE)
def report_copy(copy: CopyResult, model_name: str) -> None:
    create_table_artifact(
        [copy.model_dump()], key=artifact_key(COPY, model_name), description=f"Copy run {copy.run_id}"
    )


@task(name="report-training", cache_policy=NO_CACHE)
def report_training(training: TrainingResult, model_name: str, champion: ModelVersion | None) -> None:
    """The new model's metrics beside the current champion's, so the gate's comparison is visible."""
    versus = f" vs champion v{champion.version}" if champion else " (no champion yet)"
    create_table_artifact(
        training_rows(training, champion),
        key=artifact_key(TRAINING, model_name),
        description=f"Metrics of job {training.job_id}{versus}",
    )


def training_rows(training: TrainingResult, champion: ModelVersion | None) -> list[dict[str, Any]]:
    """One row per metric the job reported: the challenger's value and the champion's (None without one)."""
    return [
        {
            "metric": name,
            "challenger": value,
            "champion": champion.metrics.get(name) if champion else None,
            "champion_version": champion.version if champion else None,
        }
        for name, value in training.metrics.items()
    ]


@task(name="report-model", cache_policy=NO_CACHE)
def report_model(signal: DriftSignal, model: ModelVersion, links: list[Link]) -> None:
    """The registered version, where to find it (portal deep links or the registry folder), its lineage."""
    get_run_logger().info("%s v%s %s from drift run %s", model.name, model.version, _registration(model), signal.run_id)
    create_markdown_artifact(
        model_markdown(model, links), key=artifact_key(MODEL, model.name), description=f"{model.name} v{model.version}"
    )
    emit_event(
        MODEL_REGISTERED,
        resource=model_resource(model.name),
        related=signal_related(signal),
        payload={
            "version": model.version,
            "uri": model.uri,
            "metrics": model.metrics,
            "signal": signal.identity,
            "links": {link.label: link.url for link in links},
        },
    )


def _registration(model: ModelVersion) -> str:
    return "already registered (reused)" if model.already_registered else "registered"


def model_markdown(model: ModelVersion, links: list[Link]) -> str:
    """The model artifact: the version, its links, location, metrics and lineage tags (the decision's
    checks are left out: the decision artifact shows them as a table)."""
    lines = [
        f"# `{model.name}` v{model.version} {_registration(model)}",
        "",
        *[f"- [{link.label}]({link.url})" for link in links],
        f"- location: `{model.uri}`",
        f"- metrics: {', '.join(f'{k} = {v}' for k, v in model.metrics.items())}",
        "",
        "| lineage tag | value |",
        "|---|---|",
        *[f"| {k} | {v[:200]} |" for k, v in sorted(model.tags.items()) if k != "decision.checks"],
    ]
    return "\n".join(lines)


def report_failure(model_name: str | None, signal: DriftSignal | None, flow_run_id: str, error: str) -> None:
    """``drift-retrain.retrain.failed``: the flow failed or crashed; ``error`` is its state's message.
    Called from the flow's failure hook, so a signal that could not even be read is reported too."""
    emit_event(RETRAIN_FAILED, **failure_event(model_name, signal, flow_run_id, error))


def failure_event(model_name: str | None, signal: DriftSignal | None, flow_run_id: str, error: str) -> dict[str, Any]:
    """The failed event's resource (the model, or the flow run when not even the model is known), related
    resources (the signal's, the flow run) and payload."""
    resource = (
        model_resource(model_name) if model_name else {ID: flow_run_resource_id(flow_run_id), NAME: "unknown model"}
    )
    related = signal_related(signal) if signal else []
    if model_name:
        related.append(flow_run_related(flow_run_id))
    payload = {"error": error, "signal": signal.identity if signal else None, "flow_run_id": flow_run_id}
    return {"resource": resource, "related": related, "payload": payload}


def report_cancelled(step: str, model_name: str, run_id: str, why: str, outcome: str) -> None:
    """Called (not a task: the flow is being torn down) when an interrupted wait cancelled its external run."""
    get_run_logger().warning("%s run %s of %s: %s (%s)", step, run_id, model_name, outcome, why)
    markdown = cancelled_markdown(step, model_name, run_id, why, outcome)
    create_markdown_artifact(
        markdown, key=artifact_key(CANCELLED, model_name), description=f"{step} run {run_id}: {outcome}"
    )


def cancelled_markdown(step: str, model_name: str, run_id: str, why: str, outcome: str) -> str:
    lines = [
        f"# `{model_name}`: {step} run cancelled",
        "",
        "| step | run | interrupted by | cancellation |",
        "|---|---|---|---|",
        f"| {step} | `{run_id}` | {why or 'interruption'} | {outcome} |",
    ]
    return "\n".join(lines)
