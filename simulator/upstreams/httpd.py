"""A lean HTTP/1.1 server for the stand-ins' few routes: an asyncio protocol around httptools (the
parser uvicorn uses), calling :class:`simulator.upstreams.app.Routes` straight from the parser's
callbacks.

Why not uvicorn: under uvicorn a registry check cost about 50-95 us of server CPU, of which the
check itself (JSON, bisection, the answer joined from bytes) is about 11 us; the rest was the ASGI
cycle (a task, a scope dict and two awaited sends per request). Here a check without injected
faults is answered inside ``data_received``, with one ``transport.write``; only a delayed answer
(latency, timeouts, slow-downs) becomes a task. See docs/upstreams.md, "How it is served".

What it keeps of a real server: keep-alive and pipelining (answers in request order), HTTP/1.0,
``Expect: 100-continue``, bodies in chunks, a 16 KiB body limit (413 and close, the rest unread),
one JSON 400 for a malformed request, 408 for a request not complete within
:data:`REQUEST_TIMEOUT_S`, idle keep-alive connections closed after :data:`KEEP_ALIVE_S`, reading
paused while the client does not read its answers, and a 500 with the traceback on stderr for a bug.
"""

from __future__ import annotations

import asyncio
import http
import sys
import time
import traceback
import urllib.parse
from collections import deque
from typing import Any

import httptools
import orjson

from simulator.rules.reasons import Reason
from simulator.upstreams.app import MAX_BODY_BYTES, Response, Routes

KEEP_ALIVE_S = 30.0
"""An idle keep-alive connection is closed after this many seconds."""
REQUEST_TIMEOUT_S = 30.0
"""A request must arrive whole within this many seconds of its first byte (else 408 and close)."""
SWEEP_S = 1.0
"""How often idle and slow connections are looked for."""
MAX_PIPELINED = 64
"""Answers a connection may have pending before its reading pauses (pipelining clients)."""

_STATUS_LINES = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("latin-1")) for s in http.HTTPStatus
}
_HEAD = b"content-type: application/json\r\ncontent-length: "
_CLOSE = b"connection: close\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _error_answer(status: int, code: str, message: str) -> Response:
    return status, orjson.dumps({"error": {"code": code, "message": message}}), ()


