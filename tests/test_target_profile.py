"""Target profiles: the format's one-line errors, templates and keeps, a made-up cookie + CSRF API
with errors inside 200 answers driven by a profile alone, --check-profile, and the reference profile
(the default) driving a surge against `serve` with reconciliation OK."""

from __future__ import annotations

import datetime as dt
import http.cookies
import http.server
import json
import re
import secrets
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from simulator.errors import InvalidInputFile
from simulator.surge.profile.format import load_profile, parse_profile
from simulator.surge.profile.template import compile_extractor, compile_template, compile_value, render_value
from simulator.surge.scenario import STEPS, parse_scenario

REFERENCE = Path(__file__).parent.parent / "simulator" / "surge" / "profiles" / "reference.toml"

# ~30 arrivals in 6 s (tests/test_surge_run.py's TINY), with room for a [target] key.
SCENARIO = """
[scenario]
name = "tiny-profile"
seed = 7

[target]
{target}

[wave]
number = 3
quota = 5
selection = "fcfs"
opens_at = 2020-11-02T12:00:00+07:00
duration_h = 1.0

[replay]
length_s = 60.0
time_scale = 10.0
drain_s = 8.0

[arrivals]
expected_total = 100.0
pre_open_crowd = 15.0
crowd_release_s = 10.0
decay_half_life_h = 0.5
baseline_per_s = 0.01

[funnel]
otp_poll_s = 0.2
otp_wait_s = 8.0
retry_backoff_s = 5.0

[funnel.think_s]
create_account = 1.0
verify_email = 1.0
login = 1.0
identity = 1.0
profile = 1.0
ktp_upload = 1.0
phone = 1.0
verify_phone = 1.0
test = 2.0
join = 1.0

[[slo]]
metric = "reconciliation"
max = 0
"""


def scenario_text(target: str = "") -> str:
    return SCENARIO.replace("{target}", target)


MINIMAL = """
[profile]
name = "t"

[[step]]
name = "create_account"
method = "POST"
path = "/accounts"
json = { email = "{applicant.email}" }
keep = { id = "json:/id" }
"""


def bad(text: str) -> str:
    with pytest.raises(InvalidInputFile) as err:
        parse_profile(text, "my.toml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("my.toml")
    return message


# -- the format --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        (('name = "t"', "name = 3"), "profile.name", "a string"),
        (('name = "t"', 'name = "t"\nversion = 2'), "profile.version", "1 (the only profile version"),
        (('method = "POST"', 'method = "FETCH"'), "step[0].method", 'one of "GET"'),
        (('path = "/accounts"', 'path = "accounts"'), "step[0].path", "a path starting with /"),
        (("{applicant.email}", "{applicant.emial}"), "step[0].json", "an applicant column"),
        (("{applicant.email}", "{kept.nothing}"), "step[0].json", "kept by an earlier step"),
        (("{applicant.email}", "{secret}"), "step[0].json", "fields applicant.COLUMN"),
        (("json:/id", "xml:/id"), "step[0].keep.id", "json:/POINTER, header:NAME"),
        (("json:/id", "json:id"), "step[0].keep.id", "a JSON pointer starting with /"),
        (("json:/id", "regex:(["), "step[0].keep.id", "a regular expression"),
        (("keep = {", "colour = 1\nkeep = {"), "step[0].colour", None),
        (("json = {", "form = { a = 1 }\njson = {"), "step[0].form", "one body only (already json)"),
    ],
)
def test_each_bad_key_is_one_line_naming_file_and_key(change, key, expected):
    message = bad(MINIMAL.replace(*change))
    assert f"'{key}'" in message, message
    if expected:
        assert expected in message, message


