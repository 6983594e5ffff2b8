"""The upstream stand-ins: registry answers and faults, SMS and SMTP capture, OTP extraction, the read
API, bounded rings, profiles, and the command's refusals."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import smtplib
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from simulator.api.settings import Delay
from simulator.errors import InvalidInputFile, InvalidOption
from simulator.io.population import write_population
from simulator.rules.reasons import Reason
from simulator.upstreams.app import Upstreams
from simulator.upstreams.asgi import create_app
from simulator.upstreams.faults import RegistryFaults, SinkFaults, parse_slowdown
from simulator.upstreams.messages import Message, Outbox, email_key, extract_otp, phone_key
from simulator.upstreams.profile import load_profile
from simulator.upstreams.registry import load_registry
from simulator.upstreams.stats import SERIES_SECONDS
from simulator.upstreams.testing import running_upstreams


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pop") / "pop"
    write_population(out, 300, 11, fmt="parquet")
    return out


@pytest.fixture(scope="module")
def residents(population) -> list[dict]:
    return pq.read_table(population / "residents.parquet").to_pylist()


@pytest.fixture(scope="module")
def registry(population):
    return load_registry(population)


def call(
    app, method: str, path: str, body: bytes = b"", content_type: str = "application/json", query: str = ""
) -> tuple[int, dict, dict]:
    """One request through the ASGI app in this process: (status, JSON body, headers)."""
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"content-type", content_type.encode())] if content_type else [],
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
    return start["status"], orjson.loads(sent[1]["body"]), headers


def check_body(resident: dict, **changes) -> bytes:
    body = {"nik": resident["nik"], "kk": resident["kk"], "birth_date": resident["birth_date"].isoformat()}
    body.update(changes)
    return orjson.dumps(body)


# --- registry ------------------------------------------------------------------------------------


def test_registry_answers_match_and_each_mismatch_like_the_reference_api(registry, residents):
    app = create_app(Upstreams(registry))
    person = residents[3]
    status, answer, _ = call(app, "POST", "/registry/v1/check", check_body(person))
    assert status == 200
    assert answer["verdict"] == "MATCH" and answer["kk_match"] and answer["birth_date_match"]
    assert answer["resident"]["full_name"] == person["full_name"]
    assert answer["resident"]["birth_date"] == person["birth_date"].isoformat()
    other_kk = next(r["kk"] for r in residents if r["kk"] != person["kk"])
    _, answer, _ = call(app, "POST", "/registry/v1/check", check_body(person, kk=other_kk))
    assert answer["verdict"] == Reason.NIK_KK_MISMATCH and not answer["kk_match"]
    wrong_day = (person["birth_date"] + dt.timedelta(days=1)).isoformat()
    _, answer, _ = call(app, "POST", "/registry/v1/check", check_body(person, birth_date=wrong_day))
    assert answer["verdict"] == Reason.NIK_BIRTHDATE_MISMATCH and answer["kk_match"]
    known = {r["nik"] for r in residents}
    stranger = next(
        f"{n:016d}" for n in range(3171010101900001, 3171010101999999) if f"{n:016d}" not in known
    )
    _, answer, _ = call(app, "POST", "/registry/v1/check", check_body(person, nik=stranger))
    assert answer == {
        "verdict": "NIK_NOT_FOUND",
        "nik_found": False,
        "kk_match": False,
        "birth_date_match": False,
    }


def test_registry_counts_other_recipients_of_the_family_card(registry, residents):
    by_kk: dict[str, list[dict]] = {}
    for r in residents:
        by_kk.setdefault(r["kk"], []).append(r)
    person = residents[0]
    expected = sum(1 for r in by_kk[person["kk"]] if r["is_recipient"] and r["nik"] != person["nik"])
    assert (
        registry.record(registry.check(person["nik"], person["kk"], person["birth_date"]).row)[
            "kk_recipients"
        ]
        == expected
    )


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "expected a JSON object"),
        (b'{"kk": "1", "birth_date": "2000-01-01"}', 400, "'nik' is required"),
        (b'{"nik": 3171, "kk": "1", "birth_date": "2000-01-01"}', 400, "'nik' must be a string"),
        (b'{"nik": "12345", "kk": "1", "birth_date": "2000-01-01"}', 400, "16 digits"),
        (b'{"nik": "3171010101900001", "kk": "1", "birth_date": "31/12/2000"}', 400, "must be a date"),
        (b"x" * 20_000, 413, "over 16384 bytes"),
    ],
)
def test_registry_refuses_bad_requests_with_a_clear_json_error(registry, body, status, fragment):
    app = create_app(Upstreams(registry))
    got, answer, _ = call(app, "POST", "/registry/v1/check", body)
    assert got == status
    assert answer["error"]["code"] == "VALIDATION_ERROR" and fragment in answer["error"]["message"]


def test_wrong_method_and_unknown_path_are_json_errors(registry):
    app = create_app(Upstreams(registry))
    status, answer, headers = call(app, "GET", "/registry/v1/check")
    assert status == 405 and answer["error"]["code"] == "METHOD_NOT_ALLOWED" and headers["allow"] == "POST"
    status, answer, _ = call(app, "GET", "/nowhere")
    assert status == 404 and answer["error"]["code"] == "NOT_FOUND"


def test_injected_registry_errors_and_timeouts(registry, residents):
    failing = Upstreams(registry, registry_faults=RegistryFaults(error_rate=1.0), seed=1)
    status, answer, headers = call(
        create_app(failing), "POST", "/registry/v1/check", check_body(residents[0])
    )
    assert (
        status == 503 and answer["error"]["code"] == "REGISTRY_UNAVAILABLE" and headers["retry-after"] == "5"
    )
    hanging = Upstreams(registry, registry_faults=RegistryFaults(timeout_rate=1.0, timeout_s=0.01), seed=1)
    status, answer, _ = call(create_app(hanging), "POST", "/registry/v1/check", check_body(residents[0]))
    assert status == 504 and "did not answer within 0.01 s" in answer["error"]["message"]
    assert failing.counters["registry"].outcomes["error"] == 1
    assert hanging.counters["registry"].outcomes["timeout"] == 1


def test_error_rate_is_drawn_at_the_configured_share_and_reproducibly():
    faults = RegistryFaults(error_rate=0.2, timeout_rate=0.1)
    draws = [faults.fate(random.Random(7)) for _ in range(1)]
    rng = random.Random(3)
    fates = [faults.fate(rng) for _ in range(20_000)]
    assert 0.18 < fates.count("error") / len(fates) < 0.22
    assert 0.08 < fates.count("timeout") / len(fates) < 0.12
    assert draws == [faults.fate(random.Random(7))]
    with pytest.raises(InvalidOption, match="together at most 1"):
        RegistryFaults(error_rate=0.7, timeout_rate=0.5)
    with pytest.raises(InvalidOption, match="--registry-timeout"):
        RegistryFaults(timeout_s=0)


def test_slowdown_schedule_multiplies_or_adds_latency_inside_its_windows():
    faults = RegistryFaults(latency=Delay.parse("fixed:10"), slowdown=parse_slowdown("0-60:x8, 60-120:+40"))
    rng = random.Random(1)
    assert faults.latency_ms(rng, 5.0) == 80
    assert faults.latency_ms(rng, 90.0) == 50
    assert faults.latency_ms(rng, 500.0) == 10
    for bad in ("0-60", "60-0:x2", "a-b:x2", "0-60:*2"):
        with pytest.raises(InvalidOption, match="--registry-slowdown"):
            parse_slowdown(bad)


def test_profile_renames_fields_date_format_path_and_envelope(registry, residents, tmp_path):
    profile_file = tmp_path / "staging.toml"
    profile_file.write_text(
        '[registry]\npath = "/dukcapil/nik"\nbirth_date_format = "%d-%m-%Y"\nenvelope = "content"\n'
        '[registry.request]\nnik = "NIK"\nkk = "NO_KK"\nbirth_date = "TGL_LHR"\n'
        '[registry.answer]\nverdict = "RESPON"\nrecord = "DATA"\n'
        '[sms]\npath = "/api/kirim"\nto = ["tujuan"]\ntext = ["isi"]\n'
    )
    app = create_app(Upstreams(registry, profile=load_profile(profile_file)))
    person = residents[5]
    body = orjson.dumps(
        {"NIK": person["nik"], "NO_KK": person["kk"], "TGL_LHR": person["birth_date"].strftime("%d-%m-%Y")}
    )
    status, answer, _ = call(app, "POST", "/dukcapil/nik", body)
    assert status == 200 and answer["content"]["RESPON"] == "MATCH"
    assert answer["content"]["DATA"]["full_name"] == person["full_name"]
    assert call(app, "POST", "/registry/v1/check", body)[0] == 404
    status, _, _ = call(
        app, "POST", "/api/kirim", b"tujuan=081299990000&isi=kode+4321", "application/x-www-form-urlencoded"
    )
    assert status == 202
    assert call(app, "GET", "/v1/codes", query="to=081299990000")[1]["codes"] == ["4321"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[registry]\npath = 'no-slash'\n", "registry.path"),
        ("[registry.request]\nnik = 'a'\nkk = 'a'\n", "three names"),
        ("[registry]\nbirth_date_format = '%H:%M'\n", "registry.birth_date_format"),
        ("[registry.answer]\ncolour = 'x'\n", "registry.answer.colour"),
        ("[mail]\n", "unknown table [mail]"),
        ("[sms]\nto = ['text']\n", "both a recipient and a text field"),
        ("not toml = = 1", "not valid TOML"),
    ],
)
def test_bad_profiles_are_refused_naming_the_key(tmp_path, text, fragment):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(InvalidInputFile, match="p.toml") as err:
        load_profile(path)
    assert fragment in str(err.value)


def test_registry_is_read_through_the_verified_population_reader(tmp_path):
    pop = tmp_path / "pop"
    write_population(pop, 50, 3, fmt="csv")
    assert len(load_registry(pop)) == 50
    with open(pop / "residents.csv", "ab") as handle:
        handle.write(b"\n")
    with pytest.raises(InvalidInputFile, match="residents.csv"):
        load_registry(pop)
    with pytest.raises(InvalidInputFile, match="not a directory"):
        load_registry(tmp_path / "nowhere")


# --- messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Kode OTP Prakerja Anda: 482913. Jangan berikan kepada siapa pun.", "482913"),
        ("Your verification code is 0042", "0042"),
        ("PIN 7781 berlaku 5 menit, CS 1500-123", "7781"),
        ("Gunakan 918273 untuk masuk", "918273"),
        ("Selamat datang di Prakerja", None),
        ("Nomor 1234 dan 5678 tanpa kata kunci", None),
        ("Order ABC12345 shipped", None),
    ],
)
def test_otp_extraction(text, code):
    assert extract_otp(text) == code


def test_recipient_keys_agree_across_common_spellings():
    assert {phone_key(p) for p in ("081234567890", "+62 812-3456-7890", "6281234567890", "81234567890")} == {
        "081234567890"
    }
    assert phone_key("not a phone") is None and phone_key("0812") is None
    assert email_key("Budi <Budi@Mail.Example>") == "budi@mail.example"
    assert email_key("nobody") is None and email_key("a@b") is None


def test_outbox_rings_are_bounded_per_recipient_and_in_recipients():
    outbox = Outbox(per_recipient=3, max_recipients=2)
    for i in range(5):
        outbox.add(Message("sms", "081111111111", i, i, str(1000 + i), "x"))
    assert [m.code for m in outbox.delivered("081111111111", now=10)] == ["1004", "1003", "1002"]
    outbox.add(Message("sms", "082222222222", 0, 0, "1", "x"))
    outbox.add(Message("sms", "081111111111", 6, 6, "1006", "x"))  # refreshes the first recipient
    outbox.add(Message("email", "c@d.example", 0, 0, "2", "x"))
    assert len(outbox) == 2 and outbox.evicted_recipients == 1
    assert outbox.delivered("082222222222", now=10) == []
    assert outbox.messages_held() == 4


def test_sms_gateway_takes_json_and_form_shapes_and_files_codes(registry):
    upstreams = Upstreams(registry)
    app = create_app(upstreams)
    assert (
        call(app, "POST", "/sms/v1/send", b'{"to": "+6281200001111", "text": "Kode OTP: 111222"}')[0] == 202
    )
    assert (
        call(
            app,
            "POST",
            "/sms/v1/send",
            b"To=081200001111&Body=kode+333444",
            "application/x-www-form-urlencoded",
        )[0]
        == 202
    )
    assert (
        call(
            app,
            "POST",
            "/sms/v1/send",
            b'{"msisdn": ["081200002222", "081200003333"], "message": "PIN 5555"}',
        )[2]
        is not None
    )
    _, answer, _ = call(app, "GET", "/v1/sandbox/outbox", query="to=%2B6281200001111")
    assert [m["code"] for m in answer["messages"]] == ["333444", "111222"]
    assert answer["messages"][0]["channel"] == "sms"
    assert call(app, "GET", "/v1/codes", query="to=081200003333")[1]["codes"] == ["5555"]
    assert upstreams.counters["sms"].outcomes["accepted"] == 4


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b'{"text": "hi"}', "application/json", 400, "no recipient field"),
        (b'{"to": "081200001111"}', "application/json", 400, "no text field"),
        (b'{"to": "hello", "text": "x"}', "application/json", 400, "is not a phone number"),
        (b"<sms/>", "application/xml", 415, "content type"),
        (b"{", "application/json", 400, "not valid JSON"),
    ],
)
def test_sms_gateway_refuses_bad_requests(registry, body, content_type, status, fragment):
    got, answer, _ = call(create_app(Upstreams(registry)), "POST", "/sms/v1/send", body, content_type)
    assert got == status and fragment in answer["error"]["message"]


def test_sms_loss_and_delay(registry):
    lossy = Upstreams(registry, sms_faults=SinkFaults(loss_rate=1.0, name="sms"))
    status, _, _ = call(
        create_app(lossy), "POST", "/sms/v1/send", b'{"to": "081200001111", "text": "kode 1234"}'
    )
    assert status == 202, "a gateway accepts what it will lose"
    assert lossy.outbox.delivered("081200001111") == [] and lossy.counters["sms"].outcomes["lost"] == 1
    slow = Upstreams(registry, sms_faults=SinkFaults(delay=Delay.parse("fixed:3600000"), name="sms"))
    app = create_app(slow)
    call(app, "POST", "/sms/v1/send", b'{"to": "081200001111", "text": "kode 1234"}')
    assert call(app, "GET", "/v1/codes", query="to=081200001111")[1]["codes"] == [], "not arrived for an hour"
    [held] = slow.outbox.held("081200001111")
    assert held.deliver_at - held.received_at == pytest.approx(3600)
    assert [m.code for m in slow.outbox.delivered("081200001111", now=held.deliver_at)] == ["1234"]


def test_read_api_refuses_a_bad_recipient_and_reports_counters(registry, residents):
    upstreams = Upstreams(registry)
    app = create_app(upstreams)
    status, answer, _ = call(app, "GET", "/v1/sandbox/outbox", query="to=")
    assert status == 400 and "email address or a phone number" in answer["error"]["message"]
    assert call(app, "GET", "/v1/codes", query="to=081200001111&limit=0")[0] == 400
    call(app, "POST", "/registry/v1/check", check_body(residents[0]))
    _, stats, _ = call(app, "GET", "/v1/stats")
    registry_stats = stats["services"]["registry"]
    assert registry_stats["calls"] == 1 and registry_stats["outcomes"] == {"MATCH": 1}
    assert registry_stats["latency_ms"]["count"] == 1
    _, series, _ = call(app, "GET", "/v1/stats/series", query="service=registry&since=0")
    assert sum(n for _, n in series["per_second"]) == 1
    assert len(series["per_second"]) <= SERIES_SECONDS, "only the history held, whatever `since` says"
    assert call(app, "POST", "/v1/clock")[0] == 200


# --- the real thing: HTTP and SMTP listeners in their own process -------------------------------


@pytest.fixture(scope="module")
def served(population):
    with running_upstreams(population, "--email-loss-rate", "0", "--seed", "1") as running:
        yield running


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_smtp_sink_captures_mail_from_smtplib_over_one_connection(served):
    with smtplib.SMTP("127.0.0.1", served.smtp_port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("size")
        for i in range(3):
            message = EmailMessage()
            message["From"] = "Prakerja <noreply@prakerja.invalid>"
            message["To"] = f"applicant{i}@mail.invalid"
            message["Subject"] = "Verifikasi email"
            message.set_content(f"Kode OTP Anda: {700000 + i}\nBerlaku 5 menit.")
            message.add_alternative(f"<p>Kode OTP Anda: <b>{700000 + i}</b></p>", subtype="html")
            client.send_message(message)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("noreply@prakerja.invalid", ["not-an-address"], b"Subject: x\r\n\r\nkode 1234")
    for i in range(3):
        outbox = _get(f"{served.url}/v1/sandbox/outbox?to=Applicant{i}@mail.invalid")
        (message,) = outbox["messages"]
        assert message["code"] == str(700000 + i) and message["channel"] == "email"
        assert message["subject"] == "Verifikasi email"
    assert _get(f"{served.url}/v1/stats")["services"]["smtp"]["outcomes"]["accepted"] == 3


def test_smtp_refuses_oversized_mail(served):
    with smtplib.SMTP("127.0.0.1", served.smtp_port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail(
                "a@prakerja.invalid", ["b@mail.invalid"], b"Subject: big\r\n\r\n" + b"x" * 1_100_000
            )


def test_registry_and_sms_over_http(served, residents):
    person = residents[0]
    request = urllib.request.Request(
        served.registry_url,
        data=check_body(person),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["verdict"] == "MATCH"
    form = urllib.parse.urlencode({"to": "081277778888", "text": "Kode OTP 246810"}).encode()
    with urllib.request.urlopen(urllib.request.Request(served.sms_url, data=form), timeout=10) as response:
        assert response.status == 202
    assert _get(f"{served.url}/v1/codes?to=6281277778888")["codes"] == ["246810"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "simulator.cli", "upstreams", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_refuses_a_non_loopback_bind_and_bad_input_in_one_line(population, tmp_path):
    done = _cli("--population", str(population), "--host", "upstreams.invalid", "--port", "0")
    assert (
        done.returncode != 0 and "not a loopback address" in done.stderr and "--allow-remote" in done.stderr
    )
    assert "Traceback" not in done.stderr
    done = _cli("--population", str(tmp_path / "missing"), "--port", "0", "--smtp-port", "0")
    assert (
        done.returncode == 2
        and "not a directory" in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )
    done = _cli("--population", str(population), "--registry-latency", "gauss:1", "--port", "0")
    assert done.returncode == 2 and "--registry-latency" in done.stderr
    done = _cli("--population", str(population), "--registry-slowdown", "9-1:x2", "--port", "0")
    assert done.returncode == 2 and "ends before it starts" in done.stderr and "Traceback" not in done.stderr


def test_command_refuses_a_port_in_use(population, served):
    port = urllib.parse.urlparse(served.url).port
    done = _cli("--population", str(population), "--port", str(port), "--smtp-port", "0")
    assert done.returncode == 2 and f"--port: cannot listen on 127.0.0.1:{port}" in done.stderr


def test_form_bodies_decode_like_parse_qs():
    from urllib.parse import parse_qs

    from simulator.upstreams.app import _form

    for text in (
        "to=081200001111&text=Kode+OTP%3A+123456",
        "to=0811&to=0812&text=a%26b",
        "a=&b=%2B62+8",
        "x",
    ):
        expected = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
        assert _form(text) == expected


# --- the lean HTTP server (simulator.upstreams.httpd), in this process on a free loopback port ----


class _Lean:
    """The routes of ``upstreams`` behind the lean protocol, on an event loop in a thread."""

    def __init__(self, upstreams):
        import socket
        import threading

        from simulator.upstreams import httpd
        from simulator.upstreams.app import Routes

        self.loop = asyncio.new_event_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self.connections = httpd.Connections()
        self.server = self.loop.run_until_complete(
            httpd.start_http_server(Routes(upstreams), sock, self.connections)
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def sweep(self) -> None:
        done = asyncio.run_coroutine_threadsafe(self._sweep(), self.loop)
        done.result(timeout=10)

    async def _sweep(self) -> None:
        self.connections.sweep()

    def connect(self):
        import socket

        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def close(self) -> None:
        async def stop():
            self.server.close()
            self.connections.close_all()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def lean(registry):
    def start(**options):
        server = _Lean(Upstreams(registry, seed=3, **options))
        started.append(server)
        return server

    started: list[_Lean] = []
    yield start
    for server in started:
        server.close()


def _request(method: str, path: str, body: bytes = b"", *headers: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _answers(sock, count: int, head_only: bool = False) -> list[tuple[int, dict, bytes]]:
    """``count`` answers read off ``sock``: (status, headers, body); the body by its content-length."""
    out = []
    for _ in range(count):
        status_line = _line(sock)
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers = {}
        while line := _line(sock):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers["content-length"])
        body = b""
        while len(body) < length:
            body += _recv(sock, length - len(body))
        out.append((int(status_line.split()[1]), headers, body))
    return out


def _recv(sock, size: int) -> bytes:
    held = _held.setdefault(id(sock), bytearray())
    if not held:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        held += chunk
    out = bytes(held[:size])
    del held[:size]
    return out


def _line(sock) -> bytes:
    line = b""
    while not line.endswith(b"\r\n"):
        line += _recv(sock, 1)
    return line[:-2]


_held: dict[int, bytearray] = {}


def _closed(sock) -> bool:
    """True once the server closed ``sock`` (reads give EOF)."""
    sock.settimeout(10)
    try:
        return not _held.get(id(sock)) and sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_lean_server_keeps_connections_alive_and_answers_pipelined_requests_in_order(lean, residents):
    # The first check is delayed 200 ms by the latency knob, the ones behind it are not: answers must
    # still come back in request order (what HTTP/1.1 pipelining demands).
    server = lean(registry_faults=RegistryFaults(latency=Delay.parse("fixed:200")))
    people = residents[:3]
    with server.connect() as sock:
        sock.sendall(
            b"".join(_request("POST", "/registry/v1/check", check_body(p)) for p in people)
            + _request("GET", "/v1/healthz")
        )
        answers = _answers(sock, 4)
        assert [status for status, _, _ in answers] == [200, 200, 200, 200]
        records = [orjson.loads(body)["resident"]["full_name"] for _, _, body in answers[:3]]
        assert records == [p["full_name"] for p in people]
        assert orjson.loads(answers[3][2])["status"] == "ok"
        assert all(h["content-type"] == "application/json" for _, h, _ in answers)
        # ... and the same connection takes another request after them.
        sock.sendall(_request("GET", "/v1/nowhere"))
        [(status, _, body)] = _answers(sock, 1)
        assert status == 404 and orjson.loads(body)["error"]["code"] == "NOT_FOUND"


def test_lean_server_answers_bodies_in_chunks_continue_and_head(lean, residents):
    server = lean()
    body = check_body(residents[0])
    with server.connect() as sock:
        head = (
            "POST /registry/v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert _line(sock) == b"HTTP/1.1 100 Continue" and _line(sock) == b""
        half = len(body) // 2
        for part in (body[:half], body[half:]):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        [(status, _, answer)] = _answers(sock, 1)
        assert status == 200 and orjson.loads(answer)["verdict"] == "MATCH"
        sock.sendall(_request("HEAD", "/v1/healthz") + _request("GET", "/v1/healthz"))
        [(status, headers, _)] = _answers(sock, 1, head_only=True)
        assert status == 405 and headers["allow"] == "GET", "HEAD: the headers only"
        [(status, _, answer)] = _answers(sock, 1)
        assert status == 200 and orjson.loads(answer)["status"] == "ok", "the next answer follows at once"


def test_lean_server_http_1_0_and_connection_close_end_the_connection(lean):
    server = lean()
    for request in (
        _request("GET", "/v1/healthz", version="1.0"),
        _request("GET", "/v1/healthz", b"", "Connection: close"),
    ):
        with server.connect() as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in data.lower()


def test_lean_server_refuses_an_oversized_body_before_reading_it_and_counts_it(lean):
    server = lean()
    with server.connect() as sock:
        sock.sendall(
            b"POST /registry/v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n" + b"x" * 1000
        )
        [(status, headers, body)] = _answers(sock, 1)
        assert status == 413 and headers["connection"] == "close"
        assert "over 16384 bytes" in orjson.loads(body)["error"]["message"]
        assert _closed(sock)
    with server.connect() as sock:  # announced small, sent large (chunked): refused as it arrives
        sock.sendall(
            b"POST /sms/v1/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"4000\r\n"
            + b"x" * 0x4000
            + b"\r\n"
            + b"10\r\n"
            + b"y" * 16
            + b"\r\n"
        )
        [(status, _, _)] = _answers(sock, 1)
        assert status == 413 and _closed(sock)
    with server.connect() as sock:
        sock.sendall(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        [(_, _, body)] = _answers(sock, 1)
    services = orjson.loads(body)["services"]
    assert services["registry"]["outcomes"] == {"bad_request": 1}
    assert services["sms"]["outcomes"] == {"bad_request": 1}


@pytest.mark.parametrize(
    "raw",
    [
        b"this is not HTTP\r\n\r\n",
        b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /v1/clock HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
    ],
)
def test_lean_server_answers_a_malformed_request_with_one_json_400_and_closes(lean, raw):
    server = lean()
    with server.connect() as sock:
        sock.sendall(raw)
        [(status, headers, body)] = _answers(sock, 1)
        error = orjson.loads(body)["error"]
        assert status == 400 and error["code"] == "VALIDATION_ERROR" and headers["connection"] == "close"
        assert "malformed HTTP request" in error["message"]
        assert _closed(sock)


def test_lean_server_ignores_an_upgrade_answers_plain_http_and_closes(lean):
    server = lean()
    with server.connect() as sock:
        sock.sendall(_request("GET", "/v1/healthz", b"", "Upgrade: websocket", "Connection: Upgrade"))
        [(status, headers, body)] = _answers(sock, 1)
        assert status == 200 and orjson.loads(body)["status"] == "ok" and headers["connection"] == "close"
        assert _closed(sock)


def test_lean_server_times_out_slow_requests_and_closes_idle_connections(lean, monkeypatch):
    from simulator.upstreams import httpd

    server = lean()
    with server.connect() as slow, server.connect() as idle:
        slow.sendall(b"POST /registry/v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        idle.sendall(_request("GET", "/v1/healthz"))
        assert _answers(idle, 1)[0][0] == 200
        server.sweep()  # within the limits: nothing happens
        monkeypatch.setattr(httpd, "REQUEST_TIMEOUT_S", -1.0)
        monkeypatch.setattr(httpd, "KEEP_ALIVE_S", -1.0)
        server.sweep()
        [(status, _, body)] = _answers(slow, 1)
        assert status == 408 and orjson.loads(body)["error"]["code"] == "REQUEST_TIMEOUT"
        assert _closed(slow) and _closed(idle)


def test_outbox_rings_are_left_out_of_the_garbage_collectors_scans():
    import gc

    outbox = Outbox(per_recipient=3, max_recipients=100)
    for i in range(500):
        outbox.add(Message("sms", f"0812{i % 50:08d}", float(i), float(i), f"{1000 + i}", "kode"))
    gc.collect()
    gc.collect()  # a tuple is untracked once the tuples it holds are: it may take a second pass
    untracked = [not gc.is_tracked(ring) for ring in outbox._rings.values()]
    assert len(untracked) == 50 and all(untracked)
    assert [m.code for m in outbox.delivered("081200000007", now=1e9)] == ["1457", "1407", "1357"]


def _mail(
    subject: str, plain: str | None, html_body: str | None = None, attachment: str | None = None
) -> bytes:
    message = EmailMessage()
    message["From"] = "Prakérja Résmi <noreply@prakerja.invalid>"
    message["Subject"] = subject
    if plain is not None:
        message.set_content(plain, cte="quoted-printable")
        if html_body is not None:
            message.add_alternative(html_body, subtype="html")
    else:
        message.set_content(html_body, subtype="html", cte="base64")
    if attachment is not None:
        message.add_attachment(attachment, filename="note.txt")
    return message.as_bytes()


@pytest.mark.parametrize(
    "raw, subject, text",
    [
        (
            _mail("Verifikasi email", "Kode OTP: 700001\nBerlaku", "<b>700001</b>"),
            "Verifikasi email",
            "Kode OTP: 700001 Berlaku",
        ),
        (
            _mail("Kode verifikasi — Prakerja ✓ " * 4, "Kode é 123456"),
            ("Kode verifikasi — Prakerja ✓ " * 4).strip(),
            "Kode é 123456",
        ),
        (_mail("html", None, "<p>Kode &amp; OTP: <b>4321</b></p>"), "html", "Kode & OTP: 4321"),
        (_mail("attached", "kode 9999", attachment="kode 5555"), "attached", "kode 9999"),
        (
            b"Subject: =?utf-8?q?Kode_OTP?=\r\nContent-Type: text/plain; charset=latin-1\r\n\r\n"
            b"Kode \xe9 7777",
            "Kode OTP",
            "Kode é 7777",
        ),
        (b"Subject: odd\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nkode 8888", "odd", "kode 8888"),
    ],
)
def test_email_text_decodes_subjects_charsets_and_picks_the_body_not_attachments(raw, subject, text):
    from simulator.upstreams.smtp import email_text

    got_subject, got_text, sender = email_text(raw)
    assert (got_subject, got_text) == (subject, text)
    assert sender in (None, "Prakérja Résmi <noreply@prakerja.invalid>")
