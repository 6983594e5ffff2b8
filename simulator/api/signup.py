"""The sign-up hot path: the account rules, a lean ASGI path for POST /v1/accounts, group commit.

The wave-1 peak is a sign-up surge, so account creation skips the framework's per-request work
when the request is plain, and sign-ups waiting at the same moment share one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from simulator.api.body_limits import read_body, replaying
from simulator.api.responses import send_json
from simulator.api.store import ApiError, Reply, Store, current_idempotency
from simulator.database.passwords import hash_password
from simulator.rules.email import TYPO_DOMAIN_SET
from simulator.rules.reasons import Reason

error_logger = logging.getLogger("prakerja_sim.api")

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.)+[A-Za-z]{2,24}$")

MAX_BATCH = 256
"""Sign-ups per group-commit transaction at most (bounds the time the write lock is held)."""

# Field -> (min length, max length, required): AccountCreate in models.py, which stays the
# declared schema (OpenAPI) and the validator of every request the lean path does not take.
_FIELDS: dict[str, tuple[int, int, bool]] = {
    "name": (1, 200, True),
    "email": (0, 254, True),
    "password": (0, 128, True),
    "password_confirmation": (0, 128, False),
}


def check_signup(email: str, password: str, confirmation: str | None) -> str:
    """The account rules with their reason codes; returns the email as stored (lower case)."""
    lowered = email.lower()
    if not EMAIL_RE.match(lowered):
        raise ApiError(Reason.EMAIL_INVALID, f"{email!r} is not an email address")
    domain = lowered.rpartition("@")[2]
    if domain in TYPO_DOMAIN_SET:
        raise ApiError(Reason.EMAIL_DOMAIN_TYPO, f"@{domain} looks like a misspelt mail domain; check it")
    if len(password) < 6:
        raise ApiError(Reason.PASSWORD_TOO_SHORT, "the password needs at least 6 characters")
    if confirmation is not None and confirmation != password:
        raise ApiError(Reason.PASSWORD_MISMATCH, "the two passwords differ")
    return lowered


def plain_signup(body: bytes) -> dict[str, Any] | None:
    """The fields of a sign-up body the lean path may take, or None to let the framework decide.

    Only bodies whose validation cannot differ from AccountCreate's are taken: a JSON object
    whose fields are strings within their lengths, with no whitespace to strip, no NUL and no
    lone surrogate. Anything else (bad JSON, wrong types, NaN, ...) goes to FastAPI and pydantic,
    which answer with the detailed 422 the OpenAPI document promises.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    fields: dict[str, Any] = {}
    for name, (low, high, required) in _FIELDS.items():
        value = data.get(name)
        if value is None:
            if required:
                return None
            fields[name] = None
            continue
        if (
            type(value) is not str
            or not low <= len(value) <= high
            or value != value.strip()  # str.strip drops a superset of what pydantic strips
            or "\x00" in value
            or not value.isascii()
            and not _encodable(value)
        ):
            return None
        fields[name] = value
    return fields


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SignupBatcher:
    """Group commit: the sign-ups that arrive while a transaction runs share the next one.

    One transaction (one lock hand-off and one commit on SQLite; one commit wait on PostgreSQL)
    serves a whole batch; a duplicate email rolls back only its own savepoint. An idle server
    commits a lone sign-up at once, so batching adds no latency. Each request is answered only
    after its batch has committed.
    """

    def __init__(self, store: Store):
        self.store = store
        self.pending: list[tuple[tuple[str, str, str], asyncio.Future]] = []
        self.running = False

    async def submit(self, name: str, email: str, password_hash: str) -> Reply:
        future = asyncio.get_running_loop().create_future()
        self.pending.append(((name, email, password_hash), future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                try:
                    results = await run_in_threadpool(self.store.create_accounts, [s for s, _ in batch])
                except Exception as err:  # the database failed the whole batch: each request sees it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # the client went away
                        continue
                    if isinstance(result, ApiError):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.running = False


class LeanSignupMiddleware:
    """POST /v1/accounts without the framework's per-request work, for plain requests.

    Sits inside the access-log and idempotency middleware (so both still apply). A request with
    an Idempotency-Key, a body that is not plain (see `plain_signup`) or a non-JSON content type
    is replayed to the FastAPI route, which has the same rules: the answers are the same, only
    cheaper. ``route`` (the FastAPI route) is set on the scope so the access log and the outcome
    counts name it as usual.
    """

    def __init__(self, app, batcher: SignupBatcher, password_cost: int, route: Any):  # noqa: ANN001
        self.app = app
        self.batcher = batcher
        self.password_cost = password_cost
        self.route = route

    async def __call__(self, scope, receive, send):  # noqa: ANN001
        if (
            scope["type"] != "http"
            or scope["path"] != "/v1/accounts"
            or scope["method"] != "POST"
            or current_idempotency.get() is not None
            or not _is_json(scope["headers"])
        ):
            return await self.app(scope, receive, send)
        body = await read_body(scope, receive)
        if body is None:
            return  # the client went away
        fields = plain_signup(body)
        if fields is None:
            return await self.app(scope, replaying([body], receive), send)

        scope["route"] = self.route
        try:
            email = check_signup(fields["email"], fields["password"], fields["password_confirmation"])
            if self.password_cost == 0:  # ~50 us: cheaper here than a thread hop
                password_hash = hash_password(fields["password"], 0)
            else:
                password_hash = await run_in_threadpool(hash_password, fields["password"], self.password_cost)
            reply = await self.batcher.submit(fields["name"], email, password_hash)
        except ApiError as err:
            scope.setdefault("state", {})["error_code"] = str(err.reason)
            body = {"error": {"code": str(err.reason), "message": err.message}}
            return await send_json(send, err.status, orjson.dumps(body), err.headers)
        except Exception as err:
            error_logger.exception("unhandled error on POST /v1/accounts")
            scope.setdefault("state", {})["error_code"] = str(Reason.INTERNAL_ERROR)
            message = f"internal error ({type(err).__name__}); this is a bug"
            body = {"error": {"code": str(Reason.INTERNAL_ERROR), "message": message}}
            return await send_json(send, 500, orjson.dumps(body), None)
        await send_json(send, reply.status, orjson.dumps(reply.body), reply.headers)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            return media == b"application/json"
    return False