def test_more_bad_profiles_name_their_key():
    assert "'step'" in bad('[profile]\nname = "t"\n')
    assert "at least one step named after a planned step" in bad(
        MINIMAL.replace('"create_account"', '"signup"')
    )
    assert "'step[0].refusals.GAGAL'" in bad(MINIMAL + '[step.refusals]\nGAGAL = "NOT_A_REASON"\n')
    assert "'step[0].success.status'" in bad(MINIMAL + "[step.success]\nstatus = [700]\n")
    assert "'step[0].success.equals'" in bad(MINIMAL + '[step.success]\nequals = "ok"\n')
    assert "'session.kind'" in bad(MINIMAL + '[session]\nkind = "kerberos"\n')
    assert "'session.csrf.from'" in bad(
        MINIMAL + '[session]\nkind = "cookie"\ncsrf = { header = "X", from = "query:x" }\n'
    )
    assert "'session.token'" in bad(MINIMAL + '[session]\nkind = "bearer"\ntoken = "{kept.jwt}"\n')
    assert "'session.token'" in bad(MINIMAL + '[session]\ntoken = "{kept.id}"\n')  # a cookie session
    assert "[otp.email]" in bad(MINIMAL.replace("{applicant.email}", "{otp.email}"))
    assert "'otp.email.source'" in bad(MINIMAL + '[otp.email]\nsource = "pigeon"\n')
    assert "'reconcile.source'" in bad(MINIMAL + '[reconcile]\nsource = "trust-me"\n')
    assert "'step[1].resend'" in bad(
        MINIMAL + '[[step]]\nname = "verify_email"\nmethod = "POST"\npath = "/v"\nresend = "nope"\n'
    )
    assert "'wave.open'" in bad(MINIMAL + "[wave]\nopen = 3\n")
    assert "unknown key 'colour'" in bad("colour = 1\n" + MINIMAL)
    assert "not valid TOML" in bad("[profile\n")


def test_a_missing_profile_file_is_one_line(tmp_path):
    with pytest.raises(InvalidInputFile, match="no such target profile file"):
        load_profile(tmp_path / "nope.toml")


def test_the_reference_profile_ships_covers_every_planned_step_and_is_the_default():
    profile = load_profile()
    assert profile.source == "builtin:reference" and profile.order == STEPS
    assert load_profile("reference") == profile and load_profile(REFERENCE).steps == profile.steps
    assert profile.reconcile["source"] == "admin-stats" and profile.wave_open.kind == "reference"
    verify_phone = profile.groups["verify_phone"][0]
    assert verify_phone.otp == "sms" and verify_phone.resend == "phone"
    assert profile.groups["ktp_upload"][0].upload == "file"


def test_added_steps_belong_to_a_planned_step_and_steps_may_be_reordered_or_left_out():
    profile = parse_profile(
        """
[profile]
name = "t"
[[step]]
name = "form_page"
method = "GET"
path = "/form"
[[step]]
name = "create_account"
method = "POST"
path = "/a"
[[step]]
name = "phone"
method = "POST"
path = "/p"
[[step]]
name = "identity"
method = "POST"
path = "/i"
[[step]]
name = "receipt"
method = "GET"
path = "/r"
""",
        "t.toml",
    )
    assert profile.order == ("create_account", "phone", "identity")  # reordered; login etc. left out
    assert [s.name for s in profile.groups["create_account"]] == ["form_page", "create_account"]
    assert [s.name for s in profile.groups["identity"]] == ["identity", "receipt"]
    assert not profile.groups["create_account"][0].own and profile.groups["create_account"][1].own


def test_the_scenario_key_target_profile_is_relative_to_the_scenario_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "s.toml"
    text = scenario_text('target_profile = "mine.toml"')
    scenario = parse_scenario(text, str(path))
    assert scenario.target.target_profile == str((tmp_path / "sub" / "mine.toml").resolve())
    assert (
        parse_scenario(scenario_text('target_profile = "reference"'), str(path)).target.target_profile
        == "reference"
    )


# -- templates and keeps -----------------------------------------------------------------------
def test_templates_keep_types_when_whole_and_fall_back_to_alternatives():
    values = {
        "applicant.full_name": "SITI",
        "applicant.birth_date": dt.date(1990, 5, 17),
        "applicant.postal_code": None,
        "applicant.address": "",
        "kept.id": 42,
        "answers": ["A", "B"],
    }.get
    body = compile_value(
        {
            "name": "{applicant.full_name}",
            "born": "{applicant.birth_date}",
            "postal": "{applicant.postal_code}",
            "address": '{applicant.address|"-"}',
            "path": "/a/{kept.id}/b",
            "answers": "{answers}",
            "both": "{kept.id}-{applicant.full_name}",
        }
    )
    assert render_value(body, values) == {
        "name": "SITI",
        "born": "1990-05-17",
        "postal": None,
        "address": "-",
        "path": "/a/42/b",
        "answers": ["A", "B"],
        "both": "42-SITI",
    }
    assert (
        compile_template("{applicant.domicile_province_code|applicant.province_code}").render(
            {"applicant.province_code": "32"}.get
        )
        == "32"
    )


