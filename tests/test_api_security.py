"""The reference API under attack (issue 13): body limits, the admin token, throttles, races, no 5xx.

Each test is one way a cheap request could hurt a registration site at a wave opening, run against
the real server on SQLite, and on PostgreSQL and MariaDB where their URLs are set (tests/engines.py).
"""

from __future__ import annotations

import datetime as dt
import io
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest
import requests
from engines import ENGINES, server_url
from PIL import Image
from sqlalchemy import select, text, update

from simulator.api.testing import (
    free_port,
    ktp_like_photo,
    make_resident,
    running_server,
    scratch_database,
    seed_ready_accounts,
    seed_residents,
    wait_healthy,
)
from simulator.database import schema as t
from simulator.database.db import make_engine

PASSWORD = "rahasia123"
ACCOUNT_FAILURES = 5
CLIENT_FAILURES = 100


@pytest.fixture(scope="module", params=ENGINES)
def served(request):
    """A server on a fresh database of each engine, with small throttles so tests reach them."""
    with scratch_database(server_url(request.param)) as db_url:
        seed_residents(db_url, [make_resident(i) for i in range(40)])
        ready = seed_ready_accounts(db_url, 4, prefix="sec", first_index=500)
        with running_server(
            db_url,
            password_cost=0,
            otp_resend_interval_s=0,
            login_failures_per_account=ACCOUNT_FAILURES,
            login_failures_per_client=CLIENT_FAILURES,
        ) as base_url:
            yield {"url": base_url, "db": db_url, "ready": ready}


def code_of(response: requests.Response) -> str:
    return response.json()["error"]["code"]


def admin(base_url: str) -> dict[str, str]:
    return {"X-Admin-Token": base_url.admin_token}


def raw_exchange(base_url: str, head: str, body: bytes, timeout_s: float = 10.0) -> str:
    """Send a request's head and part of its body on a socket; return what the server answers."""
    url = urlparse(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=timeout_s) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer.decode("latin-1")


def signed_up(base_url: str, email: str) -> str:
    """A new account with its email confirmed through the sandbox outbox; returns its id."""
    r = requests.post(
        base_url + "/v1/accounts", json={"name": "Uji", "email": email, "password": PASSWORD}, timeout=30
    )
    assert r.status_code == 201, r.text
    account_id = r.json()["id"]
    code = latest_code(base_url, email)
    r = requests.post(base_url + f"/v1/accounts/{account_id}/email/verify", json={"code": code}, timeout=30)
    assert r.status_code == 200, r.text
    return account_id


def latest_code(base_url: str, to: str) -> str:
    r = requests.get(base_url + "/v1/sandbox/outbox", params={"to": to}, timeout=30)
    return r.json()["messages"][0]["code"]


def token_of(base_url: str, email: str, password: str = PASSWORD) -> dict[str, str]:
    r = requests.post(base_url + "/v1/sessions", json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


# --- 1. body size --------------------------------------------------------------------------------


def test_a_declared_huge_json_body_is_refused_before_it_is_read(served):
    head = (
        "POST /v1/accounts HTTP/1.1\nHost: x\nContent-Type: application/json\n"
        f"Content-Length: {50 * 1024 * 1024}\n"
    )
    answer = raw_exchange(served["url"], head, b'{"name": "' + b"A" * 65536)
    assert answer.startswith("HTTP/1.1 413") and '"BODY_TOO_LARGE"' in answer, answer[:300]
    assert "connection: close" in answer.lower()


def test_a_chunked_json_body_is_refused_once_it_passes_the_limit(served):
    head = "POST /v1/accounts HTTP/1.1\nHost: x\nContent-Type: application/json\nTransfer-Encoding: chunked\n"
    chunk = b"A" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4))  # 16 KB, no last chunk
    answer = raw_exchange(served["url"], head, body)
    assert answer.startswith("HTTP/1.1 413") and '"BODY_TOO_LARGE"' in answer, answer[:300]


def test_wave_fields_have_maximum_lengths(served):
    r = requests.post(
        served["url"] + "/v1/admin/waves",
        json={"number": 900, "quota": 1, "province_codes": ["3" * 5000]},
        headers=admin(served["url"]),
        timeout=30,
    )
    assert r.status_code == 422 and code_of(r) == "VALIDATION_ERROR", r.text