class Connections:
    """The open connections of one server: swept for idle and slow ones, closed at shutdown."""

    def __init__(self) -> None:
        self.open: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task] = set()

    def sweep(self) -> None:
        now = time.monotonic()
        for connection in list(self.open):
            connection.check_timeouts(now)

    async def sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            self.sweep()

    def close_all(self) -> None:
        for connection in list(self.open):
            connection.transport.close()
        for task in list(self.tasks):
            task.cancel()


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(self, routes: Routes, connections: Connections):
        self.routes = routes
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.closing = False  # the transport is closed or closing: nothing more is written
        self.refused = False  # refused: the bytes still arriving are not parsed
        self.reading_paused = False
        self.writing_paused = False
        self.pending: deque[tuple[Any, bool, bool]] = deque()  # (answer or task, keep-alive, head)
        self.draining: asyncio.Task | None = None
        self.last_active = time.monotonic()
        self.request_began: float | None = None  # monotonic time of the current request's first byte
        self.started = time.perf_counter()  # perf_counter of the same, for the counters' latencies
        self._reset_request()

    def _reset_request(self) -> None:
        self.url = b""
        self.content_type = b""
        self.body: list[bytes] = []
        self.size = 0
        self.expect_continue = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.connections.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = self.refused = True
        self.connections.open.discard(self)
        # A delayed check still finishes (its counters count it); its answer has nowhere to go.

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request itself was answered as plain HTTP (an upgrade may be ignored); what would
            # follow it is another protocol, not served here.
            if not self.refused:
                self._refuse(
                    _error_answer(400, str(Reason.VALIDATION_ERROR), "protocol upgrades are not served")
                )
        except httptools.HttpParserError as err:
            if self.refused:
                return
            message = f"malformed HTTP request: {str(err) or type(err).__name__}"
            self._refuse(_error_answer(400, str(Reason.VALIDATION_ERROR), message))

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if len(self.pending) < MAX_PIPELINED:
            self._resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.started = time.perf_counter()
        self.request_began = self.last_active = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value
        elif name == b"content-length":
            if value.strip().isdigit() and int(value) > MAX_BODY_BYTES:
                self.size = MAX_BODY_BYTES + 1
        elif name == b"expect" and value.strip().lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        if self.size > MAX_BODY_BYTES:  # announced too large: refused before it is sent
            self._refuse(self.routes.too_large(self._path(), self.started))
        elif self.expect_continue and not self.pending:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.refused:
            return
        self.size += len(body)
        if self.size > MAX_BODY_BYTES:
            self._refuse(self.routes.too_large(self._path(), self.started))
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        self.request_began = None
        parser = self.parser
        method = parser.get_method().decode("ascii", "replace")
        keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self._refuse(_error_answer(400, str(Reason.VALIDATION_ERROR), "malformed request target"))
            return
        path = parsed.path.decode("latin-1") if parsed.path else "/"
        if "%" in path:
            path = urllib.parse.unquote(path)
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        content_type = self.content_type.decode("latin-1")
        query = parsed.query or b""
        started = self.started
        self._reset_request()
        try:
            answer = self.routes.handle(method, path, query, content_type, body, started)
        except Exception:  # a bug: said on stderr, answered 500, the server goes on
            traceback.print_exc(file=sys.stderr)
            answer = _error_answer(500, str(Reason.INTERNAL_ERROR), "the stand-in failed (see its log)")
        head_only = method == "HEAD"
        if isinstance(answer, tuple) and not self.pending:
            self._write(answer, keep_alive, head_only)
            return
        if not isinstance(answer, tuple):
            answer = asyncio.ensure_future(answer)
            self.connections.tasks.add(answer)
            answer.add_done_callback(self.connections.tasks.discard)
        self.pending.append((answer, keep_alive, head_only))
        if len(self.pending) >= MAX_PIPELINED:
            self._pause_reading()
        if self.draining is None:
            self.draining = asyncio.ensure_future(self._drain())

    # -- answers ---------------------------------------------------------------------------------
    async def _drain(self) -> None:
        """Write pending answers in request order as each becomes ready."""
        try:
            while self.pending:
                answer, keep_alive, head_only = self.pending[0]
                if not isinstance(answer, tuple):
                    try:
                        answer = await answer
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # as in on_message_complete
                        traceback.print_exc(file=sys.stderr)
                        answer = _error_answer(
                            500, str(Reason.INTERNAL_ERROR), "the stand-in failed (see its log)"
                        )
                self.pending.popleft()
                if self.closing:
                    continue
                self._write(answer, keep_alive, head_only)
                if len(self.pending) < MAX_PIPELINED and not self.writing_paused:
                    self._resume_reading()
        finally:
            self.draining = None

    def _write(self, answer: Response, keep_alive: bool, head_only: bool = False) -> None:
        status, body, headers = answer
        line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Status\r\n" % status
        parts = [line, _HEAD, b"%d\r\n" % len(body)]
        for name, value in headers:
            parts.append(name + b": " + value + b"\r\n")
        if not keep_alive:
            parts.append(_CLOSE)
        parts.append(b"\r\n")
        if not head_only:
            parts.append(body)
        self.transport.write(b"".join(parts))
        self.last_active = time.monotonic()
        if not keep_alive:
            self.closing = self.refused = True
            self.transport.close()

    def _refuse(self, answer: Response) -> None:
        """Answer (after what is pending) and close: the rest of this connection's bytes are not read."""
        self.refused = True
        self._pause_reading()
        if self.pending:
            self.pending.append((answer, False, False))  # the drain writes it last, then closes
        else:
            self._write(answer, keep_alive=False)

    def _path(self) -> str:
        try:
            path = httptools.parse_url(self.url).path or b"/"
        except httptools.HttpParserInvalidURLError:
            return ""
        return urllib.parse.unquote(path.decode("latin-1"))

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.transport.is_closing():
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and not self.refused and not self.transport.is_closing():
            self.reading_paused = False
            self.transport.resume_reading()

    def check_timeouts(self, now: float) -> None:
        """Called each :data:`SWEEP_S`: 408 for a request arriving too slowly, close an idle connection."""
        if self.refused or self.pending:
            return
        if self.request_began is not None:
            if now - self.request_began > REQUEST_TIMEOUT_S:
                self._refuse(
                    _error_answer(
                        408,
                        str(Reason.REQUEST_TIMEOUT),
                        f"the request did not arrive whole within {REQUEST_TIMEOUT_S:g} s",
                    )
                )
        elif now - self.last_active > KEEP_ALIVE_S:
            self.closing = self.refused = True
            self.transport.close()


async def start_http_server(routes: Routes, sock: Any, connections: Connections) -> asyncio.AbstractServer:
    """Serve ``routes`` on the listening socket ``sock`` (already bound)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpProtocol(routes, connections), sock=sock, backlog=4096)
