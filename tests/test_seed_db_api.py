"""The reference API serves a seeded database at once: seeded applicants log in and carry on.

Runs the real server (``simulator.api.testing.running_server``) on a database seed-db filled,
on SQLite always and on PostgreSQL / MariaDB when their URLs are set.
"""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request

import pytest
from engines import ENGINES, server_url

from simulator.api.testing import running_server, scratch_database
from simulator.rules.reasons import Reason
from simulator.seed import seed_database


def call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None):
    """(status, JSON body) of one request; 4xx answers are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture(scope="module", params=ENGINES)
def api(request, tmp_path_factory):
    """A seeded database (every state present) and the real API serving it."""
    server = server_url(request.param)
    with scratch_database(server, prefix="test_seed_api") as db_url:
        passwords = tmp_path_factory.mktemp("seed-api") / "passwords.csv"
        # Every state, and enough valid applicants left over for the shallow ones as well.
        mix = (
            "registered=0.1,email_verified=0.2,identity_verified=0.1,phone_verified=0.1,tested=0.1,joined=0.1,"
            "selected=0.1,training_bought=0.05,finished=0.05,incentive_paid=0.05,revoked=0.05"
        )
        seed_database(
            db_url, size=1200, seed=21, states=mix, mode="truncate", passwords_out=passwords, workers=1
        )
        with open(passwords, newline="", encoding="utf-8") as handle:
            users: dict[str, list[dict]] = {}
            for row in csv.DictReader(handle):
                if row["expected_outcome"] == "accept":
                    users.setdefault(row["state"], []).append(row)
        with running_server(db_url=db_url, password_cost=0) as base:
            yield base, users


def login(base: str, user: dict) -> str:
    status, body = call(base, "POST", "/v1/sessions", {"email": user["email"], "password": user["password"]})
    assert status == 201, body
    return body["token"]


def test_a_tested_applicant_logs_in_and_joins_the_open_wave(api):
    base, users = api
    user = users["tested"][0]
    token = login(base, user)
    status, me = call(base, "GET", "/v1/me", token=token)
    assert status == 200
    assert all(me["steps"].values()), me["steps"]
    assert me["nik"] == user["nik"]
    _, wave = call(base, "GET", "/v1/waves/11")
    assert wave["state"] == "open"
    status, joined = call(base, "POST", "/v1/waves/11/join", token=token)
    assert status == 201, joined
    assert joined["join_order"] == wave["joined"] + 1  # the seeded joins are counted before this one


def test_a_joined_applicant_cannot_join_twice(api):
    base, users = api
    token = login(base, users["joined"][0])
    status, body = call(base, "POST", "/v1/waves/11/join", token=token)
    assert status == 409
    assert body["error"]["code"] == "ALREADY_JOINED"


@pytest.mark.parametrize(
    ("state", "recipient_state"),
    [("selected", "selected"), ("incentive_paid", "finished"), ("revoked", "revoked")],
)
def test_recipients_see_where_they_stand_and_cannot_join_again(api, state, recipient_state):
    base, users = api
    user = users[state][0]
    token = login(base, user)
    _, me = call(base, "GET", "/v1/me", token=token)
    assert me["recipient"] == {"wave": int(user["wave"]), "state": recipient_state}
    status, body = call(base, "POST", "/v1/waves/11/join", token=token)
    assert status == Reason.ALREADY_RECIPIENT.http_status and body["error"]["code"] == "ALREADY_RECIPIENT"


def test_an_applicant_with_a_verified_identity_carries_on_with_the_phone_step(api):
    base, users = api
    user = users["identity_verified"][0]
    token = login(base, user)
    _, me = call(base, "GET", "/v1/me", token=token)
    assert me["steps"]["identity_verified"] and not me["steps"]["phone_verified"]
    status, body = call(base, "POST", "/v1/me/phone", {"phone": user["phone"]}, token=token)
    assert status in (200, 202), body
    _, outbox = call(base, "GET", "/v1/sandbox/outbox?to=" + user["phone"])
    code = outbox["messages"][0]["code"]
    status, body = call(base, "POST", "/v1/me/phone/verify", {"code": code}, token=token)
    assert status == 200, body
    _, me = call(base, "GET", "/v1/me", token=token)
    assert me["steps"]["phone_verified"]


def test_an_email_verified_applicant_passes_the_identity_check_against_the_seeded_registry(api):
    base, users = api
    user = users["email_verified"][0]
    token = login(base, user)
    body = {"nik": user["nik"], "kk": user["kk"], "birth_date": user["birth_date"]}
    status, answer = call(base, "PUT", "/v1/me/identity", body, token=token)
    assert status == 200, answer
    assert answer["verified"] is True


def test_an_applicant_who_never_confirmed_the_email_is_asked_to(api):
    base, users = api
    user = users["registered"][0]
    status, body = call(base, "POST", "/v1/sessions", {"email": user["email"], "password": user["password"]})
    assert status == 409 and body["error"]["code"] == "STEP_INCOMPLETE"
    status, body = call(base, "POST", "/v1/sessions", {"email": user["email"], "password": "wrong-password"})
    assert status == 401


def test_an_applicant_who_never_confirmed_the_email_carries_on_with_a_new_code(api):
    base, users = api
    user = users["registered"][1]
    status, body = call(base, "POST", f"/v1/accounts/{user['account_id']}/email/resend")
    assert status in (200, 202), body
    _, outbox = call(base, "GET", "/v1/sandbox/outbox?to=" + user["email"])
    code = outbox["messages"][0]["code"]
    status, body = call(base, "POST", f"/v1/accounts/{user['account_id']}/email/verify", {"code": code})
    assert status == 200, body
    login(base, user)
