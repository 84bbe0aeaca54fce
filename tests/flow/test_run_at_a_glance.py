"""The run list tells a retrain from a skip from a gated model (issue 15, item 6): each run ends Completed with
the outcome as its state message, tagged ``decision:retrain|skip|gated``, its name the model, the window's days
and a digest; and its result is still the RetrainOutcome. Read back from the (ephemeral) Prefect server."""

from __future__ import annotations

import re
from typing import Any

from drift_retrain.backends.memory import MemoryCopy, MemoryRegistry, MemoryTraining, memory_backends
from drift_retrain.results import Outcome
from tests.flow.conftest import run_flow
from tests.flow.test_drift_to_retrain_in_process import details, earlier


def _read(prefect_api, run_id: str) -> dict[str, Any]:
    response = prefect_api.get(f"/flow_runs/{run_id}")
    response.raise_for_status()
    return response.json()


def test_each_run_ends_with_its_outcome_as_message_and_a_decision_tag(make_target, prefect_api) -> None:
    target = make_target(gate='metric = "roc_auc"')
    registry = MemoryRegistry([earlier(target, 1, minutes_ago=3 * 24 * 60, roc_auc=0.804)])
    better = memory_backends(details(target.signal("drift_better")), MemoryCopy(rows=2100), MemoryTraining({"roc_auc": 0.83}), registry)
    worse = memory_backends(details(target.signal("drift_worse")), MemoryCopy(rows=2100), MemoryTraining({"roc_auc": 0.786}), registry)

    retrained = run_flow(better, signal=target.signal("drift_better"))
    skipped = run_flow(better, signal=target.signal("drift_cooling"))  # v2 was registered just now
    gated = run_flow(worse, signal=target.signal("drift_worse"), force=True)  # force never passes the gate

    assert retrained.outcome.outcome is Outcome.RETRAINED  # the result is still the outcome, read back as JSON
    expected = {
        retrained.id: ("decision:retrain", re.escape(f"retrained → {target.model} v2")),
        skipped.id: ("decision:skip", r"skipped: cooldown: v2 was registered [0-9] min ago, cooldown is 60 min"),
        gated.id: ("decision:gated", re.escape("gated: challenger roc_auc = 0.7860 does not beat champion v2 = 0.8300 (needed +0)")),
    }
    for run_id, (tag, message) in expected.items():  # a pattern: a busy machine may take minutes between runs
        flow_run = _read(prefect_api, run_id)
        assert flow_run["state"]["type"] == "COMPLETED"
        assert re.fullmatch(message, flow_run["state"]["message"] or ""), flow_run["state"]["message"]
        assert tag in flow_run["tags"] and sum(t.startswith("decision:") for t in flow_run["tags"]) == 1
    assert [v.version for v in registry.versions(target.model)] == [1, 2]  # the worse model was not registered

    name = _read(prefect_api, retrained.id)["name"]  # WINDOW_END 2026-11-23, 7 days: the window's days
    assert name == f"{target.model}-2026-11-16..23-{target.signal('drift_better').digest[:8]}"


def test_a_sweep_run_is_named_by_when_it_was_due(prefect_api) -> None:
    """Not Prefect's random ``arcane-capuchin``: ``sweep-<due time, UTC, to the minute>``."""
    import asyncio
    from datetime import datetime, timezone

    from flows.sweep import sweep

    before = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    state = asyncio.run(sweep(lookback_hours=0.01, catch_up=False, return_state=True))
    flow_run = _read(prefect_api, str(state.state_details.flow_run_id))
    assert re.fullmatch(r"sweep-\d{4}-\d\d-\d\dT\d\d:\d\dZ", flow_run["name"]), flow_run["name"]
    due = datetime.strptime(flow_run["name"], "sweep-%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)
    assert before <= due <= datetime.now(timezone.utc)


def test_the_shipped_config_gates_a_forced_retrain_of_a_worse_model(tmp_path, monkeypatch, prefect_api) -> None:
    """The default drift-retrain.toml (issue 15, item 7): a forced retrain that trains a worse model than the
    champion (0.786 < 0.804, as the demo's did) is gated, not registered; promote refuses what is not gated."""
    from drift_retrain.concurrency import ensure_limits
    from drift_retrain.config import CONFIG_ENV, load_settings
    from drift_retrain.testing import write_config
    from flows.promote import promote

    monkeypatch.setenv(CONFIG_ENV, str(write_config(tmp_path)))  # the shipped file, its state_dir moved
    settings = load_settings()
    ensure_limits(settings)
    (target,) = settings.targets
    assert target.gate is not None and target.gate.metric == "roc_auc"
    from tests.flow.conftest import Target

    shipped = Target(settings, target.name, target.monitors[0], target.model_name)
    signal = shipped.signal("drift_forced_worse")
    champion = earlier(shipped, 1, minutes_ago=20, roc_auc=0.804)  # inside the cooldown: only force retrains
    registry = MemoryRegistry([champion])
    backends = memory_backends(details(signal), MemoryCopy(rows=2100), MemoryTraining({"roc_auc": 0.786}), registry)

    run = run_flow(backends, signal=signal, force=True)

    assert run.outcome.verdict == "gated" and [v.version for v in registry.versions(target.model_name)] == [1]
    assert _read(prefect_api, run.id)["state"]["message"].startswith("gated: challenger roc_auc = 0.7860 does not beat champion v1")

    refused = promote(model=target.model_name, version=2, gate="off", return_state=True)
    assert refused.is_failed() and refused.message.startswith(f"refused: {target.model_name} v2 did not pass")
