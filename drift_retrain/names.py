"""The one vocabulary: every name, key, tag and resource id drift-retrain writes, and the readers of them.

A name written in one module and read in another (a tag the policy reads back, a key a rerun reattaches by,
a resource id an automation matches) is defined here once, writer and reader side by side, so they cannot
disagree. Pure: no Prefect, no Azure, nothing from ``backends`` or ``intake`` (and only type names and the
import-free ``drift_retrain.text`` from the rest of the package), so every layer can import it.

Event text in a name a person reads (a run name, a tag, an event resource's display name) is one line of
visible characters and bounded (``label``): no value can add a line, hide or reorder text, or flood a list.
Keys and ids that identify (the idempotency key, resource ids) keep the value whole.

Resource ids of Prefect events, one scheme for every event of a signal (the feed's ``azureml.drift.detected``
and the flow's decision, registration and failure events), so an automation can follow one signal:

- ``drift-retrain.signal.<digest>``             the signal (name: its identity), related to every event
- ``azureml.workspace.<workspace>``             the Azure ML workspace (label ``azureml.workspace.id``: its ARM id)
- ``azureml.monitor.<workspace>.<monitor>``     the drift monitor
- ``azureml.drift-run.<workspace>.<run id>``    the drift (monitor) run; a manual signal has none
- ``drift-retrain.model.<model>``               the model: primary resource of the flow's events
- ``prefect.flow-run.<id>``                     the flow run (Prefect's own scheme)
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from drift_retrain.text import one_line

if TYPE_CHECKING:
    from drift_retrain.config import TargetConfig
    from drift_retrain.signals import DriftSignal


# -- slugs -------------------------------------------------------------------------------------------

_NOT_SLUG = re.compile(r"[^a-z0-9-]+")


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes, what Prefect artifact keys take and every other Prefect name
    accepts: each run of other characters becomes one dash, and no dash leads or trails."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


# -- event text in names people read ----------------------------------------------------------------

#: Most characters of one event value in a run name or a tag (Azure's run ids are far shorter).
MAX_LABEL = 128
#: Most characters of an event resource's display name (a signal's identity: a workspace ARM id and a run id).
MAX_RESOURCE_NAME = 1024


def label(value: str, limit: int = MAX_LABEL) -> str:
    """An event value as a name may show it: one line, no control or invisible characters, at most ``limit``
    characters (``text.one_line``)."""
    return one_line(value, limit)


# -- the signal: identity, digest, idempotency key ---------------------------------------------------

#: Hex digits of the identity's SHA-256 in every key derived from it (80 bits: collision-safe, short).
DIGEST_LENGTH = 20


def signal_identity(workspace_id: str, run_id: str) -> str:
    """Workspace + drift run: the same drift is the same signal, however often it is delivered."""
    return f"{workspace_id.lower()}/runs/{run_id}"


def digest(identity: str) -> str:
    """The identity's fixed-length fingerprint, safe in any name: run keys, job names, ``{signal_key}``, ids."""
    return hashlib.sha256(identity.encode()).hexdigest()[:DIGEST_LENGTH]


def idempotency_key(signal: DriftSignal) -> str:
    """Prefect's per-flow idempotency key: readable (workspace and drift run first), collision-safe (digest)."""
    return f"drift:{signal.workspace_name.lower()}:{signal.run_id}:{signal.digest}"


def manual_run_id(target_name: str, window_start: datetime, window_end: datetime) -> str:
    """The drift run id a retrain by hand gets: one per target and window, so asking twice is one signal."""
    stamp = "%Y%m%dT%H%MZ"
    return f"manual-{target_name}-{window_start:{stamp}}-{window_end:{stamp}}"


def manual_event_id(request_id: str) -> str:
    return f"manual:{request_id}"


# -- external runs: reattach keys, ledger, Azure ML job names ----------------------------------------

#: The steps that start external work; each names its ledger records and its failures.
COPY_STEP, TRAINING_STEP = "copy", "training"


