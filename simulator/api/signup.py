"""Sign-up (POST /v1/accounts): the account rules, the one sign-up interface, group commit, a lean ASGI path.

The wave-1 peak is a sign-up surge. `Signups.sign_up` is the only way an account is created: it
checks the rules, hashes the password, and stores the account with its email OTP, either in a
group-commit batch (`SignupBatcher`: the sign-ups waiting at the same moment share one transaction)
or, for a request with an ``Idempotency-Key``, alone in the transaction that stores the answer. How
a batch is written is chosen once at start-up (`signup_storage`): one ``unnest`` statement pair on
PostgreSQL, a savepoint per sign-up on the driver's cursor elsewhere. `LeanSignupMiddleware` serves
plain sign-ups without the framework's per-request work; it reads the limits of `models.AccountCreate`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from sqlalchemy import Connection, insert
from starlette.concurrency import run_in_threadpool

from simulator.api import models as m
from simulator.api.body_limits import read_body, replaying
from simulator.api.idempotency import current_idempotency
from simulator.api.otps import OtpStore
from simulator.api.responses import ApiError, Reply, error_body, send_json
from simulator.api.store import Store, new_account_id
from simulator.database import schema as t
from simulator.database.db import PreparedStatement, run_write
from simulator.database.passwords import hash_password
from simulator.database.schema import utcnow
from simulator.rules.email import email_refusal, normalize_email
from simulator.rules.reasons import Reason

error_logger = logging.getLogger("prakerja_sim.api")

MAX_BATCH = 256
"""Sign-ups per group-commit transaction at most (bounds the time the write lock is held)."""

MIN_PASSWORD_LENGTH = 6

Signup = tuple[str, str, str]
"""``(name, email, password_hash)`` of one sign-up, the email as stored."""


def check_signup(email: str, password: str, confirmation: str | None) -> str:
    """The account rules with their reason codes; returns the email as stored (lower case)."""
    refusal = email_refusal(email)
    if refusal is not None:
        raise ApiError(*refusal)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ApiError(
            Reason.PASSWORD_TOO_SHORT, f"the password needs at least {MIN_PASSWORD_LENGTH} characters"
        )
    if confirmation is not None and confirmation != password:
        raise ApiError(Reason.PASSWORD_MISMATCH, "the two passwords differ")
    return normalize_email(email)


# --- storage: one interface, the engine's fast path chosen once ----------------------------------


def _account_reply(account_id: str, name: str, email: str, now) -> Reply:  # a datetime
    return Reply(
        201,
        {
            "id": account_id,
            "email": email,
            "name": name,
            "email_verified": False,
            "created_at": now.isoformat() + "Z",
        },
        {"Location": f"/v1/accounts/{account_id}"},
    )


def _email_taken() -> ApiError:
    return ApiError(Reason.EMAIL_TAKEN, "an account with this email exists")


class SavepointSignups:
    """SQLite and MariaDB: each sign-up (account + email OTP) in its own savepoint on the driver's
    cursor, so a taken email rolls back only itself; statements skip SQLAlchemy's per-call work."""

    def __init__(self, store: Store, otps: OtpStore):
        self.otps = otps
        self.insert_account = PreparedStatement(store.engine, insert(t.accounts))
        self.integrity_error = store.engine.dialect.dbapi.IntegrityError

    def insert(self, conn: Connection, signups: list[Signup]) -> list[Reply | ApiError]:
        results: list[Reply | ApiError] = []
        account_sql, otp_sql = self.insert_account.sql, self.otps.insert.sql
        cursor = conn.connection.driver_connection.cursor()
        try:
            now = utcnow()
            for name, email, password_hash in signups:
                account_id = new_account_id()
                cursor.execute("SAVEPOINT signup")
                try:
                    row = {
                        "id": account_id,
                        "email": email,
                        "name": name,
                        "password_hash": password_hash,
                        "created_at": now,
                    }
                    cursor.execute(account_sql, self.insert_account.params(row))
                except self.integrity_error:
                    cursor.execute("ROLLBACK TO SAVEPOINT signup")
                    cursor.execute("RELEASE SAVEPOINT signup")
                    results.append(_email_taken())
                    continue
                otp = self.otps.values(account_id, "email", email, now)
                cursor.execute(otp_sql, self.otps.insert.params(otp))
                cursor.execute("RELEASE SAVEPOINT signup")
                results.append(_account_reply(account_id, name, email, now))
        finally:
            cursor.close()
        return results


