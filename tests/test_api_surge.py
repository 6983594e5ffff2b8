"""Correctness under a surge, on SQLite always and on PostgreSQL / MariaDB when their URLs are set.

Two server processes share the database in every run, so races cross process boundaries.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from simulator.api.admin_auth import admin_headers
from simulator.api.testing import (
    kill_server,
    make_resident,
    running_server,
    scratch_database,
    seed_ready_accounts,
    seed_residents,
)
from simulator.database import schema as t
from simulator.database.db import make_engine

ENGINES = [
    pytest.param(None, id="sqlite"),
    pytest.param("PRAKERJA_TEST_POSTGRES_URL", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("PRAKERJA_TEST_MARIADB_URL", id="mariadb", marks=pytest.mark.mariadb),
]
SEEDED = 80  # ready applicants per database


@pytest.fixture(scope="module", params=ENGINES)
def database(request):
    """A fresh database (``test_api_<random>``) with ready applicants; dropped at the end."""
    env = request.param
    server_url = None
    if env is not None:
        server_url = os.environ.get(env)
        if not server_url:
            pytest.skip(f"{env} is not set (CI sets it; see README)")
    with scratch_database(server_url) as db_url:
        ready = seed_ready_accounts(db_url, SEEDED, prefix="ready")
        fresh = seed_ready_accounts(db_url, 12, prefix="fresh", first_index=1000, stage="email")
        checked = seed_ready_accounts(db_url, 12, prefix="checked", first_index=2000, stage="identity")
        repeat = seed_ready_accounts(db_url, 1, prefix="repeat", first_index=4000, stage="email")
        seed_residents(db_url, [make_resident(3000)])
        yield {"url": db_url, "ready": ready, "fresh": fresh, "checked": checked, "repeat": repeat}


@pytest.fixture(scope="module")
def server(database):
    with running_server(database["url"], workers=2, password_cost=0, otp_resend_interval_s=0) as base_url:
        yield base_url


def login(base_url: str, applicant: dict) -> dict:
    r = requests.post(
        base_url + "/v1/sessions",
        json={"email": applicant["email"], "password": applicant["password"]},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def all_at_once(calls):
    """Run the calls on as many threads, released together by a barrier; returns their responses."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def code_of(response: requests.Response) -> str:
    return response.json()["error"]["code"]


