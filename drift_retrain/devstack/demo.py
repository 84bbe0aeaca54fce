"""`drift-retrain demo`: the whole path once on the embedded default, narrated for a person.

Seeded data -> local drift monitor -> Event Grid-shaped POST to the webhook -> Prefect flow run ->
copy, train, register -> summary. Run it again and the same drift run is recognised: no second retrain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import prefect.settings
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import temporary_settings

from drift_retrain.backends.local.monitor import MonitorRun, drift_event, run_monitor
from drift_retrain.config import ConfigError, Settings
from drift_retrain.devstack import demo_data
from drift_retrain.devstack.sender import deliver_events
from drift_retrain.devstack.stack import Stack, prefect_settings, wait_until_interrupted
from drift_retrain.readable import byte_size
from drift_retrain.results import Outcome, RetrainOutcome
from drift_retrain.text import one_line

Say = Callable[[str], None]
#: The exit code when the receiver did not take the drift event (ignored or refused): the config routes it nowhere.
NOT_HANDED_OFF = 2
#: How much of a receiver's reason a line shows.
REASON_LIMIT = 400


class DemoFailed(RuntimeError):
    pass


def run_demo(
    settings: Settings,
    *,
    keep: bool = False,
    say: Say = print,
    timeout: float = 300,
    on_drift: Callable[[MonitorRun], None] | None = None,
) -> int:
    """Run the scenario; returns the process exit code (0 when the flow run completed). ``on_drift``
    sees the monitor's run before its event is sent (the loopback Azure publishes its metrics)."""
    if not settings.local_monitors:
        raise ConfigError(f"{settings.source_file}: the demo needs at least one [[local_monitors]] entry")
    monitor = settings.local_monitors[0]
    if demo_data.generate(settings.resolve(monitor.reference), settings.resolve(monitor.landing)):
        say(f"generated seeded demo data under {settings.state_dir / 'data'}")

    say("starting the stack: Prefect server (SQLite) + UI, runner, webhook receiver ...")
    began = time.monotonic()
    with Stack(settings) as stack:
        if stack.attached:
            say(f"  {stack.attach_note}; Prefect UI: {stack.ui_url}")
        else:
            say(f"  stack up in {time.monotonic() - began:.1f} s; Prefect UI: {stack.ui_url}")
        run = run_monitor(monitor, settings)
        say(monitor_line(run))
        if not run.has_drift:
            say("no drift detected: no event sent")
            return 0
        if on_drift is not None:
            on_drift(run)
        response = deliver_events(
            stack.webhook_url, [drift_event(run)], stack.secret
        )  # retried on 503, as Event Grid does
        accepted = receipt(response.status_code, answer_of(response.response))
        if isinstance(accepted, str):
            say(accepted)
            say(f"nothing was retrained: `drift-retrain check -c {settings.source_file}` names the config to fix")
            return NOT_HANDED_OFF
        say(handoff_line(run.run_id, accepted))
        with temporary_settings(_as_settings(prefect_settings(settings.state_dir, stack.prefect_port))):
            flow_run, outcome = asyncio.run(_wait_for(UUID(accepted["flow_run_id"]), say, timeout))
        if accepted["duplicate"]:
            say("this drift run was handled before: below is the earlier run's outcome, nothing was retrained now")
        _summarise(flow_run, outcome, stack.flow_run_url(flow_run.id), say)
        if keep:
            say(f"stack kept up: Prefect UI {stack.ui_url}, webhook {stack.webhook_url}. Ctrl-C to stop.")
            wait_until_interrupted()
        return 0 if flow_run.state and flow_run.state.is_completed() else 1


