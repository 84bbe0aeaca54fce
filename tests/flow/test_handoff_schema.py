"""The receiver's run creation skips Prefect's parameter-schema check for its own runs only; the deployment, as
prefect.yaml declares it, keeps enforcing the schema for everyone else (the Run form, ``prefect deployment run``).
Against a real Prefect server (the package's ``prefect_test_harness``)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx

from drift_retrain.config import load_settings
from drift_retrain.devstack.runner import load_deployments
from drift_retrain.intake.handoff import flow_run_body
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.names import RETRAIN_DEPLOYMENT_NAME, RETRAIN_FLOW
from drift_retrain.testing import dataset_drift

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


def _receivers_body() -> dict:
    signal = to_drift_signal(dataset_drift(f"credit-default-drift_{uuid.uuid4().hex}"))
    return flow_run_body(signal, load_settings().targets[0])


def test_receiver_runs_of_the_deployment_as_declared_are_created_and_the_run_form_is_still_checked(
    prefect_api: httpx.Client,
) -> None:
    (deployment,) = [d for d in load_deployments(PREFECT_YAML) if d.name == RETRAIN_DEPLOYMENT_NAME]
    deployment_id = deployment.apply()
    stored = prefect_api.get(f"/deployments/{deployment_id}").raise_for_status().json()
    assert stored["enforce_parameter_schema"] is True
    assert "DriftSignal" in json.dumps(stored["parameter_openapi_schema"])

    body = _receivers_body()
    created = prefect_api.post(f"/deployments/{deployment_id}/create_flow_run", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["parameters"] == body["parameters"]

    # What the Run form sends (no per-run override): refused by the deployment's schema.
    refused = prefect_api.post(
        f"/deployments/{deployment_id}/create_flow_run", json={"parameters": {"force": "yes please"}}
    )
    assert refused.status_code == 409, refused.text
    assert "force" in refused.json()["detail"]


def test_prefect_skips_the_schema_check_for_the_receivers_runs_only(prefect_api: httpx.Client) -> None:
    """A deployment whose enforced schema refuses the receiver's parameters: the receiver's single and bulk
    creates still make their runs, the very same parameters sent without the override are refused."""
    flow_id = prefect_api.post("/flows/", json={"name": RETRAIN_FLOW}).raise_for_status().json()["id"]
    strict = {"type": "object", "properties": {"signal": {"type": "integer"}}, "required": ["signal"]}
    deployment_id = (
        prefect_api.post(
            "/deployments/",
            json={
                "name": f"schema-probe-{uuid.uuid4().hex[:8]}",
                "flow_id": flow_id,
                "enforce_parameter_schema": True,
                "parameter_openapi_schema": strict,
            },
        )
        .raise_for_status()
        .json()["id"]
    )

    single = prefect_api.post(f"/deployments/{deployment_id}/create_flow_run", json=_receivers_body())
    assert single.status_code == 201, single.text
    # An item can fail on a busy machine (SQLite locked); the receiver tries a failed bulk again with the same
    # bodies (their idempotency keys make that safe), so this does too. A schema refusal fails every try.
    bodies = [_receivers_body(), _receivers_body()]
    for _ in range(5):
        results = prefect_api.post(f"/deployments/{deployment_id}/create_flow_run/bulk", json=bodies)
        results = results.raise_for_status().json()["results"]
        if all(r["status"] != "FAILED" for r in results):
            break
        time.sleep(1)
    assert [r["status"] for r in results] == ["CREATED", "CREATED"], results

    checked = {k: v for k, v in _receivers_body().items() if k != "enforce_parameter_schema"}
    refused = prefect_api.post(f"/deployments/{deployment_id}/create_flow_run", json=checked)
    assert refused.status_code == 409, refused.text
