"""Request body limits of the reference API: one number per route, refused with 413 before reading on.

Owns `BodyLimitMiddleware` (declared length first, then a count while the body streams in) and the limits.
"""

from __future__ import annotations

from typing import Any

import orjson

from simulator.rules.reasons import Reason
from simulator.rules.upload import MAX_UPLOAD_BYTES

MAX_JSON_BODY = 8 * 1024
"""Every JSON body of the API (the largest, a profile or a wave, is under 3 KB even with every
character escaped as \\uXXXX); sign-ups are a few hundred bytes."""

MULTIPART_OVERHEAD = 64 * 1024
"""Room for multipart boundaries and part headers on top of the 2 MB KTP file limit."""

MAX_UPLOAD_BODY = MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD
"""The whole multipart body of POST /v1/me/ktp."""

UPLOAD_PATH = "/v1/me/ktp"

BODY_KEY = "prakerja.body"
"""Where the scope keeps the body once read (see `read_body`)."""


def limit_of(path: str) -> int:
    """The body limit in bytes of a request to ``path``."""
    return MAX_UPLOAD_BODY if path == UPLOAD_PATH else MAX_JSON_BODY


class BodyLimitMiddleware:
    """Refuse bodies over the route's limit with 413 BODY_TOO_LARGE (FILE_TOO_LARGE for the KTP upload).

    A declared ``Content-Length`` over the limit is refused before a byte of the body is read; a
    chunked body is read as it arrives and refused the moment it passes the limit. Either way the
    answer carries ``Connection: close``: the rest of the body is never read. A body within its
    limit is handed on as it was read, so nothing behind this reads more than the limit.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send):  # ASGI
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)  # no route reads a GET's body
        limit = limit_of(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    return await _refuse(send, scope, limit)
                if value == b"0":
                    return await self.app(scope, receive, send)
                break
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                return await _refuse(send, scope, limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = scope[BODY_KEY] = b"".join(chunks)
        await self.app(scope, replaying([body], receive), send)


async def read_body(scope, receive) -> bytes | None:  # ASGI
    """The whole body of this request, read once by `BodyLimitMiddleware` (None: the client left).

    Middleware behind it (idempotency, the lean sign-up path) take it from the scope, then hand
    the route ``replaying([body], receive)``.
    """
    body = scope.get(BODY_KEY)
    if body is not None:
        return body
    chunks, more = [], True  # a request the limit middleware let through unread (no body declared)
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = scope[BODY_KEY] = b"".join(chunks)
    return body


def replaying(chunks: list[bytes], receive, more: bool = False):
    """An ASGI receive that hands back the body chunks already read, then reads on."""
    pending = list(chunks)

    async def replay():
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending) or more}
        return await receive()  # the rest of the body, or http.disconnect

    return replay


async def _refuse(send, scope, limit: int) -> None:
    if limit == MAX_UPLOAD_BODY:
        reason = Reason.FILE_TOO_LARGE
        message = f"the file is larger than {MAX_UPLOAD_BYTES // 1048576} MB"
    else:
        reason = Reason.BODY_TOO_LARGE
        message = f"the request body is larger than {limit // 1024} KB"
    scope.setdefault("state", {})["error_code"] = str(reason)
    body = orjson.dumps({"error": {"code": str(reason), "message": message}})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
