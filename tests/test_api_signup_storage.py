"""The one sign-up interface (`simulator.api.signup.Signups`) on every engine: a batch commits together,
a taken email refuses only its own sign-up, and a sign-up with an Idempotency-Key stores its answer in
the same transaction as the account (whichever batch path the engine was given at start-up)."""

import asyncio

import pytest
from engines import ENGINES, server_url
from sqlalchemy import func, select

from simulator.api.idempotency import IdempotencyScope, current_idempotency
from simulator.api.otps import OtpStore
from simulator.api.responses import ApiError, Reply
from simulator.api.settings import Settings
from simulator.api.signup import SavepointSignups, Signups, UnnestSignups
from simulator.api.store import Store
from simulator.api.testing import scratch_database
from simulator.database import schema as t
from simulator.database.db import make_engine
from simulator.database.passwords import verify_password
from simulator.database.schema import create_schema
from simulator.rules.reasons import Reason


@pytest.fixture(params=ENGINES)
def signups(request):
    with scratch_database(server_url(request.param), prefix="test_api_signup") as url:
        engine = create_schema(make_engine(url))
        store = Store(engine, Settings(db_url=url, otp_resend_interval_s=0))
        yield Signups(store, OtpStore(store), password_cost=0)
        engine.dispose()


def _count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_the_engine_gets_its_batch_path_once(signups):
    expected = UnnestSignups if signups.store.engine.dialect.name == "postgresql" else SavepointSignups
    assert type(signups.storage) is expected


def test_a_taken_email_refuses_only_its_own_sign_up(signups):
    engine = signups.store.engine
    first = signups.create_batch([("Ani", "ani@example.invalid", "h1")])
    assert isinstance(first[0], Reply) and first[0].status == 201
    batch = [
        ("Budi", "budi@example.invalid", "h2"),
        ("Ani again", "ani@example.invalid", "h3"),  # taken by an earlier transaction
        ("Citra", "citra@example.invalid", "h4"),
        ("Budi again", "budi@example.invalid", "h5"),  # taken earlier in this batch
    ]
    results = signups.create_batch(batch)
    assert [r.status if isinstance(r, Reply) else r.reason for r in results] == [
        201,
        Reason.EMAIL_TAKEN,
        201,
        Reason.EMAIL_TAKEN,
    ]
    assert _count(engine, t.accounts) == 3
    assert _count(engine, t.otps, t.otps.c.channel == "email") == 3  # one code per account made
    with engine.connect() as conn:
        names = dict(conn.execute(select(t.accounts.c.email, t.accounts.c.name)).all())
    assert names == {
        "ani@example.invalid": "Ani",
        "budi@example.invalid": "Budi",
        "citra@example.invalid": "Citra",
    }


def test_sign_up_checks_hashes_and_keeps_an_idempotent_answer_with_the_account(signups):
    engine = signups.store.engine

    async def sign_up(email: str, key: str | None):
        scope = None if key is None else IdempotencyScope(key=key, fingerprint=lambda: "f", raw_key=key)
        token = current_idempotency.set(scope)
        try:
            return await signups.sign_up("Dewi", email, "rahasia123", "rahasia123")
        finally:
            current_idempotency.reset(token)

    reply = asyncio.run(sign_up("Dewi@Example.invalid", None))  # through the batcher
    assert reply.body["email"] == "dewi@example.invalid"
    with engine.connect() as conn:
        stored = conn.execute(select(t.accounts.c.password_hash).where(t.accounts.c.id == reply.body["id"]))
        assert verify_password(stored.scalar_one(), "rahasia123")
    keyed = asyncio.run(sign_up("eka@example.invalid", "key-1"))  # alone, with its key
    assert keyed.status == 201
    assert _count(engine, t.idempotency_keys, t.idempotency_keys.c.key == "key-1") == 1
    with pytest.raises(ApiError) as taken:
        asyncio.run(sign_up("eka@example.invalid", "key-2"))
    assert taken.value.reason is Reason.EMAIL_TAKEN
    assert _count(engine, t.idempotency_keys, t.idempotency_keys.c.key == "key-2") == 0  # rolled back
    with pytest.raises(ApiError) as typo:
        asyncio.run(sign_up("fajar@gmial.com", None))
    assert typo.value.reason is Reason.EMAIL_DOMAIN_TYPO
    assert _count(engine, t.accounts) == 2
