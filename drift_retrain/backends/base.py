"""The small interfaces every step talks to; ``local`` and (later) ``azure`` implement them.

External work is started and waited on as separate calls, and every start is keyed by the signal
(``names.copy_run_key`` / ``names.training_run_key``), so a rerun reattaches to the run it already started
instead of starting a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar, runtime_checkable

from drift_retrain.results import CopyResult, DriftDetails, ModelVersion, TrainingResult
from drift_retrain.signals import DriftSignal

R = TypeVar("R")


class DriftDetailsSource(Protocol):
    def fetch(self, signal: DriftSignal) -> DriftDetails:
        """The drift run's statistics; ``available=False`` (never an exception) when they cannot be had."""
        ...


class CopyPipeline(Protocol):
    def start(self, signal: DriftSignal) -> str:
        """Start (or find the already started) copy of the signal's window; returns its run id."""
        ...

    def wait(self, run_id: str) -> CopyResult:
        """Block until the copy ends; raise ``StepFailed`` when it failed."""
        ...

    def cancel(self, run_id: str) -> None: ...


class TrainingPipeline(Protocol):
    def submit(self, signal: DriftSignal, data: CopyResult) -> str:
        """Submit (or find the already submitted) training job for the signal; returns its job id."""
        ...

    def wait(self, job_id: str) -> TrainingResult:
        """Block until the job ends; raise ``StepFailed`` when it failed."""
        ...

    def cancel(self, job_id: str) -> None: ...


class ModelRegistry(Protocol):
    def versions(self, name: str) -> list[ModelVersion]:
        """Every registered version of the model, oldest first."""
        ...

    def register(self, name: str, training: TrainingResult, tags: dict[str, str]) -> ModelVersion:
        """Register the job's model; idempotent on the signal tag (``names.signal_of(tags)``)."""
        ...


def run_logger(fallback: logging.Logger) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run's logger inside a flow or task (shown in the UI), ``fallback`` elsewhere."""
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:
        return fallback


class RunLog:
    """The lines a user needs (state changes, reattaching, recovery, retries, cancels), said where they are read:
    inside a flow or task run on the run's own logger, so they are in the run's log in the Prefect UI with no
    logging setup on the worker; elsewhere (the CLI, a contract test) on the stdlib logger ``name``.

    One format for all of them: a prose line that starts with the step (``copy: ...``, ``training: ...``), and
    ``<step> run <id>: <before> -> <after>`` for a state change of an external run (``log_state_change``)."""

    def __init__(self, name: str) -> None:
        self.fallback = logging.getLogger(name)

    def debug(self, msg: str, *args: object) -> None:
        run_logger(self.fallback).debug(msg, *args)

    def info(self, msg: str, *args: object) -> None:
        run_logger(self.fallback).info(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        run_logger(self.fallback).warning(msg, *args)

    def error(self, msg: str, *args: object) -> None:
        run_logger(self.fallback).error(msg, *args)


_LOG = logging.getLogger("drift_retrain")


def log_state_change(step: str, run_id: str, before: str | None, after: str, fallback: logging.Logger = _LOG) -> None:
    """One log line per state change of an external run (never one per poll), with the run's id."""
    run_logger(fallback).info("%s run %s: %s -> %s", step, run_id, before or "(started)", after)


class MissedDriftSource(Protocol):
    """Where the sweep finds drift whose event may never have arrived, for one target."""

    #: What this source cannot see (said in the sweep's table), or None.
    blind_spot: str | None

    def signals_since(self, since: datetime) -> list[DriftSignal]:
        """The target's drift signals raised since ``since``, exactly as their events would have carried them."""
        ...


class StepFailed(RuntimeError):
    """An external run ended in a failure state; carries the service's own message."""

    def __init__(self, step: str, run_id: str, status: str, message: str) -> None:
        super().__init__(f"{step} run {run_id} ended {status}: {message}")
        self.step, self.run_id, self.status, self.message = step, run_id, status, message


class StillRunning(Exception):
    """A wait inside a retrain held its process for ``PollingConfig.hold_seconds`` and the run goes on: the
    task returns a ``waiting.Waiting`` and the retrain suspends (docs/waiting.md). Never cancels the run."""

    def __init__(self, step: str, run_id: str, status: str, next_check: float, deadline: float) -> None:
        super().__init__(f"{step} run {run_id} still {status}")
        #: seconds from now until the run should be looked at again, and until the step's timeout
        self.step, self.run_id, self.status, self.next_check, self.deadline = step, run_id, status, next_check, deadline


_SUSPENDABLE: ContextVar[bool] = ContextVar("drift_retrain_suspendable", default=False)


@contextmanager
def suspendable(enabled: bool = True) -> Iterator[None]:
    """Waits inside this may answer ``StillRunning`` after their hold (the retrain's step tasks, when
    ``enabled``); anywhere else (the CLI, contract tests, benchmarks) a wait blocks until the run ends."""
    token = _SUSPENDABLE.set(enabled)
    try:
        yield
    finally:
        _SUSPENDABLE.reset(token)


def may_suspend() -> bool:
    return _SUSPENDABLE.get()


@runtime_checkable
class EndCheck(Protocol):
    """A pipeline that can tell with one status call whether a run ended (the waiter, the post-suspend check)."""

    def ended(self, run_id: str) -> bool: ...


@dataclass(frozen=True)
class Backends:
    """One implementation of every step, chosen by the target's ``backend``."""

    details: DriftDetailsSource
    copy: CopyPipeline
    training: TrainingPipeline
    registry: ModelRegistry


def run_to_end(
    start: Callable[[], str],
    wait: Callable[[str], R],
    cancel: Callable[[str], None],
    on_cancel: Callable[[str, str, str], None] | None = None,
) -> R:
    """Start (or reattach to) an external run and wait for it. A wait that is interrupted (flow
    cancelled, timed out, process terminated) cancels the run, so no Azure work is left behind, and
    tells ``on_cancel(run_id, why, outcome)`` so the run's report can say so."""
    run_id = start()
    try:
        return wait(run_id)
    except (StepFailed, StillRunning):
        raise  # the run already ended, or goes on while the retrain is suspended: nothing to cancel
    except BaseException as interruption:
        log = RunLog("drift_retrain")
        try:
            cancel(run_id)
            outcome = "cancel requested"
        except Exception as exc:  # the interruption is the run's story; a failed cancel must not replace it
            outcome = f"could not cancel (it may still be running): {exc}"
            log.error("could not cancel run %s (it may still be running): %s", run_id, exc)
        if on_cancel is not None:
            try:
                on_cancel(run_id, f"{type(interruption).__name__}: {interruption}".rstrip(": "), outcome)
            except Exception as exc:
                log.error("could not record the cancellation of run %s: %s", run_id, exc)
        raise