def test_extractors_read_json_pointers_headers_cookies_and_html():
    content = b'{"data": {"items": [{"id": "x1"}], "a/b": 7}, "error": {"code": "EMAIL_TAKEN"}}'
    body = lambda: json.loads(content)  # noqa: E731
    headers = {"Location": "/v1/accounts/9"}
    cookies = {"sid": "s3cret"}.get
    read = lambda spec: compile_extractor(spec).read(content, body, headers, cookies)  # noqa: E731
    assert read("json:/data/items/0/id") == "x1"
    assert read("json:/data/a~1b") == 7
    assert read("json:/error/code") == "EMAIL_TAKEN"
    assert read("json:/data/items/3/id") is None and read("json:/nothing/here") is None
    assert read("header:Location") == "/v1/accounts/9" and read("header:X-None") is None
    assert read("cookie:sid") == "s3cret" and read("cookie:other") is None
    html = b'<form><input type="hidden" name="csrf" value="tok-123"></form>'
    regex = compile_extractor('regex:name="csrf" value="([^"]+)"')
    assert regex.read(html, lambda: None, {}, cookies) == "tok-123"
    assert regex.read(b"<p>none</p>", lambda: None, {}, cookies) is None


# -- a made-up API: form bodies, cookie session, CSRF from a cookie, errors inside 200 answers --
class MadeUpApi(http.server.BaseHTTPRequestHandler):
    accounts: dict[str, int] = {}
    sessions: dict[str, str] = {}
    joined: list[str] = []
    from_python = 0  # identity requests that carried the subclass's header
    lock = threading.Lock()

    def log_message(self, *_args):  # quiet
        pass

    def cookies(self) -> dict[str, str]:
        jar = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        return {k: v.value for k, v in jar.items()}

    def form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        return dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))

    def answer(self, body, status=200, cookies=(), headers=()):
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in cookies:
            self.send_header("Set-Cookie", f"{name}={value}; Path=/")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        if self.path == "/daftar":
            token = secrets.token_hex(8)
            page = f'<form method="post"><input type="hidden" name="csrf" value="{token}"></form>'
            return self.answer(page, cookies=[("csrftoken", token)])
        return self.answer({"status": "gagal", "kode": "TIDAK_ADA"}, 404)

    def do_POST(self):
        cookies, form = self.cookies(), self.form()
        if self.path == "/daftar":
            if not form.get("csrf") or form.get("csrf") != cookies.get("csrftoken"):
                return self.answer({"status": "gagal", "kode": "CSRF_SALAH"})
            with self.lock:
                if form["surel"] in self.accounts:
                    return self.answer({"status": "gagal", "kode": "EMAIL_SUDAH_TERDAFTAR"})
                self.accounts[form["surel"]] = len(self.accounts) + 1
                sid = secrets.token_hex(8)
                self.sessions[sid] = form["surel"]
            number = self.accounts[form["surel"]]
            return self.answer(
                {"status": "ok", "data": {"id": number}},
                cookies=[("sid", sid)],
                headers=[("X-Akun", f"/akun/{number}")],
            )
        email = self.sessions.get(cookies.get("sid", ""))
        if email is None:
            return self.answer({"status": "gagal", "kode": "SESI_HABIS"})
        if self.headers.get("X-CSRF-Token") != cookies.get("csrftoken"):
            return self.answer({"status": "gagal", "kode": "CSRF_SALAH"})
        if self.path == "/identitas":
            if self.headers.get("X-Dari-Python"):
                with self.lock:
                    MadeUpApi.from_python += 1
            ok = re.fullmatch(r"\d{16}", form.get("nik", "")) and form.get("tgl_lahir")
            return self.answer({"status": "ok"} if ok else {"status": "gagal", "kode": "NIK_SALAH"})
        if self.path.startswith("/gabung/"):
            with self.lock:
                self.joined.append(email)
            return self.answer({"status": "ok", "gelombang": self.path.rsplit("/", 1)[1]})
        return self.answer({"status": "gagal", "kode": "TIDAK_ADA"}, 404)


