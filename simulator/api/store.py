"""The reference API's store: every read and write of the registration flow, one short transaction each.

The same code runs on SQLite, PostgreSQL and MariaDB; invariants live in the database (unique
constraints, a conditional UPDATE of the wave counter), never in a check-then-write in Python.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hmac
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, case, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from simulator.api import attempt_budgets
from simulator.api.settings import Settings
from simulator.database import schema as t
from simulator.database.db import PreparedStatement, run_write
from simulator.rules.reasons import ACCEPT, Reason


class ApiError(Exception):
    """A refusal: answered as ``{"error": {"code": reason, "message": message}}``."""

    def __init__(self, reason: Reason, message: str, *, status: int | None = None, headers=None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status or reason.http_status
        self.headers = headers or {}


def utcnow() -> dt.datetime:
    """Naive UTC, the schema's timestamp convention."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_account_id() -> str:
    """32 hex digits, time-ordered (48-bit milliseconds + 80 random bits) so B-tree inserts append."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


# --- idempotency ---------------------------------------------------------------------------------


@dataclass
class IdempotencyScope:
    """The ``Idempotency-Key`` of the request being served; the write that commits stores the answer."""

    key: str  # the record's key: set once the route knows the caller (see api/idempotency.py)
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


@dataclass
class Reply:
    """What a write answers: HTTP status and JSON body (stored as-is for idempotent replays)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Store:
    """The registration flow's data operations. Thread-safe; each call is one transaction."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self._rng = random.Random(settings.fault_seed)
        self._insert_account = PreparedStatement(engine, insert(t.accounts))
        self._insert_otp = PreparedStatement(
            engine,
            insert(t.otps).values({c.name: bindparam(c.name) for c in t.otps.columns if c.name != "id"}),
        )

    # --- plumbing -------------------------------------------------------------------------------

    def write(self, work: Callable[[Connection], Reply]) -> Reply:
        """Run ``work`` in one write transaction; store the reply under the request's Idempotency-Key."""
        scope = current_idempotency.get()

        def body(conn: Connection) -> Reply:
            reply = work(conn)
            if scope is not None and not scope.stored:
                self._store_idempotent(conn, scope, reply.status, orjson.dumps(reply.body))
            return reply

        reply = run_write(self.engine, body)
        if scope is not None:
            scope.stored = True
        return reply

    def _store_idempotent(self, conn: Connection, scope: IdempotencyScope, status: int, payload: bytes):
        try:
            with _savepoint(conn):
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
            raise IdempotentReplay(*self._replay_of(stored, scope)) from None

    def _replay_of(self, stored, scope: IdempotencyScope) -> tuple[int, bytes]:
        if stored.fingerprint != scope.fingerprint():
            return 409, orjson.dumps(
                _error_body(
                    Reason.IDEMPOTENCY_KEY_REUSED,
                    "this Idempotency-Key was used with a different request",
                )
            )
        return stored.status_code, bytes(stored.response_body)

    def idempotent_lookup(self, scope: IdempotencyScope) -> tuple[int, bytes] | None:
        """The stored answer for this key (or a 409 if the request differs), None if unseen."""
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(t.idempotency_keys).where(t.idempotency_keys.c.key == scope.key)
            ).one_or_none()
        return None if stored is None else self._replay_of(stored, scope)

    def idempotent_store_refusal(
        self, scope: IdempotencyScope, status: int, payload: bytes
    ) -> tuple[int, bytes]:
        """Store a refusal (or a read's answer) under the key; returns what must be answered."""
        try:
            run_write(self.engine, lambda conn: self._store_idempotent(conn, scope, status, payload))
        except IdempotentReplay as replay:
            return replay.status, replay.body
        scope.stored = True
        return status, payload

    def token_secret(self) -> bytes:
        """The HMAC key of bearer tokens, kept in the database so restarts keep sessions valid."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(t.schema_meta.c.value).where(t.schema_meta.c.name == "token_secret")
            ).scalar_one_or_none()
        if value is None:
            try:
                run_write(
                    self.engine,
                    lambda conn: conn.execute(
                        insert(t.schema_meta).values(name="token_secret", value=secrets.token_hex(32))
                    ),
                )
            except IntegrityError:
                pass  # another worker made it first
            return self.token_secret()
        return bytes.fromhex(value)

    # --- OTPs -----------------------------------------------------------------------------------

    def _send_otp(self, conn: Connection, account_id: str, channel: str, destination: str, now: dt.datetime):
        s = self.settings
        last = conn.execute(
            select(func.max(t.otps.c.created_at)).where(
                t.otps.c.account_id == account_id, t.otps.c.channel == channel
            )
        ).scalar_one_or_none()
        if last is not None:
            wait = s.otp_resend_interval_s - (now - last).total_seconds()
            if wait > 0:
                raise ApiError(
                    Reason.OTP_RESEND_TOO_SOON,
                    f"a code was sent {s.otp_resend_interval_s - wait:.0f} s ago; ask again in {wait:.0f} s",
                    headers={"Retry-After": str(max(1, int(wait + 0.999)))},
                )
        self._insert_otp.execute(conn, self._otp_values(account_id, channel, destination, now))

    def _otp_values(self, account_id: str, channel: str, destination: str, now: dt.datetime) -> dict:
        s = self.settings
        delay = s.sms_delay if channel == "sms" else s.email_delay
        return {
            "account_id": account_id,
            "channel": channel,
            "destination": destination,
            "code": f"{secrets.randbelow(10**s.otp_digits):0{s.otp_digits}d}",
            "created_at": now,
            "deliver_at": now + dt.timedelta(milliseconds=delay.sample_ms(self._rng)),
            "expires_at": now + dt.timedelta(seconds=s.otp_ttl_s),
            "lost": channel == "sms" and self._rng.random() < s.sms_loss_rate,
            "attempts": 0,
            "consumed_at": None,
        }

    def _check_otp(
        self, conn: Connection, account_id: str, channel: str, destination: str, code: str, now: dt.datetime
    ) -> None:
        """Consume the latest code of this account and channel, or raise why it does not count.

        Every limit is held by the database: a wrong guess is counted by conditional UPDATEs
        (`_count_wrong_code`), and the right code is consumed only while its attempts are left.
        """
        s = self.settings
        otp = conn.execute(
            select(t.otps)
            .where(t.otps.c.account_id == account_id, t.otps.c.channel == channel)
            .order_by(t.otps.c.created_at.desc(), t.otps.c.id.desc())
            .limit(1)
        ).one_or_none()
        if otp is None or otp.consumed_at is not None or otp.destination != destination:
            raise ApiError(Reason.OTP_INVALID, "no code is waiting for this account; ask for a new one")
        if otp.attempts >= s.otp_max_attempts:
            raise ApiError(Reason.OTP_TOO_MANY_ATTEMPTS, "too many wrong codes; ask for a new one")
        for who, limit, what in self._otp_budgets(account_id, channel, otp.destination):
            if attempt_budgets.exhausted(conn, who, limit, 3600, now):
                raise ApiError(
                    Reason.OTP_TOO_MANY_ATTEMPTS, f"too many wrong codes for this {what} in the last hour"
                )
        if otp.expires_at <= now:
            raise ApiError(Reason.OTP_EXPIRED, "the code has expired; ask for a new one")
        if not hmac.compare_digest(otp.code.encode(), code.encode("utf-8", "surrogatepass")):
            # Counted in a transaction of its own: the refusal rolls this one back.
            raise _CountedWrongCode(otp.id, account_id, channel, otp.destination)
        consumed = conn.execute(
            update(t.otps)
            .where(
                t.otps.c.id == otp.id, t.otps.c.consumed_at.is_(None), t.otps.c.attempts < s.otp_max_attempts
            )
            .values(consumed_at=now)
        ).rowcount
        if consumed != 1:
            raise ApiError(Reason.OTP_TOO_MANY_ATTEMPTS, "too many wrong codes; ask for a new one")

    def _otp_budgets(self, account_id: str, channel: str, destination: str) -> list[tuple[str, int, str]]:
        """The hourly budgets a wrong guess spends: this account's (per channel) and, for SMS, the phone's."""
        s = self.settings
        budgets = [
            (attempt_budgets.subject(f"otp-{channel}", account_id), s.otp_max_attempts_per_account, "account")
        ]
        if channel == "sms":
            budgets.append(
                (attempt_budgets.subject("otp-phone", destination), s.otp_max_attempts_per_phone, "phone")
            )
        return budgets

    def _count_wrong_code(self, wrong: _CountedWrongCode) -> Reason:
        """Count a wrong guess; OTP_TOO_MANY_ATTEMPTS when no attempt was left to count it against."""

        def work(conn: Connection) -> Reason:
            now = utcnow()
            counted = conn.execute(
                update(t.otps)
                .where(t.otps.c.id == wrong.otp_id, t.otps.c.attempts < self.settings.otp_max_attempts)
                .values(attempts=t.otps.c.attempts + 1)
            ).rowcount
            if counted != 1:
                return Reason.OTP_TOO_MANY_ATTEMPTS
            for who, limit, _what in self._otp_budgets(wrong.account_id, wrong.channel, wrong.destination):
                if not attempt_budgets.spend(conn, who, limit, 3600, now):
                    return Reason.OTP_TOO_MANY_ATTEMPTS
            return Reason.OTP_INVALID

        return run_write(self.engine, work)

    def _verify(self, work: Callable[[Connection], Reply]) -> Reply:
        try:
            return self.write(work)
        except _CountedWrongCode as wrong:
            if self._count_wrong_code(wrong) is Reason.OTP_TOO_MANY_ATTEMPTS:
                raise ApiError(
                    Reason.OTP_TOO_MANY_ATTEMPTS, "too many wrong codes; ask for a new one"
                ) from None
            raise ApiError(Reason.OTP_INVALID, "the code is not the one sent") from None

    # --- login throttling (per account, across workers) -----------------------------------------

    def login_locked(self, email: str) -> int | None:
        """Seconds until this email may try again when its failed logins are used up, else None."""
        s, now = self.settings, utcnow()
        who = attempt_budgets.subject("login", email)
        with self.engine.connect() as conn:
            if attempt_budgets.exhausted(conn, who, s.login_failures_per_account, s.login_window_s, now):
                return attempt_budgets.retry_after_s(now, s.login_window_s)
        return None

    def login_failed(self, email: str) -> int | None:
        """Count a failed login of this email; the seconds to wait when that used up its budget."""
        s = self.settings
        who = attempt_budgets.subject("login", email)

        def work(conn: Connection) -> int | None:
            now = utcnow()
            if attempt_budgets.spend(conn, who, s.login_failures_per_account, s.login_window_s, now):
                return None
            return attempt_budgets.retry_after_s(now, s.login_window_s)

        return run_write(self.engine, work)

    def forget_old_attempts(self) -> None:
        """Drop attempt windows older than the longest window (a day at most)."""
        horizon = max(3600.0, self.settings.login_window_s) * 2
        run_write(
            self.engine,
            lambda conn: attempt_budgets.forget_before(conn, utcnow() - dt.timedelta(seconds=horizon)),
        )

    def outbox(self, to: str, limit: int = 20) -> list[dict[str, Any]]:
        """Codes delivered to an email address or phone (sandbox): newest first; lost SMS never show."""
        now = utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    t.otps.c.channel,
                    t.otps.c.destination,
                    t.otps.c.code,
                    t.otps.c.created_at,
                    t.otps.c.deliver_at,
                    t.otps.c.expires_at,
                )
                .where(t.otps.c.destination == to, t.otps.c.deliver_at <= now, t.otps.c.lost.is_(False))
                .order_by(t.otps.c.created_at.desc(), t.otps.c.id.desc())
                .limit(limit)
            ).all()
        return [
            {
                "to": r.destination,
                "channel": r.channel,
                "code": r.code,
                "sent_at": r.created_at.isoformat() + "Z",
                "delivered_at": r.deliver_at.isoformat() + "Z",
                "expires_at": r.expires_at.isoformat() + "Z",
            }
            for r in rows
        ]

    # --- accounts and sessions ------------------------------------------------------------------

    def create_account(self, name: str, email: str, password_hash: str) -> Reply:
        account_id = new_account_id()

        def work(conn: Connection) -> Reply:
            now = utcnow()
            try:
                self._insert_account.execute(conn, _account_row(account_id, name, email, password_hash, now))
            except IntegrityError as err:
                raise ApiError(Reason.EMAIL_TAKEN, "an account with this email exists") from err
            # A new account has no earlier code, so no resend check: straight to the insert.
            self._insert_otp.execute(conn, self._otp_values(account_id, "email", email, now))
            return _account_reply(account_id, name, email, now)

        return self.write(work)

    def create_accounts(self, signups: list[tuple[str, str, str]]) -> list[Reply | ApiError]:
        """Several sign-ups ``(name, email, password_hash)`` in one transaction (group commit).

        Each sign-up (account + email OTP) runs in its own savepoint, so a taken email rolls back
        only itself and answers EMAIL_TAKEN; the others commit together. Statements go straight
        to the driver's cursor: this is the hottest write of a surge. No Idempotency-Key here
        (requests with one take `create_account`).
        """
        if self.engine.dialect.name == "postgresql":
            return run_write(self.engine, lambda conn: self._create_accounts_upsert(conn, signups))
        integrity_error = self.engine.dialect.dbapi.IntegrityError
        account_sql, otp_sql = self._insert_account.sql, self._insert_otp.sql

        def work(conn: Connection) -> list[Reply | ApiError]:
            results: list[Reply | ApiError] = []
            cursor = conn.connection.driver_connection.cursor()
            try:
                now = utcnow()
                for name, email, password_hash in signups:
                    account_id = new_account_id()
                    cursor.execute("SAVEPOINT signup")
                    try:
                        row = _account_row(account_id, name, email, password_hash, now)
                        cursor.execute(account_sql, self._insert_account.params(row))
                    except integrity_error:
                        cursor.execute("ROLLBACK TO SAVEPOINT signup")
                        cursor.execute("RELEASE SAVEPOINT signup")
                        results.append(ApiError(Reason.EMAIL_TAKEN, "an account with this email exists"))
                        continue
                    cursor.execute(
                        otp_sql, self._insert_otp.params(self._otp_values(account_id, "email", email, now))
                    )
                    cursor.execute("RELEASE SAVEPOINT signup")
                    results.append(_account_reply(account_id, name, email, now))
            finally:
                cursor.close()
            return results

        return run_write(self.engine, work)

    def _create_accounts_upsert(self, conn: Connection, signups: list[tuple[str, str, str]]) -> list:
        """PostgreSQL: the batch in two statements over ``unnest`` arrays; ``ON CONFLICT`` decides.

        Savepoints would cost two round trips per sign-up; here a taken email (committed by another
        transaction, or earlier in this batch) is simply not returned by the INSERT. Column arrays
        keep the SQL constant and the client's per-row work to building lists.
        """
        now = utcnow()
        ids = [new_account_id() for _ in signups]
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(
                _PG_INSERT_ACCOUNTS,
                (
                    ids,
                    [s[1] for s in signups],
                    [s[0] for s in signups],
                    [s[2] for s in signups],
                    [now] * len(ids),
                ),
            )
            inserted = {row[0] for row in cursor.fetchall()}
            otps = [
                self._otp_values(account_id, "email", email, now)
                for account_id, (_, email, _) in zip(ids, signups, strict=True)
                if account_id in inserted
            ]
            if otps:
                cursor.execute(_PG_INSERT_OTPS, [[o[c] for o in otps] for c in _PG_OTP_COLUMNS])
        finally:
            cursor.close()
        return [
            _account_reply(account_id, name, email, now)
            if account_id in inserted
            else ApiError(Reason.EMAIL_TAKEN, "an account with this email exists")
            for account_id, (name, email, _) in zip(ids, signups, strict=True)
        ]

    def _account(self, conn: Connection, account_id: str):
        row = conn.execute(select(t.accounts).where(t.accounts.c.id == account_id)).one_or_none()
        if row is None:
            raise ApiError(Reason.NOT_FOUND, f"no account {account_id}")
        return row

    def verify_email(self, account_id: str, code: str) -> Reply:
        def work(conn: Connection) -> Reply:
            account = self._account(conn, account_id)
            now = utcnow()
            if account.email_verified_at is None:
                self._check_otp(conn, account_id, "email", account.email, code, now)
                conn.execute(
                    update(t.accounts).where(t.accounts.c.id == account_id).values(email_verified_at=now)
                )
                verified_at = now
            else:
                # A retry of the request that verified it gets the same answer; any other code
                # does not (it would tell a stranger the account id is valid and verified).
                used = conn.execute(
                    select(t.otps.c.code)
                    .where(
                        t.otps.c.account_id == account_id,
                        t.otps.c.channel == "email",
                        t.otps.c.consumed_at.is_not(None),
                    )
                    .order_by(t.otps.c.consumed_at.desc())
                    .limit(1)
                ).scalar_one_or_none()
                if used is None or not hmac.compare_digest(
                    used.encode(), code.encode("utf-8", "surrogatepass")
                ):
                    raise ApiError(Reason.OTP_INVALID, "the code is not the one sent")
                verified_at = account.email_verified_at
            return Reply(
                200,
                {
                    "id": account_id,
                    "email_verified": True,
                    "email_verified_at": verified_at.isoformat() + "Z",
                },
            )

        return self._verify(work)

    def resend_email(self, account_id: str) -> Reply:
        def work(conn: Connection) -> Reply:
            account = self._account(conn, account_id)
            if account.email_verified_at is not None:
                return Reply(200, {"id": account_id, "sent": False, "email_verified": True})
            self._send_otp(conn, account_id, "email", account.email, utcnow())
            return Reply(202, {"id": account_id, "sent": True, "email_verified": False})

        return self.write(work)

    def login_row(self, email: str):
        with self.engine.connect() as conn:
            return conn.execute(
                select(t.accounts.c.id, t.accounts.c.password_hash, t.accounts.c.email_verified_at).where(
                    t.accounts.c.email == email
                )
            ).one_or_none()

    # --- the applicant's progress ---------------------------------------------------------------

    def progress(self, account_id: str) -> dict[str, Any]:
        """Which steps this account has done (one query), as the join check and GET /v1/me see it."""
        ktp_ok = (
            exists()
            .where(t.ktp_uploads.c.account_id == t.accounts.c.id, t.ktp_uploads.c.verdict == ACCEPT)
            .correlate(t.accounts)
        )
        query = (
            select(
                t.accounts.c.id,
                t.accounts.c.email,
                t.accounts.c.name,
                t.accounts.c.email_verified_at,
                t.accounts.c.phone,
                t.accounts.c.phone_verified_at,
                t.identities.c.nik,
                t.identities.c.kk,
                t.profiles.c.province_code,
                t.test_results.c.score,
                t.recipients.c.wave_number.label("recipient_wave"),
                t.recipients.c.state.label("recipient_state"),
                ktp_ok.label("ktp_accepted"),
            )
            .select_from(
                t.accounts.outerjoin(t.identities, t.identities.c.account_id == t.accounts.c.id)
                .outerjoin(t.profiles, t.profiles.c.account_id == t.accounts.c.id)
                .outerjoin(t.test_results, t.test_results.c.account_id == t.accounts.c.id)
                .outerjoin(t.recipients, t.recipients.c.account_id == t.accounts.c.id)
            )
            .where(t.accounts.c.id == account_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise ApiError(Reason.UNAUTHENTICATED, "the account of this token no longer exists")
        return {
            "id": row.id,
            "email": row.email,
            "name": row.name,
            "steps": {
                "email_verified": row.email_verified_at is not None,
                "identity_verified": row.nik is not None,
                "profile_completed": row.province_code is not None,
                "phone_verified": row.phone_verified_at is not None,
                "ktp_accepted": bool(row.ktp_accepted),
                "test_completed": row.score is not None,
            },
            "nik": row.nik,
            "kk": row.kk,
            "phone": row.phone,
            "province_code": row.province_code,
            "recipient": None
            if row.recipient_wave is None
            else {"wave": row.recipient_wave, "state": row.recipient_state},
        }

    def require(self, progress: dict[str, Any], *steps: str) -> None:
        missing = [s for s in steps if not progress["steps"][s]]
        if missing:
            raise ApiError(Reason.STEP_INCOMPLETE, "earlier steps are not done: " + ", ".join(missing))

    # --- identity against the registry ----------------------------------------------------------

    def resident(self, nik: str):
        with self.engine.connect() as conn:
            return conn.execute(select(t.residents).where(t.residents.c.nik == nik)).one_or_none()

    def kk_recipients(self, kk: str, nik: str) -> int:
        """Members of this KK, other than ``nik``, who are recipients (registry or selected here)."""
        with self.engine.connect() as conn:
            in_registry = conn.execute(
                select(func.count())
                .select_from(t.residents)
                .where(t.residents.c.kk == kk, t.residents.c.is_recipient.is_(True), t.residents.c.nik != nik)
            ).scalar_one()
            selected_here = conn.execute(
                select(func.count())
                .select_from(t.recipients)
                .where(t.recipients.c.kk == kk, t.recipients.c.state != "revoked")
            ).scalar_one()
        return int(in_registry) + int(selected_here)

    def save_identity(self, account_id: str, nik: str, kk: str, birth_date: dt.date) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            held = conn.execute(
                select(t.identities.c.nik).where(t.identities.c.account_id == account_id)
            ).scalar_one_or_none()
            if held is not None:
                if held == nik:
                    return Reply(200, {"nik": nik, "kk": kk, "verified": True})
                raise ApiError(Reason.NIK_ALREADY_REGISTERED, "this account already has another NIK verified")
            try:
                with _savepoint(conn):
                    conn.execute(
                        insert(t.identities).values(
                            account_id=account_id, nik=nik, kk=kk, birth_date=birth_date, checked_at=now
                        )
                    )
            except IntegrityError as err:
                # Either this account won a concurrent copy of this request, or the NIK is taken.
                held = conn.execute(
                    select(t.identities.c.nik).where(t.identities.c.account_id == account_id)
                ).scalar_one_or_none()
                if held == nik:
                    return Reply(200, {"nik": nik, "kk": kk, "verified": True})
                raise ApiError(
                    Reason.NIK_ALREADY_REGISTERED,
                    "this account already has another NIK verified"
                    if held
                    else "another account holds this NIK",
                ) from err
            return Reply(200, {"nik": nik, "kk": kk, "verified": True, "checked_at": now.isoformat() + "Z"})

        return self.write(work)

    def save_profile(self, account_id: str, profile: dict[str, Any]) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            values = dict(profile, updated_at=now)
            done = conn.execute(
                update(t.profiles).where(t.profiles.c.account_id == account_id).values(**values)
            ).rowcount
            if not done:
                try:
                    with _savepoint(conn):
                        conn.execute(insert(t.profiles).values(account_id=account_id, **values))
                except IntegrityError:  # a concurrent first save of the same profile won; ours updates it
                    conn.execute(
                        update(t.profiles).where(t.profiles.c.account_id == account_id).values(**values)
                    )
            return Reply(200, dict(profile, updated_at=now.isoformat() + "Z"))

        return self.write(work)

    # --- phone ------------------------------------------------------------------------------------

    def set_phone(self, account_id: str, phone: str) -> Reply:
        def work(conn: Connection) -> Reply:
            account = self._account(conn, account_id)
            if account.phone_verified_at is not None:
                if account.phone == phone:
                    return Reply(200, {"phone": phone, "phone_verified": True, "sent": False})
                raise ApiError(Reason.PHONE_TAKEN, "this account already has a verified phone")
            now = utcnow()
            if account.phone != phone:
                self._release_stale_claim(conn, phone, now)
                try:
                    with _savepoint(conn):
                        conn.execute(
                            update(t.accounts).where(t.accounts.c.id == account_id).values(phone=phone)
                        )
                except IntegrityError as err:
                    raise ApiError(
                        Reason.PHONE_TAKEN,
                        "another account uses this phone (its unverified claim lapses when its code expires)",
                    ) from err
            self._send_otp(conn, account_id, "sms", phone, now)
            return Reply(202, {"phone": phone, "phone_verified": False, "sent": True})

        return self.write(work)

    def _release_stale_claim(self, conn: Connection, phone: str, now: dt.datetime) -> None:
        """Free ``phone`` from an account that claimed it but never verified it while its code lived.

        An unverified claim holds a number only as long as its latest SMS code is valid: after
        that, anyone may take the number (as a real service re-assigns an unconfirmed one).
        """
        a, o = t.accounts, t.otps
        live_code = (
            exists()
            .where(
                o.c.account_id == a.c.id, o.c.channel == "sms", o.c.destination == phone, o.c.expires_at > now
            )
            .correlate(a)
        )
        conn.execute(
            update(a)
            .where(a.c.phone == phone, a.c.phone_verified_at.is_(None), ~live_code)
            .values(phone=None)
        )

    def verify_phone(self, account_id: str, code: str) -> Reply:
        def work(conn: Connection) -> Reply:
            account = self._account(conn, account_id)
            if account.phone is None:
                raise ApiError(Reason.STEP_INCOMPLETE, "register a phone first (POST /v1/me/phone)")
            now = utcnow()
            if account.phone_verified_at is None:
                self._check_otp(conn, account_id, "sms", account.phone, code, now)
                conn.execute(
                    update(t.accounts).where(t.accounts.c.id == account_id).values(phone_verified_at=now)
                )
            return Reply(200, {"phone": account.phone, "phone_verified": True})

        return self._verify(work)

    # --- KTP and test -----------------------------------------------------------------------------

    def record_ktp(self, account_id: str, record: dict[str, Any], reply: Reply) -> Reply:
        def work(conn: Connection) -> Reply:
            result = conn.execute(
                insert(t.ktp_uploads).values(account_id=account_id, created_at=utcnow(), **record)
            )
            reply.body["upload_id"] = int(result.inserted_primary_key[0])
            return reply

        return self.write(work)

    def save_test(self, account_id: str, answers: str, score: int) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            try:
                with _savepoint(conn):
                    conn.execute(
                        insert(t.test_results).values(
                            account_id=account_id, answers=answers, score=score, completed_at=now
                        )
                    )
            except IntegrityError:
                pass  # taken before: the first result stands (no retakes)
            row = conn.execute(select(t.test_results).where(t.test_results.c.account_id == account_id)).one()
            return Reply(
                200,
                {
                    "score": row.score,
                    "questions": len(row.answers),
                    "completed_at": row.completed_at.isoformat() + "Z",
                },
            )

        return self.write(work)

    # --- waves ------------------------------------------------------------------------------------

    def wave_row(self, conn: Connection, number: int):
        row = conn.execute(select(t.waves).where(t.waves.c.number == number)).one_or_none()
        if row is None:
            raise ApiError(Reason.NOT_FOUND, f"no wave {number}")
        return row

    def wave_status(self, number: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return _wave_json(self.wave_row(conn, number), utcnow())

    def create_wave(self, values: dict[str, Any]) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            number = values.get("number")
            if number is None:
                number = (conn.execute(select(func.max(t.waves.c.number))).scalar_one_or_none() or 0) + 1
            row = dict(values, number=number, state="open", joined_count=0, selected_count=0, created_at=now)
            if row.get("selection_seed") is None:
                row["selection_seed"] = secrets.randbelow(2**31)
            try:
                conn.execute(insert(t.waves).values(**row))
            except IntegrityError as err:
                raise ApiError(Reason.WAVE_EXISTS, f"wave {number} exists") from err
            if row["mode"] == "lottery":
                previous = conn.execute(
                    select(func.max(t.waves.c.number)).where(
                        t.waves.c.number < number, t.waves.c.state == "closed"
                    )
                ).scalar_one_or_none()
                if previous is not None:
                    _carry_over(conn, previous, number, now)
            return Reply(
                201, _wave_json(self.wave_row(conn, number), now), {"Location": f"/v1/waves/{number}"}
            )

        return self.write(work)

    def join_wave(self, account_id: str, number: int, province_code: str | None) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            wave = self.wave_row(conn, number)
            _check_open(wave, now)
            if wave.province_codes and province_code not in wave.province_codes.split(","):
                raise ApiError(
                    Reason.DOMICILE_MISMATCH,
                    f"wave {number} takes domiciles in {wave.province_codes}, yours is {province_code}",
                )
            joined = conn.execute(
                select(t.wave_joins.c.join_order).where(
                    t.wave_joins.c.wave_number == number, t.wave_joins.c.account_id == account_id
                )
            ).scalar_one_or_none()
            if joined is not None:
                raise ApiError(Reason.ALREADY_JOINED, f"already joined wave {number}")
            # The one statement that enforces the fcfs quota on every engine: the row lock (or
            # SQLite's write lock) serialises it, and it only counts while a place is left.
            counter = update(t.waves).where(t.waves.c.number == number, t.waves.c.state == "open")
            if wave.mode == "fcfs":
                counter = counter.where(t.waves.c.joined_count < t.waves.c.quota)
            if conn.execute(counter.values(joined_count=t.waves.c.joined_count + 1)).rowcount != 1:
                fresh = self.wave_row(conn, number)
                _check_open(fresh, now)
                raise ApiError(Reason.WAVE_FULL, f"wave {number} has given all {fresh.quota} places")
            order = conn.execute(
                select(t.waves.c.joined_count).where(t.waves.c.number == number)
            ).scalar_one()
            try:
                conn.execute(
                    insert(t.wave_joins).values(
                        wave_number=number, account_id=account_id, joined_at=now, join_order=order
                    )
                )
            except IntegrityError as err:
                raise ApiError(Reason.ALREADY_JOINED, f"already joined wave {number}") from err
            return Reply(
                201,
                {
                    "wave": number,
                    "join_order": order,
                    "joined_at": now.isoformat() + "Z",
                    "mode": wave.mode,
                    "selected": None,
                },
            )

        return self.write(work)

    def close_wave(self, number: int, seed: int | None) -> Reply:
        from simulator.api.selection import run_selection

        def work(conn: Connection) -> Reply:
            now = utcnow()
            wave = self.wave_row(conn, number)
            closed = conn.execute(
                update(t.waves)
                .where(t.waves.c.number == number, t.waves.c.state == "open")
                .values(state="closed", closed_at=now, **({} if seed is None else {"selection_seed": seed}))
            ).rowcount
            if closed != 1:
                raise ApiError(Reason.WAVE_CLOSED, f"wave {number} is already closed")
            wave = self.wave_row(conn, number)
            outcome = run_selection(conn, wave, now)
            nxt = conn.execute(
                select(t.waves.c.number)
                .where(t.waves.c.number > number, t.waves.c.state == "open", t.waves.c.mode == "lottery")
                .order_by(t.waves.c.number)
                .limit(1)
            ).scalar_one_or_none()
            carried = _carry_over(conn, number, nxt, now) if nxt is not None else 0
            body = _wave_json(self.wave_row(conn, number), now)
            body["selection"] = dict(outcome, carried_over_to=nxt, carried_over=carried)
            return Reply(200, body)

        return self.write(work)

    # --- registry seed and stats ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The server-side truth a load test reconciles against (committed rows, not answers sent)."""
        with self.engine.connect() as conn:
            scalar = lambda q: int(conn.execute(q).scalar_one() or 0)  # noqa: E731
            count = lambda table, *where: scalar(select(func.count()).select_from(table).where(*where))  # noqa: E731
            steps = {
                "accounts_created": count(t.accounts),
                "email_verified": count(t.accounts, t.accounts.c.email_verified_at.is_not(None)),
                "identity_verified": count(t.identities),
                "profile_completed": count(t.profiles),
                "phone_verified": count(t.accounts, t.accounts.c.phone_verified_at.is_not(None)),
                "ktp_accepted": scalar(
                    select(func.count(func.distinct(t.ktp_uploads.c.account_id))).where(
                        t.ktp_uploads.c.verdict == ACCEPT
                    )
                ),
                "test_completed": count(t.test_results),
                "wave_joins": count(t.wave_joins),
                "selected": count(t.recipients),
            }
            outcomes: dict[str, dict[str, int]] = {}
            for step, outcome, n in conn.execute(
                select(
                    t.outcome_counts.c.step, t.outcome_counts.c.outcome, func.sum(t.outcome_counts.c["count"])
                ).group_by(t.outcome_counts.c.step, t.outcome_counts.c.outcome)
            ):
                outcomes.setdefault(step, {})[outcome] = int(n)
            carried = dict(
                conn.execute(
                    select(t.wave_joins.c.wave_number, func.count())
                    .where(t.wave_joins.c.carried_over_from.is_not(None))
                    .group_by(t.wave_joins.c.wave_number)
                ).all()
            )
            now = utcnow()
            waves = {}
            for row in conn.execute(select(t.waves).order_by(t.waves.c.number)):
                body = _wave_json(row, now)
                body["carried_over"] = int(carried.get(row.number, 0))
                waves[str(row.number)] = body
            ktp = {
                v: int(n)
                for v, n in conn.execute(
                    select(t.ktp_uploads.c.verdict, func.count()).group_by(t.ktp_uploads.c.verdict)
                )
            }
            recipients = {
                s: int(n)
                for s, n in conn.execute(
                    select(t.recipients.c.state, func.count()).group_by(t.recipients.c.state)
                )
            }
            otp_rows = conn.execute(
                select(
                    t.otps.c.channel,
                    func.count(),
                    func.sum(case((t.otps.c.lost.is_(True), 1), else_=0)),
                    func.sum(case((t.otps.c.consumed_at.is_not(None), 1), else_=0)),
                ).group_by(t.otps.c.channel)
            ).all()
            registry = count(t.residents)
        otps = {
            ch: {"sent": int(n), "lost": int(lost or 0), "used": int(used or 0)}
            for ch, n, lost, used in otp_rows
        }
        return {
            "generated_at": now.isoformat() + "Z",
            "steps": steps,
            "outcomes": outcomes,
            "waves": waves,
            "ktp_uploads": ktp,
            "recipients": recipients,
            "otps": otps,
            "registry_residents": registry,
        }

    def flush_outcomes(self, worker: str, counts: dict[tuple[str, str], int]) -> None:
        """Add this process's answer counts to ``outcome_counts`` (one row per worker/step/outcome)."""
        if not counts:
            return

        def work(conn: Connection) -> None:
            c = t.outcome_counts.c
            for (step, outcome), n in counts.items():
                done = conn.execute(
                    update(t.outcome_counts)
                    .where(c.worker == worker, c.step == step, c.outcome == outcome)
                    .values(count=c["count"] + n)
                ).rowcount
                if not done:
                    conn.execute(
                        insert(t.outcome_counts).values(worker=worker, step=step, outcome=outcome, count=n)
                    )

        run_write(self.engine, work)


