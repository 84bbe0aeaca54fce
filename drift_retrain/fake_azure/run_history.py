"""A run as run history answers it: the one body the fake's children listings (a job's steps, a monitor's
run tree) share. The fields are those of a recorded children answer (Azure/azure-sdk-assets, replayed from
tests/fixtures/machinelearning/history_children_recorded.json) that callers read."""

from __future__ import annotations

import uuid
from typing import Any


def history_run(
    *,
    run_id: str,
    parent_id: str | None,
    root_id: str,
    experiment_id: str,
    status: str,
    created: str,
    ended: str | None,
    display_name: str,
    name: str,
    run_type: str,
    properties: dict[str, str],
    tags: dict[str, str],
) -> dict[str, Any]:
    return {
        "runId": run_id,
        "parentRunId": parent_id,
        "rootRunId": root_id,
        "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, run_id)),
        "experimentId": experiment_id,
        "status": status,
        "error": None,
        "createdUtc": created,
        "startTimeUtc": created,
        "endTimeUtc": ended,
        "displayName": display_name,
        "name": name,
        "hidden": False,
        "runType": run_type,
        "properties": dict(properties),
        "tags": dict(tags),
    }
