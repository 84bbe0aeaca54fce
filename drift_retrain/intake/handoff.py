"""Durable hand-off of drift signals to Prefect: one flow run per signal identity, ever.

Runs are created with an idempotency key derived from the signal (Prefect scopes it per flow), so a
redelivery, a duplicate subscription or a replay returns the run that already exists. Only once Prefect
has answered may the webhook acknowledge.

Prefect on SQLite takes one writer at a time and answers 503 ("database is locked") when several
clients write at once, while Event Grid delivers concurrently. So requests do not write themselves:
they enqueue their signals and wait; one writer task drains the queue in arrival order and creates the
runs in batches (Prefect's bulk endpoint for several, the single endpoint for one), retrying transient
failures with backoff until a deadline well inside Event Grid's 30 s. The batch size adapts: a failed
write halves it (a shorter write transaction is less likely to meet Prefect's own writers, its event
persister and services, on the same SQLite file), each success doubles it back up to ``batch_size``
(a bulk create costs a few times less per run than single creates, so it is worth getting back). A full queue, or a deadline
passed, fails the waiting requests at once (the webhook answers 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

import httpx
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.settings import (
    PREFECT_API_AUTH_STRING,
    PREFECT_API_KEY,
    PREFECT_API_URL,
    PREFECT_SERVER_API_MAX_PARAMETER_SIZE,
)
from prefect.states import Scheduled, to_state_create

from drift_retrain.config import HandoffConfig, TargetConfig
from drift_retrain.logsafe import log_value
from drift_retrain.names import RETRAIN_DEPLOYMENT, WEBHOOK, flow_run_name, flow_run_tags
from drift_retrain.signals import MONITOR_BREACH_TAG, DriftSignal

BULK_LIMIT = 100  # prefect.server.api.deployments.BULK_CREATE_LIMIT

log = logging.getLogger("drift_retrain.intake.handoff")


class HandoffUnavailable(RuntimeError):
    """Prefect did not durably record every run; the caller must not acknowledge the signals."""


class HandoffBusy(HandoffUnavailable):
    """Too many signals are already waiting for Prefect; refused at once rather than timed out."""


class _Transient(Exception):
    """Worth another try within the deadline (503/429/5xx, connection trouble, a bulk item failed)."""


@dataclass(frozen=True)
class HandedOff:
    flow_run_id: UUID
    flow_run_name: str
    created: bool  # False: the signal was already handed off (redelivery or duplicate)


@dataclass
class _Pending:
    signal: DriftSignal
    target: TargetConfig
    started_by: str
    enqueued: float
    future: asyncio.Future[HandedOff] = field(repr=False)
    created_here: bool = False  # an earlier attempt's bulk create made the run (a retry finds it existing)

    @property
    def key(self) -> str:
        return self.signal.idempotency_key

    @property
    def name(self) -> str:
        return flow_run_name(self.target, self.signal, self.started_by)

    def body(self) -> dict[str, Any]:
        return flow_run_body(self.signal, self.target, self.started_by)


# -- what fits in a flow run's parameters ----------------------------------------------------------

#: The key a trimmed ``raw_event`` carries, saying what was delivered and what was kept.
TRIMMED = "drift_retrain_trimmed"
#: Envelope fields kept in a trimmed ``raw_event``: its ids, type, source and time, in either schema (any
#: casing), enough for ``intake.parsing.to_drift_signal`` to read the signal again.
_ENVELOPE_KEPT = frozenset(
    "id topic source eventtype type eventtime time specversion dataversion metadataversion".split()
)
#: Data keys kept: the ones ``intake.parsing`` reads, and experimentId, which the azure backend's v2 details
#: read from the raw event (``backends.azure.details_v2``); of RunTags only the breach tag.
_DATA_KEPT = frozenset(
    "runid datadriftname datadriftid driftcoefficient starttime endtime basedatasetid targetdatasetid experimentname "
    "experimentid".split()
)


class ParametersTooLarge(ValueError):
    """Even trimmed, the signal's flow-run parameters exceed what Prefect stores: it can never be handed off."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes; Prefect stores at most {limit}")
        self.size = size
        self.limit = limit


