"""Scripted runs: how a fake Data Factory run or ML job moves through its statuses over time.

A test (or the demo) says what the next run will do: the statuses it passes through and for how long,
whether it ends in failure with a message, or never ends. Cancellation follows the service's own
vocabulary (Data Factory: Canceling -> Cancelled; Azure ML: CancelRequested -> Canceled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunScript:
    """``steps``: (status, seconds in it) in order; the last status is final when ``final`` is None."""

    steps: tuple[tuple[str, float], ...]
    final: str | None = None
    message: str = ""
    output: dict[str, Any] = field(default_factory=dict)
    never_finishes: bool = False

    def status_at(self, elapsed: float) -> str:
        for status, seconds in self.steps:
            if elapsed < seconds:
                return status
            elapsed -= seconds
        if self.never_finishes:
            return self.steps[-1][0]
        return self.final or self.steps[-1][0]

    def duration(self) -> float | None:
        return None if self.never_finishes else sum(seconds for _, seconds in self.steps)


@dataclass
class ScriptedRun:
    """One run on the fake: its script, when it started, and whether (and when) it was cancelled."""

    run_id: str
    script: RunScript
    started: float
    cancel_statuses: tuple[str, str]  # (cancelling, cancelled)
    terminal: frozenset[str]
    clock: Callable[[], float] = time.monotonic
    cancel_requested: float | None = None
    cancel_calls: int = 0
    status_calls: int = 0
    properties: dict[str, Any] = field(default_factory=dict)

    CANCEL_SECONDS = 1.0

    def status(self) -> str:
        now = self.clock()
        if self.cancel_requested is not None:
            if now - self.cancel_requested < self.CANCEL_SECONDS:
                return self.cancel_statuses[0]
            return self.cancel_statuses[1]
        return self.script.status_at(now - self.started)

    def cancel(self) -> None:
        self.cancel_calls += 1
        if self.cancel_requested is None and self.status() not in self.terminal:
            self.cancel_requested = self.clock()

    @property
    def ended_at(self) -> float | None:
        """When the run reached its final status (None while it runs)."""
        if self.cancel_requested is not None:
            return self.cancel_requested + self.CANCEL_SECONDS
        duration = self.script.duration()
        return None if duration is None else self.started + duration


class FollowsScript:
    """What a fake run or job reads through to the ScriptedRun it follows (``self.run``)."""

    run: ScriptedRun

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def cancel_calls(self) -> int:
        return self.run.cancel_calls

    @property
    def status_calls(self) -> int:
        return self.run.status_calls

    def status(self) -> str:
        return self.run.status()
