"""The applicant's progress: which steps are done, and the identity, profile and test steps.

Owns `ProgressStore` (tables ``identities``, ``profiles``, ``test_results``; the registry's ``residents``)
and the applicant routes (`add_applicant_routes`): ``GET /v1/me``, ``PUT /v1/me/identity``,
``PUT /v1/me/profile``, ``POST /v1/me/test``. The rules are simulator/rules/ (NIK structure, the
registry match, eligibility, the test's scoring); the phone and KTP steps are `phone` and `uploads`.
"""

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter
from sqlalchemy import Connection, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from simulator.api import models as m
from simulator.api.auth import Auth
from simulator.api.registry import RegistryLink, RegistryUnavailable
from simulator.api.responses import ApiError, Reply, reply_response
from simulator.api.store import Store
from simulator.database import schema as t
from simulator.database.db import savepoint
from simulator.database.schema import utcnow
from simulator.rules import scoring
from simulator.rules.eligibility import resident_eligibility
from simulator.rules.identity import identity_refusal
from simulator.rules.nik import NikError, parse_kk, parse_nik
from simulator.rules.reasons import ACCEPT, Reason

STEPS = (
    "email_verified",
    "identity_verified",
    "profile_completed",
    "phone_verified",
    "ktp_accepted",
    "test_completed",
)
"""Every step before joining a wave, in the order an applicant does them."""

ELIGIBILITY_MESSAGES = {
    Reason.UNDERAGE: "applicants must be at least 18",
    Reason.STILL_STUDENT: "applicants still in formal education cannot join",
    Reason.EXCLUDED_OCCUPATION: "this occupation is excluded by Perpres 76/2020",
    Reason.ALREADY_RECIPIENT: "already a Kartu Prakerja recipient",
    Reason.RECEIVES_OTHER_AID: "already receives other social aid",
    Reason.KK_RECIPIENT_LIMIT: "this family card already has 2 recipients",
}


def require(progress: dict[str, Any], *steps: str) -> None:
    """STEP_INCOMPLETE unless every one of ``steps`` is done."""
    missing = [s for s in steps if not progress["steps"][s]]
    if missing:
        raise ApiError(Reason.STEP_INCOMPLETE, "earlier steps are not done: " + ", ".join(missing))


class ProgressStore:
    """Reads of an applicant's progress and the writes of the identity, profile and test steps."""

    def __init__(self, store: Store):
        self.store = store
        self.engine = store.engine

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

    async def of(self, account_id: str) -> dict[str, Any]:
        """`progress` from the event loop (in the thread pool)."""
        return await run_in_threadpool(self.progress, account_id)

    # --- identity against the registry ----------------------------------------------------------

    def resident(self, nik: str):  # a Row or None
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
                with savepoint(conn):
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

        return self.store.write(work)

    def save_profile(self, account_id: str, profile: dict[str, Any]) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            values = dict(profile, updated_at=now)
            done = conn.execute(
                update(t.profiles).where(t.profiles.c.account_id == account_id).values(**values)
            ).rowcount
            if not done:
                try:
                    with savepoint(conn):
                        conn.execute(insert(t.profiles).values(account_id=account_id, **values))
                except IntegrityError:  # a concurrent first save of the same profile won; ours updates it
                    conn.execute(
                        update(t.profiles).where(t.profiles.c.account_id == account_id).values(**values)
                    )
            return Reply(200, dict(profile, updated_at=now.isoformat() + "Z"))

        return self.store.write(work)

    def save_test(self, account_id: str, answers: str, score: int) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            try:
                with savepoint(conn):
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

        return self.store.write(work)


def add_applicant_routes(
    router: APIRouter, progress: ProgressStore, auth: Auth, registry: RegistryLink, upstream_registry
) -> None:
    """``/v1/me`` and the identity, profile and test steps (each needs a bearer token)."""
    settings = progress.store.settings
    Account = Annotated[str, auth.account]

    @router.get("/v1/me", tags=["applicant"], name="me", response_model=m.MeOut)
    async def me(account_id: Account):
        return await progress.of(account_id)

    @router.put(
        "/v1/me/identity", tags=["applicant"], name="identity", responses={200: {"model": m.IdentityOut}}
    )
    async def identity(body: m.IdentityBody, account_id: Account):
        require(await progress.of(account_id), "email_verified")
        try:
            nik_info = parse_nik(body.nik)
            parse_kk(body.kk)
        except NikError as err:
            raise ApiError(Reason.NIK_MALFORMED, err.message) from None
        try:
            if upstream_registry is not None:  # serve --registry-url: a registry service of its own
                resident = await upstream_registry.resident(nik_info.nik, body.kk, body.birth_date)
            else:
                await registry.call()
                resident = await run_in_threadpool(progress.resident, nik_info.nik)
        except RegistryUnavailable as err:
            raise ApiError(Reason.REGISTRY_UNAVAILABLE, str(err), headers={"Retry-After": "5"}) from None
        refusal = identity_refusal(resident, body.kk, body.birth_date)
        if refusal is not None:
            raise ApiError(*refusal)
        kk_recipients = await run_in_threadpool(progress.kk_recipients, resident.kk, resident.nik) + getattr(
            resident,
            "kk_recipients",
            0,  # the upstream registry's count of the family card's recipients
        )
        ineligible = resident_eligibility(
            resident._mapping, kk_recipients=kk_recipients, on=settings.reference_date
        )
        if ineligible is not None:
            raise ApiError(ineligible, ELIGIBILITY_MESSAGES.get(ineligible, "not eligible for the program"))
        return reply_response(
            await run_in_threadpool(
                progress.save_identity, account_id, resident.nik, resident.kk, resident.birth_date
            )
        )

    @router.put(
        "/v1/me/profile", tags=["applicant"], name="profile", responses={200: {"model": m.ProfileOut}}
    )
    async def profile(body: m.ProfileBody, account_id: Account):
        require(await progress.of(account_id), "identity_verified")
        return reply_response(await run_in_threadpool(progress.save_profile, account_id, body.model_dump()))

    @router.post("/v1/me/test", tags=["applicant"], name="test", responses={200: {"model": m.TestOut}})
    async def take_test(body: m.TestAnswers, account_id: Account):
        require(await progress.of(account_id), "identity_verified")
        answers = "".join(body.answers)
        return reply_response(
            await run_in_threadpool(progress.save_test, account_id, answers, scoring.score(answers))
        )
