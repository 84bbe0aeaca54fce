"""A real stack for end-to-end tests: Prefect server on SQLite, the runner, the webhook receiver."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterator

import httpx
import pytest

from drift_retrain.devstack import demo_data
from drift_retrain.backends.local.monitor import drift_event, run_monitor
from drift_retrain.config import Settings, load_settings
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.fake_azure import CLIENT_ID, CLIENT_SECRET, TENANT, FakeAzure
from drift_retrain.devstack.stack import Stack, free_port
from drift_retrain.testing import DEMO_WORKSPACE, RetryWhileBusy, demo_data_targets, local_target, write_config

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Api:
    """Just enough of Prefect's REST API to assert on what the server recorded."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60, transport=RetryWhileBusy())

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/flow_runs/{flow_run_id}")
        response.raise_for_status()
        return response.json()

    def wait(self, flow_run_id: str, timeout: float = 420) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(flow_run_id)
            if run["state"] and run["state"]["type"] in TERMINAL:
                return run
            time.sleep(0.5)
        raise AssertionError(f"flow run {flow_run_id} not finished after {timeout} s: {run['state']}")

    def flow_runs(self, deployment: str = "drift-to-retrain/drift-to-retrain") -> list[dict[str, Any]]:
        """Every run of the deployment (all pages: the storm alone makes more than one answer holds)."""
        deployment_id = self.http.get(f"/deployments/name/{deployment}").json()["id"]
        return self._all_runs({"deployments": {"id": {"any_": [deployment_id]}}})

    def flow_runs_like(self, prefix: str) -> list[dict[str, Any]]:
        """Every flow run whose name starts with ``prefix`` (all pages)."""
        return [r for r in self._all_runs({"flow_runs": {"name": {"like_": prefix}}}) if r["name"].startswith(prefix)]

    def _all_runs(self, query: dict[str, Any], page: int = 200) -> list[dict[str, Any]]:
        """Oldest first, so runs created while the pages are read land on the last page, not between them."""
        found: list[dict[str, Any]] = []
        while True:
            response = self.http.post("/flow_runs/filter", json={**query, "sort": "EXPECTED_START_TIME_ASC", "limit": page, "offset": len(found)})
            response.raise_for_status()
            found += response.json()
            if len(response.json()) < page:
                return found

    def run_deployment(self, deployment: str, parameters: dict[str, Any] | None = None) -> str:
        deployment_id = self.http.get(f"/deployments/name/{deployment}").json()["id"]
        response = self.http.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters or {}})
        response.raise_for_status()
        return response.json()["id"]

    def artifacts(self, flow_run_id: str) -> list[dict[str, Any]]:
        response = self.http.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
        response.raise_for_status()
        return response.json()

    def latest_artifact(self, flow_run_id: str, key: str) -> dict[str, Any]:
        """A keyed artifact can be written more than once in a run (a decision revised after the copy)."""
        versions = [a for a in self.artifacts(flow_run_id) if a["key"] == key]
        assert versions, f"no artifact {key} in flow run {flow_run_id}"
        return max(versions, key=lambda a: a["created"])

    def sweep_rows(self, **parameters: Any) -> dict[str, dict[str, str]]:
        """Run the sweep deployment (last hour unless told) and return its table, row by flow run name."""
        sweep = self.wait(self.run_deployment("sweep/sweep", {"lookback_hours": 1, **parameters}))
        assert sweep["state"]["type"] == "COMPLETED", sweep["state"]
        (table,) = [a for a in self.artifacts(sweep["id"]) if a["key"] == "sweep"]
        return {r["flow_run"]: r for r in json.loads(table["data"])}

    def logs(self, flow_run_id: str, until: str = "", timeout: float = 90) -> list[str]:
        """The run's log lines, oldest first; a run's last lines reach the server in a batch shortly after
        it ends, so wait (up to ``timeout``) until a line contains ``until``."""
        query = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        return self._poll("/logs/filter", query, lambda body: [log["message"] for log in body], timeout,
                          done=lambda lines: any(until in line for line in lines))

    def _poll(self, path: str, query: dict[str, Any], read: Callable[[Any], Any], timeout: float,
              done: Callable[[Any], bool] = bool) -> Any:
        """POST ``query`` until ``done(read(answer))`` or ``timeout``: what a server service stores lags."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.http.post(path, json=query)
            response.raise_for_status()
            found = read(response.json())
            if done(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def events(self, name: str, resource_id: str, signal: str | None = None, timeout: float = 90) -> list[dict[str, Any]]:
        """Events are stored by a server service a few seconds after they arrive: poll for them (for the
        events about ``signal`` when given: another run's event of the same model may be there first)."""
        query = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource_id]}}, "limit": 50}

        def read(body: dict[str, Any]) -> list[dict[str, Any]]:
            return [e for e in body["events"] if signal is None or e["payload"].get("signal") == signal]

        return self._poll("/events/filter", query, read, timeout)


