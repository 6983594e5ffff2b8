"""Stopping a real surge with Ctrl-C, SIGTERM or SIGHUP: nothing left running, a report, exit 128 + N."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from simulator.api.testing import running_server
from simulator.io.population import write_population

pytestmark = pytest.mark.slow

# Arrivals keep coming for 40 s, so a stop a few seconds in always leaves most of them not yet due.
LONG = """
[scenario]
name = "long"
seed = 5

[wave]
number = 2
quota = 500
selection = "lottery"
opens_at = 2020-11-02T12:00:00+07:00
duration_h = 1.0

[replay]
length_s = 400.0
time_scale = 10.0
drain_s = 5.0
late_after_s = 5.0  # a busy test machine must not make a prompt arrival "late"

[arrivals]
expected_total = 300.0
decay_half_life_h = 10.0
baseline_per_s = 0.05

[funnel]
otp_poll_s = 0.2
otp_wait_s = 8.0

[[slo]]
metric = "dropped_arrivals"
max = 0
name = "kept up"
"""


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    directory = tmp_path_factory.mktemp("signals-pop")
    write_population(directory, 160, 5, fmt="parquet")
    return directory


def start_surge(tmp_path: Path, host: str, population: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Start `prakerja-sim surge` as a user would; return it once its load has started."""
    scenario = tmp_path / "long.toml"
    scenario.write_text(LONG, encoding="utf-8")
    cmd = [sys.executable, "-m", "simulator.cli", "surge", "--scenario", str(scenario), "--host", host]
    cmd += ["--population", str(population), "--out", str(tmp_path / "out"), "--progress", "0", *extra]
    # A session of its own, like a shell job: the signal goes to the surge alone, as `kill PID` does.
    surge = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    seen = ""
    deadline = time.monotonic() + 120
    while "surge: go" not in seen:
        line = surge.stderr.readline()
        if not line or time.monotonic() > deadline:
            surge.kill()
            pytest.fail(f"the surge never started its load:\n{seen}{surge.stderr.read()}")
        seen += line
    return surge, seen


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


@pytest.mark.parametrize(
    ("signum", "extra"),
    [
        (signal.SIGTERM, ()),
        (signal.SIGHUP, ("--processes", "2")),  # a master and two local workers: all must go
        (signal.SIGINT, ()),  # what Ctrl-C sends
    ],
    ids=["SIGTERM", "SIGHUP-processes-2", "SIGINT"],
)
def test_a_stop_signal_ends_every_process_and_reports_what_was_measured(tmp_path, population, signum, extra):
    with running_server(registry_dir=population, password_cost=0) as host:
        surge, seen = start_surge(tmp_path, host, population, *extra)
        try:
            time.sleep(3)  # some journeys under way
            started = descendants(surge.pid)
            assert any("locust" in " ".join(p.cmdline()) for p in started)
            if extra:
                assert len(started) >= 3, [p.cmdline() for p in started]
            surge.send_signal(signum)
            stdout, stderr = surge.communicate(timeout=120)
        finally:
            if surge.poll() is None:
                surge.kill()
        _, alive = psutil.wait_procs(started, timeout=10)
        assert not alive, f"left running after {signum.name}: {[p.cmdline() for p in alive]}"

    assert surge.returncode == 128 + signum, stderr[-3000:]
    name = signal.Signals(signum).name
    assert f"surge: {name}: stopping every load generator" in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert f"interrupted ({name})" in stdout
    data = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert data["status"] == "interrupted" and data["exit_code"] == 128 + signum
    assert data["summary"]["interrupted_by"] == name
    arrivals = data["arrivals"]
    # Arrivals not yet due at the stop are not the load generator's failure: not dropped, and
    # "kept up" holds on the ones that were due.
    assert arrivals["interrupted"] > arrivals["started"] > 0
    assert arrivals["dropped"] == 0 and arrivals["not_started"] == 0
    assert arrivals["started"] + arrivals["interrupted"] == arrivals["scheduled"]
    assert f"not started (interrupted) {arrivals['interrupted']:,}" in stdout
    assert {t["label"]: t["status"] for t in data["thresholds"]} == {"kept up": "pass"}
    assert data["reconciliation"]["ok"], data["reconciliation"]  # stopped journeys were counted
