"""The follow-up deployment of prefect.yaml's example automation: runs when a model version is registered.

It only says what it would deploy (and records it as an artifact); replace its body with your own
promotion, notification or deployment step, or wire other automations to the same event in the UI.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact


@flow(
    name="promote",
    flow_run_name="promote-{model}-v{version}",  # says which version, in every run list
    description="Follow-up of drift-retrain.model.registered: say which model version would be deployed.",
)
def promote(model: str, version: int, uri: str = "", signal: str = "") -> str:
    """Args:
    model: Name of the registered model (the event's resource name).
    version: The version just registered.
    uri: Where the model version lives.
    signal: Identity of the drift signal that retrained it.
    """
    plan = f"would deploy {model} v{version} from {uri or 'the registry'}"
    get_run_logger().info("%s (retrained for signal %s)", plan, signal or "unknown")
    key = "".join(c if c.isalnum() else "-" for c in f"promote-{model}".lower())
    create_markdown_artifact(f"# Promotion of `{model}` v{version}\n\n- {plan}\n- signal: `{signal}`", key=key, description=plan)
    return plan