def over_demo_data(name: str, monitor: str, label: str) -> str:
    """A target ``<name>`` (model ``<name>-model``, no cooldown) that copies and trains on the demo's data."""
    return local_target(
        name,
        [monitor],
        landing="credit-default",
        reference="data/training-store/credit-default/reference.csv",
        label=label,
        policy="cooldown_minutes = 0",
    )


# Two more targets: one whose landing folder stays empty, one whose training cannot succeed.
EXTRA_TARGETS = local_target(
    "empty-window",
    ["empty-monitor"],
    model_name="empty-model",
    data="empty",
    reference="data/training-store/credit-default/reference.csv",
    label="defaulted",
    policy="cooldown_minutes = 0, min_rows = 500",
) + over_demo_data("broken", "broken-monitor", label="no-such-column")


# The UI cockpit's own target and local drift monitor (over the demo's data), so its run has a drift
# table and registers a version of its own model whatever the other tests did to credit-default; gated like
# the shipped credit-default, so the promote automation runs for it.
COCKPIT_TARGET = over_demo_data("cockpit", "cockpit-drift", label="defaulted") + f"""
[targets.gate]
metric = "roc_auc"

[[local_monitors]]
name = "cockpit-drift"
workspace = "{DEMO_WORKSPACE}"
reference = "data/training-store/credit-default/reference.csv"
landing = "data/landing/credit-default"
label = "defaulted"
"""

# The crash tests' models, one per crash point, so that the slot a killed worker leaves behind (until its
# lease expires) holds up no other case: they crash side by side, and rerun side by side.
CRASH_STEPS = ["pull-drift-details", "decide", "re-decide-in-slot", "copy-window", "train-model", "register-model"]
CRASH_TARGETS = "".join(
    local_target(
        f"crash-{step}",
        [f"crash-{step}-monitor"],
        model_name=f"crash-{step}",
        data=f"crash-{step}",
        landing="credit-default",
        reference="data/training-store/credit-default/reference.csv",
        label="defaulted",
        policy="cooldown_minutes = 0, min_rows = 100",
    )
    for step in CRASH_STEPS
)

# The storm test's 20 models (tests/e2e/test_storm.py): each takes a v1 monitor and a v2 monitor.
STORM_MODELS = [f"storm-{i:02d}" for i in range(20)]
STORM_TARGETS = demo_data_targets(STORM_MODELS, "cooldown_minutes = 60, min_rows = 100")

