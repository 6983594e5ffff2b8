"""The phone step: claim a mobile number, get its SMS code, verify it.

Owns `PhoneStore` (``accounts.phone`` and ``phone_verified_at``; codes through `otps.OtpStore`) and the
phone routes (``POST /v1/me/phone``, ``POST /v1/me/phone/verify``). The number's format is
simulator/rules/phone.py. An unverified claim holds a number only while its latest code is valid.
"""

import datetime as dt
from typing import Annotated

from fastapi import APIRouter
from sqlalchemy import Connection, exists, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from simulator.api import models as m
from simulator.api.accounts import account_row
from simulator.api.auth import Auth
from simulator.api.otps import OtpStore
from simulator.api.progress import ProgressStore, require
from simulator.api.responses import ApiError, Reply, reply_response
from simulator.database import schema as t
from simulator.database.db import savepoint
from simulator.database.schema import utcnow
from simulator.rules.phone import normalize_phone, phone_problem
from simulator.rules.reasons import Reason


class PhoneStore:
    """Phone claims and their verification."""

    def __init__(self, otps: OtpStore):
        self.otps = otps
        self.store = otps.store

    def set_phone(self, account_id: str, phone: str) -> Reply:
        def work(conn: Connection) -> Reply:
            account = account_row(conn, account_id)
            if account.phone_verified_at is not None:
                if account.phone == phone:
                    return Reply(200, {"phone": phone, "phone_verified": True, "sent": False})
                raise ApiError(Reason.PHONE_TAKEN, "this account already has a verified phone")
            now = utcnow()
            if account.phone != phone:
                self._release_stale_claim(conn, phone, now)
                try:
                    with savepoint(conn):
                        conn.execute(
                            update(t.accounts).where(t.accounts.c.id == account_id).values(phone=phone)
                        )
                except IntegrityError as err:
                    raise ApiError(
                        Reason.PHONE_TAKEN,
                        "another account uses this phone (its unverified claim lapses when its code expires)",
                    ) from err
            self.otps.send(conn, account_id, "sms", phone, now)
            return Reply(202, {"phone": phone, "phone_verified": False, "sent": True})

        return self.store.write(work)

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
            account = account_row(conn, account_id)
            if account.phone is None:
                raise ApiError(Reason.STEP_INCOMPLETE, "register a phone first (POST /v1/me/phone)")
            now = utcnow()
            if account.phone_verified_at is None:
                self.otps.consume(conn, account_id, "sms", account.phone, code, now)
                conn.execute(
                    update(t.accounts).where(t.accounts.c.id == account_id).values(phone_verified_at=now)
                )
            return Reply(200, {"phone": account.phone, "phone_verified": True})

        return self.otps.verify(work)


def add_phone_routes(router: APIRouter, phones: PhoneStore, progress: ProgressStore, auth: Auth) -> None:
    Account = Annotated[str, auth.account]

    @router.post(
        "/v1/me/phone",
        tags=["applicant"],
        name="phone",
        status_code=202,
        responses={202: {"model": m.PhoneOut}, 200: {"model": m.PhoneOut}},
    )
    async def phone(body: m.PhoneBody, account_id: Account):
        number = normalize_phone(body.phone)
        if number is None:
            raise ApiError(Reason.PHONE_INVALID, phone_problem(body.phone))
        require(await progress.of(account_id), "identity_verified")
        return reply_response(await run_in_threadpool(phones.set_phone, account_id, number))

    @router.post(
        "/v1/me/phone/verify", tags=["applicant"], name="verify_phone", responses={200: {"model": m.PhoneOut}}
    )
    async def verify_phone(body: m.OtpCode, account_id: Account):
        return reply_response(await run_in_threadpool(phones.verify_phone, account_id, body.code))