# --- 3. admin routes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/admin/waves", {"number": 901, "quota": 1}),
        ("POST", "/v1/admin/waves/1/close", None),
        ("GET", "/v1/admin/stats", None),
    ],
)
def test_admin_routes_need_the_admin_token(served, method, path, body):
    url = served["url"] + path
    for headers in ({}, {"X-Admin-Token": "not-the-token-at-all"}, {"X-Admin-Token": ""}):
        r = requests.request(method, url, json=body, headers=headers, timeout=30)
        assert r.status_code == 401 and code_of(r) == "ADMIN_UNAUTHORIZED", (headers, r.text)
    r = requests.request(method, url, json=body, headers=admin(served["url"]), timeout=30)
    assert r.status_code in {"POST /v1/admin/waves": (201,)}.get(f"{method} {path}", (200, 404)), r.text


def test_stats_answer_says_how_old_its_snapshot_is(served):
    url = served["url"] + "/v1/admin/stats"
    first = requests.get(url, headers=admin(served["url"]), timeout=30).json()
    assert 0 <= first["snapshot_age_s"] < 60
    signed_up(served["url"], "stats-age@example.co.id")
    fresh = requests.get(url, params={"max_age_s": 0}, headers=admin(served["url"]), timeout=30).json()
    assert fresh["steps"]["accounts_created"] == first["steps"]["accounts_created"] + 1


def test_serve_makes_and_prints_an_admin_token_when_none_is_given(tmp_path):
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if k != "PRAKERJA_ADMIN_TOKEN"}
    command = [
        sys.executable,
        "-m",
        "simulator.cli",
        "serve",
        "--db",
        str(tmp_path / "a.db"),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        token = None
        deadline = time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            if line.startswith("admin token"):
                token = line.rsplit(": ", 1)[1].strip()
        assert token and len(token) >= 32
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, 60, process)
        assert requests.get(base + "/v1/admin/stats", timeout=10).status_code == 401
        assert (
            requests.get(base + "/v1/admin/stats", headers={"X-Admin-Token": token}, timeout=10).status_code
            == 200
        )
    finally:
        process.terminate()
        process.wait(20)


# --- 4. credential guessing -------------------------------------------------------------------------


def test_failed_logins_lock_the_account_even_for_the_right_password(served):
    email = served["ready"][0]["email"]
    for _ in range(ACCOUNT_FAILURES):
        r = requests.post(
            served["url"] + "/v1/sessions", json={"email": email, "password": "wrong-1"}, timeout=30
        )
        assert r.status_code == 401 and code_of(r) == "BAD_CREDENTIALS"
    r = requests.post(served["url"] + "/v1/sessions", json={"email": email, "password": PASSWORD}, timeout=30)
    assert r.status_code == 429 and code_of(r) == "LOGIN_THROTTLED", r.text
    assert int(r.headers["Retry-After"]) >= 1
    other = served["ready"][1]
    assert token_of(served["url"], other["email"])  # the others are not locked


def test_failed_logins_from_one_client_are_throttled_across_emails():
    with running_server(password_cost=0, login_failures_per_client=12) as base_url:
        answers = [
            requests.post(
                base_url + "/v1/sessions",
                json={"email": f"nobody-{i}@example.co.id", "password": "guess-123"},
                timeout=30,
            )
            for i in range(14)
        ]
    codes = [code_of(r) for r in answers]
    assert codes == ["BAD_CREDENTIALS"] * 12 + ["LOGIN_THROTTLED"] * 2, codes
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_email_otp_guesses_are_budgeted_per_hour_across_resends(served):
    email = "otp-budget@example.co.id"
    r = requests.post(
        served["url"] + "/v1/accounts", json={"name": "Uji", "email": email, "password": PASSWORD}, timeout=30
    )
    account_id = r.json()["id"]
    verify = served["url"] + f"/v1/accounts/{account_id}/email/verify"
    resend = served["url"] + f"/v1/accounts/{account_id}/email/resend"
    for _round in range(2):  # 2 codes x 5 wrong guesses: the hourly budget of 10 is spent
        wrong = f"{(int(latest_code(served['url'], email)) + 1) % 1_000_000:06d}"
        codes = [code_of(requests.post(verify, json={"code": wrong}, timeout=30)) for _ in range(5)]
        assert codes == ["OTP_INVALID"] * 5
        assert requests.post(resend, timeout=30).status_code == 202
    r = requests.post(verify, json={"code": latest_code(served["url"], email)}, timeout=30)
    assert r.status_code == 429 and code_of(r) == "OTP_TOO_MANY_ATTEMPTS", "a resend refilled the budget"