MADE_UP_PROFILE = """
[profile]
name = "made-up"
description = "form bodies, a cookie session, CSRF from a cookie, errors inside 200 answers"

[defaults]
success = { status = [200], json = "/status", equals = "ok" }
refusal_code = "json:/kode"
idempotency_header = ""

[defaults.refusals]
EMAIL_SUDAH_TERDAFTAR = "EMAIL_TAKEN"
NIK_SALAH = "NIK_MALFORMED"

[session]
kind = "cookie"
csrf = { header = "X-CSRF-Token", from = "cookie:csrftoken" }

[reconcile]
source = "off"

[[step]]
name = "form_page"
method = "GET"
path = "/daftar"
success = { status = [200] }
keep = { csrf = 'regex:name="csrf" value="([^"]+)"' }

[[step]]
name = "create_account"      # sign-up returns the session: no login step
method = "POST"
path = "/daftar"
keep = { account = "json:/data/id", sid = "cookie:sid", where = "header:X-Akun" }
[step.form]
nama = "{applicant.full_name}"
surel = "{applicant.email}"
sandi = "{password}"
csrf = "{kept.csrf}"

[[step]]
name = "identity"
method = "POST"
path = "/identitas"
form = { nik = "{applicant.nik}", tgl_lahir = "{applicant.birth_date}" }

[[step]]
name = "join"
method = "POST"
path = "/gabung/{wave}"
"""


@pytest.fixture(scope="module")
def made_up_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MadeUpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    from simulator.io.population import write_population

    directory = tmp_path_factory.mktemp("profile-pop")
    write_population(directory, 120, 7, fmt="parquet")
    return directory


