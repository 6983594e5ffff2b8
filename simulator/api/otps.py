"""One-time codes by email and SMS: sending them, checking a guess, the guess budgets, the sandbox outbox.

Owns `OtpStore` (table ``otps`` and the OTP budgets in ``attempt_budgets``) and the sandbox route
(``GET /v1/sandbox/outbox``). Every limit is held by the database: a wrong guess is counted by
conditional UPDATEs in a transaction of its own, the right code is consumed only while attempts are left.
"""

import datetime as dt
import hmac
import random
import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import Connection, bindparam, func, insert, select, update
from starlette.concurrency import run_in_threadpool

from simulator.api import attempt_budgets
from simulator.api import models as m
from simulator.api.responses import ApiError, JsonResponse, Reply
from simulator.api.store import Store
from simulator.database import schema as t
from simulator.database.db import PreparedStatement, run_write
from simulator.database.schema import utcnow
from simulator.rules.email import normalize_email
from simulator.rules.phone import normalize_phone
from simulator.rules.reasons import Reason


class WrongCode(Exception):
    """A guess that is not the code: counted in a transaction of its own (the refusal rolls back)."""

    def __init__(self, otp_id: int, account_id: str, channel: str, destination: str):
        super().__init__(otp_id)
        self.otp_id = otp_id
        self.account_id = account_id
        self.channel = channel
        self.destination = destination


class OtpStore:
    """Codes of the email and phone steps, sent with the simulated delivery delays and SMS losses."""

    def __init__(self, store: Store):
        self.store = store
        self.engine = store.engine
        self.settings = store.settings
        self._rng = random.Random(store.settings.fault_seed)
        self.insert = PreparedStatement(
            self.engine,
            insert(t.otps).values({c.name: bindparam(c.name) for c in t.otps.columns if c.name != "id"}),
        )

    def send(self, conn: Connection, account_id: str, channel: str, destination: str, now: dt.datetime):
        """A new code to ``destination``, unless the last one of this channel is too recent."""
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
        self.insert.execute(conn, self.values(account_id, channel, destination, now))

    def values(self, account_id: str, channel: str, destination: str, now: dt.datetime) -> dict:
        """The ``otps`` row of a new code (its delivery delay and SMS loss drawn from the fault seed)."""
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

    def consume(
        self, conn: Connection, account_id: str, channel: str, destination: str, code: str, now: dt.datetime
    ) -> None:
        """Consume the latest code of this account and channel, or raise why it does not count."""
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
        for who, limit, what in self._budgets(account_id, channel, otp.destination):
            if attempt_budgets.exhausted(conn, who, limit, 3600, now):
                raise ApiError(
                    Reason.OTP_TOO_MANY_ATTEMPTS, f"too many wrong codes for this {what} in the last hour"
                )
        if otp.expires_at <= now:
            raise ApiError(Reason.OTP_EXPIRED, "the code has expired; ask for a new one")
        if not hmac.compare_digest(otp.code.encode(), code.encode("utf-8", "surrogatepass")):
            raise WrongCode(otp.id, account_id, channel, otp.destination)
        consumed = conn.execute(
            update(t.otps)
            .where(
                t.otps.c.id == otp.id, t.otps.c.consumed_at.is_(None), t.otps.c.attempts < s.otp_max_attempts
            )
            .values(consumed_at=now)
        ).rowcount
        if consumed != 1:
            raise ApiError(Reason.OTP_TOO_MANY_ATTEMPTS, "too many wrong codes; ask for a new one")

    def _budgets(self, account_id: str, channel: str, destination: str) -> list[tuple[str, int, str]]:
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

    def _count_wrong(self, wrong: WrongCode) -> Reason:
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
            for who, limit, _what in self._budgets(wrong.account_id, wrong.channel, wrong.destination):
                if not attempt_budgets.spend(conn, who, limit, 3600, now):
                    return Reason.OTP_TOO_MANY_ATTEMPTS
            return Reason.OTP_INVALID

        return run_write(self.engine, work)

    def verify(self, work: Callable[[Connection], Reply]) -> Reply:
        """Run a verification write (which calls `consume`); a wrong guess is counted, then refused."""
        try:
            return self.store.write(work)
        except WrongCode as wrong:
            if self._count_wrong(wrong) is Reason.OTP_TOO_MANY_ATTEMPTS:
                raise ApiError(
                    Reason.OTP_TOO_MANY_ATTEMPTS, "too many wrong codes; ask for a new one"
                ) from None
            raise ApiError(Reason.OTP_INVALID, "the code is not the one sent") from None

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


def storable(text: str) -> bool:
    """Text every database can store: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def add_sandbox_routes(router: APIRouter, otps: OtpStore, sandbox: bool) -> None:
    """``GET /v1/sandbox/outbox``: the codes a test client would have received (serve --sandbox only)."""

    @router.get(
        "/v1/sandbox/outbox",
        tags=["sandbox"],
        name="outbox",
        response_model=m.OutboxOut,
        include_in_schema=sandbox,
    )
    async def outbox(to: Annotated[str, Query(min_length=1, max_length=254, description="email or phone")]):
        if not sandbox:
            raise ApiError(Reason.NOT_FOUND, "the outbox exists only in sandbox mode (serve --sandbox)")
        if not storable(to):
            raise ApiError(Reason.VALIDATION_ERROR, "to: NUL characters and lone surrogates are not allowed")
        address = to.strip()
        address = normalize_email(address) if "@" in address else (normalize_phone(address) or address)
        return JsonResponse({"messages": await run_in_threadpool(otps.outbox, address)})
