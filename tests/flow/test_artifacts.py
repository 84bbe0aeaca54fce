"""The artifacts a data scientist reads (issue 15 item 8), from real runs on the ephemeral Prefect server: the local
monitor's drift run over seeded data, the local copy and a real scikit-learn training, read back from the API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from drift_retrain.backends.local import local_backends
from drift_retrain.backends.local.monitor import drift_event, run_monitor
from drift_retrain.backends.local.tabular import write_csv
from drift_retrain.backends.memory import MemoryCopy, MemoryDriftDetails, MemoryTraining, memory_backends
from drift_retrain.config import LocalMonitorConfig
from drift_retrain.devstack.demo_data import COLUMNS, _sample
from drift_retrain.intake.parsing import to_drift_signal
from drift_retrain.testing import DEMO_WORKSPACE
from tests.flow.conftest import WINDOW_END, Target, artifacts, run_flow
from tests.rendering import links, tokens

HEADER = [*COLUMNS[:-1], "y"]  # the demo's columns, its label named as the test target's


def every_artifact(api: httpx.Client, flow_run_id: str) -> list[dict[str, Any]]:
    found = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return [a for a in found.raise_for_status().json() if a["key"]]


def seeded_drift(target: Target) -> Any:
    """A reference sample and a week of shifted landing data (younger, lower incomes, higher utilisation), and the
    local monitor's drift run over that week."""
    rng = np.random.default_rng(7)
    reference = target.settings.resolve(target.settings.target(target.name).training.reference)
    landing = target.settings.resolve(target.settings.target(target.name).copy_step.source)
    write_csv(reference, HEADER, _sample(rng, 1500, shifted=False))
    for day in range(7):
        partition = landing / f"date={(WINDOW_END - timedelta(days=7 - day)).date().isoformat()}"
        write_csv(partition / "part-0000.csv", HEADER, _sample(rng, 150, shifted=True))
    monitor = LocalMonitorConfig(
        name=target.monitor, workspace=DEMO_WORKSPACE, reference=reference, landing=landing, label="y"
    )
    return run_monitor(monitor, target.settings, (WINDOW_END - timedelta(days=7), WINDOW_END))


def table_rows(markdown: str) -> list[dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]  # noqa: E731
    return [dict(zip(split(lines[0]), split(line), strict=True)) for line in lines[2:]]


@pytest.mark.slow  # the local monitor's domain classifier and a real training: seconds
def test_a_local_retrain_reports_what_moved_how_it_trained_where_the_data_is_and_the_model_folder(
    make_target, prefect_api
) -> None:
    target = make_target(policy="min_rows = 100, cooldown_minutes = 0")
    drift = seeded_drift(target)
    signal = to_drift_signal(drift_event(drift))
    routed = target.settings.target(target.name)

    run = run_flow(local_backends(target.settings, routed), signal=signal)

    assert run.outcome.model is not None
    decisions = [a for a in every_artifact(prefect_api, run.id) if a["key"] == f"decision-{target.model}"]
    assert len(decisions) == 1  # one card, rewritten final: no stale preliminary one beside it
    (decision,) = decisions
    assert decision["data"].startswith(f"# Decision for `{target.model}`: **Retrain** (final)")
    assert decision["description"].endswith("(final decision)") and "| data_copied | yes |" in decision["data"]

    found = artifacts(prefect_api, run.id)
    drift_md = found[f"drift-{target.model}"]
    assert drift_md["type"] == "markdown" and "vs threshold 0.300" in drift_md["description"]
    rows = {row["feature"]: row for row in table_rows(drift_md["data"])}
    assert "threshold" not in next(iter(rows.values()))  # the dataset's threshold is said once, above the table
    assert drift_md["data"].count("threshold **0.300**") == 1
    mean = lambda cell: float(re.match(r"mean ([\d,.]+)", cell).group(1).replace(",", ""))  # noqa: E731
    assert mean(rows["age"]["current"]) < mean(rows["age"]["reference"]) - 3  # the window is younger
    assert mean(rows["utilization"]["current"]) > mean(rows["utilization"]["reference"])
    assert re.fullmatch(r"0: \d+% · 1: \d+% · 2: \d+%", rows["late_payments"]["reference"])  # a count: by value
    images = [t.attrGet("src") for t in tokens(drift_md["data"]) if t.type == "image"]
    assert len(images) == len(rows) and all(str(src).startswith("data:image/png;base64,") for src in images)

    training = found[f"training-{target.model}"]
    reference = target.settings.resolve(routed.training.reference)
    assert training["description"].startswith("HistGradientBoostingClassifier on 2,550 rows (1,500 reference + 1,050 window), ")
    assert "held out for the metrics; training data: " in training["description"]
    assert reference.name in training["description"] and "increments" in training["description"]

    (copy,) = found[f"copy-{target.model}"]["data"]
    assert list(copy)[:2] == ["landing", "copied_to"]
    assert copy["landing"] == str(target.settings.resolve(routed.copy_step.source))
    assert re.fullmatch(r"\d+(\.\d+)? kB", copy["data_read"]), copy["data_read"]
    assert found[f"copy-{target.model}"]["description"].startswith(f"Copy run {copy['run_id']}: 1,050 rows, ")

    model = found[f"model-{target.model}"]["data"]
    folder = target.settings.resolve(routed.registry.path) / target.model / "1"
    assert links(model) == []  # a file:// link opens nothing from the UI: the folder is shown as text
    assert f"- {target.model} v1 in the local registry: {folder.resolve()}" in model.splitlines()


def test_a_run_that_fails_after_deciding_to_retrain_keeps_one_card_and_it_says_preliminary(
    make_target, prefect_api
) -> None:
    from flows.drift_to_retrain import drift_to_retrain
    from drift_retrain.backends import backends_in_process
    from drift_retrain.results import DriftDetails

    target = make_target()
    signal = target.signal("drift_training_fails")
    details = DriftDetails(available=True, source="memory", drift_coefficient=0.6, threshold=0.3, rows_in_window=2100)
    backends = memory_backends(
        MemoryDriftDetails({signal.run_id: details}), MemoryCopy(rows=2100), MemoryTraining(failure="out of memory")
    )
    with backends_in_process(lambda settings, routed: backends):
        state = drift_to_retrain(signal=signal, return_state=True)
    assert state.is_failed()

    run_id = str(state.state_details.flow_run_id)
    try:
        (decision,) = [a for a in every_artifact(prefect_api, run_id) if a["key"] == f"decision-{target.model}"]
        assert decision["data"].startswith(f"# Decision for `{target.model}`: **Retrain** (preliminary)")
        assert decision["description"].endswith("(preliminary: the copy and the gate are still to come)")
    finally:  # a failed run on this shared server would be one more for the sweep tests (tests/flow/test_logs.py)
        prefect_api.delete(f"/flow_runs/{run_id}").raise_for_status()
