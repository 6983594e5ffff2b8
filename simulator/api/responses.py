"""How the reference API answers: JSON bodies (orjson) and the one error shape every refusal uses.

``{"error": {"code": REASON, "message": ...}}``, the code from simulator/rules/reasons.py. Owns
`ApiError` (a refusal, raised anywhere), `Reply` (what a write answers) and the response helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response

from simulator.rules.reasons import Reason


class ApiError(Exception):
    """A refusal: answered as ``{"error": {"code": reason, "message": message}}``."""

    def __init__(self, reason: Reason, message: str, *, status: int | None = None, headers=None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status or reason.http_status
        self.headers = headers or {}


@dataclass
class Reply:
    """What a write answers: HTTP status and JSON body (stored as-is for idempotent replays)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error_body(reason: Reason, message: str) -> dict[str, Any]:
    return {"error": {"code": str(reason), "message": message}}


class JsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


def error_response(
    reason: Reason, message: str, status: int | None = None, headers=None, details=None
) -> Response:
    body: dict[str, Any] = {"error": {"code": str(reason), "message": message}}
    if details:
        body["error"]["details"] = details
    return JsonResponse(body, status_code=status or reason.http_status, headers=headers)


def reply_response(reply: Reply) -> Response:
    """A store write's reply as the HTTP answer."""
    return JsonResponse(reply.body, status_code=reply.status, headers=reply.headers or None)


async def send_json(send, status: int, body: bytes, headers: dict[str, str] | None) -> None:
    raw = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    if headers:
        raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
