"""The stand-ins' routes (:class:`simulator.upstreams.app.Routes`) as an ASGI app: what the unit tests
call in-process, and what any ASGI server can run. ``prakerja-sim upstreams`` serves the same routes
through its lean protocol instead (:mod:`simulator.upstreams.httpd`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from simulator.rules.reasons import Reason
from simulator.upstreams.app import MAX_BODY_BYTES, BadRequest, Response, Routes, Upstreams, _refusal

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


async def _read_body(receive: Callable[[], Awaitable[dict]], limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The request body, or None when it is over ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest(400, str(Reason.VALIDATION_ERROR), "the client went away mid-request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return ""


def create_app(
    upstreams: Upstreams,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> ASGIApp:
    """The ASGI app serving the registry, the SMS gateway and the read API of ``upstreams``."""
    routes = Routes(upstreams)

    async def app(scope: dict, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send, on_startup, on_shutdown)
            return
        if kind != "http":
            return
        started = time.perf_counter()
        path = scope["path"]
        try:
            body = await _read_body(receive)
        except BadRequest as bad:
            answer: Response | Coroutine[Any, Any, Response] = _refusal(bad)
        else:
            if body is None:
                answer = routes.too_large(path, started)
            else:
                content_type = _header(scope, b"content-type")
                answer = routes.handle(
                    scope["method"], path, scope.get("query_string", b""), content_type, body, started
                )
        if not isinstance(answer, tuple):
            answer = await answer
        status, payload, headers = answer
        length = (b"content-length", b"%d" % len(payload))  # else the server may send it chunked
        await send(
            {"type": "http.response.start", "status": status, "headers": [*_JSON_HEADERS, length, *headers]}
        )
        await send({"type": "http.response.body", "body": payload})

    return app


async def _lifespan(receive, send, on_startup, on_shutdown) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                if on_startup:
                    await on_startup()
            except Exception as err:  # reported to the server, which stops
                await send({"type": "lifespan.startup.failed", "message": str(err)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown:
                await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
