"""The harness drives a registration API it has never seen, with a target profile file alone.

The API is tests/foreign_api (forms, cookie session + CSRF, refusals inside 200 answers, its own
codes and paths, OTPs in its database); the profile is tests/foreign_api/profile.toml. Checked: the
profile walks one applicant (--check-profile), a smoke surge completes with every refusal
predicted by the population's defects and no unexpected error, reconciliation by SQL counts holds
(and agrees with the database), and a deliberately wrong profile fails with one clear line.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from foreign_api.runner import PROFILE, prepare_database, running_foreign

from simulator.io.population import write_population
from simulator.rules.reasons import Reason

pytestmark = pytest.mark.slow

try:
    import simulator.surge.profile  # noqa: F401 - the profile engine (wip/profile)

    ENGINE = None
except ImportError:  # pragma: no cover - before wip/profile is merged
    ENGINE = "needs the target-profile engine (simulator.surge.profile, branch wip/profile)"

if ENGINE:
    pytest.skip(ENGINE, allow_module_level=True)

# ~20 arrivals in 6 s, quick journeys, a first-come-first-served wave of 5 places (tests/test_surge_run.py).
TINY = """
[scenario]
name = "tiny-foreign"
description = "test: a few dozen journeys in six seconds against the Pendaftaran API"
seed = 7

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

[[slo]]
metric = "dropped_arrivals"
max = 0.5
"""
CLI = [sys.executable, "-m", "simulator.cli", "surge"]


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    directory = tmp_path_factory.mktemp("foreign-pop")
    write_population(directory, 120, 7, fmt="parquet")
    return directory


@pytest.fixture
def foreign(tmp_path, population, monkeypatch):
    """A fresh Pendaftaran API whose registry is the population's residents; the profile's sources
    find its database through PENDAFTARAN_DB_URL (the profile's url_env)."""
    db = prepare_database(tmp_path / "pendaftaran.db", population=population)
    monkeypatch.setenv("PENDAFTARAN_DB_URL", f"sqlite:///{db}")
    with running_foreign(db) as url:
        yield url


def surge(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


def test_check_profile_walks_one_applicant_through_every_step(tmp_path, foreign, population):
    done = surge(
        "--scenario",
        str(scenario_file(tmp_path)),
        "--host",
        foreign,
        "--population",
        str(population),
        "--target-profile",
        str(PROFILE),
        "--check-profile",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "GET    /daftar -> 200",
        "kept csrf = ",
        "POST   /daftar/konfirmasi -> 200",
        "POST   /akun/ktp -> 200",
        "POST   /gelombang/3/gabung -> 200",
    ):
        assert line in done.stdout, done.stdout
    assert "check-profile: ok" in done.stdout
    with sqlite3.connect(foreign.db) as conn:  # one applicant really went all the way
        assert conn.execute("SELECT COUNT(*) FROM peserta_gelombang WHERE gelombang = 3").fetchone()[0] == 1


def test_a_smoke_surge_predicts_every_refusal_and_reconciles_by_sql(tmp_path, foreign, population):
    out = tmp_path / "out"
    done = surge(
        "--scenario",
        str(scenario_file(tmp_path)),
        "--host",
        foreign,
        "--population",
        str(population),
        "--target-profile",
        str(PROFILE),
        "--out",
        str(out),
        "--progress",
        "0",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    arrivals, outcomes = report["arrivals"], report["journeys"]["outcomes"]
    assert arrivals["started"] == arrivals["scheduled"] > 10
    assert sum(outcomes.values()) == arrivals["scheduled"]
    # Refusals happened, and every one was predicted from the applicant's data: none failed.
    assert outcomes.get("refused", 0) > 0 and outcomes.get("failed", 0) == 0, outcomes
    assert not report["mismatches"], report["mismatches"]
    refusals = {
        label.split(" ", 1)[1]
        for step in report["steps"].values()
        for label in step["outcomes"]
        if " " in label
    }
    assert refusals and refusals <= {str(r) for r in Reason}, refusals  # their codes mapped onto ours
    assert all(step["unexpected_errors"] == 0 for step in report["steps"].values())
    # Reconciliation by the profile's SQL counts holds, and says what the database says.
    rec = report["reconciliation"]
    assert rec["available"] and rec["ok"], rec
    checked = {s["step"]: s for s in rec["steps"]}
    assert {"create_account", "verify_email", "identity", "ktp_upload", "verify_phone", "join"} <= set(
        checked
    )
    with sqlite3.connect(foreign.db) as conn:
        accounts = conn.execute("SELECT COUNT(*) FROM akun").fetchone()[0]
        joined = conn.execute("SELECT COUNT(*) FROM peserta_gelombang WHERE gelombang = 3").fetchone()[0]
        quota = conn.execute("SELECT kuota FROM gelombang WHERE nomor = 3").fetchone()[0]
    assert checked["create_account"]["committed"] == checked["create_account"]["acknowledged"] == accounts
    assert checked["join"]["committed"] == joined <= quota == 5


def test_a_wrong_profile_fails_with_one_clear_line(tmp_path, foreign, population):
    text = PROFILE.read_text(encoding="utf-8")
    scenario = str(scenario_file(tmp_path))
    common = ["--scenario", scenario, "--host", foreign, "--population", str(population)]

    # A refusal mapped onto a reason code we do not have: refused when the profile is read.
    bad_map = tmp_path / "bad-map.toml"
    bad_map.write_text(
        text.replace('KUOTA_PENUH = "WAVE_FULL"', 'KUOTA_PENUH = "QUOTA_GONE"'), encoding="utf-8"
    )
    done = surge(*common, "--target-profile", str(bad_map), "--check-profile")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad_map) in lines[0] and "KUOTA_PENUH" in lines[0], done.stderr

    # An OTP query on a table the database does not have: one line before any load.
    bad_otp = tmp_path / "bad-otp.toml"
    bad_otp.write_text(
        text.replace("FROM kode_otp WHERE saluran = 'sms'", "FROM sms_keluar WHERE saluran = 'sms'"),
        encoding="utf-8",
    )
    done = surge(*common, "--target-profile", str(bad_otp), "--out", str(tmp_path / "o"), "--progress", "0")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "key 'otp.sms.query'" in lines[0] and "sms_keluar" in lines[0], done.stderr
    assert not (tmp_path / "o" / "report.json").exists()  # refused before any load

    # A path the API does not have: --check-profile stops at that step, naming it.
    bad_path = tmp_path / "bad-path.toml"
    bad_path.write_text(text.replace('path = "/akun/identitas"', 'path = "/akun/identity"'), encoding="utf-8")
    done = surge(*common, "--target-profile", str(bad_path), "--check-profile")
    assert done.returncode != 0
    failure = [line for line in (done.stdout + done.stderr).splitlines() if "failed" in line]
    assert len(failure) == 1 and "identity" in failure[0] and "404" in failure[0], done.stdout + done.stderr
