"""The arrival schedule: the curve's shape and the Poisson sample, checked statistically (fixed seeds)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from simulator.surge.scenario import load_scenario
from simulator.surge.schedule import ArrivalCurve, build_schedule, expected_per_window


def with_changes(scenario, **sections):
    return dataclasses.replace(
        scenario,
        **{
            name: dataclasses.replace(getattr(scenario, name), **changes)
            for name, changes in sections.items()
        },
    )


def test_rate_is_the_derivative_of_the_cumulative_count():
    curve = ArrivalCurve(load_scenario("wave-11"))
    t = np.linspace(0, 48 * 3600, 200_001)
    integral = np.concatenate(([0.0], np.cumsum((curve.rate(t[1:]) + curve.rate(t[:-1])) / 2 * np.diff(t))))
    np.testing.assert_allclose(integral[::1000], curve.cumulative(t[::1000]), rtol=2e-3, atol=50)


def test_curve_holds_the_published_totals():
    scenario = load_scenario("wave-11")
    curve = ArrivalCurve(scenario)
    day, wave = 86_400.0, scenario.wave.duration_h * 3600
    assert curve.cumulative(wave) == pytest.approx(5_500_000, rel=1e-9)
    assert curve.cumulative(day) / curve.cumulative(wave) == pytest.approx(0.60, abs=1e-6)
    # The opening crowd: most of the 500,000 waiting people are in within 15 minutes.
    assert curve.cumulative(900) > 0.9 * 500_000
    assert curve.rate(0) > 50 * curve.rate(6 * 3600)


def test_daily_rhythm_moves_arrivals_to_busy_hours():
    scenario = load_scenario("soak")  # opens 12:00 WIB; the rhythm is quiet at night
    curve = ArrivalCurve(scenario)
    noon = curve.cumulative(3600) - curve.cumulative(0)  # 12:00-13:00 WIB, weight 1.5
    night = curve.cumulative(16 * 3600) - curve.cumulative(15 * 3600)  # 03:00-04:00 WIB, weight 0.15
    assert noon / night == pytest.approx(1.5 / 0.15, rel=1e-6)


def test_counts_per_window_match_the_curve():
    scenario = load_scenario("wave-11")
    schedule = build_schedule(scenario)
    curve = ArrivalCurve(scenario)
    observed = schedule.counts_per_window(10.0)
    expected = expected_per_window(curve, 10.0)
    assert len(observed) == len(expected)
    assert abs(len(schedule) - schedule.expected) < 4 * math.sqrt(schedule.expected)
    # Poisson counts: each window within 4.5 standard deviations, and a chi-square that fits.
    z = (observed - expected) / np.sqrt(expected)
    assert np.all(np.abs(z) < 4.5), z
    chi2 = float(np.sum(z**2))
    dof = len(expected)
    assert chi2 < dof + 5 * math.sqrt(2 * dof), (chi2, dof)


def test_counts_are_poisson_dispersed():
    # A flat stretch (baseline only): counts per 1 s window have variance = mean.
    scenario = with_changes(
        load_scenario("soak"),
        arrivals={"daily_rhythm": None},
        replay={"length_s": 2000.0, "population_scale": 0.5},
    )
    counts = build_schedule(scenario).counts_per_window(1.0)
    mean, variance = counts.mean(), counts.var(ddof=1)
    assert mean == pytest.approx(11.5, rel=0.05)
    # Index of dispersion of n Poisson counts: (n-1) var/mean ~ chi2(n-1); 5 sigma band.
    n = len(counts)
    assert abs((n - 1) * variance / mean - (n - 1)) < 5 * math.sqrt(2 * (n - 1))
    # Not a regular comb: inter-arrival gaps are exponential (coefficient of variation ~ 1).
    gaps = np.diff(build_schedule(scenario).starts_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_same_seed_same_schedule_and_seed_changes_it():
    scenario = load_scenario("smoke")
    first, again = build_schedule(scenario), build_schedule(scenario)
    np.testing.assert_array_equal(first.starts_s, again.starts_s)
    other = build_schedule(scenario, seed=scenario.seed + 1)
    assert len(other) != len(first) or not np.array_equal(other.starts_s, first.starts_s)
    assert np.all(np.diff(first.starts_s) >= 0)
    assert first.starts_s[0] >= 0 and first.starts_s[-1] <= first.length_s


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_workers_split_the_schedule_exactly(workers):
    schedule = build_schedule(load_scenario("wave-11"))
    shares = [schedule.worker_indices(k, workers) for k in range(workers)]
    joined = np.sort(np.concatenate(shares))
    np.testing.assert_array_equal(joined, np.arange(len(schedule)))
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1


def test_time_and_population_scale_compress_and_shrink():
    base = load_scenario("wave-11")
    curve = ArrivalCurve(base)
    faster = ArrivalCurve(with_changes(base, replay={"time_scale": 20.0}))
    smaller = ArrivalCurve(with_changes(base, replay={"population_scale": 0.0001}))
    # Twice the compression: the same wave minute in half the harness time, twice the rate.
    assert faster.harness_cumulative(90.0) == pytest.approx(curve.harness_cumulative(180.0), rel=1e-9)
    assert faster.harness_rate(30.0) == pytest.approx(2 * curve.harness_rate(60.0), rel=1e-9)
    assert smaller.harness_cumulative(360.0) == pytest.approx(curve.harness_cumulative(360.0) / 10, rel=1e-9)
