"""Durable hand-off of a drift signal to Prefect: one flow run per signal identity, ever.

The run is created through the Prefect API with an idempotency key derived from the signal, so a
redelivery, a duplicate subscription or a replay returns the run that already exists. Only once this
returns has Prefect recorded the run in its database; only then may the webhook answer 200.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Scheduled, to_state_create

from drift_retrain.config import TargetConfig
from drift_retrain.lineage import flow_run_name, flow_run_tags
from drift_retrain.signals import DriftSignal

DEPLOYMENT = "drift-to-retrain/drift-to-retrain"


class HandoffUnavailable(RuntimeError):
    """Prefect could not durably record the run; the caller must not acknowledge the signal."""


@dataclass(frozen=True)
class HandedOff:
    flow_run_id: UUID
    flow_run_name: str
    created: bool  # False: the signal was already handed off (redelivery or duplicate)


class PrefectHandoff:
    """Creates drift-to-retrain flow runs; one instance holds one API client for its lifetime."""

    def __init__(self, deployment: str = DEPLOYMENT, timeout: float = 20.0, client: PrefectClient | None = None) -> None:
        self.deployment = deployment
        self.timeout = timeout
        self._client = client
        self._deployment_id: UUID | None = None
        self._lock = asyncio.Lock()  # SQLite takes one writer at a time: queue here, not as 503s there

    async def __aenter__(self) -> "PrefectHandoff":
        if self._client is None:
            self._client = get_client()
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._client is not None
        await self._client.__aexit__(*exc)

    async def healthy(self) -> bool:
        assert self._client is not None
        return (await self._client.api_healthcheck()) is None

    async def hand_off(self, signal: DriftSignal, target: TargetConfig, started_by: str = "webhook") -> HandedOff:
        try:
            async with self._lock:
                return await asyncio.wait_for(self._create(signal, target, started_by), self.timeout)
        except (asyncio.TimeoutError, httpx.HTTPError, PrefectHTTPStatusError, ObjectNotFound, OSError) as exc:
            self._deployment_id = None  # look the deployment up again next time: it may have been re-created
            raise HandoffUnavailable(f"Prefect did not record the flow run: {type(exc).__name__}: {exc}") from exc

    async def _create(self, signal: DriftSignal, target: TargetConfig, started_by: str) -> HandedOff:
        assert self._client is not None
        if self._deployment_id is None:
            self._deployment_id = (await self._client.read_deployment_by_name(self.deployment)).id
        body = DeploymentFlowRunCreate(
            parameters={"signal": signal.model_dump(mode="json")},
            state=to_state_create(Scheduled()),
            name=flow_run_name(target, signal),
            tags=flow_run_tags(target, signal, started_by),
            idempotency_key=signal.idempotency_key,
        )
        response = await self._client.request(
            "POST",
            "/deployments/{id}/create_flow_run",
            path_params={"id": self._deployment_id},
            json=body.model_dump(mode="json", exclude_unset=True),
        )
        run = response.json()
        return HandedOff(flow_run_id=UUID(run["id"]), flow_run_name=run["name"], created=response.status_code == 201)