class _CountedWrongCode(Exception):
    def __init__(self, otp_id: int, account_id: str, channel: str, destination: str):
        super().__init__(otp_id)
        self.otp_id = otp_id
        self.account_id = account_id
        self.channel = channel
        self.destination = destination


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _savepoint(conn: Connection):  # noqa: ANN202 - a context manager
    """A SAVEPOINT around a statement that may hit a unique constraint, where the transaction
    goes on after it: PostgreSQL aborts the whole transaction on an error otherwise. SQLite
    (and MariaDB) undo just the failed statement, so they need none."""
    return conn.begin_nested() if conn.dialect.name == "postgresql" else _null()


def _error_body(reason: Reason, message: str) -> dict[str, Any]:
    return {"error": {"code": str(reason), "message": message}}


def _check_open(wave, now: dt.datetime) -> None:
    if wave.state != "open" or now >= wave.closes_at:
        raise ApiError(Reason.WAVE_CLOSED, f"wave {wave.number} closed at {wave.closes_at.isoformat()}Z")
    if now < wave.opens_at:
        raise ApiError(Reason.WAVE_NOT_OPEN, f"wave {wave.number} opens at {wave.opens_at.isoformat()}Z")


def wave_state(wave, now: dt.datetime) -> str:
    if wave.state == "closed":
        return "closed"
    if now < wave.opens_at:
        return "scheduled"
    return "open" if now < wave.closes_at else "ended"


