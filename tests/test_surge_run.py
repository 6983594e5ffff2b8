"""The surge end to end against the reference API: master + 2 workers, the CLI, the demo (one process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.api.testing import free_port, running_server
from simulator.errors import UnsafeTarget
from simulator.io.population import write_population
from simulator.surge.runner import check_target

pytestmark = pytest.mark.slow

# ~30 arrivals in 6 s, quick journeys, a first-come-first-served wave of 5 places.
TINY = """
[scenario]
name = "tiny"
description = "test: a few dozen journeys in six seconds"
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

IMPOSSIBLE = """
[[slo]]
metric = "latency_ms"
stat = "p50"
max = 0.001
name = "answers in a microsecond"
"""


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    directory = tmp_path_factory.mktemp("surge-pop")
    write_population(directory, 120, 7, fmt="parquet")
    return directory


def scenario_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY + extra, encoding="utf-8")
    return path


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def check_consistent(data: dict) -> None:
    arrivals = data["arrivals"]
    assert arrivals["started"] == arrivals["scheduled"] > 10
    assert sum(data["journeys"]["outcomes"].values()) == arrivals["scheduled"]
    assert data["reconciliation"]["available"] and data["reconciliation"]["ok"], data["reconciliation"]
    wave = data["reconciliation"]["wave"]
    assert wave["mode"] == "fcfs" and wave["joined"] <= wave["quota"] == 5
    for step in data["steps"].values():
        assert step["latency_ms"]["p50"] <= step["latency_ms"]["p99"] <= step["latency_ms"]["max"]


