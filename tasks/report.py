"""Step 6: report in the Prefect UI: artifacts keyed per model (so they are found across runs) and
events other automations can trigger on."""

from __future__ import annotations

import re

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from drift_retrain.results import CopyResult, Decision, DriftDetails, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal


def _key(kind: str, model_name: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{kind}-{model_name}".lower()).strip("-")


def _model_resource(model_name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"drift-retrain.model.{model_name}", "prefect.resource.name": model_name}


def _signal_related(signal: DriftSignal) -> list[dict[str, str]]:
    return [
        {
            "prefect.resource.id": f"azureml.drift-run.{signal.run_id}",
            "prefect.resource.role": "drift-run",
            "prefect.resource.name": signal.run_id,
        },
        {
            "prefect.resource.id": f"azureml.monitor.{signal.monitor}",
            "prefect.resource.role": "monitor",
            "prefect.resource.name": signal.monitor,
        },
    ]


@task(name="report-decision", cache_policy=NO_CACHE)
def report_decision(signal: DriftSignal, details: DriftDetails, decision: Decision, model_name: str) -> None:
    verdict = "**Retrain**" if decision.retrain else "**Skip**"
    lines = [
        f"# Decision for `{model_name}`: {verdict}",
        "",
        f"Drift run `{signal.run_id}` from monitor `{signal.monitor}` in workspace `{signal.workspace_name}`"
        f" ({signal.kind.value}).",
        "",
        "| rule | passed | detail |",
        "|---|---|---|",
        *[f"| {c.rule} | {'yes' if c.passed else 'no'} | {c.detail} |" for c in decision.checks],
        "",
        f"Drift details: {details.source}.",
    ]
    get_run_logger().info("decision for %s on drift run %s: %s", model_name, signal.run_id, decision.summary)
    create_markdown_artifact("\n".join(lines), key=_key("decision", model_name), description=decision.summary)
    if details.features:
        create_table_artifact(
            [f.model_dump() for f in details.top_features(10)],
            key=_key("drift", model_name),
            description=f"Per-feature drift, coefficient {details.drift_coefficient}",
        )
    emit_event(
        "drift-retrain.decision.made",
        resource=_model_resource(model_name),
        related=_signal_related(signal),
        payload={"retrain": decision.retrain, "summary": decision.summary, "signal": signal.identity},
    )


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
def report_model(signal: DriftSignal, model: ModelVersion) -> None:
    state = "already registered (reused)" if model.already_registered else "registered"
    lines = [
        f"# `{model.name}` v{model.version} {state}",
        "",
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
        "drift-retrain.model.registered",
        resource=_model_resource(model.name),
        related=_signal_related(signal),
        payload={"version": model.version, "uri": model.uri, "metrics": model.metrics, "signal": signal.identity},
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
