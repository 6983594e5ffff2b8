"""Slow and surplus clients: read deadlines for a request's headers and body, a cap on connections per worker.

uvicorn waits for a half-sent request forever; this protocol (uvicorn's httptools one, plus timers) does not.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from simulator.rules.reasons import Reason


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

    class GuardedHttpProtocol(HttpToolsProtocol):
        """A request's headers must arrive within ``header_timeout_s`` of the connection (or of the
        request's first byte), its body within ``body_timeout_s`` of the headers; otherwise 408
        REQUEST_TIMEOUT (if nothing was answered yet) and the connection is closed. Past
        ``max_connections`` open connections a new one is answered 503 SERVER_BUSY and closed."""

        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # noqa: ANN001
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(busy)
                transport.close()
                return
            self._arm(header_timeout_s, "the request headers")

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:
                self._arm(header_timeout_s, "the request headers")

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            self._arm(body_timeout_s, "the request body")

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _arm(self, seconds: float, what: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._too_slow, what, seconds)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self, what: str, seconds: float) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is None or not cycle.response_started:
                message = f"{what} did not arrive within {seconds:g} s"
                self.transport.write(_raw_answer(408, Reason.REQUEST_TIMEOUT, message))
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() now answers http.disconnect
                cycle.message_event.set()
            self.transport.close()

    return GuardedHttpProtocol