def copy_run_key(signal: DriftSignal) -> str:
    """The copy's deterministic run id (local) and ledger key (Data Factory): a rerun reattaches by it."""
    return f"copy-{signal.digest}"


def training_run_key(signal: DriftSignal) -> str:
    """The training's deterministic job id (local), ledger key and first Azure ML job name."""
    return f"train-{signal.digest}"


def training_job_name(signal: DriftSignal, attempt: int = 1) -> str:
    """The Azure ML job name of one attempt: the signal's key first, then ``-2``, ``-3``... for reruns after
    a failure. Deterministic, so a crash between creating a job and recording it still reattaches."""
    key = training_run_key(signal)
    return key if attempt == 1 else f"{key}-{attempt}"


#: Every training job name starts with this (``training_run_key``); the receiver recognises Azure ML job events
#: for our jobs by it, and ``azure subscription`` filters the job-event subscription's subject on it.
TRAINING_JOB_PREFIX = "train-"
#: One of our training job names: the prefix, the signal's digest, and ``-<attempt>`` past the first.
TRAINING_JOB_NAME = re.compile(rf"{TRAINING_JOB_PREFIX}[0-9a-f]{{{DIGEST_LENGTH}}}(?:-[1-9][0-9]{{0,3}})?")

# -- waiting on external runs: what a suspended retrain waits on, as a Prefect resource and a run tag --------

#: Every retrain suspended while an external run goes on carries this tag (the waiter lists them by it).
WAITING_TAG = "waiting"


def job_resource(job_name: str) -> str:
    """The Prefect resource id of an Azure ML job (events about the job name it): ``azureml.job.<name>``."""
    return f"azureml.job.{job_name}"


def pipeline_run_resource(run_id: str) -> str:
    """The Prefect resource id of a Data Factory pipeline run: ``azure.datafactory.pipelinerun.<runId>``."""
    return f"azure.datafactory.pipelinerun.{run_id}"


def waiting_tag(resource: str) -> str:
    """The tag of a retrain suspended on ``resource`` (``job_resource``/``pipeline_run_resource``): the
    receiver finds the runs a job event wakes by it."""
    return f"waiting-on:{resource}"


LEDGER_VARIABLE_PREFIX = "drift_retrain_run"
_VARIABLE_NAME = re.compile(r"[a-z0-9_-]{1,255}")


def ledger_variable_name(step: str, key: str) -> str:
    """``drift_retrain_run__<step>__<key>``: Variable names take lowercase letters, digits, - and _."""
    name = f"{LEDGER_VARIABLE_PREFIX}__{step}__{key}".lower()
    if not _VARIABLE_NAME.fullmatch(name):
        raise ValueError(f"ledger key {step!r}/{key!r} does not make a valid Prefect Variable name: {name!r}")
    return name


# -- Azure Event Grid subscriptions -----------------------------------------------------------------

#: One subscription per signal kind: v1 dataset drift, v2 model-monitor breach.
V1_DRIFT_SUBSCRIPTION, V2_MONITOR_SUBSCRIPTION = "v1-drift", "v2-monitor"


def event_subscription_name(target_name: str, kind: str) -> str:
    """``<target>-v1-drift`` / ``<target>-v2-monitor``: the Event Grid subscriptions the project creates."""
    return f"{target_name}-{kind}"


# -- Prefect flows, deployments, flow runs and their tags --------------------------------------------

PROJECT_TAG = "drift-retrain"
RETRAIN_FLOW, SWEEP_FLOW, PROMOTE_FLOW = "drift-to-retrain", "sweep", "promote"
RETRAIN_DEPLOYMENT_NAME = "drift-to-retrain"
RETRAIN_DEPLOYMENT = f"{RETRAIN_FLOW}/{RETRAIN_DEPLOYMENT_NAME}"  # <flow>/<deployment>, as the API looks it up
#: The promote flow's run name template (Prefect fills in the flow's parameters).
PROMOTE_RUN_NAME = "promote-{model}-v{version}"