def check(scenario: Path, host: str, profile: Path | str, population: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "surge",
            "--check-profile",
            "--scenario",
            str(scenario),
            "--host",
            host,
            "--target-profile",
            str(profile),
            "--population",
            str(population),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_profile_walks_a_cookie_csrf_api_and_maps_its_refusal_inside_a_200(
    tmp_path, made_up_api, population
):
    scenario = tmp_path / "s.toml"
    scenario.write_text(scenario_text(), encoding="utf-8")
    profile = tmp_path / "made-up.toml"
    profile.write_text(MADE_UP_PROFILE, encoding="utf-8")
    first = check(scenario, made_up_api, profile, population)
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert any(re.search(r"form_page\s+GET\s+/daftar -> 200", line) for line in lines), first.stdout
    assert any(re.search(r"create_account\s+POST\s+/daftar -> 200$", line) for line in lines), first.stdout
    assert any(re.search(r"kept csrf = [0-9a-f]{16}$", line) for line in lines)
    assert any(re.search(r"kept where = /akun/\d+$", line) for line in lines)
    assert any(re.search(r"kept sid = [0-9a-f]{16}$", line) for line in lines)
    assert any(
        re.search(r"join\s+POST\s+/gabung/3 -> 200$", line) for line in lines
    )  # {wave} of the scenario
    assert "check-profile: ok: 3 planned steps (create_account, identity, join)" in first.stdout
    assert len(MadeUpApi.joined) == 1  # the session cookie and the CSRF header reached every step

    # The same applicant again: the API answers 200 with its own code inside, mapped to ours.
    again = check(scenario, made_up_api, profile, population)
    assert again.returncode == 1
    assert "create_account   POST   /daftar -> 200, refusal code EMAIL_TAKEN" in again.stdout
    error = again.stderr.strip().splitlines()
    assert len(error) == 1 and error[0] == (
        f"check-profile: failed: {profile} [step 'create_account']: POST /daftar answered 200 EMAIL_TAKEN: "
        "expected status 200 and json:/status = 'ok'"
    ), again.stderr

    # Without the CSRF header the session is refused (inside a 200): the check names the step.
    no_csrf = tmp_path / "no-csrf.toml"
    no_csrf.write_text(
        MADE_UP_PROFILE.replace('header = "X-CSRF-Token", ', 'field = "csrf", ')
        .replace("EMAIL_SUDAH_TERDAFTAR", "X")
        .replace("{applicant.email}", "x{applicant.email}"),
        encoding="utf-8",
    )
    refused = check(scenario, made_up_api, no_csrf, population)
    assert refused.returncode == 1
    assert "[step 'identity']: POST /identitas answered 200 CSRF_SALAH" in refused.stderr, refused.stderr

    # The CSRF token taken from the form page's HTML (a kept value) instead of the cookie.
    from_html = tmp_path / "from-html.toml"
    from_html.write_text(
        MADE_UP_PROFILE.replace('from = "cookie:csrftoken"', 'from = "kept:csrf"').replace(
            "{applicant.email}", "z{applicant.email}"
        ),
        encoding="utf-8",
    )
    walked = check(scenario, made_up_api, from_html, population)
    assert walked.returncode == 0, walked.stdout + walked.stderr

    # Reordered (join before identity): the journey follows the profile's order.
    head, *blocks = MADE_UP_PROFILE.split("[[step]]")
    blocks[2], blocks[3] = blocks[3], blocks[2]
    reordered = tmp_path / "reordered.toml"
    reordered.write_text(
        "[[step]]".join([head, *blocks]).replace("{applicant.email}", "r{applicant.email}"), encoding="utf-8"
    )
    walked = check(scenario, made_up_api, reordered, population)
    assert walked.returncode == 0, walked.stdout + walked.stderr
    assert walked.stdout.index("/gabung/3 -> 200") < walked.stdout.index("/identitas -> 200")
    assert "3 planned steps (create_account, join, identity)" in walked.stdout

    # A kept value the answer lacks: one line naming the step and the key.
    lacking = tmp_path / "lacking.toml"
    lacking.write_text(
        MADE_UP_PROFILE.replace('account = "json:/data/id"', 'account = "json:/data/uuid"').replace(
            "{applicant.email}", "y{applicant.email}"
        ),
        encoding="utf-8",
    )
    missing = check(scenario, made_up_api, lacking, population)
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith(
        "[step 'create_account']: kept value 'account' (json:/data/uuid) is not in the answer"
    ), missing.stderr


def test_a_bad_profile_stops_check_profile_with_exit_2_and_one_line(tmp_path, made_up_api, population):
    scenario = tmp_path / "s.toml"
    scenario.write_text(scenario_text(), encoding="utf-8")
    profile = tmp_path / "bad.toml"
    profile.write_text(MADE_UP_PROFILE.replace('method = "GET"', 'method = "GRAB"'), encoding="utf-8")
    result = check(scenario, made_up_api, profile, population)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{profile}: key 'step[0].method': expected one of" in lines[0], result.stderr


SUBCLASS_LOCUSTFILE = """
import urllib.parse

from loadtests.journey import ApplicantJourney
from loadtests.shape import WaveOpening
from simulator.surge.controller import register


class MadeUpJourney(ApplicantJourney):
    def identity(self, intended):
        a = self.applicant
        if self.arrival % 3 == 0:
            raise KeyError("a bug in this step")  # counted as a failed journey, never completed
        body = urllib.parse.urlencode({"nik": a["nik"], "tgl_lahir": str(a["birth_date"])})
        self.call("identity", "POST", "/identitas", intended, data=body, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-CSRF-Token": self.cookie("csrftoken") or "",
            "X-Dari-Python": "1",
        })


register(lambda: MadeUpJourney)
__all__ = ["MadeUpJourney", "WaveOpening"]
"""


@pytest.mark.slow
def test_a_journey_subclass_replaces_one_step_under_plain_locust(tmp_path, made_up_api, population):
    scenario = tmp_path / "s.toml"
    scenario.write_text(scenario_text("open_wave = false"), encoding="utf-8")
    profile = tmp_path / "made-up.toml"
    profile.write_text(
        MADE_UP_PROFILE.replace("{applicant.email}", "sub-{applicant.email}"), encoding="utf-8"
    )
    locustfile = tmp_path / "made_up_locustfile.py"
    locustfile.write_text(SUBCLASS_LOCUSTFILE, encoding="utf-8")
    out = tmp_path / "out"
    before = MadeUpApi.from_python
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(locustfile),
            "--headless",
            "--host",
            made_up_api,
            "--surge-scenario",
            str(scenario),
            "--surge-target-profile",
            str(profile),
            "--surge-population",
            str(population),
            "--surge-out",
            str(out),
            "--surge-progress",
            "0",
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).parent.parent,
    )
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    identity = data["steps"]["identity"]
    assert identity["requests"] > 0, result.stderr[-2000:]
    assert MadeUpApi.from_python - before == identity["requests"]  # every identity request was Python's
    assert data["summary"]["unexpected_errors"] == 0, (data["steps"], result.stderr[-2000:])
    crashed = data["mismatches"].get("identity: the journey raised KeyError", 0)
    assert crashed > 0 and data["journeys"]["outcomes"].get("failed", 0) == crashed, data["mismatches"]
    assert "identity: the journey raised KeyError: 'a bug in this step'" in result.stderr
    # Malformed NIKs were refused inside 200 answers with the API's code, read as the profile says.
    predicted = identity["outcomes"].get("200 NIK_MALFORMED", 0)
    assert predicted == data["journeys"]["stopped_at"].get("identity", {}).get("refused", 0)
    assert not data["reconciliation"]["available"] and "not reconciled" in data["reconciliation"]["reason"]


