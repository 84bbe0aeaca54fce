"""Step 6: report in the Prefect UI: artifacts keyed per model (so they are found across runs) and
events other automations can trigger on."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from prefect import get_client, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from drift_retrain.config import TargetConfig
from drift_retrain.lineage import flow_run_tags, started_by
from drift_retrain.portal import Link
from drift_retrain.results import CopyResult, Decision, DriftDetails, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal, SignalKind

DECISION_MADE = "drift-retrain.decision.made"
MODEL_REGISTERED = "drift-retrain.model.registered"
RETRAIN_FAILED = "drift-retrain.retrain.failed"
TOP_FEATURES = 10  # rows of the drift table


def _key(kind: str, model_name: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{model_name}".lower()).strip("-")


def model_resource(model_name: str) -> dict[str, str]:
    """The primary resource of every event: automations match ``drift-retrain.model.<name>``."""
    return {"prefect.resource.id": f"drift-retrain.model.{model_name}", "prefect.resource.name": model_name}


def signal_related(signal: DriftSignal) -> list[dict[str, str]]:
    """The signal (its identity), and the Azure ML drift run and monitor behind it, as related resources."""
    related = [
        {
            "prefect.resource.id": f"drift-retrain.signal.{signal.digest}",
            "prefect.resource.role": "signal",
            "prefect.resource.name": signal.identity,
        },
        {
            "prefect.resource.id": f"azureml.monitor.{signal.monitor}",
            "prefect.resource.role": "monitor",
            "prefect.resource.name": signal.monitor,
        },
    ]
    if signal.kind is not SignalKind.MANUAL:
        related.append(
            {
                "prefect.resource.id": f"azureml.drift-run.{signal.run_id}",
                "prefect.resource.role": "drift-run",
                "prefect.resource.name": signal.run_id,
            }
        )
    return related


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
        *[f"| {c.rule} | {'yes' if c.passed else 'no'} | {c.detail} |" for c in decision.checks],
        "",
        f"Drift details: {details.source}.",
        "",
        f"Signal: `{signal.identity}`",
    ]
    get_run_logger().info("decision for %s on drift run %s: %s", model_name, signal.run_id, decision.summary)
    create_markdown_artifact("\n".join(lines), key=_key("decision", model_name), description=decision.summary)
    if not announce:
        return
    if details.features:
        create_table_artifact(
            drift_rows(details),
            key=_key("drift", model_name),
            description=f"Top {min(len(details.features), TOP_FEATURES)} of {len(details.features)} features by drift; "
            f"dataset drift coefficient {_number(details.drift_coefficient)} vs threshold {_number(details.threshold)}",
        )
    emit_event(
        DECISION_MADE,
        resource=model_resource(model_name),
        related=signal_related(signal),
        payload={"retrain": decision.retrain, "summary": decision.summary, "signal": signal.identity},
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def drift_rows(details: DriftDetails) -> list[dict[str, Any]]:
    """One row per top feature: its share of the drift, every statistic the source reported, and the
    dataset-level threshold the coefficient was held against."""
    rows = []
    for rank, feature in enumerate(details.top_features(TOP_FEATURES), start=1):
        statistics = {**feature.model_dump(exclude={"feature", "metrics"}, exclude_none=True), **feature.metrics}
        readable = {name: float(f"{value:.4g}") for name, value in statistics.items()}
        rows.append({"rank": rank, "feature": feature.feature, **readable, "threshold": details.threshold})
    return rows


@task(name="report-copy", cache_policy=NO_CACHE)
def report_copy(copy: CopyResult, model_name: str) -> None:
    create_table_artifact([copy.model_dump()], key=_key("copy", model_name), description=f"Copy run {copy.run_id}")


@task(name="report-training", cache_policy=NO_CACHE)
def report_training(training: TrainingResult, model_name: str, champion: ModelVersion | None) -> None:
    """The new model's metrics beside the current champion's, so the gate's comparison is visible."""
    rows = [
        {
            "metric": name,
            "challenger": value,
            "champion": champion.metrics.get(name) if champion else None,
            "champion_version": champion.version if champion else None,
        }
        for name, value in training.metrics.items()
    ]
    versus = f" vs champion v{champion.version}" if champion else " (no champion yet)"
    create_table_artifact(rows, key=_key("training", model_name), description=f"Metrics of job {training.job_id}{versus}")


@task(name="report-model", cache_policy=NO_CACHE)
def report_model(signal: DriftSignal, model: ModelVersion, links: list[Link]) -> None:
    """The registered version, where to find it (portal deep links or the registry folder), its lineage."""
    state = "already registered (reused)" if model.already_registered else "registered"
    lines = [
        f"# `{model.name}` v{model.version} {state}",
        "",
        *[f"- [{link.label}]({link.url})" for link in links],
        f"- location: `{model.uri}`",
        f"- metrics: {', '.join(f'{k} = {v}' for k, v in model.metrics.items())}",
        "",
        "| lineage tag | value |",
        "|---|---|",
        *[f"| {k} | {v[:200]} |" for k, v in sorted(model.tags.items()) if k != "decision.checks"],
    ]
    get_run_logger().info("%s v%s %s from drift run %s", model.name, model.version, state, signal.run_id)
    create_markdown_artifact("\n".join(lines), key=_key("model", model.name), description=f"{model.name} v{model.version}")
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


def report_failure(model_name: str | None, signal: DriftSignal | None, flow_run_id: str, error: str) -> None:
    """``drift-retrain.retrain.failed``: the flow failed or crashed; ``error`` is its state's message.
    Called from the flow's failure hook, so a signal that could not even be read is reported too."""
    resource = (
        model_resource(model_name)
        if model_name
        else {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.name": "unknown model"}
    )
    related = signal_related(signal) if signal else []
    if model_name:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run"})
    emit_event(
        RETRAIN_FAILED,
        resource=resource,
        related=related,
        payload={"error": error, "signal": signal.identity if signal else None, "flow_run_id": flow_run_id},
    )


def report_cancelled(step: str, model_name: str, run_id: str, why: str, outcome: str) -> None:
    """Called (not a task: the flow is being torn down) when an interrupted wait cancelled its external run."""
    lines = [
        f"# `{model_name}`: {step} run cancelled",
        "",
        "| step | run | interrupted by | cancellation |",
        "|---|---|---|---|",
        f"| {step} | `{run_id}` | {why or 'interruption'} | {outcome} |",
    ]
    get_run_logger().warning("%s run %s of %s: %s (%s)", step, run_id, model_name, outcome, why)
    create_markdown_artifact("\n".join(lines), key=_key("cancelled", model_name), description=f"{step} run {run_id}: {outcome}")
