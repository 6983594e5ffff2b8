"""The reference API on the stand-ins (serve --registry-url / --sms-url / --smtp) and a smoke surge
that reads its OTPs from them and reports the upstream load beside the planner's forecast."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request

import pyarrow.parquet as pq
import pytest

from simulator.api.testing import running_server
from simulator.io.population import write_population
from simulator.surge.runner import SurgeOptions, run_surge
from simulator.upstreams.testing import running_upstreams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    directory = tmp_path_factory.mktemp("e2e-pop") / "pop"
    write_population(directory, 150, 20201102, fmt="parquet")
    return directory


@contextlib.contextmanager
def api_on_stand_ins(population, tmp_path):
    """The stand-ins, and the reference API using them (no built-in outbox: OTPs only go out)."""
    with (
        running_upstreams(population) as up,
        running_server(
            registry_url=up.registry_url,
            sms_url=up.sms_url,
            smtp=up.smtp,
            sandbox=False,
            password_cost=0,
            log_path=tmp_path / "api.log",
        ) as api,
    ):
        yield up, api


def request(base: str, method: str, path: str, body=None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body, default=str).encode()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(base + path, data, headers, method=method), timeout=30
        ) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def code_for(upstreams_url: str, to: str, channel: str) -> str:
    deadline = time.monotonic() + 60  # the relay is its own process; a loaded CI machine starts it late
    while time.monotonic() < deadline:
        _, answer = request(upstreams_url, "GET", f"/v1/sandbox/outbox?to={urllib.request.quote(to)}")
        codes = [m["code"] for m in answer["messages"] if m["channel"] == channel and m["code"]]
        if codes:
            return codes[0]
        time.sleep(0.1)
    raise AssertionError(f"no {channel} code for {to} reached the stand-ins")


def test_reference_api_checks_identity_and_sends_otps_through_the_stand_ins(population, tmp_path):
    person = next(
        a
        for a in pq.read_table(population / "applicants.parquet").to_pylist()
        if a["expected_outcome"] == "accept"
    )
    with api_on_stand_ins(population, tmp_path) as (up, api):
        status, account = request(
            api,
            "POST",
            "/v1/accounts",
            {
                "name": person["full_name"],
                "email": person["email"],
                "password": person["password"],
                "password_confirmation": person["password"],
            },
        )
        assert status == 201, account
        code = code_for(up.url, person["email"], "email")
        assert request(api, "POST", f"/v1/accounts/{account['id']}/email/verify", {"code": code})[0] == 200
        _, session = request(
            api, "POST", "/v1/sessions", {"email": person["email"], "password": person["password"]}
        )
        token = session["token"]
        status, refused = request(
            api,
            "PUT",
            "/v1/me/identity",
            {"nik": person["nik"], "kk": "3273020101000001", "birth_date": person["birth_date"]},
            token,
        )
        assert status == 422 and refused["error"]["code"] == "NIK_KK_MISMATCH"
        identity = {"nik": person["nik"], "kk": person["kk"], "birth_date": person["birth_date"]}
        status, answer = request(api, "PUT", "/v1/me/identity", identity, token)
        assert status == 200 and answer["verified"], answer
        profile = {
            k: person[k]
            for k in (
                "address",
                "rt_rw",
                "village",
                "district",
                "regency",
                "province",
                "postal_code",
                "education",
                "employment_status",
            )
        }
        status, answer = request(api, "PUT", "/v1/me/profile", profile, token)
        if status == 200:
            assert request(api, "POST", "/v1/me/phone", {"phone": person["phone"]}, token)[0] == 202
            sms_code = code_for(up.url, person["phone"], "sms")
            assert request(api, "POST", "/v1/me/phone/verify", {"code": sms_code}, token)[0] == 200
        stats = request(up.url, "GET", "/v1/stats")[1]["services"]
        assert stats["registry"]["outcomes"] == {"NIK_KK_MISMATCH": 1, "MATCH": 1}
        assert stats["smtp"]["outcomes"] == {"accepted": 1}
        assert request(api, "GET", "/v1/sandbox/outbox?to=x@y.invalid")[0] == 404, "no built-in outbox here"


def test_smoke_surge_on_the_reference_api_using_the_stand_ins(population, tmp_path):
    out = tmp_path / "report"
    with api_on_stand_ins(population, tmp_path) as (up, api):
        result = run_surge(
            SurgeOptions(scenario="smoke", out=out, host=api, population=population, upstreams=up.url),
            say=lambda line: None,
        )
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert data["status"] == "complete"
    assert data["journeys"]["outcomes"].get("completed", 0) > 0, "OTPs came from the stand-ins"
    assert data["reconciliation"]["ok"], data["reconciliation"]
    upstreams = data["upstreams"]
    assert upstreams["available"]
    registry, smtp = upstreams["services"]["registry"], upstreams["services"]["smtp"]
    identity_requests = data["steps"]["identity"]["requests"]
    assert 0 < registry["calls"] <= identity_requests
    assert smtp["outcomes"]["accepted"] >= data["steps"]["create_account"]["outcomes"].get("201", 0) > 0
    assert registry["forecast"]["calls_per_s"] == pytest.approx(registry["forecast"]["step_requests_per_s"])
    assert "Upstreams" in (out / "report.html").read_text(encoding="utf-8")
    assert "upstream  registry" in result.summary


def test_surge_refuses_non_loopback_stand_ins_before_anything_runs(tmp_path):
    from simulator.errors import UnsafeTarget

    options = SurgeOptions(
        scenario="smoke", out=tmp_path, host="http://127.0.0.1:9", upstreams="http://up.invalid:8100"
    )
    with pytest.raises(
        UnsafeTarget,
        match="--upstreams .* would connect to 'up.invalid' \\(from --upstreams http://up.invalid:8100\\)",
    ):
        run_surge(options, say=lambda line: None)
