"""How the receiver is served: uvicorn's h11 protocol with deadlines on what a client owes us.

What uvicorn offers against slow or idle clients (uvicorn/protocols/http/h11_impl.py, 0.54):

- ``timeout_keep_alive`` is armed only once a response is complete (``on_response_complete``) and is
  cancelled by the first byte that arrives (``data_received``); nothing bounds a new connection's request
  line and headers, nor those of a next request that has begun to arrive;
- ``h11_max_incomplete_event_size`` bounds the size of a request's head, not how long it takes;
- ``limit_concurrency`` answers 503 once that many connections or tasks exist, but slow heads keep their
  connections meanwhile;
- after a response sent before the request body was read (a 401, or a 413 from Content-Length), uvicorn
  keeps reading and discarding the body at the client's pace, again without a bound.

So a client sending a byte every few seconds holds a connection forever. ``DeadlineProtocol`` closes the
gap: while we wait on the client (for a request's head, or for the rest of a body nobody will read) a
deadline runs; past it the connection is closed (a head gets ``408`` first). While the app handles a request
the app bounds the body read itself (``app._read_body``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from drift_retrain.config import ReceiverConfig

_HEAD_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 37\r\n\r\nrequest headers not received in time\n"
)


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline whenever the connection waits on the client: for a request's
    head (from connecting, or from the first byte of a next request), or for the unread rest of a body after
    the answer was sent. Configure with ``deadline_protocol``."""

    head_timeout: ClassVar[float] = 10.0
    drain_timeout: ClassVar[float] = 10.0
    on_expiry: ClassVar[Callable[[str], None] | None] = None  # called with "header" or "body"

    _deadline: asyncio.TimerHandle | None = None
    _phase = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout, "header")

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]:
            self._disarm()  # the first byte of a (next) request's head: its time starts now
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the deadline when the client owes us something, disarm it while the app has the request."""
        if self.transport.is_closing():
            self._disarm()
        elif self.conn.their_state is h11.IDLE:
            self._arm(self.head_timeout, "header")
        elif self.conn.their_state is h11.SEND_BODY and self.conn.our_state in (h11.DONE, h11.MUST_CLOSE):
            self._arm(self.drain_timeout, "body")
        else:
            self._disarm()

    def _arm(self, seconds: float, phase: str) -> None:
        """Start the deadline of ``phase`` unless it already runs (a phase's time is not restarted)."""
        if self._deadline is not None and self._phase != phase:
            self._disarm()
        if self._deadline is None:
            self._deadline, self._phase = self.loop.call_later(seconds, self._expire, phase), phase

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        expired = type(self).on_expiry  # read off the class: a function there is not bound to self
        if expired is not None:
            expired(phase)
        if phase == "header" and self.conn.our_state is h11.IDLE:
            self.transport.write(_HEAD_TIMEOUT)
        self.transport.close()


def deadline_protocol(
    head_timeout: float, drain_timeout: float, on_expiry: Callable[[str], None] | None = None
) -> type[DeadlineProtocol]:
    """A ``DeadlineProtocol`` class with these deadlines, for uvicorn's ``http=`` (it instantiates the class
    per connection)."""
    return type(
        "ConfiguredDeadlineProtocol",
        (DeadlineProtocol,),
        {"head_timeout": head_timeout, "drain_timeout": drain_timeout, "on_expiry": on_expiry},
    )


def uvicorn_options(config: ReceiverConfig, on_expiry: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The uvicorn settings that bound slow and greedy clients, from the receiver's config."""
    return {
        "http": deadline_protocol(config.header_timeout_seconds, config.body_timeout_seconds, on_expiry),
        "timeout_keep_alive": config.keep_alive_seconds,
        "limit_concurrency": config.max_connections,
        "h11_max_incomplete_event_size": config.max_header_bytes,
    }
