"""``drift-retrain demo --azure-fake``: the demo's target on the azure backend, against the loopback Azure.

The same flow and the same real SDKs as on Azure; on the other side, the fake answers with Azure's wire
formats and scripted outcomes (statuses, copy statistics, training metrics). It keeps its own state dir
and ports, so it never mixes with the local demo's Prefect database or a running ``drift-retrain up``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drift_retrain.backends.local.monitor import MonitorRun
from drift_retrain.config import Settings, load_settings
from drift_retrain.fake_azure.server import CLIENT_ID, CLIENT_SECRET, TENANT, FakeAzure

SECRET_ENV = "DRIFT_RETRAIN_FAKE_AZURE_SECRET"
PORTS = {"DRIFT_RETRAIN_PREFECT_PORT": "4210", "DRIFT_RETRAIN_WEBHOOK_PORT": "8098"}
#: What the fake's training jobs report (scripted: nothing is trained on the loopback Azure).
SCRIPTED_METRICS = {"roc_auc": 0.80, "accuracy": 0.76}


def _toml(value: Any) -> str:
    """Enough TOML for a config: strings, numbers, booleans, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items() if v is not None) + " }"
    return json.dumps(str(value))


def _config_text(settings: Settings, fake: FakeAzure, state_dir: Path) -> str:
    target = settings.targets[0]
    monitor = settings.local_monitors[0]
    factory = target.workspace.split("/providers/")[0] + "/providers/Microsoft.DataFactory/factories/demo-factory"
    sections = {
        "azure": {
            "authority_host": fake.url,
            "resource_manager": fake.url,
            "ca_bundle": str(fake.ca_path),
            "credential": {
                "kind": "client_secret",
                "tenant_id": TENANT,
                "client_id": CLIENT_ID,
                "client_secret_env": SECRET_ENV,
            },
            # the loopback Azure sends no job events (no Event Grid): the first hold looks as often as it polls
            "polling": {"initial_interval": 0.5, "max_interval": 5, "hold_look_seconds": 5, "timeout_minutes": 10},
        },
    }
    azure_target = {
        "name": target.name,
        "backend": "azure",
        "workspace": target.workspace,
        "monitors": list(target.monitors),
        "model_name": target.model_name,
        "policy": target.policy.model_dump(mode="json"),
        "gate": {"metric": "roc_auc"},
        "copy": {
            "kind": "data_factory",
            "factory": factory,
            "pipeline": "copy-drift-window",
            "parameters": {
                "windowStart": "{window_start}",
                "windowEnd": "{window_end}",
                "dataset": "{target_dataset_id}",
            },
            "output_uri": "azureml://datastores/training/paths/{model_name}/{window_end_date}_{signal_key}/",
        },
        "training": {
            "kind": "published_pipeline",
            "pipeline_id": "00000000-0000-4000-8000-00000000d3e0",
            "experiment_name": "retrain-{model_name}",
            "inputs": {"training_data": "{copy_output_uri}", "drift_run": "{run_id}"},
        },
        "registry": {"kind": "azure_ml", "model_type": "mlflow_model", "path": "model/"},
    }
    paths = {"reference": str(settings.resolve(monitor.reference)), "landing": str(settings.resolve(monitor.landing))}
    lines = [
        "# Written by `drift-retrain demo --azure-fake`: the demo's target on the azure backend, against the loopback Azure.",
        f"state_dir = {_toml(str(state_dir))}",
        f"receiver = {_toml(settings.receiver.model_dump(mode='json', exclude_defaults=True))}",
        f"azure = {_toml(sections['azure'])}",
        f"targets = [{_toml(azure_target)}]",
        f"local_monitors = [{_toml(monitor.model_dump(mode='json') | paths)}]",
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def azure_fake_world(settings: Settings) -> Iterator[tuple[Settings, FakeAzure]]:
    """Start the loopback Azure and yield settings whose first target runs on it."""
    state_dir = settings.state_dir / "azure-fake"
    state_dir.mkdir(parents=True, exist_ok=True)
    for name, port in PORTS.items():
        os.environ.setdefault(name, port)
    os.environ[SECRET_ENV] = CLIENT_SECRET  # the runner's flow processes inherit it
    with FakeAzure(workdir=state_dir / "tls") as fake:
        fake.ml.default_metrics = dict(SCRIPTED_METRICS)
        path = state_dir / "drift-retrain.toml"
        path.write_text(_config_text(settings, fake, state_dir), encoding="utf-8")
        yield load_settings(path), fake


def publish_drift_run(fake: FakeAzure, run: MonitorRun) -> None:
    """Give the fake workspace the drift run's results, where Azure ML v1 data drift keeps them: with the
    monitor, in the datadrift service (see datadrift_v1.py)."""
    features = {}
    for feature in run.features:
        values = {"datadrift_contribution": feature.contribution, "wasserstein_distance": feature.wasserstein}
        features[feature.feature] = {k: v for k, v in values.items() if v is not None}
    fake.ml.datadrift.publish(
        run.monitor_id,
        run.run_id,
        run.drift_coefficient,
        features,
        threshold=run.threshold,
        start=run.window_start,
        end=run.window_end,
        pipeline_start=run.computed_at,
    )
