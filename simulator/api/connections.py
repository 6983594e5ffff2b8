"""Slow and surplus clients: read deadlines for a request's headers and body, a cap on connections per worker.

uvicorn waits for a half-sent request forever; this protocol (its httptools one, plus deadlines) does not.

It subclasses ``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``, which uvicorn does not
promise as API: the range it is known to match is pinned in pyproject.toml, and
tests/test_api_security.py::test_slow_clients_are_cut_off_and_connections_are_capped fails loudly
when a uvicorn release changes what it relies on (``connection_made`` and the httptools parser callbacks
``on_message_begin``, ``on_headers_complete``, ``on_message_complete``, and ``transport``).
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from simulator.rules.reasons import Reason

SWEEP_S = 0.25
"""How often a worker looks for connections past their deadline (a deadline is met to within this)."""


def _raw_answer(status: int, reason: Reason, message: str, extra: bytes = b"") -> bytes:
    body = orjson.dumps({"error": {"code": str(reason), "message": message}})
    phrase = {408: b"Request Timeout", 503: b"Service Unavailable"}[status]
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
        % (status, phrase, len(body))
        + extra
        + b"\r\n"
        + body
    )


def guarded_protocol(header_timeout_s: float, body_timeout_s: float, max_connections: int) -> type:
    """An HTTP protocol class for uvicorn with these limits (each worker builds its own)."""

    busy = _raw_answer(
        503, Reason.SERVER_BUSY, "this server has too many open connections; try again", b"retry-after: 1\r\n"
    )
    sweeping: set[asyncio.AbstractEventLoop] = set()

    class GuardedHttpProtocol(HttpToolsProtocol):
        """A request's headers must arrive within ``header_timeout_s`` of the connection (or of the
        request's first byte), its body within ``body_timeout_s`` of the headers; otherwise 408
        REQUEST_TIMEOUT (if nothing was answered yet) and the connection is closed. Past
        ``max_connections`` open connections a new one is answered 503 SERVER_BUSY and closed.

        A request only notes its deadline (one float); one sweep per worker, every ``SWEEP_S``,
        closes the connections past theirs, so the hot path pays no timer per request.
        """

        _deadline_at: float | None = None
        _waiting_for = ("", 0.0)  # what is awaited, and for how long (worded only if it never comes)

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(busy)
                transport.close()
                return
            if self.loop not in sweeping:
                sweeping.add(self.loop)
                self.loop.call_later(SWEEP_S, _sweep, self.loop, self.connections)
            self._expect(header_timeout_s, "the request headers")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline_at is None:
                self._expect(header_timeout_s, "the request headers")

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._expect(body_timeout_s, "the request body")

        def on_message_complete(self) -> None:
            self._deadline_at = None
            super().on_message_complete()

        def _expect(self, seconds: float, what: str) -> None:
            self._deadline_at = self.loop.time() + seconds
            self._waiting_for = (what, seconds)

        def too_slow(self) -> None:
            self._deadline_at = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is None or not cycle.response_started:
                what, seconds = self._waiting_for
                message = f"{what} did not arrive within {seconds:g} s"
                self.transport.write(_raw_answer(408, Reason.REQUEST_TIMEOUT, message))
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() now answers http.disconnect
                cycle.message_event.set()
            self.transport.close()

    def _sweep(loop: asyncio.AbstractEventLoop, connections: set) -> None:
        now = loop.time()
        for connection in [c for c in connections if (getattr(c, "_deadline_at", None) or now + 1) <= now]:
            connection.too_slow()
        loop.call_later(SWEEP_S, _sweep, loop, connections)

    return GuardedHttpProtocol
