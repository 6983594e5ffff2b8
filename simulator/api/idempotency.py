"""``Idempotency-Key`` on POST and PUT: the first answer is stored and replayed to every retry.

A record belongs to (caller, method, route, key) and is looked up only after the route has authenticated
the caller, so a stranger's key never answers for someone else and a replay never comes before a 401/405.
Owns the request's `IdempotencyScope`, the records (`IdempotencyRecords`, table ``idempotency_keys``),
the middleware that fingerprints a request and the dependency that claims its key.
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from simulator.api.body_limits import read_body, replaying
from simulator.api.responses import error_body, error_response, send_json
from simulator.database import schema as t
from simulator.database.db import run_write, savepoint
from simulator.database.schema import utcnow
from simulator.rules.reasons import Reason

MAX_KEY_LENGTH = 200

IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry-safe key: the first answer to a request with this key is replayed to every retry "
    "of the same caller on the same route",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}


@dataclass
class IdempotencyScope:
    """The ``Idempotency-Key`` of the request being served; the write that commits stores the answer."""

    key: str  # the record's key: set once the route knows the caller (`idempotency_dependency`)
    fingerprint: Callable[[], str]
    stored: bool = False
    raw_key: str = ""  # the Idempotency-Key header as sent


current_idempotency: contextvars.ContextVar[IdempotencyScope | None] = contextvars.ContextVar(
    "current_idempotency", default=None
)


class IdempotentReplay(Exception):
    """Another request with the same key committed first: answer with what it got."""

    def __init__(self, status: int, body: bytes):
        super().__init__(status)
        self.status = status
        self.body = body


class IdempotencyRecords:
    """The stored answers (table ``idempotency_keys``): one row per claimed key, written once."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def store(self, conn: Connection, scope: IdempotencyScope, status: int, payload: bytes) -> None:
        """Store the answer in ``conn``'s transaction; `IdempotentReplay` when the key is taken."""
        try:
            with savepoint(conn):
                conn.execute(
                    insert(t.idempotency_keys).values(
                        key=scope.key,
                        fingerprint=scope.fingerprint(),
                        status_code=status,
                        response_body=payload,
                        created_at=utcnow(),
                    )
                )
        except IntegrityError:
            stored = conn.execute(
                select(t.idempotency_keys).where(t.idempotency_keys.c.key == scope.key)
            ).one()
            raise IdempotentReplay(*_replay_of(stored, scope)) from None

    def lookup(self, scope: IdempotencyScope) -> tuple[int, bytes] | None:
        """The stored answer for this key (or a 409 if the request differs), None if unseen."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(t.idempotency_keys).where(t.idempotency_keys.c.key == scope.key)
            ).one_or_none()
        return None if stored is None else _replay_of(stored, scope)

    def store_refusal(self, scope: IdempotencyScope, status: int, payload: bytes) -> tuple[int, bytes]:
        """Store a refusal (or a read's answer) under the key; returns what must be answered."""
        try:
            run_write(self.engine, lambda conn: self.store(conn, scope, status, payload))
        except IdempotentReplay as replay:
            return replay.status, replay.body
        scope.stored = True
        return status, payload


def _replay_of(stored, scope: IdempotencyScope) -> tuple[int, bytes]:  # a row
    if stored.fingerprint != scope.fingerprint():
        return 409, orjson.dumps(
            error_body(
                Reason.IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was used with a different request"
            )
        )
    return stored.status_code, bytes(stored.response_body)


class IdempotencyMiddleware:
    """Reads the key and fingerprints the request; the route's `idempotent` dependency claims it.

    A write stores its answer in its own transaction (an acknowledged write and its key commit
    together); a refusal given after the key was claimed is stored afterwards. The same key with
    a different request gets 409 IDEMPOTENCY_KEY_REUSED. A request refused before the key was
    claimed (401, 404, 405, 413, ...) stores nothing.
    """

    def __init__(self, app, records: IdempotencyRecords):
        self.app = app
        self.records = records

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        raw_key = None
        auth = b""
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                raw_key = value
            elif name == b"authorization":
                auth = value
        if raw_key is None:
            return await self.app(scope, receive, send)
        key = raw_key.decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            scope.setdefault("state", {})["error_code"] = str(Reason.VALIDATION_ERROR)
            response = error_response(
                Reason.VALIDATION_ERROR, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters"
            )
            return await response(scope, receive, send)

        body = await read_body(scope, receive)  # bounded by BodyLimitMiddleware
        if body is None:
            return
        fingerprint = hashlib.sha256(
            b"\0".join(
                [scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), auth, body]
            )
        ).hexdigest()
        holder = IdempotencyScope(key="", fingerprint=lambda: fingerprint, raw_key=key)

        start: dict[str, Any] = {}
        body_parts: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body_parts.append(message.get("body", b""))

        token = current_idempotency.set(holder)
        try:
            await self.app(scope, replaying([body], receive), capture)
        finally:
            current_idempotency.reset(token)
        status = start.get("status", 500)
        answer = b"".join(body_parts)
        if holder.key and status < 500 and not holder.stored:
            status_stored, stored = await run_in_threadpool(
                self.records.store_refusal, holder, status, answer
            )
            if (status_stored, stored) != (status, answer):
                return await send_json(send, status_stored, stored, {"Idempotent-Replayed": "true"})
        await send(start)
        await send({"type": "http.response.body", "body": answer})


def idempotency_dependency(records: IdempotencyRecords):  # an async callable
    """``await idempotent(request, caller)``: claim the request's key for this caller and route.

    Called by the authentication dependencies once they know the caller (an account id,
    ``admin``, or ``anonymous`` on the sign-up and login routes); raises `IdempotentReplay` with
    the stored answer when the key was used before.
    """

    async def idempotent(request: Request, caller: str) -> None:
        holder = current_idempotency.get()
        if holder is None or holder.key or request.method not in ("POST", "PUT"):
            return
        route = getattr(request.scope.get("route"), "path", request.url.path)
        holder.key = hashlib.sha256(
            "\0".join([caller, request.method, route, holder.raw_key]).encode("utf-8", "surrogatepass")
        ).hexdigest()
        replay = await run_in_threadpool(records.lookup, holder)
        if replay is not None:
            raise IdempotentReplay(*replay)

    return idempotent