def _wave_json(wave, now: dt.datetime) -> dict[str, Any]:
    return {
        "number": wave.number,
        "quota": wave.quota,
        "mode": wave.mode,
        "state": wave_state(wave, now),
        "opens_at": wave.opens_at.isoformat() + "Z",
        "closes_at": wave.closes_at.isoformat() + "Z",
        "province_codes": wave.province_codes.split(",") if wave.province_codes else None,
        "joined": wave.joined_count,
        "selected": wave.selected_count,
        "remaining": max(0, wave.quota - wave.joined_count)
        if wave.mode == "fcfs"
        else max(0, wave.quota - wave.selected_count),
    }


def _carry_over(conn: Connection, from_wave: int, to_wave: int, now: dt.datetime) -> int:
    """Join the applicants ``from_wave`` did not select into ``to_wave`` (no new sign-up, no retest)."""
    target = conn.execute(select(t.waves).where(t.waves.c.number == to_wave)).one()
    if target.mode != "lottery" or target.state != "open":
        return 0
    j = t.wave_joins
    already = select(j.c.account_id).where(j.c.wave_number == to_wave)
    account_ids = (
        conn.execute(
            select(j.c.account_id)
            .where(
                j.c.wave_number == from_wave,
                j.c.selected.is_(False),
                j.c.account_id.not_in(already),
                ~exists().where(t.recipients.c.account_id == j.c.account_id),
            )
            .order_by(j.c.join_order)
        )
        .scalars()
        .all()
    )
    if not account_ids:
        return 0
    conn.execute(
        update(t.waves)
        .where(t.waves.c.number == to_wave)
        .values(joined_count=t.waves.c.joined_count + len(account_ids))
    )
    base = conn.execute(select(t.waves.c.joined_count).where(t.waves.c.number == to_wave)).scalar_one()
    first = base - len(account_ids) + 1
    rows = [
        {
            "wave_number": to_wave,
            "account_id": a,
            "joined_at": now,
            "join_order": first + i,
            "carried_over_from": from_wave,
        }
        for i, a in enumerate(account_ids)
    ]
    for start in range(0, len(rows), 5000):
        conn.execute(insert(j), rows[start : start + 5000])
    return len(rows)


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"


def _account_row(account_id: str, name: str, email: str, password_hash: str, now: dt.datetime) -> dict:
    return {"id": account_id, "email": email, "name": name, "password_hash": password_hash, "created_at": now}


def _account_reply(account_id: str, name: str, email: str, now: dt.datetime) -> Reply:
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