#: Who started a run, as its ``via:`` tag says: the Event Grid receiver, the scheduled sweep, or a person.
WEBHOOK, SWEEP, MANUAL = "webhook", "sweep", "manual"

MODEL_PREFIX, VIA_PREFIX = "model:", "via:"

#: How a retrain ended, as its ``decision:`` tag says (set before the run ends, so the run list filters by it):
#: a version registered, a policy rule said no, or the trained model failed the champion/challenger gate.
RETRAIN, SKIP, GATED = "retrain", "skip", "gated"
DECISION_PREFIX = "decision:"


def decision_tag(verdict: str) -> str:
    """``decision:retrain``, ``decision:skip`` or ``decision:gated``."""
    if verdict not in (RETRAIN, SKIP, GATED):
        raise ValueError(f"unknown verdict {verdict!r}")
    return f"{DECISION_PREFIX}{verdict}"


def with_decision_tag(tags: Iterable[str], verdict: str) -> list[str]:
    """The run's tags with its one ``decision:`` tag (a rerun that decides otherwise replaces the old one)."""
    return [*(t for t in tags if not t.startswith(DECISION_PREFIX)), decision_tag(verdict)]


#: Hex digits of the signal's digest a run name ends in: tells apart two runs of one model and window.
RUN_NAME_DIGEST = 8


def window_span(start: datetime, end: datetime) -> str:
    """``2026-11-19..26``: a data window's days (UTC), the end's year and month only when they differ from
    the start's (``2026-11-28..12-05``, ``2026-12-28..2027-01-04``)."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if (start.year, start.month) == (end.year, end.month):
        tail = f"{end:%d}"
    elif start.year == end.year:
        tail = f"{end:%m-%d}"
    else:
        tail = f"{end:%Y-%m-%d}"
    return f"{start:%Y-%m-%d}..{tail}"


def _when(signal: DriftSignal) -> str:
    """The signal's window as days, or the day of its event when it names no window (a v2 breach may not)."""
    if signal.window_start is not None and signal.window_end is not None:
        return window_span(signal.window_start, signal.window_end)
    return f"{signal.event_time.astimezone(UTC):%Y-%m-%d}" if signal.event_time else "no-window"


def flow_run_name(target: TargetConfig, signal: DriftSignal, started_by: str = WEBHOOK) -> str:
    """``<model>-<window>-<digest>`` (``credit-default-2026-11-19..26-2f5fa437``): which model, which days,
    readable in every Prefect list; the signal's digest tells two drift runs of one window apart. A run the
    sweep caught up (its event never arrived) ends in ``-sweep``; a retrain by hand is
    ``<model>-manual-<window>-<digest>``. Deterministic: the receiver names the run when it creates it and
    the flow names it again (``flow_run_name=``) from the same signal, to the same name."""
    short = signal.digest[:RUN_NAME_DIGEST]
    if signal.kind == MANUAL_KIND:  # what the run is about, not who started it: a signal's run has its own name
        return f"{target.model_name}-{MANUAL}-{_when(signal)}-{short}"
    name = f"{target.model_name}-{_when(signal)}-{short}"
    return f"{name}-{SWEEP}" if started_by == SWEEP else name


def unrouted_run_name(signal: DriftSignal) -> str:
    """The name of a run whose signal no target takes (it fails; the name still says which days, and the
    digest which signal)."""
    return f"unrouted-{_when(signal)}-{signal.digest[:RUN_NAME_DIGEST]}"


def sweep_run_name(when: datetime) -> str:
    """``sweep-2026-11-30T10:30Z``: when the sweep was due (its schedule's time, UTC)."""
    return f"{SWEEP_FLOW}-{when.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