def test_fcfs_never_gives_more_places_than_the_quota(server, database):
    quota, joiners = 23, database["ready"][:60]
    assert (
        requests.post(
            server + "/v1/admin/waves",
            json={"number": 7, "quota": quota, "mode": "fcfs"},
            headers=admin_headers(),
            timeout=30,
        ).status_code
        == 201
    )
    headers = [login(server, a) for a in joiners]
    responses = all_at_once(
        [(lambda h=h: requests.post(server + "/v1/waves/7/join", headers=h, timeout=60)) for h in headers]
    )
    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code != 201]
    assert len(accepted) == min(len(joiners), quota)
    assert {r.status_code for r in refused} == {409} and {code_of(r) for r in refused} == {"WAVE_FULL"}
    assert sorted(r.json()["join_order"] for r in accepted) == list(range(1, quota + 1))
    status = requests.get(server + "/v1/waves/7", timeout=30).json()
    assert status["joined"] == quota and status["remaining"] == 0
    engine = make_engine(database["url"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(func.count()).select_from(t.wave_joins).where(t.wave_joins.c.wave_number == 7)
            )
            assert rows.scalar_one() == quota
    finally:
        engine.dispose()
    closed = requests.post(server + "/v1/admin/waves/7/close", headers=admin_headers(), timeout=30).json()
    assert closed["selection"]["selected"] == quota


def test_concurrent_duplicate_account_nik_and_phone(server, database):
    email = f"dup-{uuid.uuid4().hex[:8]}@example.co.id"
    body = {"name": "Dup", "email": email, "password": "rahasia123"}
    responses = all_at_once(
        [(lambda: requests.post(server + "/v1/accounts", json=body, timeout=60)) for _ in range(16)]
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 15
    assert {code_of(r) for r in responses if r.status_code == 409} == {"EMAIL_TAKEN"}

    resident = make_resident(3000)
    identity = {
        "nik": resident["nik"],
        "kk": resident["kk"],
        "birth_date": resident["birth_date"].isoformat(),
    }
    headers = [login(server, a) for a in database["fresh"]]
    responses = all_at_once(
        [
            (lambda h=h: requests.put(server + "/v1/me/identity", json=identity, headers=h, timeout=60))
            for h in headers
        ]
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * (len(headers) - 1)
    assert {code_of(r) for r in responses if r.status_code == 409} == {"NIK_ALREADY_REGISTERED"}

    headers = [login(server, a) for a in database["checked"]]
    responses = all_at_once(
        [
            (
                lambda h=h: requests.post(
                    server + "/v1/me/phone", json={"phone": "0857 1234 5678"}, headers=h, timeout=60
                )
            )
            for h in headers
        ]
    )
    assert sorted(r.status_code for r in responses) == [202] + [409] * (len(headers) - 1)
    assert {code_of(r) for r in responses if r.status_code == 409} == {"PHONE_TAKEN"}


def test_one_applicant_repeating_a_step_at_once_gets_the_same_answer(server, database):
    # Double-clicks and client retries without a key: every copy is answered, none is a 5xx.
    applicant = database["repeat"][0]
    headers = login(server, applicant)
    resident = make_resident(4000)
    identity = {
        "nik": resident["nik"],
        "kk": resident["kk"],
        "birth_date": resident["birth_date"].isoformat(),
    }
    profile = {"address": "Jl. Braga 5", "province_code": "32", "education": "SMA", "employment_status": "x"}
    answers = {"answers": list("ABCDABCDABCDABCDAB")}
    for method, path, body in [
        ("PUT", "/v1/me/identity", identity),
        ("PUT", "/v1/me/profile", profile),
        ("POST", "/v1/me/test", answers),
    ]:
        responses = all_at_once(
            [
                (
                    lambda m=method, p=path, b=body: requests.request(
                        m, server + p, json=b, headers=headers, timeout=60
                    )
                )
                for _ in range(8)
            ]
        )
        assert {r.status_code for r in responses} == {200}, (path, [r.text for r in responses])
    assert len({r.json()["score"] for r in responses}) == 1


def test_idempotency_key_replays_the_first_answer(server):
    email = f"idem-{uuid.uuid4().hex[:8]}@example.co.id"
    body = {"name": "Idem", "email": email, "password": "rahasia123"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    responses = all_at_once(
        [
            (lambda: requests.post(server + "/v1/accounts", json=body, headers=key, timeout=60))
            for _ in range(8)
        ]
    )
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1, "every retry gets the first account, not a new one"
    again = requests.post(server + "/v1/accounts", json=body, headers=key, timeout=30)
    assert again.status_code == 201 and again.json() == responses[0].json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = requests.post(server + "/v1/accounts", json=body | {"name": "Other"}, headers=key, timeout=30)
    assert other.status_code == 409 and code_of(other) == "IDEMPOTENCY_KEY_REUSED"

    # A refusal is an answer too: the same key replays it even once the cause is gone.
    key2 = {"Idempotency-Key": uuid.uuid4().hex}
    short = body | {"email": "x" + email, "password": "123"}
    first = requests.post(server + "/v1/accounts", json=short, headers=key2, timeout=30)
    assert first.status_code == 422 and code_of(first) == "PASSWORD_TOO_SHORT"
    replay = requests.post(server + "/v1/accounts", json=short, headers=key2, timeout=30)
    assert replay.status_code == 422 and replay.json() == first.json()


def test_kill_9_mid_load_loses_no_acknowledged_write(database):
    # A server of its own on the module's database, killed with kill -9 (both worker processes and
    # their supervisor): the module's shared server and the tests after this one are untouched.
    db_url = database["url"]
    joiners = database["ready"][60:80]
    acknowledged: list[str] = []
    joined: list[str] = []
    stop = threading.Event()
    doomed = contextlib.ExitStack()
    base_url = doomed.enter_context(
        running_server(db_url, workers=2, password_cost=0, otp_resend_interval_s=0)
    )
    requests.post(
        base_url + "/v1/admin/waves",
        json={"number": 9, "quota": 1000, "mode": "fcfs"},
        headers=admin_headers(),
        timeout=30,
    )
    headers = {a["id"]: login(base_url, a) for a in joiners}

    def sign_ups(worker: int) -> None:
        session = requests.Session()
        for n in range(100_000):
            if stop.is_set():
                return
            email = f"crash-{worker}-{n}-{uuid.uuid4().hex[:6]}@example.co.id"
            try:
                r = session.post(
                    base_url + "/v1/accounts",
                    json={"name": "C", "email": email, "password": "rahasia123"},
                    timeout=10,
                )
            except requests.RequestException:
                return
            if r.status_code == 201:
                acknowledged.append(r.json()["id"])

    def joins() -> None:
        for account_id, h in headers.items():
            try:
                r = requests.post(base_url + "/v1/waves/9/join", headers=h, timeout=10)
            except requests.RequestException:
                return
            if r.status_code == 201:
                joined.append(account_id)
            time.sleep(0.01)

    threads = [threading.Thread(target=sign_ups, args=(w,)) for w in range(6)] + [
        threading.Thread(target=joins)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 80 and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_server(base_url.process)  # kill -9, mid-request
    stop.set()
    for thread in threads:
        thread.join(30)
    doomed.close()  # nothing left to stop; puts the module server's admin token back
    assert len(acknowledged) >= 40, "the load never got going"

    with running_server(db_url, workers=1, password_cost=0) as base_url:  # restarts on the same files
        stats = requests.get(
            base_url + "/v1/admin/stats?max_age_s=0", headers=admin_headers(), timeout=30
        ).json()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = set(
                conn.execute(select(t.accounts.c.id).where(t.accounts.c.email.like("crash-%"))).scalars()
            )
            without_otp = conn.execute(
                select(func.count())
                .select_from(t.accounts)
                .where(
                    t.accounts.c.email.like("crash-%"),
                    ~select(t.otps.c.id).where(t.otps.c.account_id == t.accounts.c.id).exists(),
                )
            ).scalar_one()
            wave = conn.execute(select(t.waves).where(t.waves.c.number == 9)).one()
            join_rows = set(
                conn.execute(
                    select(t.wave_joins.c.account_id).where(t.wave_joins.c.wave_number == 9)
                ).scalars()
            )
    finally:
        engine.dispose()
    assert set(acknowledged) <= stored, f"{len(set(acknowledged) - stored)} acknowledged sign-ups were lost"
    assert without_otp == 0, "an account was committed without the email OTP written with it"
    assert set(joined) <= join_rows
    assert wave.joined_count == len(join_rows), "the wave counter and the join rows disagree"
    assert stats["steps"]["accounts_created"] >= len(acknowledged)