def test_master_and_two_workers_split_the_run_and_a_breached_slo_exits_1(tmp_path, population):
    out = tmp_path / "out"
    port = free_port()
    cli = [sys.executable, "-m", "simulator.cli", "surge"]
    with running_server(registry_dir=population, password_cost=0) as host:
        master = subprocess.Popen(
            cli
            + [
                "--scenario",
                str(scenario_file(tmp_path, IMPOSSIBLE)),
                "--host",
                host,
                "--population",
                str(population),
                "--out",
                str(out),
                "--master",
                "--expect-workers",
                "2",
                "--master-bind-port",
                str(port),
                "--progress",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        workers = [
            subprocess.Popen(
                cli + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            stdout, stderr = master.communicate(timeout=150)
        finally:
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
    assert master.returncode == 1, stderr[-3000:]  # the impossible latency threshold
    data = report_of(out)
    assert data["exit_code"] == 1 and data["status"] == "complete"
    assert data["summary"]["workers"] == 2
    check_consistent(data)
    verdicts = {t["label"]: t["status"] for t in data["thresholds"]}
    assert verdicts == {
        "reconciliation <= 0": "pass",
        "dropped_arrivals <= 0.5": "pass",
        "answers in a microsecond": "fail",
    }
    assert "SLO FAIL    answers in a microsecond" in stdout and "(2 load generator(s))" in stdout
    # More people reach the join than the wave has places (seed 7): first come, first served,
    # the rest are told WAVE_FULL, which their journey predicts.
    joins = data["steps"]["join"]["outcomes"]
    assert joins["201"] == 5 and joins["409 WAVE_FULL"] == sum(joins.values()) - 5 > 0
    assert data["summary"]["unexpected_errors"] == 0, data["errors"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and 'src="http' not in html and "<link" not in html  # self-contained
    assert "Arrivals: scheduled vs achieved" in html and "Server reconciliation" in html


def test_non_loopback_target_is_refused_without_the_flag():
    with pytest.raises(UnsafeTarget, match="--allow-remote"):
        check_target("http://10.1.2.3:8000", allow_remote=False)
    assert check_target("http://10.1.2.3:8000/", allow_remote=True) == "http://10.1.2.3:8000"
    assert check_target("http://localhost:8000", allow_remote=False) == "http://localhost:8000"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "surge",
            "--scenario",
            "smoke",
            "--host",
            "http://192.0.2.10:8000",
            "--out",
            "unused",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "--allow-remote" in run.stderr and "Traceback" not in run.stderr


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("quota = 5", "quota = -1"), encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "surge",
            "--scenario",
            str(bad),
            "--host",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and f"{bad}: key 'wave.quota'" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    unreachable = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "surge",
            "--scenario",
            "smoke",
            "--host",
            f"http://127.0.0.1:{free_port()}",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert unreachable.returncode == 3 and "cannot connect" in unreachable.stderr


def test_demo_runs_on_embedded_defaults_and_leaves_nothing_where_it_is_run(tmp_path):
    import re
    import shutil
    import tempfile

    run = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    found = re.search(r"^  report    (.+report\.html)$", run.stdout, re.M)
    assert found, run.stdout + run.stderr[-3000:]
    out = Path(found.group(1)).parent
    try:
        assert list(tmp_path.iterdir()) == [], "the demo left files where it was run"
        assert out.parent == Path(tempfile.gettempdir()) and f"demo: the report goes to {out}" in run.stderr
        data = report_of(out)
        # The exit code is the thresholds' verdict; the ones that do not depend on this machine's
        # speed hold on the reference API (the latency bound may fail on a loaded machine).
        verdicts = {t["label"]: t["status"] for t in data["thresholds"]}
        assert run.returncode == data["exit_code"] == (1 if "fail" in verdicts.values() else 0)
        assert verdicts["unexpected errors under 1% of requests"] == "pass", data["errors"]
        assert verdicts["client successes equal server commits"] == "pass"
        assert data["reconciliation"]["ok"] and data["arrivals"]["started"] == data["arrivals"]["scheduled"]
        assert data["summary"]["workers"] == 1 and data["journeys"]["outcomes"]["completed"] > 20
        assert sum(data["journeys"]["outcomes"].values()) == data["arrivals"]["scheduled"]
        assert (out / "ktp-samples").is_dir() and (out / "report.html").is_file()
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_a_second_run_on_the_same_server_moves_past_the_applicants_it_holds(tmp_path):
    from simulator.surge.runner import SurgeOptions, run_surge
    from simulator.surge.scenario import load_scenario
    from simulator.surge.schedule import build_schedule

    scenario = scenario_file(tmp_path)
    count = len(build_schedule(load_scenario(scenario)))
    population = tmp_path / "pop"
    write_population(population, 2 * count + 3, 7, fmt="parquet")  # room for two runs, not three
    with running_server(registry_dir=population, password_cost=0) as host:
        reports = []
        for n in (1, 2):
            lines: list[str] = []
            options = SurgeOptions(
                scenario=scenario, out=tmp_path / f"run{n}", host=host, population=population, progress_s=0
            )
            reports.append(run_surge(options, say=lines.append).data)
        third = subprocess.run(
            [sys.executable, "-m", "simulator.cli", "surge", "--scenario", str(scenario), "--host", host]
            + ["--population", str(population), "--out", str(tmp_path / "run3")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    first, second = reports
    assert first["meta"]["params"]["skip_applicants"] == 0
    skip = second["meta"]["params"]["skip_applicants"]
    assert skip == count  # file order: the first run used applicants 0 .. count-1
    assert f"this run starts at applicant #{skip:,} (as with --skip-applicants {skip})" in "\n".join(lines)
    # Fresh people: sign-ups succeed, and no one is refused as already registered unexpectedly.
    assert second["steps"]["create_account"]["outcomes"]["201"] > count // 2
    assert second["summary"]["unexpected_errors"] == 0, second["errors"]
    # Not enough fresh applicants left for a third run: one line that says what to do.
    assert third.returncode == 2 and "Traceback" not in third.stderr
    assert third.stderr.strip().splitlines()[-1].startswith(f"error: {host} already holds the applicants of")
    assert f"prakerja-sim population --size {count + 2 * count:,}" in third.stderr


def test_faults_become_reference_api_settings():
    import math

    from simulator.api.settings import Settings
    from simulator.surge.runner import fault_serve_options, fault_settings
    from simulator.surge.scenario import Faults, load_scenario

    settings = Settings.from_mapping(fault_settings(load_scenario("dukcapil-slow").faults))
    assert settings.registry_error_rate == 0.05
    assert settings.registry_latency.kind == "lognormal" and settings.registry_latency.a == 600
    # The log-normal's p99 is the scenario's: median * exp(z99 * sigma).
    assert 600 * math.exp(2.3263 * settings.registry_latency.b) == pytest.approx(6000, rel=1e-3)
    options = fault_serve_options(Faults(sms_loss_rate=0.1, email_delay_s=2.0))
    assert options == ["--sms-loss-rate", "0.1", "--email-delay", "lognormal:2000,0.5"]


def plain_locust(host: str, scenario: Path, out: Path, *extra: str) -> list[str]:
    """`locust -f loadtests/locustfile.py` as a user types it, on the installed locustfile."""
    from simulator.surge.runner import locustfile_path

    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile_path()), "--host", host]
    return cmd + ["--surge-scenario", str(scenario), "--surge-out", str(out), "--surge-progress", "0", *extra]


def test_locustfile_runs_from_locusts_web_ui(tmp_path, population):
    # The Locust-native path as a user takes it: nothing done beforehand (the wave is not open),
    # "start" pressed with the form as it comes (users and ramp-up at 0), the report at the end.
    import time
    import urllib.parse
    import urllib.request

    web_port = free_port()
    out = tmp_path / "webui"
    with running_server(registry_dir=population, password_cost=0) as host:
        locust = subprocess.Popen(
            plain_locust(host, scenario_file(tmp_path), out, "--surge-population", str(population))
            + ["--web-host", "127.0.0.1", "--web-port", str(web_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:  # wait for the web UI, then press "start" as a user would
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/", timeout=5) as r:
                        page = r.read().decode()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "Locust's web UI did not come up"
                    time.sleep(0.5)
            # The form explains itself: the surge's options are there, users/ramp-up greyed out at 0.
            assert '"hide_common_options": true' in page and "surge_scenario" in page
            form = urllib.parse.urlencode({"user_count": 0, "spawn_rate": 0, "host": host}).encode()
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/swarm", data=form, timeout=5) as r:
                assert json.load(r)["success"]
            while not (out / "report.json").is_file():
                assert time.monotonic() < deadline + 90, "the web UI run never wrote its report"
                time.sleep(0.5)
        finally:
            locust.terminate()
            _, stderr = locust.communicate(timeout=30)
    data = report_of(out)
    assert data["status"] == "complete", stderr[-2000:]
    assert "opened wave 3 (fcfs, quota 5)" in stderr  # as `surge` does before the first arrival
    check_consistent(data)
    assert data["journeys"]["funnel"]["join"] >= 1  # people got into the wave
    assert data["summary"]["unexpected_errors"] == 0, data["errors"]
    assert (out / "report.html").is_file()


def test_plain_headless_locust_opens_the_wave_reports_and_exits_like_surge(tmp_path, population):
    out = tmp_path / "headless"
    with running_server(registry_dir=population, password_cost=0) as host:
        run = subprocess.run(
            plain_locust(host, scenario_file(tmp_path, IMPOSSIBLE), out, "--headless")
            + ["--surge-population", str(population)],
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert "opened wave 3 (fcfs, quota 5)" in run.stderr
    data = report_of(out)
    assert run.returncode == data["exit_code"] == 1, run.stderr[-3000:]  # the impossible threshold
    check_consistent(data)
    assert "SLO FAIL    answers in a microsecond" in run.stderr  # the same summary as `surge`


def test_plain_locust_refuses_a_non_loopback_host(tmp_path):
    run = subprocess.run(
        plain_locust(
            "http://registration.invalid:8000", scenario_file(tmp_path), tmp_path / "o", "--headless"
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert (
        "surge: error: --host (a surge is real load on a real system) would connect to "
        "'registration.invalid'" in run.stderr
    )
    assert "pass --surge-allow-remote (and have the owner's permission) if you mean it" in run.stderr
    assert not (tmp_path / "o" / "report.json").exists()
    raw = json.loads((tmp_path / "o" / "surge-raw.json").read_text(encoding="utf-8"))
    assert raw["status"] == "failed" and raw["error"].startswith("--host (a surge is real load")


def test_a_request_unanswered_within_the_client_timeout_is_a_timeout(tmp_path, population):
    # The identity registry answers in 2 s; the client waits 0.5 s: every identity check times out.
    scenario = scenario_file(tmp_path, "\n[target]\ntimeout_s = 0.5\n")
    with running_server(registry_dir=population, password_cost=0, registry_latency="fixed:2000") as host:
        result = run_surge_quietly(scenario, host, population, tmp_path / "out")
    identity = result.data["steps"]["identity"]["outcomes"]
    assert identity.get("0 TIMEOUT", 0) > 0, identity
    assert not any("CONNECTION_ERROR" in answer for answer in identity)
    everywhere = sum(step["outcomes"].get("0 TIMEOUT", 0) for step in result.data["steps"].values())
    assert result.data["summary"]["timeouts"] == everywhere >= identity["0 TIMEOUT"]
    assert f"timeouts {everywhere:,}" in result.summary


def run_surge_quietly(scenario: Path, host: str, population: Path, out: Path):
    from simulator.surge.runner import SurgeOptions, run_surge

    options = SurgeOptions(scenario=scenario, out=out, host=host, population=population, progress_s=0)
    return run_surge(options, say=lambda _line: None)
