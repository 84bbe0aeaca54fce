"""Reading one Event Grid delivery: handshake, validation and routing, before anything is handed off.

Pure and synchronous, so every rule is testable without a server. A delivery is all-or-none: if any
event in it is invalid or refused, nothing in it is handed off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from drift_retrain.config import Settings, TargetConfig
from drift_retrain.signals import (
    SUBSCRIPTION_VALIDATION,
    DriftSignal,
    InvalidEvent,
    NotADriftSignal,
    parse_envelope,
    to_drift_signal,
)


class Rejected(ValueError):
    """The delivery is refused as a whole; ``status`` is the HTTP answer (400 is not retried)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Routed:
    signal: DriftSignal
    target: TargetConfig


@dataclass(frozen=True)
class Ignored:
    event_id: str
    event_type: str
    reason: str


@dataclass
class Delivery:
    """What a delivery asks of us: a handshake answer, or signals to hand off and events to ignore."""

    validation_code: str | None = None
    validation_url: str | None = None
    signals: list[Routed] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)


def read_delivery(body: bytes, settings: Settings) -> Delivery:
    """Parse and route every event of a delivery, or reject the whole delivery."""
    try:
        document: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}") from None
    events = document if isinstance(document, list) else [document]
    if not events or not all(isinstance(e, dict) for e in events):
        raise Rejected(400, "body must be a JSON object or a non-empty array of event objects")
    delivery = Delivery()
    for index, event in enumerate(events):
        try:
            _read_event(event, settings, delivery)
        except InvalidEvent as exc:
            raise Rejected(400, f"event #{index}: {exc}") from None
    return delivery


def _read_event(event: dict[str, Any], settings: Settings, delivery: Delivery) -> None:
    envelope = parse_envelope(event)
    if envelope.type == SUBSCRIPTION_VALIDATION:
        code = envelope.data.get("validationCode")
        if not isinstance(code, str) or not code:
            raise InvalidEvent(f"validation event {envelope.id} has no data.validationCode")
        delivery.validation_code = code
        delivery.validation_url = envelope.data.get("validationUrl")
        return
    try:
        signal = to_drift_signal(event)
    except NotADriftSignal as exc:
        delivery.ignored.append(Ignored(envelope.id, envelope.type, exc.reason))
        return
    if not settings.knows_workspace(signal.workspace_id):
        raise Rejected(400, f"event {signal.event_id}: workspace {signal.workspace_id} is not configured")
    target = settings.target_for(signal)
    if target is None:
        reason = f"monitor '{signal.monitor}' is not routed to any target"
        delivery.ignored.append(Ignored(envelope.id, envelope.type, reason))
        return
    delivery.signals.append(Routed(signal, target))