_PG_INSERT_ACCOUNTS = (
    f"INSERT INTO {t.accounts.name} (id, email, name, password_hash, created_at) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamp[]) "
    "ON CONFLICT (email) DO NOTHING RETURNING id"
)
_PG_OTP_COLUMNS = (
    "account_id",
    "channel",
    "destination",
    "code",
    "created_at",
    "deliver_at",
    "expires_at",
    "lost",
    "attempts",
)
_PG_INSERT_OTPS = (
    f"INSERT INTO {t.otps.name} ({', '.join(_PG_OTP_COLUMNS)}) SELECT * FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamp[], %s::timestamp[], %s::timestamp[], "
    "%s::bool[], %s::int[])"
)


class UnnestSignups:
    """PostgreSQL: the batch in two statements over ``unnest`` arrays; ``ON CONFLICT`` decides.

    Savepoints would cost two round trips per sign-up; here a taken email (committed by another
    transaction, or earlier in this batch) is simply not returned by the INSERT. Column arrays
    keep the SQL constant and the client's per-row work to building lists.
    """

    def __init__(self, store: Store, otps: OtpStore):
        self.otps = otps

    def insert(self, conn: Connection, signups: list[Signup]) -> list[Reply | ApiError]:
        now = utcnow()
        ids = [new_account_id() for _ in signups]
        cursor = conn.connection.driver_connection.cursor()
        try:
            names, emails, hashes = (list(column) for column in zip(*signups, strict=True))
            cursor.execute(_PG_INSERT_ACCOUNTS, (ids, emails, names, hashes, [now] * len(ids)))
            inserted = {row[0] for row in cursor.fetchall()}
            otps = [
                self.otps.values(account_id, "email", email, now)
                for account_id, email in zip(ids, emails, strict=True)
                if account_id in inserted
            ]
            if otps:
                cursor.execute(_PG_INSERT_OTPS, [[o[c] for o in otps] for c in _PG_OTP_COLUMNS])
        finally:
            cursor.close()
        return [
            _account_reply(account_id, name, email, now) if account_id in inserted else _email_taken()
            for account_id, (name, email, _) in zip(ids, signups, strict=True)
        ]


def signup_storage(store: Store, otps: OtpStore) -> SavepointSignups | UnnestSignups:
    """How this engine writes a batch of sign-ups (chosen once, at start-up)."""
    if store.engine.dialect.name == "postgresql":
        return UnnestSignups(store, otps)
    return SavepointSignups(store, otps)


# --- the one interface -----------------------------------------------------------------------------


class Signups:
    """The only way an account is made: `sign_up` (async, from the route or the lean path) and
    `create_batch` (a batch in one transaction, also what the benchmark times)."""

    def __init__(self, store: Store, otps: OtpStore, password_cost: int):
        self.store = store
        self.password_cost = password_cost
        self.storage = signup_storage(store, otps)
        self.batcher = SignupBatcher(self.create_batch)

    def create_batch(self, signups: list[Signup]) -> list[Reply | ApiError]:
        """Several sign-ups in one transaction (group commit); a taken email answers EMAIL_TAKEN alone."""
        return run_write(self.store.engine, lambda conn: self.storage.insert(conn, signups))

    def _create_one(self, signup: Signup) -> Reply:
        """One sign-up in the transaction that also stores the request's Idempotency-Key answer."""

        def work(conn: Connection) -> Reply:
            result = self.storage.insert(conn, [signup])[0]
            if isinstance(result, ApiError):
                raise result
            return result

        return self.store.write(work)

    async def sign_up(self, name: str, email: str, password: str, confirmation: str | None) -> Reply:
        """Check, hash, store; the reply once the account is committed (ApiError: refused)."""
        email = check_signup(email, password, confirmation)
        if self.password_cost == 0:  # ~50 us: cheaper here than a thread hop
            password_hash = hash_password(password, 0)
        else:
            password_hash = await run_in_threadpool(hash_password, password, self.password_cost)
        if current_idempotency.get() is not None:  # its answer must commit with the account
            return await run_in_threadpool(self._create_one, (name, email, password_hash))
        return await self.batcher.submit((name, email, password_hash))


