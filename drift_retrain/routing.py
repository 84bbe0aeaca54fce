"""Which configured target and monitor a drift signal belongs to: one function for the receiver, the sweep
and the flow, so all three route a signal the same way.

v1 drift names its monitor (``DataDriftName``) and routes by it. A v2 breach names only its *signal*: the
evaluate step tags its own run with the signal's name in the breach text and no tag names the monitor
(Azure/azureml-assets ``assets/model_monitoring/components/src/model_monitor_evaluate_metrics_threshold/
evaluate_metrics_threshold.py`` ``_generate_error_message``). So a v2 signal is matched, in order, by:

a. its signal name being one a target configured for a monitor (``signals``);
b. its signal name containing a configured monitor name, the longest such name winning: Microsoft's how-to
   tells users to name each signal ``<monitor-name>_<signal-description>`` and to filter per monitor with
   "String contains" (MicrosoftDocs/azure-ai-docs ``articles/machine-learning/how-to-monitor-model-performance.md``,
   "Integrate ... with Event Grid"); compared case-insensitively, as Event Grid compares strings
   (MicrosoftDocs/azure-docs ``articles/event-grid/event-filtering.md``);
c. its ``monitor`` (the event's experiment name, or a monitor name routing set before) equalling a configured
   monitor name. No source says what a monitor run's experiment is called: this is a last resort.

A routed signal carries the configured monitor's name in ``monitor``, so run names, artifacts and the details
lookup see the monitor's real name, and routing it again gives the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drift_retrain.signals import DriftSignal, SignalKind

if TYPE_CHECKING:
    from drift_retrain.config import TargetConfig


@dataclass(frozen=True)
class Route:
    """Where a signal goes: the target, and the signal with ``monitor`` set to the configured monitor it matched."""

    target: TargetConfig
    signal: DriftSignal
    rule: str  # how it matched, for logs and tests


@dataclass(frozen=True)
class NoRoute:
    """Why no target takes the signal: ``subject`` names it (signal, experiment, workspace), ``reason`` says why."""

    subject: str
    reason: str


def route(targets: Sequence[TargetConfig], signal: DriftSignal) -> Route | NoRoute:
    """The target and monitor a signal belongs to, or why there is none (never raises)."""
    workspace = signal.workspace_id.lower()
    candidates = [t for t in targets if t.workspace.lower() == workspace]
    if signal.kind is SignalKind.MODEL_MONITOR:
        return _route_breach(candidates, signal)
    for target in candidates:
        if signal.monitor in target.monitors:
            return Route(target, signal, "monitor")
    subject = f"monitor '{signal.monitor}' of workspace {signal.workspace_id}"
    return NoRoute(subject, f"monitor '{signal.monitor}' is not routed to any target")


def _route_breach(targets: list[TargetConfig], signal: DriftSignal) -> Route | NoRoute:
    name = signal.signal_name
    if name is None:
        subject = f"a v2 breach whose signal name is unreadable ({signal.breach_unparsed})"
    else:
        subject = f"v2 signal '{name}'"
    subject += f" of experiment '{signal.monitor}' in workspace {signal.workspace_id}"
    if name is not None:
        folded = name.casefold()
        for target in targets:  # (a) a configured signal name (unique per workspace: Settings checks)
            for monitor, signals in target.signals.items():
                if any(s.casefold() == folded for s in signals):
                    return _to(target, monitor, signal, f"signal '{name}' is configured for monitor '{monitor}'")
        contained = [(t, m) for t in targets for m in t.monitors if m.casefold() in folded]  # (b)
        if contained:
            longest = max(len(m) for _, m in contained)
            best = [(t, m) for t, m in contained if len(m) == longest]
            if len(best) > 1:
                named = ", ".join(f"'{m}' of target '{t.name}'" for t, m in best)
                return NoRoute(subject, f"{subject} is ambiguous: it contains monitor names of equal length: {named}")
            target, monitor = best[0]
            return _to(target, monitor, signal, f"signal '{name}' contains monitor name '{monitor}'")
    for target in targets:  # (c) the last resort: the experiment name (see the module docstring)
        if signal.monitor in target.monitors:
            return _to(target, signal.monitor, signal, f"experiment '{signal.monitor}' is a monitor name")
    return NoRoute(subject, f"{subject} matches no configured signal or monitor name")


def _to(target: TargetConfig, monitor: str, signal: DriftSignal, rule: str) -> Route:
    routed = signal if signal.monitor == monitor else signal.model_copy(update={"monitor": monitor})
    return Route(target, routed, rule)
