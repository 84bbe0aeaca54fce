"""The follow-up deployment of prefect.yaml's example automation: runs when a model version is registered
that passed the champion/challenger gate.

It only says what it would deploy (and records it as an artifact); replace its body with your own
promotion, notification or deployment step, or wire other automations to the same event in the UI.
It refuses (the run fails, saying why) a version the event does not say passed the gate: the automation's
trigger matches only those already, and a run started by hand or by another automation is held to the same rule.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from drift_retrain.markdown import code_name, escape_md
from drift_retrain.names import (
    GATE_PASSED,
    MODEL_REGISTERED,
    PROMOTE_FLOW,
    PROMOTE_RUN_NAME,
    PROMOTION,
    artifact_key,
    label,
)
from drift_retrain.text import one_line


@flow(
    name=PROMOTE_FLOW,
    flow_run_name=PROMOTE_RUN_NAME,  # says which version, in every run list
    description=f"Follow-up of {MODEL_REGISTERED}: say which model version would be deployed.",
)
def promote(model: str, version: int, uri: str = "", signal: str = "", gate: str = "") -> State[str]:
    """Args:
    model: Name of the registered model (the event's resource name).
    version: The version just registered.
    uri: Where the model version lives.
    signal: Identity of the drift signal that retrained it.
    gate: The champion/challenger gate's verdict on it (the event's "gate"): only "passed" is promoted.
    """
    if gate != GATE_PASSED:
        why = f"refused: {label(model)} v{version} did not pass the champion/challenger gate (gate: {label(gate or 'unknown', 20)})"
        get_run_logger().warning("%s", why)
        return Failed(message=why)
    plan = f"would deploy {model} v{version} from {uri or 'the registry'}"
    get_run_logger().info("%s (retrained for signal %s)", one_line(plan), one_line(signal or "unknown"))
    create_markdown_artifact(
        promotion_markdown(model, version, plan, signal),
        key=artifact_key(PROMOTION, model),
        description=escape_md(plan),
    )
    return Completed(message=one_line(plan, 200), data=plan)


def promotion_markdown(model: str, version: int, plan: str, signal: str) -> str:
    """The plan and the signal's identity (a drift run id: event text) as escaped text."""
    return f"# Promotion of {code_name(model)} v{version}\n\n- {escape_md(plan)}\n- signal: {escape_md(signal)}"