# The stack's environment: a killed flow process holds its model's retrain slot until its lease expires
# (60 s, Prefect's minimum) and the server's repossessor frees it (every 15 s by default; every second
# here). Local training runs one thread per flow process: the storm trains 15 models at once on a small
# machine, and OpenMP's spinning threads oversubscribed in 15 processes slow it down by orders of magnitude.
STACK_ENV = {"PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "1", "OMP_NUM_THREADS": "1"}


# A target on the azure backend, pointed at the loopback Azure: the same flow, Azure's wire formats.
AZURE_SECRET_ENV = "DRIFT_RETRAIN_E2E_AZURE_SECRET"
AZURE_FACTORY = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/drift-retrain-demo/providers/Microsoft.DataFactory/factories/demo-factory"
AZURE_TARGET = """
[azure]
authority_host = "{url}"
resource_manager = "{url}"
ca_bundle = "{ca}"
credential = {{ kind = "client_secret", tenant_id = "{tenant}", client_id = "{client}", client_secret_env = "{secret_env}" }}
polling = {{ initial_interval = 0.2, max_interval = 1, timeout_minutes = 5 }}

[[targets]]
name = "azure-credit"
backend = "azure"
workspace = "{workspace}"
monitors = ["azure-credit-drift", "azure-stuck-drift"]
model_name = "azure-credit"
policy = {{ cooldown_minutes = 0, min_rows = 100 }}
gate = {{ metric = "roc_auc" }}
registry = {{ kind = "azure_ml", model_type = "mlflow_model", path = "model/" }}

[targets.copy]
kind = "data_factory"
factory = "{factory}"
pipeline = "copy-drift-window"
output_uri = "azureml://datastores/training/paths/{{model_name}}/{{window_end_date}}_{{signal_key}}/"
parameters = {{ windowStart = "{{window_start}}", windowEnd = "{{window_end}}", monitor = "{{monitor}}", dataset = "{{target_dataset_id}}" }}

[targets.training]
kind = "published_pipeline"
pipeline_id = "8b2f6c1e-0000-4000-8000-000000000001"
experiment_name = "retrain-{{model_name}}"
inputs = {{ training_data = "{{copy_output_uri}}", drift_run = "{{run_id}}" }}
"""

# Azure targets for the crash tests: one model per crash point, as above.
AZURE_CRASH_CASES = ["mid-copy-wait", "mid-training-wait", "after-registration"]


@pytest.fixture(scope="session")
def fake_azure() -> Iterator[FakeAzure]:
    """The loopback Azure the azure target talks to (started before the stack: its URL is in the config)."""
    os.environ[AZURE_SECRET_ENV] = CLIENT_SECRET  # inherited by the runner's flow processes
    with FakeAzure() as fake:
        yield fake


@pytest.fixture(scope="session")
def e2e_settings(tmp_path_factory: pytest.TempPathFactory, fake_azure: FakeAzure) -> Settings:
    os.environ.update(STACK_ENV)  # inherited by the stack's server, runner and flow processes
    directory = tmp_path_factory.mktemp("e2e")
    block = AZURE_TARGET[AZURE_TARGET.index("[[targets]]"):]
    crash_targets = "".join(
        block.replace('name = "azure-credit"', f'name = "azure-{case}"')
        .replace('monitors = ["azure-credit-drift", "azure-stuck-drift"]', f'monitors = ["azure-{case}-drift"]')
        .replace('model_name = "azure-credit"', f'model_name = "azure-{case}"')
        for case in AZURE_CRASH_CASES
    )
    azure = (AZURE_TARGET + crash_targets).format(
        url=fake_azure.url,
        ca=fake_azure.ca_path,
        tenant=TENANT,
        client=CLIENT_ID,
        secret_env=AZURE_SECRET_ENV,
        workspace=DEMO_WORKSPACE,
        factory=AZURE_FACTORY,
    )
    # A second, v2 monitor routed to the same model, to see its signal skipped by the cooldown.
    path = write_config(
        directory,
        extra=EXTRA_TARGETS + COCKPIT_TARGET + CRASH_TARGETS + STORM_TARGETS + azure,
        **{r'monitors = \["credit-default-drift"\]': 'monitors = ["credit-default-drift", "credit-default-monitor"]'},
    )
    settings = load_settings(path)
    monitor = settings.local_monitors[0]
    demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing))
    return settings


@pytest.fixture(scope="session")
def stack(e2e_settings: Settings):
    with Stack(e2e_settings, prefect_port=free_port(), webhook_port=free_port()) as running:
        yield running


@pytest.fixture(scope="session")
def api(stack: Stack) -> Api:
    return Api(stack.api_url)


@pytest.fixture(scope="session")
def cockpit_run(stack: Stack, api: Api, e2e_settings: Settings) -> dict[str, Any]:
    """One drift signal of the cockpit's monitor, delivered over HTTP and retrained: the finished flow run."""
    event = drift_event(run_monitor(e2e_settings.monitor("cockpit-drift"), e2e_settings))
    response = deliver_events(stack.webhook_url, [event], stack.secret)
    assert response.status_code == 200, response.text
    (accepted,) = response.json()["accepted"]
    return api.wait(accepted["flow_run_id"])
