"""Deliver events to the webhook the way Event Grid does (used by the monitor, `send-event` and tests)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def post_events(
    url: str, events: list[dict[str, Any]], secret: str | None, *, delivery_count: int = 0, timeout: float = 60.0
) -> httpx.Response:
    """POST an Event Grid-schema array with Event Grid's delivery headers; the secret goes in ?code=."""
    is_validation = any(e.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent" for e in events)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "aeg-event-type": "SubscriptionValidation" if is_validation else "Notification",
        "aeg-subscription-name": "DRIFT-RETRAIN-LOCAL",
        "aeg-delivery-count": str(delivery_count),
        "aeg-metadata-version": "1",
        "aeg-data-version": "",
        "aeg-output-event-id": str(uuid.uuid4()),
    }
    params = {"code": secret} if secret else None
    return httpx.post(url, json=events, headers=headers, params=params, timeout=timeout)