@functools.cache
def parameter_limit() -> int:
    """Largest flow-run parameters Prefect's server accepts, as compact JSON (0: no limit). Its setting
    ``server.api.max_parameter_size`` (prefect/settings/models/server/api.py, default 524_288), checked on
    every create by prefect/_internal/schemas/validators.py ``validate_parameter_size``; a bigger create is
    refused with 422 however often it is retried. Read once from the receiver's own Prefect settings, which
    the server shares in the one-machine stack (set PREFECT_SERVER_API_MAX_PARAMETER_SIZE alike on both)."""
    return int(PREFECT_SERVER_API_MAX_PARAMETER_SIZE.value() or 0)


def flow_run_parameters(signal: DriftSignal) -> dict[str, Any]:
    return {"signal": signal.model_dump(mode="json")}


def parameters_size(signal: DriftSignal) -> int:
    """The parameters' size as Prefect measures it: ``json.dumps`` with compact separators (ASCII escapes)."""
    return len(json.dumps(flow_run_parameters(signal), separators=(",", ":")))


def _kept(mapping: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if str(k).lower() in names}


def bounded_raw_event(raw: dict[str, Any], delivered_bytes: int) -> dict[str, Any]:
    """The raw event cut to what downstream reads: the envelope's ids, the data keys read, the breach tag."""
    kept = _kept(raw, _ENVELOPE_KEPT)
    data_key = next((k for k in raw if str(k).lower() == "data"), None)
    data = raw.get(data_key) if data_key is not None else None
    if isinstance(data, dict):
        kept_data = _kept(data, _DATA_KEPT)
        tags_key = next((k for k in data if str(k).lower() == "runtags"), None)
        if tags_key is not None and isinstance(data[tags_key], dict):
            kept_data[tags_key] = _kept(data[tags_key], frozenset({MONITOR_BREACH_TAG.lower()}))
        kept[data_key] = kept_data  # type: ignore[index]
    kept[TRIMMED] = (
        f"the delivered event made {delivered_bytes} bytes of flow-run parameters, more than Prefect stores; "
        "kept: the envelope's ids, the data keys drift-retrain reads and the breach tag"
    )
    return kept


def fit_for_prefect(signal: DriftSignal, limit: int | None = None) -> DriftSignal:
    """The signal as it can be handed to Prefect: whole when its parameters fit, else with a bounded
    ``raw_event`` (marked with ``TRIMMED``); ``ParametersTooLarge`` when even that does not fit."""
    limit = parameter_limit() if limit is None else limit
    if not limit:
        return signal
    size = parameters_size(signal)
    if size <= limit:
        return signal
    trimmed = signal.model_copy(update={"raw_event": bounded_raw_event(signal.raw_event, size)})
    trimmed_size = parameters_size(trimmed)
    if trimmed_size > limit:
        raise ParametersTooLarge(trimmed_size, limit)
    return trimmed


def flow_run_body(signal: DriftSignal, target: TargetConfig, started_by: str = WEBHOOK) -> dict[str, Any]:
    """The ``create_flow_run`` request for a signal: its parameters, name, tags and idempotency key.

    It skips the server's parameter-schema check for this run only (``enforce_parameter_schema: false``, a
    per-run override of Prefect's DeploymentFlowRunCreate honoured by the single and bulk creates:
    prefect/server/api/deployments.py ``create_flow_run_from_deployment``). That check re-validates the
    deployment's whole JSON schema against the JSON Schema meta-schema on every create (jsonschema.validate's
    ``check_schema``, called by prefect/utilities/schema_tools/validation.py ``validate``): about 15 ms per run
    for drift-to-retrain's schema, to check parameters ``DriftSignal`` has already validated (more strictly
    than its JSON schema says) and that the flow validates again when it starts. The deployment keeps
    ``enforce_parameter_schema: true``, so the Run form and every other caller are still checked."""
    return DeploymentFlowRunCreate(
        parameters=flow_run_parameters(signal),
        state=to_state_create(Scheduled()),
        name=flow_run_name(target, signal, started_by),
        tags=flow_run_tags(target, signal, started_by),
        idempotency_key=signal.idempotency_key,
        enforce_parameter_schema=False,
    ).model_dump(mode="json", exclude_unset=True)