def receipt(status: int, answer: Any) -> dict[str, Any] | str:
    """The receiver's answer to a delivery of one drift event: its ``accepted`` entry, or the line that says why
    nothing was handed off: ignored (a 200 whose ``ignored`` names the reason: intake/app.py) or refused (a 4xx
    whose ``error`` does). Another answer is the stack failing, not the config."""
    answer = answer if isinstance(answer, dict) else {}
    if status == 200 and answer.get("accepted"):
        return dict(answer["accepted"][0])
    if status == 200:
        reasons = [i.get("reason") for i in answer.get("ignored") or [] if isinstance(i, dict)]
        reason = "; ".join(str(r) for r in reasons if r) or answer.get("note") or "no reason given"
        return f"event ignored: {one_line(reason, REASON_LIMIT)}"
    if 400 <= status < 500:
        return f"event refused ({status}): {one_line(answer.get('error') or 'no reason given', REASON_LIMIT)}"
    raise DemoFailed(f"webhook answered {status}: {one_line(answer or '', REASON_LIMIT)}")


def handoff_line(run_id: str, accepted: dict[str, Any]) -> str:
    """The line that says which flow run a drift run became (the demo's and `monitor`'s)."""
    return f"DatasetDriftDetected for drift run {run_id} -> flow run '{accepted['flow_run_name']}'" + (
        " (duplicate: this drift run was handed off before, no new run)" if accepted["duplicate"] else ""
    )


def monitor_line(run: MonitorRun) -> str:
    """One line per monitor run: its window, coefficient against threshold, and the top features (the demo's and
    `monitor`'s)."""
    return (
        f"drift monitor '{run.monitor}' over [{run.window_start:%Y-%m-%d}, {run.window_end:%Y-%m-%d}): "
        f"coefficient {run.drift_coefficient:.3f} (threshold {run.threshold}), "
        f"top features: {', '.join(f'{f.feature} {f.contribution or 0:.0%}' for f in run.features[:3])}"
    )


def answer_of(response: httpx.Response) -> Any:
    """The receiver's JSON answer, or its text as the error when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return {"error": response.text}


def _as_settings(env: dict[str, str]) -> dict[Any, str]:
    return {getattr(prefect.settings, name): value for name, value in env.items()}


async def _wait_for(flow_run_id: UUID, say: Say, timeout: float) -> tuple[FlowRun, RetrainOutcome | None]:
    deadline = time.monotonic() + timeout
    last = None
    async with get_client() as client:
        while True:
            flow_run = await client.read_flow_run(flow_run_id)
            state = flow_run.state
            if state and state.name != last:
                say(f"  flow run state: {state.name}")
                last = state.name
            if state and state.is_final():
                break
            if time.monotonic() > deadline:
                raise DemoFailed(f"flow run {flow_run_id} did not finish within {timeout:.0f} s (state {last})")
            await asyncio.sleep(0.5)
    outcome = None
    if state.is_completed():
        result = await state.aresult()
        outcome = result if isinstance(result, RetrainOutcome) else RetrainOutcome.model_validate(result)
    return flow_run, outcome


def _summarise(flow_run: FlowRun, outcome: RetrainOutcome | None, url: str, say: Say) -> None:
    say("")
    say(f"flow run  {flow_run.name}: {flow_run.state.name if flow_run.state else '?'}")
    if outcome is None:
        say(f"  no outcome: {flow_run.state.message if flow_run.state else ''}")
    else:
        say(f"outcome   {outcome.message}")  # the run's final state message, as the UI shows it
        say(f"decision  {outcome.verdict.upper()}")
        for check in outcome.decision.checks:
            say(f"  [{'x' if check.passed else ' '}] {check.rule}: {check.detail}")
        if outcome.copy_result:
            c = outcome.copy_result
            rows = "rows not reported" if c.rows_copied is None else f"{c.rows_copied} rows"  # a binary copy
            say(
                f"copy      {rows}, {c.files_written} file{'' if c.files_written == 1 else 's'}, "
                f"{byte_size(c.data_written)} in {c.copy_duration:.2f} s"
            )
        if outcome.training:
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in outcome.training.metrics.items())
            holdout = f" (holdout of {outcome.training.rows_test} rows)" if outcome.training.rows_test else ""
            say(f"training  {metrics}{holdout}")
        if outcome.model:
            m = outcome.model
            say(f"model     {m.name} v{m.version}{' (already registered)' if m.already_registered else ''} at {m.uri}")
        if outcome.outcome is Outcome.SKIPPED:
            say(f"skipped   {outcome.reason}")
    say(f"Prefect   {url}")
