"""Builders for the Azure ML contract tests: targets on the fake's workspace, signals, copy results and
job scripts. The fixtures (``ml_fake``, ``ml_session``, ``fake``, ``ledger``) are in conftest.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drift_retrain.config import AzureTarget, PollingConfig
from drift_retrain.fake_azure import RunScript
from drift_retrain.results import CopyResult
from drift_retrain.signals import DriftSignal
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import dataset_drift

WS = "/subscriptions/00000000-0000-0000-0000-00000000c0de/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ml-ws"
PIPELINE_YAML = Path(__file__).resolve().parent / "data" / "train_pipeline_job.yml"
FAST = PollingConfig(initial_interval=0.05, max_interval=0.2, jitter=0.0, timeout_minutes=1)


def target(training: dict[str, Any], registry: dict[str, Any] | None = None, model_name: str = "credit-default") -> AzureTarget:
    """An azure target on the fake's workspace with the given training section."""
    return AzureTarget.model_validate({
        "name": "credit-default",
        "backend": "azure",
        "workspace": WS,
        "monitors": ["credit-default-drift"],
        "model_name": model_name,
        "copy": {"kind": "data_factory",
                 "factory": "/subscriptions/00000000-0000-0000-0000-00000000c0de/resourceGroups/ml-rg/providers/Microsoft.DataFactory/factories/adf",
                 "pipeline": "copy-window",
                 "output_uri": "azureml://datastores/training/paths/credit-default/{window_end_date}/"},
        "training": {"polling": FAST.model_dump(), **training},
        "registry": registry or {"kind": "azure_ml", "model_type": "mlflow_model", "path": "model/"},
    })


def signal(run_id: str = "drift_1571590300380") -> DriftSignal:
    return to_drift_signal(dataset_drift(run_id, workspace=WS))


def copied(sig: DriftSignal) -> CopyResult:
    return CopyResult(
        run_id="adf-run-7", status="Succeeded", rows_read=1200, rows_copied=1200, data_read=90_000,
        data_written=90_000, files_read=3, files_written=3, copy_duration=12.0, throughput=7.5,
        output_uri=f"azureml://datastores/training/paths/credit-default/{sig.window_end.date() if sig.window_end else 'x'}/",
    )


def script(*steps: tuple[str, float], final: str | None = "Completed", message: str = "", never: bool = False) -> RunScript:
    return RunScript(steps=tuple(steps), final=final, message=message, never_finishes=never)


QUICK = script(("NotStarted", 0.05), ("Running", 0.15))