def flow_run_tags(target: TargetConfig, signal: DriftSignal, started_by: str) -> list[str]:
    return [
        f"{MODEL_PREFIX}{target.model_name}",
        f"target:{target.name}",
        f"workspace:{label(signal.workspace_name)}",
        f"monitor:{label(signal.monitor)}",
        f"kind:{signal.kind.value}",
        f"backend:{target.backend}",
        f"{VIA_PREFIX}{started_by}",
    ]


def started_by(tags: Iterable[str]) -> str:
    """Read back who started a run from its ``via:`` tag; a run without one was started by hand."""
    return next((tag.removeprefix(VIA_PREFIX) for tag in tags if tag.startswith(VIA_PREFIX)), MANUAL)


def model_of_run(tags: Iterable[str]) -> str:
    """Read back the model a run retrains from its ``model:`` tag ("" when it has none)."""
    return next((tag.removeprefix(MODEL_PREFIX) for tag in tags if tag.startswith(MODEL_PREFIX)), "")


def ledger_variable_tags(step: str) -> list[str]:
    return [PROJECT_TAG, f"step:{step}"]


# -- tags on Azure ML jobs and model versions (lineage) ----------------------------------------------

#: The signal's identity: registration is idempotent on it and the policy's "already handled" reads it.
SIGNAL_TAG = "drift_retrain.signal"
TARGET_TAG = "drift_retrain.target"
WINDOW_START_TAG, WINDOW_END_TAG = "drift.window_start", "drift.window_end"
MONITOR_RUN_TAG = "drift.monitor_run"
COPY_RUN_TAG = "copy.run_id"
TRAINING_JOB_TAG = "training.job_id"
FLOW_RUN_TAG = "prefect.flow_run_id"


def signal_of(tags: Mapping[str, str]) -> str | None:
    """The identity of the signal a job or model version was made for, or None."""
    return tags.get(SIGNAL_TAG) or None


def monitor_run_of(tags: Mapping[str, str]) -> str | None:
    """The v2 monitor run a model version was retrained for, or None."""
    return tags.get(MONITOR_RUN_TAG) or None


def window_of(tags: Mapping[str, str]) -> tuple[datetime, datetime] | None:
    """The data window a model version was trained on, or None when its tags name none."""
    start, end = tags.get(WINDOW_START_TAG), tags.get(WINDOW_END_TAG)
    if not start or not end:
        return None
    return datetime.fromisoformat(start), datetime.fromisoformat(end)


# -- artifact keys -----------------------------------------------------------------------------------

#: What each keyed artifact reports (``<kind>-<model>``); the sweep's table has one key for all models.
DECISION, DRIFT, COPY, TRAINING, MODEL = "decision", "drift", "copy", "training", "model"
CANCELLED, PROMOTION = "cancelled", "promote"
SWEEP_ARTIFACT = "sweep"


def artifact_key(kind: str, model_name: str) -> str:
    """``<kind>-<model>``: keyed per model, so the UI finds each kind of report across runs."""
    return slug(f"{kind}-{model_name}")


# -- concurrency limits ------------------------------------------------------------------------------

LIMIT_PREFIX = "drift-retrain-model-"


def limit_name(model_name: str) -> str:
    """``drift-retrain-model-<model>``: the global concurrency limit that keeps one retrain per model."""
    return LIMIT_PREFIX + slug(model_name)


# -- Prefect events and their resources --------------------------------------------------------------

DRIFT_DETECTED = "azureml.drift.detected"
DECISION_MADE = "drift-retrain.decision.made"
MODEL_REGISTERED = "drift-retrain.model.registered"
RETRAIN_FAILED = "drift-retrain.retrain.failed"

ID, NAME, ROLE = "prefect.resource.id", "prefect.resource.name", "prefect.resource.role"
WORKSPACE_ID_LABEL = "azureml.workspace.id"
SIGNAL_ROLE, WORKSPACE_ROLE, MONITOR_ROLE, DRIFT_RUN_ROLE = "signal", "workspace", "monitor", "drift-run"
MODEL_ROLE, FLOW_RUN_ROLE = "model", "flow-run"