# -- the reference profile against `serve` -----------------------------------------------------
@pytest.mark.slow
def test_check_profile_on_the_reference_api_and_a_wrong_path(tmp_path, population):
    from simulator.api.testing import running_server

    scenario = tmp_path / "s.toml"
    scenario.write_text(scenario_text(), encoding="utf-8")
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        REFERENCE.read_text(encoding="utf-8").replace('"/v1/sessions"', '"/v1/session"'), encoding="utf-8"
    )
    with running_server(registry_dir=population, password_cost=0) as host:
        ok = check(scenario, host, "reference", population)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        for step in STEPS:
            assert re.search(rf"\b{step}\s+(GET|POST|PUT)\s+/v1/\S* -> 20[0-2]$", ok.stdout, re.M), (
                step,
                ok.stdout,
            )
        assert re.search(r"kept token = \S+", ok.stdout)
        failed = check(scenario, host, wrong, population)  # a new applicant: the first is registered now
    assert failed.returncode == 1
    assert "create_account   POST   /v1/accounts -> 201" in failed.stdout
    assert failed.stderr.strip().splitlines()[-1] == (
        f"check-profile: failed: {wrong} [step 'login']: POST /v1/session answered 404 NOT_FOUND: "
        "expected a 2xx status"
    ), failed.stderr


@pytest.mark.slow
def test_the_reference_profile_drives_a_surge_with_reconciliation_ok_and_off_is_not_reconciled(
    tmp_path, population
):
    from simulator.api.testing import running_server
    from simulator.surge.runner import SurgeOptions, run_surge

    (tmp_path / "profiles").mkdir()
    off = tmp_path / "profiles" / "off.toml"
    off.write_text(
        REFERENCE.read_text(encoding="utf-8").replace('source = "admin-stats"', 'source = "off"'),
        encoding="utf-8",
    )
    default = tmp_path / "default.toml"
    default.write_text(scenario_text(), encoding="utf-8")
    keyed = tmp_path / "keyed.toml"
    keyed.write_text(scenario_text('target_profile = "profiles/off.toml"'), encoding="utf-8")
    with running_server(registry_dir=population, password_cost=0) as host:
        quiet = lambda _line: None  # noqa: E731
        first = run_surge(
            SurgeOptions(
                scenario=default, out=tmp_path / "a", host=host, population=population, progress_s=0
            ),
            say=quiet,
        )
        second = run_surge(
            SurgeOptions(
                scenario=keyed,
                out=tmp_path / "b",
                host=host,
                population=population,
                progress_s=0,
                skip_applicants=60,
            ),
            say=quiet,
        )
    data = first.data
    assert first.exit_code == 0, first.summary
    assert data["arrivals"]["started"] == data["arrivals"]["scheduled"] > 10
    outcomes = data["journeys"]["outcomes"]
    assert outcomes.get("completed", 0) > 0 and outcomes.get("failed", 0) == 0, outcomes
    assert data["reconciliation"]["available"] and data["reconciliation"]["ok"], data["reconciliation"]
    assert {s["step"] for s in data["reconciliation"]["steps"]} >= {"create_account", "join"}
    assert data["steps"]["join"]["requests"] > 0 and data["steps"]["ktp_upload"]["requests"] > 0

    off_data = second.data
    assert not off_data["reconciliation"]["available"] and not off_data["reconciliation"]["ok"]
    assert "not reconciled" in off_data["reconciliation"]["reason"]
    assert "not reconciled" in second.summary
    verdicts = {t["metric"]: t["status"] for t in off_data["thresholds"]}
    assert verdicts["reconciliation"] == "skipped"  # never "pass" without the server's counts