# --- 5. races ------------------------------------------------------------------------------------------


def test_parallel_wrong_otp_guesses_never_pass_the_attempt_limit(served):
    email = "otp-race@example.co.id"
    r = requests.post(
        served["url"] + "/v1/accounts", json={"name": "Uji", "email": email, "password": PASSWORD}, timeout=30
    )
    account_id = r.json()["id"]
    wrong = f"{(int(latest_code(served['url'], email)) + 1) % 1_000_000:06d}"
    barrier = threading.Barrier(24)

    def guess(_):
        barrier.wait()
        return requests.post(
            served["url"] + f"/v1/accounts/{account_id}/email/verify", json={"code": wrong}, timeout=60
        )

    with ThreadPoolExecutor(24) as pool:
        codes = [code_of(r) for r in pool.map(guess, range(24))]
    assert codes.count("OTP_INVALID") <= 5, codes  # each counted guess is one of the 5 attempts
    assert set(codes) <= {"OTP_INVALID", "OTP_TOO_MANY_ATTEMPTS"}
    engine = make_engine(served["db"])
    try:
        with engine.connect() as conn:
            attempts = conn.execute(
                select(t.otps.c.attempts).where(t.otps.c.account_id == account_id)
            ).scalar_one()
    finally:
        engine.dispose()
    assert attempts <= 5


# --- 6. no 500s -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opens_at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "1900-01-01T00:00:00Z"]
)
def test_wave_times_out_of_range_are_a_validation_error(served, opens_at):
    with requests.Session() as session:
        r = session.post(
            served["url"] + "/v1/admin/waves",
            json={"number": 902, "quota": 1, "opens_at": opens_at},
            headers=admin(served["url"]),
            timeout=30,
        )
        assert r.status_code == 422 and code_of(r) == "VALIDATION_ERROR", r.text
        assert session.get(served["url"] + "/healthz", timeout=30).status_code == 200  # same connection


def test_nul_in_the_outbox_query_is_a_validation_error(served):
    r = requests.get(served["url"] + "/v1/sandbox/outbox", params={"to": "a\x00b@example.co.id"}, timeout=30)
    assert r.status_code == 422 and code_of(r) == "VALIDATION_ERROR", r.text


