"""The one-machine runner: serves every deployment declared in prefect.yaml from this process.

    python -m deployments.runner [path/to/prefect.yaml]      (or: drift-retrain runner)

On one machine this replaces a work pool and worker (``prefect deploy`` + ``prefect worker start``),
which is how prefect.yaml is used to scale out. Pick-up latency is PREFECT_RUNNER_POLL_FREQUENCY; at most
PREFECT_RUNNER_PROCESS_LIMIT (5) flow runs execute at once, the rest wait Scheduled.
Schedules and event triggers are applied as ``prefect deploy`` applies them: a deployment's triggers
become automations owned by the deployment, replaced each time the runner starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentTriggerTypes
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Interval
from prefect.settings import get_current_settings
from pydantic import TypeAdapter, ValidationError

from drift_retrain.concurrency import ensure_limits
from drift_retrain.config import load_settings

# prefect.yaml keys that are not to_deployment() options: work-pool settings, or handled here.
_NOT_OPTIONS = {"work_pool", "build", "push", "pull", "entrypoint", "name", "schedules", "triggers"}
_TRIGGER = TypeAdapter(DeploymentTriggerTypes)


def load_deployments(path: Path) -> list[RunnerDeployment]:
    """Turn prefect.yaml's deployments into runner deployments, schedules and parameters included."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    deployments = []
    for spec in document.get("deployments") or []:
        flow: Flow[..., Any] = load_flow_from_entrypoint(str(path.parent / spec["entrypoint"]))
        options: dict[str, Any] = {k: v for k, v in spec.items() if k not in _NOT_OPTIONS}
        if spec.get("schedules"):
            options["schedules"] = [_schedule(s) for s in spec["schedules"]]
        if spec.get("triggers"):
            options["triggers"] = [_trigger(spec["name"], i, t) for i, t in enumerate(spec["triggers"], start=1)]
        deployment = flow.to_deployment(name=spec["name"], **options)
        if not isinstance(deployment, RunnerDeployment):  # Prefect's async variant, chosen inside an event loop
            deployment.close()
            raise RuntimeError("load_deployments() must be called outside an event loop")
        deployments.append(deployment)
    if not deployments:
        raise SystemExit(f"{path}: no deployments declared")
    return deployments


def _schedule(spec: dict[str, Any]) -> Any:
    if "interval" in spec:  # seconds, as `prefect deploy` reads an interval schedule
        return Interval(
            float(spec["interval"]),
            timezone=spec.get("timezone", "UTC"),
            parameters=spec.get("parameters") or {},
            active=spec.get("active", True),
        )
    if "cron" not in spec:
        raise SystemExit(
            f"prefect.yaml: only cron and interval schedules are supported by the local runner, got {spec}"
        )
    return Cron(
        spec["cron"],
        timezone=spec.get("timezone", "UTC"),
        parameters=spec.get("parameters") or {},
        active=spec.get("active", True),
    )


def _trigger(deployment: str, number: int, spec: dict[str, Any]) -> Any:
    """A deployment trigger as ``prefect deploy`` reads it (named ``<deployment>__automation_<n>`` unless named)."""
    try:
        return _TRIGGER.validate_python({"name": f"{deployment}__automation_{number}", **spec})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"prefect.yaml: deployment '{deployment}', trigger {number}: {problems}") from None


def run(path: Path = Path("prefect.yaml")) -> None:
    """Create every model's retrain limit (the flow refuses to run without it), then serve until stopped;
    on SIGTERM the runner pauses the schedules so no sweep piles up meanwhile."""
    deployments = load_deployments(path.resolve())
    ensure_limits(load_settings())
    # serve() alone runs every scheduled run at once (no limit); a storm would start a process per signal.
    serve(*deployments, limit=get_current_settings().runner.process_limit)
