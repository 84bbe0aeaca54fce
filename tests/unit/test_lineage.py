"""The lineage a registered model version carries back to the drift that caused it, and the flow staying
backend-agnostic (issue 4: no code branch on the backend in the flow itself)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from drift_retrain.lineage import lineage_tags
from drift_retrain.names import SIGNAL_TAG
from drift_retrain.results import Check, Decision
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import copy_result, dataset_drift, training_result
from tests.contract.ml_fixtures import target

FLOW = Path(__file__).resolve().parents[2] / "flows" / "drift_to_retrain.py"


def test_lineage_tags_trace_the_version_to_signal_drift_copy_job_flow_run_and_decision() -> None:
    signal = to_drift_signal(dataset_drift("credit-default-drift_1717000000000"))
    decision = Decision(retrain=True, checks=[
        Check(rule="drift", passed=True, detail="drift coefficient 0.835 (event) >= threshold 0.300"),
        Check(rule="gate", passed=True, detail="roc_auc = 0.9100; no champion yet"),
    ])
    copy = copy_result(run_id="adf-run-1", rows_read=1200, rows_copied=1200, data_written=120_000, files_written=3)
    training = training_result(job_id="train-abc", metrics={"roc_auc": 0.91}, rows_train=900, rows_test=300,
                               model_uri="azureml://jobs/train-abc/outputs/model")

    tags = lineage_tags(signal, target({"kind": "pipeline_job", "component": "c:1"}), decision, copy, training, "flow-run-9")

    assert tags[SIGNAL_TAG] == signal.identity
    assert tags["drift.run_id"] == signal.run_id and tags["drift.workspace"] == signal.workspace_id
    assert tags["drift.coefficient"] == f"{signal.drift_coefficient:.6f}"
    assert (tags["copy.run_id"], tags["copy.rows_copied"], tags["copy.files_written"]) == ("adf-run-1", "1200", "3")
    assert tags["training.job_id"] == "train-abc"
    assert tags["prefect.flow_run_id"] == "flow-run-9"
    assert tags["decision"] == decision.summary and "no champion yet" in tags["decision"]
    assert [c["rule"] for c in json.loads(tags["decision.checks"])] == ["drift", "gate"]
    assert all(isinstance(v, str) for v in tags.values())  # Azure ML tags are strings


def test_a_binary_copy_tags_its_row_count_as_not_reported() -> None:
    """A binary copy counts no rows: the tag says "n/a" rather than "None", and files and bytes stand."""
    signal = to_drift_signal(dataset_drift("credit-default-drift_1717000000000"))
    decision = Decision(retrain=True, checks=[Check(rule="data_copied", passed=True, detail="binary copy")])
    copy = copy_result(run_id="adf-run-2", rows_read=None, rows_copied=None, data_read=4096, data_written=4096,
                       files_read=2, files_written=2, throughput=4.0)
    training = training_result(job_id="train-def", metrics={"roc_auc": 0.91}, rows_train=0, rows_test=0,
                               model_uri="azureml://jobs/train-def/outputs/model")

    tags = lineage_tags(signal, target({"kind": "pipeline_job", "component": "c:1"}), decision, copy, training, None)

    assert (tags["copy.rows_copied"], tags["copy.files_written"], tags["copy.data_written"]) == ("n/a", "2", "4096")


def test_the_flow_never_branches_on_the_backend() -> None:
    """The flow gets its steps from build_backends; it never reads target.backend nor imports a backend."""
    tree = ast.parse(FLOW.read_text())
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert "backend" not in attributes
    assert not any(m and m.startswith(("drift_retrain.backends.azure", "drift_retrain.backends.local")) for m in imported)
    assert not {"azure", "local"} & strings