MANUAL_KIND = "manual"  # SignalKind.MANUAL (a StrEnum: equal to its value), not imported: signals imports this module
_EVENT_NAMESPACE = uuid.UUID("6f1c4b8e-3d7a-4f7e-9a51-2b8d0c4e7a10")


def signal_resource_id(signal: DriftSignal) -> str:
    return f"drift-retrain.signal.{signal.digest}"


def workspace_resource_id(signal: DriftSignal) -> str:
    return f"azureml.workspace.{signal.workspace_name.lower()}"


def monitor_resource_id(signal: DriftSignal) -> str:
    return f"azureml.monitor.{signal.workspace_name.lower()}.{signal.monitor}"


def drift_run_resource_id(signal: DriftSignal) -> str:
    return f"azureml.drift-run.{signal.workspace_name.lower()}.{signal.run_id}"


def model_resource_id(model_name: str) -> str:
    """What automations match a model's events by (prefect.yaml's promote trigger: ``drift-retrain.model.*``)."""
    return f"drift-retrain.model.{model_name}"


def flow_run_resource_id(flow_run_id: object) -> str:
    return f"prefect.flow-run.{flow_run_id}"


#: Label of the model resource of ``drift-retrain.model.registered``: whether the version passed the
#: champion/challenger gate (``passed``) or was registered without one (``off``). prefect.yaml's promote
#: trigger matches on it, so a version that did not pass a gate is never promoted.
GATE_LABEL = "drift-retrain.gate"
GATE_PASSED, GATE_FAILED, GATE_OFF = "passed", "failed", "off"


def model_resource(model_name: str, gate: str | None = None) -> dict[str, str]:
    """The primary resource of the flow's events; the promote trigger reads the model from its name (and,
    on the registered event, whether it passed the gate from ``GATE_LABEL``)."""
    resource = {ID: model_resource_id(model_name), NAME: model_name}
    return {**resource, GATE_LABEL: gate} if gate else resource


def monitor_resource(signal: DriftSignal) -> dict[str, str]:
    """The primary resource of ``azureml.drift.detected``: the monitor that saw the drift."""
    return {ID: monitor_resource_id(signal), NAME: label(signal.monitor), WORKSPACE_ID_LABEL: signal.workspace_id}


def signal_related(signal: DriftSignal, *, monitor: bool = True) -> list[dict[str, str]]:
    """The signal and the Azure ML workspace, monitor and drift run behind it, as related resources: the
    same ids on every event of the signal. ``monitor=False`` when the monitor is the event's own resource."""
    related = [
        {ID: signal_resource_id(signal), ROLE: SIGNAL_ROLE, NAME: label(signal.identity, MAX_RESOURCE_NAME)},
        {
            ID: workspace_resource_id(signal),
            ROLE: WORKSPACE_ROLE,
            NAME: label(signal.workspace_name),
            WORKSPACE_ID_LABEL: signal.workspace_id,
        },
    ]
    if monitor:
        related.append({ID: monitor_resource_id(signal), ROLE: MONITOR_ROLE, NAME: label(signal.monitor)})
    if signal.kind != MANUAL_KIND:  # a retrain by hand has no drift run
        related.append({ID: drift_run_resource_id(signal), ROLE: DRIFT_RUN_ROLE, NAME: label(signal.run_id)})
    return related


def model_related(model_name: str) -> dict[str, str]:
    return {ID: model_resource_id(model_name), ROLE: MODEL_ROLE, NAME: model_name}


def flow_run_related(flow_run_id: object, name: str | None = None) -> dict[str, str]:
    related = {ID: flow_run_resource_id(flow_run_id), ROLE: FLOW_RUN_ROLE}
    return {**related, NAME: name} if name else related


def drift_detected_event_id(signal: DriftSignal) -> uuid.UUID:
    """The same signal always makes the same ``azureml.drift.detected`` event id: Prefect drops a repeat."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{DRIFT_DETECTED}/{signal.identity}")