PLAN_CHECK = r'''
from gevent import monkey

monkey.patch_all()
from simulator.surge.profile.format import parse_profile

from types import SimpleNamespace

from simulator.surge.profile.journey import ProfileJourney

profile = parse_profile(
    """
[profile]
name = "plan"
version = 1

[session]
kind = "bearer"
token = "{kept.token}"

[[step]]
name = "create_account"
method = "POST"
path = "/daftar"
headers = { X-Client = "sim", X-Who = "{applicant.email}" }
json = { email = "{applicant.email}", kind = "new" }
keep = { token = "json:/token" }

[[step]]
name = "login"
method = "GET"
path = "/akun/{kept.token}"
""",
    "plan.toml",
)
sent = []
answer = SimpleNamespace(ok=True, content=b'{"token": "t-1"}', headers={})

class Recording(ProfileJourney):
    def call(self, name, method, path, intended, *, key=None, expect=None, **kwargs):
        sent.append((name, method, path, key, kwargs))
        return answer

generator = SimpleNamespace(profile=profile, run_id="run", metrics=None)
Recording.prepare_run(generator)
users = []
for arrival, email in ((4, "a@example.invalid"), (5, "b@example.invalid")):
    user = Recording.__new__(Recording)  # no Locust environment: only the request building
    user.generator, user.applicant, user.arrival = generator, {"email": email}, arrival
    user.kept, user.otp_codes, user.step_spec, user.python_spec = {}, {}, None, None
    user._parsed = (None, None)
    users.append(user)
create, login = profile.steps
for user in users:
    user.request(create, 0.0)
    user.request(login, 0.0)
(a_create, a_login, b_create, b_login) = sent
assert a_create[:4] == ("create_account", "POST", "/daftar", "run-4-create_account")
assert a_create[4]["headers"] == {"X-Client": "sim", "X-Who": "a@example.invalid"}
assert a_create[4]["json"] == {"email": "a@example.invalid", "kind": "new"}
assert b_create[3] == "run-5-create_account"
assert b_create[4]["headers"] == {"X-Client": "sim", "X-Who": "b@example.invalid"}
assert b_create[4]["json"] == {"email": "b@example.invalid", "kind": "new"}
assert a_create[4]["json"] is not b_create[4]["json"]  # a fresh body per request
# The GET carries no idempotency key; the token kept from the sign-up is in its path and header.
assert a_login[:4] == ("login", "GET", "/akun/t-1", None)
assert a_login[4]["headers"] == {"Authorization": "Bearer t-1"}
assert b_login[:4] == ("login", "GET", "/akun/t-1", None)
assert users[0].kept == {"token": "t-1"}
print("plan ok")
'''


def test_a_steps_request_is_built_from_its_plan_per_applicant_with_keys_only_on_writes():
    """What ProfileJourney.request hands to JourneyUser.call: literal headers and paths worked out
    once, templated ones per applicant, an idempotency key on writes only, a fresh body each time
    (in its own process: importing Locust monkey-patches the interpreter)."""
    run = subprocess.run([sys.executable, "-c", PLAN_CHECK], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "plan ok", run.stdout + run.stderr
