"""``demand --fit-trace``: the arrival curve fitted to a trace recovers the parameters it was made from."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simulator.demand.trace_fit import fit_trace
from simulator.surge.trace import TraceSpec, synthetic_epochs, write_synthetic_trace

OPENING = 1_604_293_200.0  # 2 Nov 2020 12:00 WIB
DURATION_S = 8 * 3600.0
KNOWN = {"crowd": 30_000, "crowd_release_s": 120.0, "tail": 90_000, "decay_s": 7_200.0, "baseline_per_s": 1.5}


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    epochs = synthetic_epochs(
        opening_epoch=OPENING,
        crowd=KNOWN["crowd"],
        crowd_release_s=KNOWN["crowd_release_s"],
        tail=KNOWN["tail"],
        decay_s=KNOWN["decay_s"],
        baseline_per_s=KNOWN["baseline_per_s"],
        duration_s=DURATION_S,
        seed=9,
    )
    return write_synthetic_trace(tmp_path_factory.mktemp("fit") / "opening.csv", epochs, "csv"), len(epochs)


def test_fit_recovers_the_parameters_of_a_generated_trace(trace):
    path, events = trace
    fit = fit_trace(TraceSpec(str(path)), duration_hours=DURATION_S / 3600)
    assert fit.events == events
    assert fit.crowd_share == pytest.approx(KNOWN["crowd"] / events, rel=0.05)
    assert fit.crowd_release_minutes == pytest.approx(KNOWN["crowd_release_s"] / 60, rel=0.10)
    assert fit.decay_hours == pytest.approx(KNOWN["decay_s"] / 3600, rel=0.08)
    assert fit.baseline_share == pytest.approx(KNOWN["baseline_per_s"] * DURATION_S / events, rel=0.10)
    assert "arrivals.crowd_share=" in " ".join(fit.overrides())


def test_demand_prints_the_fit_and_forecasts_with_it(trace, tmp_path):
    path, _ = trace
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "demand",
            "--fit-trace",
            str(path),
            "--runs",
            "20",
            "--duration-hours",
            "8",
            "--out",
            str(tmp_path / "forecast"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "crowd at the opening" in done.stdout and "decay of the rush" in done.stdout
    assert (tmp_path / "forecast" / "forecast.json").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "demand", "--fit-trace", str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "cannot read the trace" in done.stderr and "Traceback" not in done.stderr
