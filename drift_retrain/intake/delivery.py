"""Reading one Event Grid delivery: handshake, validation, filters and routing, before anything is handed off.

Pure and synchronous, so every rule is testable without a server. A delivery is all-or-none: if any
event in it is invalid or refused, nothing in it is handed off.

What the Event Grid docs tell a consumer to check, in order: the content type; the body's size and
shape; each event's envelope; that its topic/source is a workspace we serve; that its type is one we
handle (others are acknowledged and ignored with a reason); the configured subscription filters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drift_retrain.config import ReceiverConfig, Settings, TargetConfig
from drift_retrain.intake.filters import rejection
from drift_retrain.intake.parsing import EventEnvelope, InvalidEvent, NotADriftSignal, parse_envelope, to_drift_signal
from drift_retrain.routing import NoRoute
from drift_retrain.signals import SUBSCRIPTION_VALIDATION, DriftSignal

#: Event Grid schema posts application/json; CloudEvents posts the other two (docs samples also use json).
CONTENT_TYPES = ("application/json", "application/cloudevents+json", "application/cloudevents-batch+json")
#: Values of the ``aeg-event-type`` header.
NOTIFICATION, VALIDATION, DELETION = "Notification", "SubscriptionValidation", "SubscriptionDeletion"


class Rejected(ValueError):
    """The delivery is refused as a whole; ``status`` is the HTTP answer (400 and 413 are not retried)."""

    def __init__(self, status: int, message: str, events: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.events = events  # how many events the refused delivery held, when known


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
    """What a delivery asks of us: a handshake answer, only an acknowledgement, or signals to hand off
    and events to ignore."""

    validation_code: str | None = None
    validation_url: str | None = None
    acknowledge_only: str | None = None  # why nothing in the body is processed (deletion, unknown kind)
    signals: list[Routed] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    """The accepted media type of a Content-Type header (parameters such as charset ignored)."""
    value = (content_type or "").split(";", 1)[0].strip().lower()
    if value not in CONTENT_TYPES:
        shown = (content_type or "").strip()[:80] or "none"
        raise Rejected(400, f"content type '{shown}' is not accepted; use one of {', '.join(CONTENT_TYPES)}")
    return value


def read_delivery(body: bytes, settings: Settings, aeg_event_type: str | None = None) -> Delivery:
    """Parse and route every event of a delivery, or reject the whole delivery."""
    kind = (aeg_event_type or NOTIFICATION).strip()
    if kind.lower() == DELETION.lower():
        return Delivery(acknowledge_only="Event Grid deleted the subscription (aeg-event-type SubscriptionDeletion)")
    if kind.lower() not in (NOTIFICATION.lower(), VALIDATION.lower()):
        return Delivery(acknowledge_only=f"unknown aeg-event-type '{kind[:40]}': acknowledged, not processed")
    events = _events(body, settings.receiver)
    delivery = Delivery()
    for index, event in enumerate(events):
        try:
            _read_event(event, settings, delivery)
        except InvalidEvent as exc:
            raise Rejected(400, f"event #{index}: {exc}", len(events)) from None
        except Rejected as exc:
            exc.events = len(events)
            raise
    if delivery.validation_code is not None and len(events) > 1:
        raise Rejected(400, "a subscription validation event must be delivered alone", len(events))
    if kind.lower() == VALIDATION.lower() and delivery.validation_code is None:
        raise Rejected(400, "aeg-event-type SubscriptionValidation without a SubscriptionValidationEvent")
    return delivery


#: How much larger than its text an event can become when re-serialised compactly (a number such as
#: ``1e15`` re-serialises as ``1000000000000000.0``); every other token only shrinks.
_MAX_GROWTH = 5


def _events(body: bytes, receiver: ReceiverConfig) -> list[dict[str, Any]]:
    try:
        document: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Rejected(400, "body is not valid JSON: nested too deeply") from None
    events = document if isinstance(document, list) else [document]
    if not events or not all(isinstance(e, dict) for e in events):
        raise Rejected(400, "body must be a JSON object or a non-empty array of event objects")
    if len(events) > receiver.max_batch_events:
        raise Rejected(413, f"batch of {len(events)} events exceeds {receiver.max_batch_events}")
    if len(body) * _MAX_GROWTH <= receiver.max_event_bytes:
        return events  # no event of so small a body can reach the limit: skip re-serialising each one
    for index, event in enumerate(events):
        size = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
        if size > receiver.max_event_bytes:
            raise Rejected(
                413,
                f"event #{index} ({str(event.get('id'))[:64]}) is {size} bytes; the limit is {receiver.max_event_bytes}",
            )
    return events


def _read_event(event: dict[str, Any], settings: Settings, delivery: Delivery) -> None:
    envelope = parse_envelope(event)
    if envelope.type == SUBSCRIPTION_VALIDATION:
        code = envelope.data.get("validationCode")
        if not isinstance(code, str) or not code:
            raise InvalidEvent(f"validation event {envelope.id} has no data.validationCode")
        delivery.validation_code = code
        url = envelope.data.get("validationUrl")
        delivery.validation_url = url if isinstance(url, str) else None
        return
    candidates = settings.targets_of(envelope.source)
    if not candidates:
        raise Rejected(400, f"event {envelope.id}: source {envelope.source} is not a configured workspace")
    reason = _filtered_out(event, envelope, candidates)
    if reason:
        delivery.ignored.append(Ignored(envelope.id, envelope.type, reason))
        return
    try:
        signal = to_drift_signal(event, envelope, settings.receiver.signal_limits)
    except NotADriftSignal as exc:
        delivery.ignored.append(Ignored(envelope.id, envelope.type, exc.reason))
        return
    found = settings.routing(signal)  # the sweep and the flow route the same way
    if isinstance(found, NoRoute):
        delivery.ignored.append(Ignored(envelope.id, envelope.type, found.reason))
        return
    reason = _filtered_out(event, envelope, [found.target])
    if reason:
        delivery.ignored.append(Ignored(envelope.id, envelope.type, reason))
        return
    delivery.signals.append(Routed(found.signal, found.target))


def _filtered_out(event: Mapping[str, Any], envelope: EventEnvelope, targets: list[TargetConfig]) -> str | None:
    """Why no subscription of these targets would have delivered the event (None: one would).
    A target without configured subscriptions takes everything."""
    reasons = []
    for target in targets:
        if not target.subscriptions:
            return None
        for subscription in target.subscriptions:
            why = rejection(event, envelope.type, envelope.subject, subscription)
            if why is None:
                return None
            reasons.append(f"{target.name}/{subscription.name}: {why}")
    return "filtered out: " + "; ".join(reasons) if reasons else None
