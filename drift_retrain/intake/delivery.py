"""Reading one Event Grid delivery: handshake, validation, filters and routing, before anything is handed off.

Pure and synchronous, so every rule is testable without a server. A delivery is all-or-none: if any
event in it is invalid or refused, nothing in it is handed off.

What the Event Grid docs tell a consumer to check, in order: the content type; the body's size and
shape; each event's envelope; that its topic/source is a workspace we serve; that its type is one we
handle (others are acknowledged and ignored with a reason); the configured subscription filters. And what
it takes for a signal to be handed off at all: flow-run parameters Prefect will store (else 413).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drift_retrain.config import ReceiverConfig, Settings, TargetConfig
from drift_retrain.intake.filters import rejection
from drift_retrain.intake.handoff import ParametersTooLarge, fit_for_prefect, parameter_limit
from drift_retrain.intake.job_events import JobEvent, job_event
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
    """What a delivery asks of us: a handshake answer, only an acknowledgement, or signals to hand off, statuses
    of our training jobs to wake on, and events to ignore."""

    validation_code: str | None = None
    validation_url: str | None = None
    acknowledge_only: str | None = None  # why nothing in the body is processed (deletion, unknown kind)
    signals: list[Routed] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    jobs: list[JobEvent] = field(default_factory=list)  # statuses of our training jobs (``job_events``)


def media_type(content_type: str | None) -> str:
    """The accepted media type of a Content-Type header: one of ``CONTENT_TYPES`` (400), with no charset
    or ``charset=utf-8`` (415: JSON is UTF-8, https://www.rfc-editor.org/rfc/rfc8259#section-8.1; Event Grid
    sends ``application/json; charset=utf-8``, /work/shared/reference/azure/WIRE.md section 1)."""
    value, *parameters = (content_type or "").split(";")
    value = value.strip().lower()
    if value not in CONTENT_TYPES:
        shown = (content_type or "").strip()[:80] or "none"
        raise Rejected(400, f"content type '{shown}' is not accepted; use one of {', '.join(CONTENT_TYPES)}")
    for parameter in parameters:
        name, _, given = parameter.partition("=")
        charset = given.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise Rejected(415, f"content type charset '{charset[:40]}' is not accepted; the body must be UTF-8")
    return value


def content_encoding(value: str | None) -> None:
    """Only an uncompressed body (no Content-Encoding, or identity): a compressed one is refused (415) rather
    than inflated, as a few kilobytes of gzip can inflate past every size limit, and the JSON read would not be
    the bytes counted. (Event Grid's documented delivery headers name no encoding: WIRE.md section 1.)"""
    if value is not None and value.strip().lower() not in ("", "identity"):
        raise Rejected(415, f"Content-Encoding '{value.strip()[:40]}' is not accepted; send the body uncompressed")


def read_delivery(body: bytes, settings: Settings, aeg_event_type: str | None = None) -> Delivery:
    """Parse and route every event of a delivery, or reject the whole delivery."""
    kind = (aeg_event_type or NOTIFICATION).strip()
    if kind.lower() == DELETION.lower():
        return Delivery(acknowledge_only="Event Grid deleted the subscription (aeg-event-type SubscriptionDeletion)")
    if kind.lower() not in (NOTIFICATION.lower(), VALIDATION.lower()):
        return Delivery(acknowledge_only=f"unknown aeg-event-type '{kind[:40]}': acknowledged, not processed")
    events, sizes = _events(body, settings.receiver)
    limit = parameter_limit()
    delivery = Delivery()
    for index, event in enumerate(events):
        try:
            handed = len(delivery.signals)
            _read_event(event, settings, delivery)
            size = sizes[index] if sizes else len(body)
            if len(delivery.signals) > handed and limit and size * _SIGNAL_GROWTH + _SIGNAL_OVERHEAD > limit:
                delivery.signals[-1] = _fitted(delivery.signals[-1], index, limit)
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
#: A bound on a signal's flow-run parameters per byte of its event (the raw event ASCII-escaped, at most 5x,
#: plus what is read from it: ids, times, breach rows and their descriptions) and a constant for the rest.
#: Events this small are not measured; any larger one is, exactly (``handoff.parameters_size``).
_SIGNAL_GROWTH, _SIGNAL_OVERHEAD = 16, 16 * 1024


def _fitted(routed: Routed, index: int, limit: int) -> Routed:
    """The routed signal as Prefect will store it (``handoff.fit_for_prefect``), or 413 naming the event."""
    try:
        return Routed(fit_for_prefect(routed.signal, limit), routed.target)
    except ParametersTooLarge as exc:
        raise Rejected(
            413,
            f"event #{index} ({routed.signal.event_id[:64]}): even without the rest of the event, its signal makes "
            f"{exc.size} bytes of flow-run parameters; Prefect stores at most {exc.limit} "
            "(PREFECT_SERVER_API_MAX_PARAMETER_SIZE)",
        ) from None


class _DuplicateKey(ValueError):
    """An object names a key twice, exactly or in another casing."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: every object of the body, with each key once whatever its casing. Keys are
    read case-insensitively (``intake.parsing``, the subscription filters), so ``DriftCoefficient`` 0.31
    beside ``driftcoefficient`` 0.9 would pass a filter on one value and retrain on the other."""
    found = dict(pairs)
    if len(found) == len(pairs) and len({k.lower() for k in found}) == len(found):
        return found
    seen: dict[str, str] = {}
    for key, _ in pairs:
        if key.lower() in seen:
            first = seen[key.lower()]
            how = "twice" if first == key else f"twice, differing only in case ('{first[:64]}')"
            raise _DuplicateKey(f"key '{key[:64]}' appears {how} in one object; each key must be unique")
        seen[key.lower()] = key
    return found  # pragma: no cover (a clash is always found above)


class _NotJson(ValueError):
    """A token Python's decoder accepts but JSON has not (RFC 8259 section 6: no NaN or Infinity)."""


def _no_constant(token: str) -> Any:
    """``parse_constant``: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON numbers."""
    raise _NotJson(f"'{token}' is not a JSON number (RFC 8259 section 6 has no NaN or Infinity)")


#: Made once (json.loads(hook=) builds one per call).
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)
#: A JSON string escape of a UTF-16 surrogate: only then can a decoded string hold an unpaired one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _document(body: bytes) -> Any:
    """The body as JSON: UTF-8 without a byte order mark (else 415 naming the encoding), every object's keys
    unique, every integer within Python's digit limit and every string valid Unicode (else 400).
    JSON exchanged between systems MUST be UTF-8 and MUST NOT start with a BOM: RFC 8259 section 8.1
    (https://www.rfc-editor.org/rfc/rfc8259#section-8.1); ``json.loads`` would silently accept both."""
    encoding = json.detect_encoding(body)
    if encoding != "utf-8":
        named = {"utf-8-sig": "UTF-8 with a byte order mark"}.get(encoding, encoding.upper())
        raise Rejected(415, f"body is {named}; send UTF-8 JSON without a byte order mark")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(400, f"body is not valid JSON: not UTF-8 at byte {exc.start}") from None
    try:
        document = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}") from None
    except _DuplicateKey as exc:
        raise Rejected(400, f"body: {exc} (keys are read case-insensitively)") from None
    except _NotJson as exc:
        raise Rejected(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Rejected(400, "body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        if "integer string conversion" not in str(exc):
            raise
        limit = sys.get_int_max_str_digits()
        raise Rejected(400, f"body: an integer has more than {limit} digits") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Rejected(
                400, "body: a string holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF), which is no text"
            ) from None
    return document


def _events(body: bytes, receiver: ReceiverConfig) -> tuple[list[dict[str, Any]], list[int] | None]:
    """The body's events, and each one's compact size when the body is big enough for that to matter."""
    document = _document(body)
    events = document if isinstance(document, list) else [document]
    if not events or not all(isinstance(e, dict) for e in events):
        raise Rejected(400, "body must be a JSON object or a non-empty array of event objects")
    if len(events) > receiver.max_batch_events:
        raise Rejected(413, f"batch of {len(events)} events exceeds {receiver.max_batch_events}")
    if len(body) * _MAX_GROWTH <= receiver.max_event_bytes:
        return events, None  # no event of so small a body can reach the limit: skip re-serialising each one
    sizes = []
    for index, event in enumerate(events):
        size = len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())
        if size > receiver.max_event_bytes:
            raise Rejected(
                413,
                f"event #{index} ({str(event.get('id'))[:64]}) is {size} bytes; the limit is {receiver.max_event_bytes}",
            )
        sizes.append(size)
    return events, sizes


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
    job = job_event(envelope)  # never a breach (it stays on the drift path below), never a signal
    if job is not None:
        delivery.jobs.append(job)
        return
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