def test_nul_in_a_multipart_part_header_is_stored_without_it(served):
    signed_up(served["url"], "nul-upload@example.co.id")
    headers = token_of(served["url"], "nul-upload@example.co.id")
    resident = make_resident(20)
    r = requests.put(
        served["url"] + "/v1/me/identity",
        json={"nik": resident["nik"], "kk": resident["kk"], "birth_date": resident["birth_date"].isoformat()},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    r = requests.post(
        served["url"] + "/v1/me/ktp",
        files={"file": ("k\x00tp.jpg", ktp_like_photo(), "image/jpeg\x00; x=\x00")},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 201, r.text


# --- 7. ordering and identity ------------------------------------------------------------------------


def test_idempotency_keys_belong_to_their_caller_and_come_after_authentication(served):
    base, (a, b) = served["url"], served["ready"][2:4]
    key = {"Idempotency-Key": "shared-key-1"}
    answers = {"answers": ["A"] * 18}
    r = requests.post(
        base + "/v1/me/test", json=answers, headers=key | token_of(base, a["email"]), timeout=30
    )
    assert r.status_code == 200
    # Another caller with the same key and body: its own answer, not a replay of the first one's.
    r = requests.post(
        base + "/v1/me/test", json=answers, headers=key | token_of(base, b["email"]), timeout=30
    )
    assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    # A key an anonymous client used once does not answer for the routes it never reached.
    sign_up = {"name": "Uji", "email": "idem-anon@example.co.id", "password": PASSWORD}
    assert requests.post(base + "/v1/accounts", json=sign_up, headers=key, timeout=30).status_code == 201
    r = requests.post(base + "/v1/me/test", json=answers, headers=key, timeout=30)
    assert r.status_code == 401 and code_of(r) == "UNAUTHENTICATED", r.text
    r = requests.put(base + "/v1/me/test", json=answers, headers=key, timeout=30)
    assert r.status_code == 405 and code_of(r) == "METHOD_NOT_ALLOWED", r.text
    r = requests.post(base + "/v1/accounts", json=sign_up, headers=key, timeout=30)
    assert r.status_code == 201 and r.headers.get("Idempotent-Replayed") == "true"  # its own retry


def test_verifying_a_verified_email_needs_its_code(served):
    email = "verified-twice@example.co.id"
    r = requests.post(
        served["url"] + "/v1/accounts", json={"name": "Uji", "email": email, "password": PASSWORD}, timeout=30
    )
    account_id = r.json()["id"]
    code = latest_code(served["url"], email)
    verify = served["url"] + f"/v1/accounts/{account_id}/email/verify"
    assert requests.post(verify, json={"code": code}, timeout=30).status_code == 200
    assert requests.post(verify, json={"code": code}, timeout=30).status_code == 200  # a retry
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = requests.post(verify, json={"code": wrong}, timeout=30)
    assert r.status_code == 422 and code_of(r) == "OTP_INVALID", r.text


def test_an_unverified_phone_claim_lapses_when_its_code_expires(served):
    phone = "081377770001"
    claimants = []
    for i, index in enumerate((21, 22)):
        email = f"phone-claim-{i}@example.co.id"
        signed_up(served["url"], email)
        headers = token_of(served["url"], email)
        resident = make_resident(index)
        body = {
            "nik": resident["nik"],
            "kk": resident["kk"],
            "birth_date": resident["birth_date"].isoformat(),
        }
        assert (
            requests.put(
                served["url"] + "/v1/me/identity", json=body, headers=headers, timeout=30
            ).status_code
            == 200
        )
        claimants.append(headers)
    claim = served["url"] + "/v1/me/phone"
    assert requests.post(claim, json={"phone": phone}, headers=claimants[0], timeout=30).status_code == 202
    r = requests.post(claim, json={"phone": phone}, headers=claimants[1], timeout=30)
    assert r.status_code == 409 and code_of(r) == "PHONE_TAKEN"  # while the first claim's code lives
    engine = make_engine(served["db"])
    try:
        with engine.begin() as conn:  # the first claimant's code expires
            conn.execute(
                update(t.otps)
                .where(t.otps.c.destination == phone)
                .values(expires_at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1))
            )
    finally:
        engine.dispose()
    assert requests.post(claim, json={"phone": phone}, headers=claimants[1], timeout=30).status_code == 202
    r = requests.post(
        served["url"] + "/v1/me/phone/verify",
        json={"code": latest_code(served["url"], phone)},
        headers=claimants[1],
        timeout=30,
    )
    assert r.status_code == 200, r.text
    r = requests.post(claim, json={"phone": phone}, headers=claimants[0], timeout=30)
    assert r.status_code == 409 and code_of(r) == "PHONE_TAKEN"  # verified elsewhere: taken for good


# --- 8. slow clients ---------------------------------------------------------------------------------


def test_slow_clients_are_cut_off_and_connections_are_capped():
    with running_server(
        password_cost=0, header_timeout_s=1, body_timeout_s=1, max_connections=30
    ) as base_url:
        url = urlparse(base_url)
        slow = []
        try:
            for i in range(20):
                sock = socket.create_connection((url.hostname, url.port), timeout=10)
                if i % 2:  # half the headers
                    sock.sendall(b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\n")
                else:  # the headers and half the body
                    sock.sendall(
                        b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b'Content-Length: 100\r\n\r\n{"name": '
                    )
                slow.append(sock)
            answers = []
            for sock in slow:  # each is answered 408 and closed within the deadline, not held open
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
                answers.append(answer.decode("latin-1"))
            assert all(a.startswith("HTTP/1.1 408") and "REQUEST_TIMEOUT" in a for a in answers), answers[:2]
        finally:
            for sock in slow:
                sock.close()
        crowd = [socket.create_connection((url.hostname, url.port), timeout=10) for _ in range(35)]
        try:
            time.sleep(0.5)  # let the server accept them all
            crowd[-1].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = crowd[-1].recv(4096).decode("latin-1")
            assert answer.startswith("HTTP/1.1 503") and "SERVER_BUSY" in answer, answer[:200]
        finally:
            for sock in crowd:
                sock.close()
        assert requests.get(base_url + "/healthz", timeout=10).status_code == 200


# --- 9. errors swallowed -------------------------------------------------------------------------------


def test_a_failing_outcome_flush_is_logged_once_and_shown_in_healthz(tmp_path):
    log_path = tmp_path / "server.log"
    with scratch_database() as db_url, running_server(db_url, password_cost=0, log_path=log_path) as base_url:
        engine = make_engine(db_url)
        try:
            with engine.begin() as conn:
                conn.execute(text("DROP TABLE outcome_counts"))
            for i in range(3):  # answers to count, which the flush can no longer store
                requests.post(
                    base_url + "/v1/accounts",
                    json={"name": "A", "email": f"f{i}@example.co.id", "password": PASSWORD},
                    timeout=30,
                )
            health = {}
            for _ in range(100):
                health = requests.get(base_url + "/healthz", timeout=10).json()
                if "outcome flush" in health.get("faults", {}):
                    break
                time.sleep(0.1)
            assert health["status"] == "degraded", health
            fault = health["faults"]["outcome flush"]
            assert fault["failing"] and "outcome_counts" in fault["last_error"]
            time.sleep(2.5)  # two more failed flushes: still one log line
            with engine.begin() as conn:
                t.outcome_counts.create(conn)
            for _ in range(100):
                health = requests.get(base_url + "/healthz", timeout=10).json()
                if not health["faults"]["outcome flush"]["failing"]:
                    break
                time.sleep(0.1)
            assert health["faults"]["outcome flush"]["count"] >= 2
        finally:
            engine.dispose()
    log = log_path.read_text()
    assert log.count("background outcome flush failed") == 1, log[-3000:]
    assert "background outcome flush works again" in log


# --- 2. image bombs (the rules, and the server's pool) ----------------------------------------------


def _png(width: int, height: int, bit_depth: int = 8, colour: int = 2, idat: bytes | None = None) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", idat or zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def test_image_bombs_are_refused_from_the_header(served):
    signed_up(served["url"], "bombs@example.co.id")
    headers = token_of(served["url"], "bombs@example.co.id")
    resident = make_resident(23)
    body = {"nik": resident["nik"], "kk": resident["kk"], "birth_date": resident["birth_date"].isoformat()}
    assert (
        requests.put(served["url"] + "/v1/me/identity", json=body, headers=headers, timeout=30).status_code
        == 200
    )

    def upload(data: bytes, name: str):
        return requests.post(
            served["url"] + "/v1/me/ktp",
            files={"file": (name, data, "image/png")},
            headers=headers,
            timeout=60,
        )

    sixteen_bit = _png(7000, 7000, bit_depth=16, colour=6)  # 49 MP RGBA at 16 bits: 392 MB decoded
    r = upload(sixteen_bit, "ktp.png")
    assert r.status_code == 422 and code_of(r) == "IMAGE_DIMENSIONS", r.text
    r = upload(_png(5000, 4000), "ktp.png")  # 20 MP of PNG, which cannot be decoded reduced
    assert r.status_code == 422 and code_of(r) == "IMAGE_DIMENSIONS", r.text
    photo = ktp_like_photo()
    r = upload(photo + b"\0" * (1900 * 1024), "ktp.jpg")
    assert (
        r.status_code == 422
        and code_of(r) == "CORRUPT_IMAGE"
        and "follow the end" in r.json()["error"]["message"]
    )
    assert upload(photo + b"\0" * 512, "ktp.jpg").status_code == 201  # a camera's small trailer


def test_a_burst_of_uploads_is_decoded_a_few_at_a_time():
    import asyncio

    from simulator.api.uploads import DecodePool
    from simulator.rules.upload import validate_upload

    running, peak = 0, 0
    lock = threading.Lock()

    def check(data, filename):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return validate_upload(data, filename)

    async def burst():
        pool = DecodePool(2, check)
        return await asyncio.gather(*[pool.validate(ktp_like_photo(), "ktp.jpg") for _ in range(12)])

    verdicts = asyncio.run(burst())
    assert all(v.accepted for v in verdicts) and peak == 2


def test_a_progressive_jpeg_has_a_lower_pixel_budget():
    from simulator.rules.upload import MAX_PROGRESSIVE_JPEG_PIXELS, validate_upload

    side = int(MAX_PROGRESSIVE_JPEG_PIXELS**0.5) + 200
    image = Image.new("RGB", (side, side), (172, 212, 236))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", progressive=True, quality=30)
    verdict = validate_upload(buffer.getvalue(), "ktp.jpg")
    assert verdict.verdict == "IMAGE_DIMENSIONS" and "MP" in verdict.message


# --- 4. ... and the surge harness never trips the login throttles -------------------------------------

SURGE = """
[scenario]
name = "login-crowd"
description = "test: a crowd released at the opening, every journey logging in from one address"
seed = 11

[wave]
number = 4
quota = 50
selection = "fcfs"
opens_at = 2020-11-02T12:00:00+07:00
duration_h = 1.0

[replay]
length_s = 60.0
time_scale = 10.0
drain_s = 8.0

[arrivals]
expected_total = 150.0
pre_open_crowd = 60.0
crowd_release_s = 3.0
decay_half_life_h = 0.5
baseline_per_s = 0.01

[funnel]
otp_poll_s = 0.2
otp_wait_s = 8.0
retry_backoff_s = 2.0

[funnel.think_s]
create_account = 0.3
verify_email = 0.3
login = 0.3
identity = 0.5
profile = 0.5
ktp_upload = 0.5
phone = 0.5
verify_phone = 0.5
test = 0.5
join = 0.5
"""


@pytest.mark.slow
def test_a_surge_from_one_address_never_trips_the_login_throttles(tmp_path):
    from simulator.io.population import write_population
    from simulator.surge.runner import SurgeOptions, run_surge

    population = tmp_path / "population"
    write_population(population, 200, 11, fmt="parquet")
    scenario = tmp_path / "login-crowd.toml"
    scenario.write_text(SURGE, encoding="utf-8")
    with running_server(registry_dir=population, password_cost=0) as host:  # the default budgets
        result = run_surge(
            SurgeOptions(
                scenario=scenario, out=tmp_path / "out", host=host, population=population, progress_s=0
            ),
            say=lambda _line: None,
        )
        stats = requests.get(
            host + "/v1/admin/stats", params={"max_age_s": 0}, headers=admin(host), timeout=30
        )
    logins = stats.json()["outcomes"].get("login", {})
    assert logins.get("accept", 0) >= 30, logins
    assert "LOGIN_THROTTLED" not in logins and "RATE_LIMITED" not in logins, logins
    assert result.data["reconciliation"]["ok"], result.data["reconciliation"]


def test_an_unknown_email_costs_a_password_hash_like_a_known_one(tmp_path, monkeypatch):
    """Login time must not tell which emails exist: an unknown email is checked against a dummy hash,
    through the same verify call as a known one (counted here, in this process, instead of timed)."""
    import asyncio

    import orjson

    from simulator.api import accounts
    from simulator.api.app import create_app
    from simulator.api.settings import Settings

    verified: list[str] = []
    real_verify = accounts.verify_password

    def counting_verify(stored_hash: str, password: str) -> bool:
        verified.append(stored_hash)
        return real_verify(stored_hash, password)

    monkeypatch.setattr(accounts, "verify_password", counting_verify)
    app = create_app(Settings(db_url=str(tmp_path / "api.db"), password_cost=0))

    async def login(email: str) -> int:
        sent: list[dict] = []
        body = orjson.dumps({"email": email, "password": "not-their-password"})
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/sessions", "raw_path": b"/v1/sessions", "query_string": b"",
            "root_path": "", "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        await app(scope, receive, send)
        return next(m["status"] for m in sent if m["type"] == "http.response.start")

    async def run() -> list[int]:
        async with app.router.lifespan_context(app):
            return [await login("nobody-here@example.invalid"), await login("nor-here@example.invalid")]

    assert asyncio.run(run()) == [401, 401]
    assert len(verified) == 2  # each unknown email still cost one argon2 verification
    assert all(h.startswith("$argon2id$") for h in verified)
