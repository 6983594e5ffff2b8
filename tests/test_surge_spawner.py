"""The arrival spawner on a virtual clock: every arrival starts at its scheduled time, whatever the rate.

Speed is not measured here (benchmarks/bench_surge.py measures arrival accuracy at the harness's top
rate on the real clock); these tests check the spawner's logic, bounded and independent of the machine.
The spawner needs Locust (which patches the standard library with gevent as it is imported), so each
case runs in a fresh Python process: this file, run as a script, prints what the spawner did.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

LATE_AFTER_S = 1.0


class VirtualClock:
    """perf_counter and gevent.sleep for the spawner: sleeping moves time on (plus an oversleep)."""

    def __init__(self, oversleep_s: float = 0.0):
        self.now = 100.0  # the monotonic clock does not start at 0
        self.oversleep_s = oversleep_s
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps += 1
        self.now += seconds + self.oversleep_s


def poisson(rate: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0 / rate, int(rate * seconds * 1.2)))
    return times[times < seconds]


def per_window(series: np.ndarray, width: int = 10) -> list[int]:
    whole = len(series) // width * width
    return series[:whole].reshape(-1, width).sum(axis=1).tolist()


def spawn(rate: float, seconds: float, seed: int, oversleep_s: float = 0.0, cap: int = 0) -> dict:
    """Run the real spawner (ArrivalGenerator._spawn_arrivals) over a Poisson schedule; what it did."""
    from simulator.surge.generator import ArrivalGenerator
    from simulator.surge.metrics import SurgeMetrics

    scheduled = poisson(rate, seconds, seed)
    clock = VirtualClock(oversleep_s)
    environment = SimpleNamespace(
        runner=SimpleNamespace(register_message=lambda *_a: None),
        events=SimpleNamespace(test_stopping=SimpleNamespace(add_listener=lambda _f: None)),
    )
    started: list[tuple[int, float]] = []

    class Journey:
        def __init__(self, _environment, generator, row):
            at = clock() - generator.t0_perf
            started.append((row, at))
            generator.metrics.record_arrival(float(generator.plans.scheduled_s[row]), at, LATE_AFTER_S)

        def run_journey(self) -> None:
            pass  # never runs while the spawner runs: the virtual sleep does not yield

    gen = ArrivalGenerator(environment, Journey)
    gen.plans = SimpleNamespace(scheduled_s=scheduled)
    gen.scenario = SimpleNamespace(replay=SimpleNamespace(max_in_flight=cap))
    gen.metrics = SurgeMetrics(float(scheduled[-1]) + 2, 10.0)
    gen.metrics.record_scheduled(scheduled)
    gen.begun = np.zeros(len(scheduled), dtype=bool)
    gen.clock, gen.sleep = clock, clock.sleep
    gen.t0_perf = clock.now + 0.5  # the schedule starts half a second after GO
    gen._spawn_arrivals()
    gen.journeys.kill()
    lags = np.array([at for _, at in started]) - scheduled[[row for row, _ in started]]
    series = gen.metrics.series
    return {
        "arrivals": len(scheduled),
        "rows": [row for row, _ in started],
        "min_lag": float(lags.min()),
        "max_lag": float(lags.max()),
        "sleeps": clock.sleeps,
        "dropped": gen.dropped,
        "dropped_journeys": gen.metrics.journeys["dropped"],
        "dropped_series": int(series["dropped"].sum()),
        "begun": gen.begun.astype(int).tolist(),
        "late": int(series["late"].sum()),
        "scheduled_windows": per_window(series["scheduled"]),
        "started_windows": per_window(series["started"]),
    }


def run(**case) -> dict:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), json.dumps(case)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_every_arrival_starts_at_its_time_at_five_thousand_per_second():
    out = run(rate=5000.0, seconds=30.0, seed=4)
    assert out["rows"] == list(range(out["arrivals"]))  # all of them, in order, none dropped
    assert out["min_lag"] > -1e-9 and out["max_lag"] < 1e-9  # (float rounding of t0 + delay)
    assert out["started_windows"] == out["scheduled_windows"]
    assert out["late"] == 0 and out["dropped"] == 0


def test_a_late_wake_up_starts_the_overslept_arrivals_at_once_never_early():
    """The loop wakes 3 ms late every time (a busy process): arrivals due meanwhile start together."""
    out = run(rate=5000.0, seconds=20.0, seed=5, oversleep_s=0.003)
    assert out["rows"] == list(range(out["arrivals"]))
    assert out["min_lag"] > -1e-9 and out["max_lag"] <= 0.003 + 1e-9
    assert out["sleeps"] < out["arrivals"] / 5  # ~15 due per 3 ms: one wake-up starts them all
    for scheduled, started in zip(out["scheduled_windows"], out["started_windows"], strict=True):
        assert abs(started - scheduled) <= 0.02 * scheduled


def test_the_cap_drops_arrivals_beyond_it_and_counts_them():
    """25 journeys in flight (they never get to run here): every later arrival is dropped."""
    out = run(rate=200.0, seconds=10.0, seed=6, cap=25)
    assert out["rows"] == list(range(25))
    assert out["dropped"] == out["arrivals"] - 25 == out["dropped_journeys"] == out["dropped_series"]
    assert out["begun"] == [0] * 25 + [1] * (out["arrivals"] - 25)  # a started journey marks itself


if __name__ == "__main__":
    import locust  # noqa: F401  (first: it patches the standard library with gevent)

    print(json.dumps(spawn(**json.loads(sys.argv[1]))))