class SignupBatcher:
    """Group commit: the sign-ups that arrive while a transaction runs share the next one.

    One transaction (one lock hand-off and one commit on SQLite; one commit wait on PostgreSQL)
    serves a whole batch. An idle server commits a lone sign-up at once, so batching adds no
    latency. Each request is answered only after its batch has committed.
    """

    def __init__(self, create_batch):  # Signups.create_batch
        self.create_batch = create_batch
        self.pending: list[tuple[Signup, asyncio.Future]] = []
        self.running = False

    async def submit(self, signup: Signup) -> Reply:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((signup, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
                try:
                    results = await run_in_threadpool(self.create_batch, [s for s, _ in batch])
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


# --- the lean ASGI path ----------------------------------------------------------------------------


def _text_limits(model: type) -> dict[str, tuple[int, int, bool]]:
    """Field -> (min length, max length, required) of a request model made only of text fields."""
    limits = {}
    for name, field in model.model_fields.items():
        if field.annotation not in (str, str | None):
            raise TypeError(f"{model.__name__}.{name}: the lean sign-up path reads text fields only")
        low = next((c.min_length for c in field.metadata if getattr(c, "min_length", None) is not None), 0)
        high = next(
            (c.max_length for c in field.metadata if getattr(c, "max_length", None) is not None), None
        )
        if high is None:
            raise TypeError(f"{model.__name__}.{name}: every text field needs a max_length")
        limits[name] = (low, high, field.is_required())
    return limits


_FIELDS = _text_limits(m.AccountCreate)
"""The lengths and required fields of `models.AccountCreate`, which stays the declared schema
(OpenAPI) and the validator of every request the lean path does not take."""


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


class LeanSignupMiddleware:
    """POST /v1/accounts without the framework's per-request work, for plain requests.

    Sits inside the access-log and idempotency middleware (so both still apply). A request with
    an Idempotency-Key, a body that is not plain (see `plain_signup`) or a non-JSON content type
    is replayed to the FastAPI route, which calls the same `Signups.sign_up`: the answers are the
    same, only cheaper. ``route`` (the FastAPI route) is set on the scope so the access log and
    the outcome counts name it as usual.
    """

    def __init__(self, app, signups: Signups, route: Any):
        self.app = app
        self.signups = signups
        self.route = route

    async def __call__(self, scope, receive, send):
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
            reply = await self.signups.sign_up(
                fields["name"], fields["email"], fields["password"], fields["password_confirmation"]
            )
        except ApiError as err:
            scope.setdefault("state", {})["error_code"] = str(err.reason)
            body = orjson.dumps(error_body(err.reason, err.message))
            return await send_json(send, err.status, body, err.headers)
        except Exception as err:
            error_logger.exception("unhandled error on POST /v1/accounts")
            scope.setdefault("state", {})["error_code"] = str(Reason.INTERNAL_ERROR)
            message = f"internal error ({type(err).__name__}); this is a bug"
            body = orjson.dumps(error_body(Reason.INTERNAL_ERROR, message))
            return await send_json(send, 500, body, None)
        await send_json(send, reply.status, orjson.dumps(reply.body), reply.headers)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            return media == b"application/json"
    return False
