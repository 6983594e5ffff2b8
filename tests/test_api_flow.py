"""The reference API end to end on embedded SQLite: the whole flow, its refusals, uploads, faults."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import struct
import zlib
from urllib.parse import urlparse

import pytest
import requests

from simulator.api.testing import (
    ktp_like_photo,
    make_resident,
    running_server,
    scratch_database,
    seed_residents,
)

PASSWORD = "rahasia123"

# Registry rows by role: index -> overrides. Plain applicants are 0..19.
SPECIAL = {
    100: {"birth_date": dt.date(2005, 3, 3)},  # 15 on the reference date (2 Nov 2020)
    101: {"occupation": "PEGAWAI NEGERI SIPIL (PNS)"},
    102: {"is_recipient": True},
    103: {"receives_other_aid": True},
    104: {"occupation": "PELAJAR/MAHASISWA"},
    # One family card with two recipients already, and a third member applying.
    105: {"kk": "3273020101990001", "is_recipient": True},
    106: {"kk": "3273020101990001", "is_recipient": True},
    107: {"kk": "3273020101990001"},
    110: {"is_priority": True},
}
RESIDENTS = {i: make_resident(i) for i in range(20)} | {i: make_resident(i, **o) for i, o in SPECIAL.items()}


ENGINES = [
    pytest.param(None, id="sqlite"),
    pytest.param("PRAKERJA_TEST_POSTGRES_URL", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("PRAKERJA_TEST_MARIADB_URL", id="mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(scope="module", params=ENGINES)
def api(request):
    """The server on a fresh database of each engine (PostgreSQL/MariaDB when their URLs are set)."""
    server_url = None
    if request.param is not None:
        server_url = os.environ.get(request.param)
        if not server_url:
            pytest.skip(f"{request.param} is not set (CI sets it; see README)")
    with scratch_database(server_url) as db_url:
        seed_residents(db_url, list(RESIDENTS.values()))
        with running_server(db_url, password_cost=0, otp_resend_interval_s=0) as base_url:
            yield Client(base_url)


class Client:
    """A thin applicant-side client: one method per step, returning the raw response."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.token: str | None = None

    def call(self, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        if path.startswith("/v1/admin/"):
            headers.setdefault("X-Admin-Token", self.base_url.admin_token)
        return self.http.request(method, self.base_url + path, headers=headers, timeout=30, **kw)

    def latest_code(self, to: str) -> str:
        messages = self.http.get(self.base_url + "/v1/sandbox/outbox", params={"to": to}, timeout=10).json()
        return messages["messages"][0]["code"]

    def as_new(self) -> Client:
        return Client(self.base_url)

    def sign_up(self, email: str, name: str = "Siti Rahayu") -> str:
        r = self.call("POST", "/v1/accounts", json={"name": name, "email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        account_id = r.json()["id"]
        r = self.call(
            "POST", f"/v1/accounts/{account_id}/email/verify", json={"code": self.latest_code(email)}
        )
        assert r.status_code == 200, r.text
        r = self.call("POST", "/v1/sessions", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]
        return account_id

    def identity(self, resident: dict, **changes) -> requests.Response:
        body = {
            "nik": resident["nik"],
            "kk": resident["kk"],
            "birth_date": resident["birth_date"].isoformat(),
        }
        return self.call("PUT", "/v1/me/identity", json=body | changes)

    def finish_steps(self, resident: dict, phone: str) -> None:
        """Identity, profile, phone, KTP and the test: everything before joining a wave."""
        assert self.identity(resident).status_code == 200
        r = self.call(
            "PUT",
            "/v1/me/profile",
            json={
                "address": "Jl. Asia Afrika 1",
                "province_code": "32",
                "regency_code": "32.73",
                "education": "SMA",
                "employment_status": "tidak bekerja",
            },
        )
        assert r.status_code == 200, r.text
        assert self.call("POST", "/v1/me/phone", json={"phone": phone}).status_code == 202
        r = self.call("POST", "/v1/me/phone/verify", json={"code": self.latest_code(phone)})
        assert r.status_code == 200, r.text
        r = self.call("POST", "/v1/me/ktp", files={"file": ("ktp.jpg", ktp_like_photo(), "image/jpeg")})
        assert r.status_code == 201, r.text
        r = self.call("POST", "/v1/me/test", json={"answers": list("BCADDBACBDCABDACBD")})
        assert r.status_code == 200 and r.json()["score"] == 18, r.text


def code_of(response: requests.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]["code"]


def test_whole_flow_then_lottery_with_priority_and_carry_over(api):
    wave = api.call("POST", "/v1/admin/waves", json={"number": 11, "quota": 2, "mode": "lottery"}).json()
    assert wave["state"] == "open" and wave["quota"] == 2
    people = []
    for i, index in enumerate([0, 1, 2, 110]):
        applicant = api.as_new()
        account_id = applicant.sign_up(f"flow{i}@example.co.id")
        applicant.finish_steps(RESIDENTS[index], f"08131111000{i}")
        me = applicant.call("GET", "/v1/me").json()
        assert all(me["steps"].values()), me
        r = applicant.call("POST", "/v1/waves/11/join")
        assert r.status_code == 201 and r.json()["join_order"] == i + 1, r.text
        assert code_of(applicant.call("POST", "/v1/waves/11/join")) == "ALREADY_JOINED"
        people.append((account_id, applicant))
    assert api.call("GET", "/v1/waves/11").json()["joined"] == 4

    api.call("POST", "/v1/admin/waves", json={"number": 12, "quota": 5, "mode": "lottery"})
    closed = api.call("POST", "/v1/admin/waves/11/close", json={"seed": 3}).json()
    assert closed["state"] == "closed"
    assert closed["selection"]["selected"] == 2 and closed["selection"]["selected_priority"] == 1
    assert closed["selection"]["carried_over_to"] == 12 and closed["selection"]["carried_over"] == 2
    priority_applicant = people[3][1]
    assert priority_applicant.call("GET", "/v1/me").json()["recipient"] == {"wave": 11, "state": "selected"}
    assert code_of(priority_applicant.call("POST", "/v1/waves/12/join")) == "ALREADY_RECIPIENT"
    not_selected = [p for _, p in people if p.call("GET", "/v1/me").json()["recipient"] is None]
    assert len(not_selected) == 2
    for applicant in not_selected:  # rolled into wave 12 without signing up or joining again
        assert code_of(applicant.call("POST", "/v1/waves/12/join")) == "ALREADY_JOINED"
    assert code_of(api.call("POST", "/v1/waves/11/join")) == "UNAUTHENTICATED"
    first = people[0][1]
    # A recipient is told so before anything else; anyone else finds the wave closed.
    expected = "ALREADY_RECIPIENT" if first.call("GET", "/v1/me").json()["recipient"] else "WAVE_CLOSED"
    assert code_of(first.call("POST", "/v1/waves/11/join")) == expected

    stats = api.call("GET", "/v1/admin/stats?max_age_s=0").json()
    assert stats["steps"]["accounts_created"] >= 4 and stats["steps"]["selected"] >= 2
    assert stats["waves"]["11"]["selected"] == 2 and stats["waves"]["12"]["carried_over"] == 2
    assert stats["outcomes"]["join_wave"]["ALREADY_JOINED"] >= 4


def test_account_refusals_have_specific_codes(api):
    def sign_up(**body):
        return api.call("POST", "/v1/accounts", json={"name": "A", "password": PASSWORD} | body)

    assert code_of(sign_up(email="not-an-email")) == "EMAIL_INVALID"
    assert code_of(sign_up(email="budi@gmial.com")) == "EMAIL_DOMAIN_TYPO"
    assert code_of(sign_up(email="budi@example.co.id", password="12345")) == "PASSWORD_TOO_SHORT"
    assert code_of(sign_up(email="budi@example.co.id", password_confirmation="other")) == "PASSWORD_MISMATCH"
    r = api.call("POST", "/v1/accounts", json={"name": "A"})
    assert r.status_code == 422 and code_of(r) == "VALIDATION_ERROR"
    r = api.call("POST", "/v1/accounts", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and code_of(r) == "VALIDATION_ERROR"
    assert sign_up(email="Budi@Example.co.id").status_code == 201
    r = sign_up(email="budi@example.co.id")
    assert r.status_code == 409 and code_of(r) == "EMAIL_TAKEN"
    r = api.call("POST", "/v1/sessions", json={"email": "budi@example.co.id", "password": "wrong-one"})
    assert r.status_code == 401 and code_of(r) == "BAD_CREDENTIALS"
    r = api.call("POST", "/v1/sessions", json={"email": "budi@example.co.id", "password": PASSWORD})
    assert r.status_code == 409 and code_of(r) == "STEP_INCOMPLETE", "login needs a confirmed email"
    assert (
        code_of(api.call("GET", "/v1/me", headers={"Authorization": "Bearer forged.1.x"}))
        == "UNAUTHENTICATED"
    )
    assert code_of(api.call("GET", "/v1/no-such-thing")) == "NOT_FOUND"
    assert code_of(api.call("DELETE", "/v1/accounts")) == "METHOD_NOT_ALLOWED"


SIGNUP_CASES = {
    # name: (body with EMAIL standing for a fresh address, expected status, expected code or None)
    "plain": ({"name": "Ani", "email": "EMAIL", "password": PASSWORD}, 201, None),
    "confirmed, extra field": (
        {"name": "Ani", "email": "EMAIL", "password": PASSWORD, "password_confirmation": PASSWORD, "x": 1},
        201,
        None,
    ),
    "upper-case email": ({"name": "Ani", "email": "UP-EMAIL", "password": PASSWORD}, 201, None),
    "padded with spaces": ({"name": "  Ani ", "email": " EMAIL\t", "password": PASSWORD}, 201, None),
    "not an email": ({"name": "Ani", "email": "ani.example.id", "password": PASSWORD}, 422, "EMAIL_INVALID"),
    "typo domain": ({"name": "Ani", "email": "a@gmial.com", "password": PASSWORD}, 422, "EMAIL_DOMAIN_TYPO"),
    "short password": ({"name": "Ani", "email": "EMAIL", "password": "abc"}, 422, "PASSWORD_TOO_SHORT"),
    "mismatch": (
        {"name": "Ani", "email": "EMAIL", "password": PASSWORD, "password_confirmation": "other123"},
        422,
        "PASSWORD_MISMATCH",
    ),
    "no name": ({"email": "EMAIL", "password": PASSWORD}, 422, "VALIDATION_ERROR"),
    "empty name": ({"name": "", "email": "EMAIL", "password": PASSWORD}, 422, "VALIDATION_ERROR"),
    "long name": ({"name": "A" * 201, "email": "EMAIL", "password": PASSWORD}, 422, "VALIDATION_ERROR"),
    "number password": ({"name": "Ani", "email": "EMAIL", "password": 12345678}, 422, "VALIDATION_ERROR"),
    "NUL in name": ({"name": "A\x00ni", "email": "EMAIL", "password": PASSWORD}, 422, "VALIDATION_ERROR"),
    "a list": ([{"name": "Ani"}], 422, "VALIDATION_ERROR"),
    "not JSON": ('{"name": "Ani", ', 422, "VALIDATION_ERROR"),
}


@pytest.mark.parametrize("case", list(SIGNUP_CASES))
def test_lean_sign_up_path_answers_like_the_framework_path(api, case):
    """Plain sign-ups take signup.LeanSignupMiddleware; with an Idempotency-Key they take the
    FastAPI route. Both must give the same answer to the same request."""
    template, status, code = SIGNUP_CASES[case]
    answers = []
    for path in ("lean", "framework"):
        email = f"lean-{list(SIGNUP_CASES).index(case)}-{path}@example.co.id"
        if isinstance(template, str):
            kw = {"data": template, "headers": {"Content-Type": "application/json"}}
        else:
            raw = json.dumps(template).replace("UP-EMAIL", email.upper()).replace("EMAIL", email)
            kw = {"data": raw, "headers": {"Content-Type": "application/json"}}
        if path == "framework":
            kw["headers"]["Idempotency-Key"] = f"{case}-{email}"
        before = api.call("GET", "/v1/admin/stats?max_age_s=0").json()["outcomes"].get("create_account", {})
        r = api.call("POST", "/v1/accounts", **kw)
        after = api.call("GET", "/v1/admin/stats?max_age_s=0").json()["outcomes"]["create_account"]
        outcome = code or "accept"
        assert after.get(outcome, 0) == before.get(outcome, 0) + 1, (path, r.text)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        if code is None:
            assert body["email"] == email and body["name"] == "Ani" and body["email_verified"] is False
            assert r.headers["Location"] == f"/v1/accounts/{body['id']}"
            assert set(body) == {"id", "email", "name", "email_verified", "created_at"}
            assert api.latest_code(email)  # the email OTP was written with the account
            # The same email again (a new request, no key to replay): 409.
            headers = {"Content-Type": "application/json"}
            again = api.call("POST", "/v1/accounts", data=kw["data"], headers=headers)
            assert again.status_code == 409 and code_of(again) == "EMAIL_TAKEN"
            answers.append((r.status_code, sorted(body)))
        else:
            assert code_of(r) == code, (path, r.text)
            error = body["error"]
            message = error["message"].replace(email, "EMAIL")
            answers.append((r.status_code, code, message, error.get("details")))
    assert answers[0] == answers[1]


def test_identity_check_against_the_registry(api):
    applicant = api.as_new()
    applicant.sign_up("identity@example.co.id")
    person = RESIDENTS[5]
    assert code_of(applicant.identity(person, nik="1234")) == "NIK_MALFORMED"
    assert code_of(applicant.identity(person, nik=person["nik"][:6] + "991399" + "0001")) == "NIK_MALFORMED"
    ghost = make_resident(4000)  # well-formed, not in the registry
    r = applicant.identity(ghost)
    assert r.status_code == 404 and code_of(r) == "NIK_NOT_FOUND"
    assert code_of(applicant.identity(person, kk=RESIDENTS[6]["kk"])) == "NIK_KK_MISMATCH"
    assert code_of(applicant.identity(person, birth_date="1970-01-01")) == "NIK_BIRTHDATE_MISMATCH"
    for index, reason in [
        (100, "UNDERAGE"),
        (101, "EXCLUDED_OCCUPATION"),
        (102, "ALREADY_RECIPIENT"),
        (103, "RECEIVES_OTHER_AID"),
        (104, "STILL_STUDENT"),
        (107, "KK_RECIPIENT_LIMIT"),
    ]:
        assert code_of(applicant.identity(RESIDENTS[index])) == reason, index
    assert applicant.identity(person).status_code == 200
    other = api.as_new()
    other.sign_up("identity2@example.co.id")
    r = other.identity(person)
    assert r.status_code == 409 and code_of(r) == "NIK_ALREADY_REGISTERED"


def test_steps_must_come_in_order(api):
    applicant = api.as_new()
    applicant.sign_up("order@example.co.id")
    api.call("POST", "/v1/admin/waves", json={"number": 30, "quota": 5, "mode": "fcfs"})
    assert (
        code_of(
            applicant.call(
                "PUT",
                "/v1/me/profile",
                json={"address": "x", "province_code": "32", "education": "SMA", "employment_status": "x"},
            )
        )
        == "STEP_INCOMPLETE"
    )
    assert code_of(applicant.call("POST", "/v1/waves/30/join")) == "STEP_INCOMPLETE"
    assert code_of(applicant.call("POST", "/v1/me/phone/verify", json={"code": "1234"})) == "STEP_INCOMPLETE"
    # The applicant's steps are checked before the wave is looked up: no wave numbers are probed.
    assert code_of(applicant.call("POST", "/v1/waves/999/join")) == "STEP_INCOMPLETE"


def test_wave_window_domicile_and_admin_errors(api):
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert (
        api.call("POST", "/v1/admin/waves", json={"number": 40, "quota": 1, "opens_at": soon}).status_code
        == 201
    )
    assert api.call("GET", "/v1/waves/40").json()["state"] == "scheduled"
    r = api.call("POST", "/v1/admin/waves", json={"number": 40, "quota": 1})
    assert r.status_code == 409 and code_of(r) == "WAVE_EXISTS"
    assert code_of(api.call("GET", "/v1/waves/4040")) == "NOT_FOUND"
    applicant = api.as_new()
    applicant.sign_up("window@example.co.id")
    applicant.finish_steps(RESIDENTS[7], "081322220007")
    assert code_of(applicant.call("POST", "/v1/waves/40/join")) == "WAVE_NOT_OPEN"
    api.call("POST", "/v1/admin/waves", json={"number": 41, "quota": 1, "province_codes": ["31"]})
    assert code_of(applicant.call("POST", "/v1/waves/41/join")) == "DOMICILE_MISMATCH"
    assert api.call("POST", "/v1/admin/waves/41/close").status_code == 200
    assert code_of(api.call("POST", "/v1/admin/waves/41/close")) == "WAVE_CLOSED"
    assert code_of(applicant.call("POST", "/v1/waves/41/join")) == "WAVE_CLOSED"


def test_otp_attempts_and_resend_are_limited():
    resident = make_resident(1)
    with scratch_database() as db_url:
        seed_residents(db_url, [resident])
        with running_server(db_url, password_cost=0, otp_resend_interval_s=600) as base_url:
            client = Client(base_url)
            r = client.call(
                "POST", "/v1/accounts", json={"name": "A", "email": "o@example.co.id", "password": PASSWORD}
            )
            account_id = r.json()["id"]
            r = client.call("POST", f"/v1/accounts/{account_id}/email/resend")
            assert r.status_code == 429 and code_of(r) == "OTP_RESEND_TOO_SOON" and "Retry-After" in r.headers
            code = client.latest_code("o@example.co.id")
            wrong = f"{(int(code) + 1) % 1_000_000:06d}"
            verify = f"/v1/accounts/{account_id}/email/verify"
            assert [code_of(client.call("POST", verify, json={"code": wrong})) for _ in range(5)] == [
                "OTP_INVALID"
            ] * 5
            r = client.call("POST", verify, json={"code": code})
            assert r.status_code == 429 and code_of(r) == "OTP_TOO_MANY_ATTEMPTS", (
                "the right code comes too late"
            )


def test_registry_faults_answer_503_with_a_code(tmp_path):
    resident = make_resident(2)
    log_path = tmp_path / "access.log"
    with scratch_database() as db_url:
        seed_residents(db_url, [resident])
        with running_server(
            db_url,
            password_cost=0,
            registry_error_rate=1.0,
            registry_latency="uniform:1,5",
            sms_loss_rate=1.0,
            access_log=True,
            log_path=log_path,
        ) as base_url:
            client = Client(base_url)
            client.sign_up("fault@example.co.id")
            r = client.identity(resident)
            assert r.status_code == 503 and code_of(r) == "REGISTRY_UNAVAILABLE"
            assert r.headers.get("Retry-After")
            stats = client.call("GET", "/v1/admin/stats?max_age_s=0").json()
            assert stats["outcomes"]["identity"] == {"REGISTRY_UNAVAILABLE": 1}
            assert stats["steps"]["identity_verified"] == 0
    # The structured access log: one JSON object per request, with the outcome code.
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    identity = [line for line in lines if line["path"] == "/v1/me/identity"]
    assert identity and identity[0]["status"] == 503 and identity[0]["outcome"] == "REGISTRY_UNAVAILABLE"
    assert {"ts", "method", "route", "ms", "pid"} <= set(identity[0])


# --- uploads -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploader(api):
    applicant = api.as_new()
    applicant.sign_up("upload@example.co.id")
    assert applicant.identity(RESIDENTS[8]).status_code == 200
    return applicant


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but carries one deflated kilobyte of them."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def test_upload_verdicts(uploader):
    def upload(data: bytes, name: str = "ktp.jpg"):
        return uploader.call("POST", "/v1/me/ktp", files={"file": (name, data, "image/jpeg")})

    accepted = upload(ktp_like_photo())
    assert accepted.status_code == 201 and accepted.json()["verdict"] == "accept"
    r = upload(b"GIF89a" + b"\0" * 2000)
    assert r.status_code == 415 and code_of(r) == "UNSUPPORTED_FORMAT", "magic bytes decide, not the name"
    assert code_of(upload(ktp_like_photo(fmt="PNG"), "ktp.jpg")) == "EXTENSION_MISMATCH"
    assert code_of(upload(b"")) == "FILE_EMPTY"
    assert code_of(upload(ktp_like_photo()[:3000])) == "CORRUPT_IMAGE"
    # A decompression bomb: a few hundred bytes declaring 100,000 x 100,000 pixels; refused from the header.
    bomb = _png_bomb(100_000, 100_000)
    r = upload(bomb, "ktp.png")
    assert code_of(r) == "IMAGE_DIMENSIONS"
    r = uploader.call("POST", "/v1/me/ktp", data=b"x", headers={"Content-Type": "application/octet-stream"})
    assert code_of(r) == "VALIDATION_ERROR"
    stats = uploader.call("GET", "/v1/admin/stats?max_age_s=0").json()
    assert stats["ktp_uploads"]["accept"] >= 1 and stats["ktp_uploads"]["IMAGE_DIMENSIONS"] >= 1


def test_oversized_upload_is_refused_without_reading_the_rest(uploader):
    big = b"\xff\xd8\xff" + b"\0" * (3 * 1024 * 1024)
    r = uploader.call("POST", "/v1/me/ktp", files={"file": ("ktp.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and code_of(r) == "FILE_TOO_LARGE"

    # Announce 50 MB, send 64 KB, then wait: the answer must come without the rest being sent.
    url = urlparse(uploader.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        boundary = "b0undary"
        head = (
            f"POST /v1/me/ktp HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {uploader.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"\0" * 65536)
        answer = ""
        while "FILE_TOO_LARGE" not in answer:  # the server closes after answering
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413") and "FILE_TOO_LARGE" in answer

    # Chunked (no Content-Length): refused once the streamed body passes 2 MB + the framing room.
    with socket.create_connection((url.hostname, url.port), timeout=20) as sock:
        head = (
            f"POST /v1/me/ktp HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {uploader.token}\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        part = (
            b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="k.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
        )
        sock.sendall(head.encode() + b"%x\r\n%s\r\n" % (len(part), part))
        block = b"\0" * 65536
        for _ in range(34):  # 34 x 64 KB: just past 2 MB + 64 KB, never a last chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
        answer = b""
        while b"FILE_TOO_LARGE" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"FILE_TOO_LARGE" in answer, answer[:300]
    assert uploader.call("GET", "/healthz").status_code == 200


def test_openapi_document_lists_every_path_of_the_contract(api):
    spec = api.call("GET", "/openapi.json").json()
    for path in [
        "/v1/accounts",
        "/v1/accounts/{account_id}/email/verify",
        "/v1/sessions",
        "/v1/me/identity",
        "/v1/me/profile",
        "/v1/me/phone",
        "/v1/me/phone/verify",
        "/v1/me/ktp",
        "/v1/me/test",
        "/v1/waves/{wave}/join",
        "/v1/waves/{wave}",
        "/v1/admin/waves",
        "/v1/admin/waves/{wave}/close",
        "/v1/admin/stats",
        "/v1/sandbox/outbox",
        "/healthz",
    ]:
        assert path in spec["paths"], path
    stats_schema = spec["components"]["schemas"]["Stats"]
    assert {"steps", "outcomes", "waves"} <= set(stats_schema["properties"])


def test_sms_codes_are_limited_per_phone_across_resends(api):
    applicant = api.as_new()
    applicant.sign_up("sms-limit@example.co.id")
    assert applicant.identity(RESIDENTS[9]).status_code == 200
    phone = "081355550009"
    verify = "/v1/me/phone/verify"
    for _round in range(2):  # a new code resets the per-code count (5), not the per-phone one (10/hour)
        assert applicant.call("POST", "/v1/me/phone", json={"phone": phone}).status_code == 202
        wrong = f"{(int(applicant.latest_code(phone)) + 1) % 1_000_000:06d}"
        codes = [code_of(applicant.call("POST", verify, json={"code": wrong})) for _ in range(5)]
        assert codes == ["OTP_INVALID"] * 5
    assert applicant.call("POST", "/v1/me/phone", json={"phone": phone}).status_code == 202
    r = applicant.call("POST", verify, json={"code": applicant.latest_code(phone)})
    assert r.status_code == 429 and code_of(r) == "OTP_TOO_MANY_ATTEMPTS", (
        "10 wrong codes for this phone this hour"
    )