def prefect_http_client(api_url: str | None = None, timeout: float = 10.0) -> httpx.AsyncClient:
    """A plain client for Prefect's REST API (our own retries, not the Prefect client's long backoff),
    authenticated the way Prefect's client is (PREFECT_API_AUTH_STRING or PREFECT_API_KEY)."""
    headers = {}
    if auth := PREFECT_API_AUTH_STRING.value():
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif key := PREFECT_API_KEY.value():
        headers["Authorization"] = f"Bearer {key}"
    url = (api_url or PREFECT_API_URL.value() or "").rstrip("/")
    if not url:
        raise HandoffUnavailable("PREFECT_API_URL is not set")
    return httpx.AsyncClient(base_url=url + "/", headers=headers, timeout=timeout)


class PrefectHandoff:
    """Creates drift-to-retrain flow runs through one ordered, batching writer."""

    def __init__(
        self,
        deployment: str = RETRAIN_DEPLOYMENT,
        config: HandoffConfig | None = None,
        api_url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.deployment = deployment
        self.config = config or HandoffConfig()
        self.api_url = api_url
        self._http = http  # default: a client for $PREFECT_API_URL, made on entry
        self._deployment_ids: tuple[str, str] | None = None  # (deployment id, flow id)
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.batch_limit = self.config.batch_size  # adapts between 1 and batch_size (see the module doc)

    async def __aenter__(self) -> PrefectHandoff:
        if self._http is None:
            self._http = prefect_http_client(self.api_url)
        self._writer = asyncio.create_task(self._write_forever(), name="prefect-handoff-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        self._fail(list(self._queue), HandoffUnavailable("receiver shutting down"))
        self._queue.clear()
        if self._http is not None:
            await self._http.aclose()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def healthy(self) -> bool:
        assert self._http is not None
        try:
            return (await self._http.get("health", timeout=3)).status_code == 200
        except httpx.HTTPError:
            return False

    async def hand_off(self, signal: DriftSignal, target: TargetConfig, started_by: str = WEBHOOK) -> HandedOff:
        return (await self.hand_off_all([(signal, target)], started_by))[0]

    async def hand_off_all(
        self, items: Iterable[tuple[DriftSignal, TargetConfig]], started_by: str = WEBHOOK
    ) -> list[HandedOff]:
        """Every signal recorded as a run, in order, or ``HandoffUnavailable``: all or none acknowledged."""
        items = list(items)
        if not items:
            return []
        if self._writer is None or self._writer.done():
            raise HandoffUnavailable("hand-off writer is not running")
        if len(self._queue) + len(items) > self.config.max_pending:
            raise HandoffBusy(
                f"{len(self._queue)} signals already wait for Prefect (max_pending {self.config.max_pending})"
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        pending = [_Pending(s, t, started_by, now, loop.create_future()) for s, t in items]
        self._queue.extend(pending)  # no await in between: a request's signals stay together and in order
        self._wakeup.set()
        futures = [p.future for p in pending]
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), self.config.deadline_seconds + 2))
        except TimeoutError:
            raise HandoffUnavailable(
                f"Prefect did not record the runs within {self.config.deadline_seconds:.0f} s"
            ) from None
        finally:
            for future in futures:
                if future.done() and not future.cancelled():
                    future.exception()  # mark retrieved: one failure fails the others, no stray warnings

    # -- the writer -------------------------------------------------------------------------------

    async def _write_forever(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._next_batch()
            if not batch:
                continue
            try:
                results = await self._create_with_retries(batch)
            except HandoffUnavailable as exc:
                self._deployment_ids = None  # look the deployment up again: it may have been re-created
                self._fail(batch, exc)
            except Exception as exc:  # never let the writer die: the next request would hang
                log.exception("hand-off writer failed")
                self._fail(batch, HandoffUnavailable(f"{type(exc).__name__}: {exc}"))
            else:
                self.batch_limit = min(self.config.batch_size, self.batch_limit * 2)
                for item in batch:
                    if not item.future.done():
                        item.future.set_result(results[id(item)])

    def _next_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        expired: list[_Pending] = []
        now = time.monotonic()
        while self._queue and len(batch) < self.batch_limit:
            item = self._queue.popleft()
            if item.future.done():
                continue  # its request gave up already
            if now - item.enqueued > self.config.deadline_seconds:
                expired.append(item)
            else:
                batch.append(item)
        self._fail(expired, HandoffUnavailable("waited too long for Prefect"))
        return batch

    @staticmethod
    def _fail(items: list[_Pending], exc: Exception) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)

    async def _create_with_retries(self, batch: list[_Pending]) -> dict[int, HandedOff]:
        deadline = min(p.enqueued for p in batch) + self.config.deadline_seconds
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                return await asyncio.wait_for(self._create(batch), max(remaining, 0.1))
            except (TimeoutError, _Transient, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                self.batch_limit = max(1, self.batch_limit // 2)
            remaining = deadline - time.monotonic()
            if remaining <= delay:
                raise HandoffUnavailable(f"Prefect did not record the runs after {attempt} attempt(s): {problem}")
            log.warning(
                "Prefect write failed (attempt %d, %d signal(s)), retrying in %.1f s: %s",
                attempt,
                len(batch),
                delay,
                log_value(problem, 300),  # Prefect's answer may quote the parameters: event values
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self._http is not None
        response = await self._http.request(method, path, **kwargs)
        if response.status_code in (404, 408, 409, 429) or response.status_code >= 500:
            if response.status_code == 404:
                self._deployment_ids = None
            raise _Transient(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise HandoffUnavailable(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response

    async def _ids(self) -> tuple[str, str]:
        if self._deployment_ids is None:
            deployment = (await self._request("GET", f"deployments/name/{self.deployment}")).json()
            self._deployment_ids = (deployment["id"], deployment["flow_id"])
        return self._deployment_ids

    async def _create(self, batch: list[_Pending]) -> dict[int, HandedOff]:
        deployment_id, flow_id = await self._ids()
        by_key: dict[str, list[_Pending]] = {}
        for item in batch:
            by_key.setdefault(item.key, []).append(item)
        firsts = [items[0] for items in by_key.values()]
        if len(firsts) == 1:
            made = {firsts[0].key: await self._create_one(deployment_id, firsts[0])}
        else:
            made = await self._create_many(deployment_id, flow_id, firsts)
        results: dict[int, HandedOff] = {}
        for key, items in by_key.items():
            results[id(items[0])] = made[key]
            for repeat in items[1:]:  # the same signal twice in one batch: one run, the rest duplicates
                results[id(repeat)] = HandedOff(made[key].flow_run_id, made[key].flow_run_name, created=False)
        return results

    async def _create_one(self, deployment_id: str, item: _Pending) -> HandedOff:
        response = await self._request("POST", f"deployments/{deployment_id}/create_flow_run", json=item.body())
        run = response.json()
        return HandedOff(UUID(run["id"]), run["name"], created=response.status_code == 201)

    async def _create_many(self, deployment_id: str, flow_id: str, items: list[_Pending]) -> dict[str, HandedOff]:
        """Bulk create: it honours idempotency keys but reports every run as CREATED, so the runs that
        already exist are looked up first and only the missing ones are created."""
        made = await self._existing(flow_id, [i.key for i in items])
        for item in items:
            if item.created_here and item.key in made:  # made by this batch's failed attempt: still new
                made[item.key] = replace(made[item.key], created=True)
        missing = [i for i in items if i.key not in made]
        for start in range(0, len(missing), BULK_LIMIT):
            chunk = missing[start : start + BULK_LIMIT]
            response = await self._request(
                "POST", f"deployments/{deployment_id}/create_flow_run/bulk", json=[i.body() for i in chunk]
            )
            outcomes = response.json()["results"]
            # Not strict: a short answer still tells which runs it created; the length check below then fails it.
            for item, outcome in zip(chunk, outcomes, strict=False):
                if outcome.get("status") == "CREATED" and outcome.get("flow_run_id"):
                    item.created_here = True
            failed = [o.get("error") for o in outcomes if o.get("status") != "CREATED" or not o.get("flow_run_id")]
            if failed or len(outcomes) != len(chunk):
                raise _Transient(f"bulk create: {len(failed)} of {len(chunk)} failed: {failed[:1]}")
            for item, outcome in zip(chunk, outcomes, strict=True):
                made[item.key] = HandedOff(UUID(outcome["flow_run_id"]), item.name, created=True)
        return made

    async def _existing(self, flow_id: str, keys: list[str]) -> dict[str, HandedOff]:
        query = {
            "flows": {"id": {"any_": [flow_id]}},
            "flow_runs": {"idempotency_key": {"any_": keys}},
            "limit": len(keys),
        }
        runs = (await self._request("POST", "flow_runs/filter", json=query)).json()
        return {r["idempotency_key"]: HandedOff(UUID(r["id"]), r["name"], created=False) for r in runs}
