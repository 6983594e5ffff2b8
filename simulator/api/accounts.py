"""Accounts and sessions: sign-up's route, the email OTP, login with its throttles.

Owns `AccountStore` (table ``accounts`` outside sign-up, the login budgets in ``attempt_budgets``)
and its routes (`add_account_routes`): ``POST /v1/accounts`` (through `signup.Signups`), ``.../email/verify``,
``.../email/resend`` and ``POST /v1/sessions``.
"""

import datetime as dt
import hmac
from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import Connection, select, update
from starlette.concurrency import run_in_threadpool

from simulator.api import attempt_budgets
from simulator.api import models as m
from simulator.api.auth import Auth
from simulator.api.login_throttle import ClientThrottle
from simulator.api.otps import OtpStore
from simulator.api.responses import ApiError, JsonResponse, Reply, reply_response
from simulator.api.signup import Signups
from simulator.api.store import Store
from simulator.database import schema as t
from simulator.database.db import run_write
from simulator.database.passwords import hash_password, verify_password
from simulator.database.schema import utcnow
from simulator.rules.email import normalize_email
from simulator.rules.reasons import Reason

AccountIdPath = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[\x21-\x7e]+$")]


def account_row(conn: Connection, account_id: str):  # a Row
    """The ``accounts`` row of ``account_id``, or NOT_FOUND."""
    row = conn.execute(select(t.accounts).where(t.accounts.c.id == account_id)).one_or_none()
    if row is None:
        raise ApiError(Reason.NOT_FOUND, f"no account {account_id}")
    return row


class AccountStore:
    """Email verification, resends and the login checks of existing accounts."""

    def __init__(self, store: Store, otps: OtpStore):
        self.store = store
        self.otps = otps
        self.engine = store.engine
        self.settings = store.settings

    def verify_email(self, account_id: str, code: str) -> Reply:
        def work(conn: Connection) -> Reply:
            account = account_row(conn, account_id)
            now = utcnow()
            if account.email_verified_at is None:
                self.otps.consume(conn, account_id, "email", account.email, code, now)
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

        return self.otps.verify(work)

    def resend_email(self, account_id: str) -> Reply:
        def work(conn: Connection) -> Reply:
            account = account_row(conn, account_id)
            if account.email_verified_at is not None:
                return Reply(200, {"id": account_id, "sent": False, "email_verified": True})
            self.otps.send(conn, account_id, "email", account.email, utcnow())
            return Reply(202, {"id": account_id, "sent": True, "email_verified": False})

        return self.store.write(work)

    def login_row(self, email: str):  # a Row or None
        with self.engine.connect() as conn:
            return conn.execute(
                select(t.accounts.c.id, t.accounts.c.password_hash, t.accounts.c.email_verified_at).where(
                    t.accounts.c.email == email
                )
            ).one_or_none()

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


def add_account_routes(router: APIRouter, accounts: AccountStore, signups: Signups, auth: Auth) -> None:
    """Sign-up, the email OTP and login: the routes an applicant uses before having a token."""
    settings = accounts.settings
    signer = auth.signer
    client_throttle = ClientThrottle(settings.login_failures_per_client, settings.login_window_s)
    dummy_hash = hash_password("not-a-password", settings.password_cost)

    @router.post(
        "/v1/accounts",
        tags=["accounts"],
        name="create_account",
        status_code=201,
        responses={201: {"model": m.AccountOut}},
        dependencies=[auth.anonymous],
    )
    async def create_account(body: m.AccountCreate):
        # Plain requests without an Idempotency-Key are answered by signup.LeanSignupMiddleware
        # through the same Signups.sign_up; this route serves the rest.
        return reply_response(
            await signups.sign_up(body.name, body.email, body.password, body.password_confirmation)
        )

    @router.post(
        "/v1/accounts/{account_id}/email/verify",
        tags=["accounts"],
        name="verify_email",
        responses={200: {"model": m.EmailVerified}},
        dependencies=[auth.anonymous],
    )
    async def verify_email(account_id: AccountIdPath, body: m.OtpCode):
        return reply_response(await run_in_threadpool(accounts.verify_email, account_id, body.code))

    @router.post(
        "/v1/accounts/{account_id}/email/resend",
        tags=["accounts"],
        name="resend_email",
        status_code=202,
        responses={202: {"model": m.Resent}, 200: {"model": m.Resent}},
        dependencies=[auth.anonymous],
    )
    async def resend_email(account_id: AccountIdPath):
        return reply_response(await run_in_threadpool(accounts.resend_email, account_id))

    @router.post(
        "/v1/sessions",
        tags=["accounts"],
        name="login",
        status_code=201,
        responses={201: {"model": m.SessionOut}},
    )
    async def login(body: m.SessionCreate, caller: Annotated[str, auth.anonymous]):
        email = normalize_email(body.email)
        client = caller.partition("@")[2]
        wait = client_throttle.locked(client)
        if wait is None:
            wait = await run_in_threadpool(accounts.login_locked, email)
        if wait is not None:
            raise ApiError(
                Reason.LOGIN_THROTTLED,
                f"too many failed logins; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        row = await run_in_threadpool(accounts.login_row, email)
        # An unknown email costs the same hash as a known one: the answer time tells nothing.
        stored_hash = row.password_hash if row is not None else dummy_hash
        ok = await run_in_threadpool(verify_password, stored_hash, body.password)
        if not ok or row is None:
            client_throttle.failed(client)
            await run_in_threadpool(accounts.login_failed, email)
            raise ApiError(Reason.BAD_CREDENTIALS, "wrong email or password")
        if row.email_verified_at is None:
            raise ApiError(Reason.STEP_INCOMPLETE, "confirm your email first (the code we sent)")
        return JsonResponse(
            {
                "token": signer.issue(row.id),
                "token_type": "bearer",
                "account_id": row.id,
                "expires_in": signer.ttl_s,
            },
            status_code=201,
        )
