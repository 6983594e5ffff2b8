"""The wave Monte Carlo: conservation, selection odds, fcfs, arrival calibration, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.demand.forecast import summarise
from simulator.demand.model import TimeGrid, simulate_wave, solve_decay_minutes
from simulator.demand.params import load_params
from simulator.demand.selection import fcfs_select, lottery_select

SMALL = {"demand.prior_pool": 400_000, "demand.new_signups": 300_000, "wave.quota": 60_000}


@pytest.fixture(scope="module")
def lottery_runs():
    return simulate_wave(load_params(overrides=SMALL), runs=120, seed=11)


def test_nobody_is_created_or_lost_between_stages(lottery_runs):
    c = lottery_runs.counts
    dropped = (
        (c["accounts"] - c["email_verified"])
        + (c["email_verified"] - c["identity_valid"])
        + (c["identity_valid"] - c["phone_verified"])
        + (c["phone_verified"] - c["joined_new"])
    )
    assert np.array_equal(c["joined_new"] + dropped, c["accounts"])
    assert (
        np.diff(
            np.stack(
                [
                    c[s]
                    for s in ("accounts", "email_verified", "identity_valid", "phone_verified", "joined_new")
                ]
            ),
            axis=0,
        )
        <= 0
    ).all()
    assert np.array_equal(c["returning"] + c["pool_not_joining"], c["prior_pool"])
    assert np.array_equal(c["joined"], c["joined_new"] + c["returning"])
    assert np.array_equal(c["accepted"] + c["not_selected"], c["joined"])
    assert np.array_equal(c["bought"] + c["revoked"], c["accepted"])
    assert (c["incentive_paid"] <= c["finished_training"]).all() and (
        c["finished_training"] <= c["bought"]
    ).all()
    # The next wave's pool: everyone verified and not accepted, old and new.
    assert np.array_equal(c["pool_after"], c["prior_pool"] + c["phone_verified"] - c["accepted"])
    # Arrivals over time and provinces hold the same people as the totals.
    assert np.allclose(lottery_runs.joins_per_bin.sum(axis=1, dtype=np.float64), c["joined"])
    assert np.array_equal(lottery_runs.province_joined.sum(axis=1), c["joined"])
    assert np.array_equal(lottery_runs.province_accepted.sum(axis=1), c["accepted"])
    assert all(summarise(lottery_runs)["conservation"].values())


def test_time_grid_shift_moves_people_without_losing_any():
    grid = TimeGrid.for_wave(600, 60, 15)
    counts = np.random.default_rng(0).integers(0, 1000, size=(3, grid.size))
    shifted = grid.shift(counts, 34)
    assert np.array_equal(shifted.sum(axis=1), counts.sum(axis=1))
    assert np.array_equal(shifted[:, 34:60], counts[:, :26])  # within the 1-minute part: a plain shift
    assert (shifted[:, :34] == 0).all()


def test_lottery_odds_equal_quota_over_joiners_for_every_group():
    rng = np.random.default_rng(5)
    runs, quota = 4000, 90_000
    groups = np.tile([300_000, 600_000], (runs, 1))
    accepted = lottery_select(rng, groups, quota)
    assert (accepted.sum(axis=1) == quota).all()
    odds = accepted / groups
    expected = quota / 900_000
    n, total = quota, 900_000
    for g, size in enumerate((300_000, 600_000)):
        # Hypergeometric sampling error of one run's odds, then of the mean of `runs` runs.
        var = n * (size / total) * (1 - size / total) * (total - n) / (total - 1) / size**2
        assert abs(odds[:, g].mean() - expected) < 5 * math.sqrt(var / runs)
        assert abs(odds[:, g].std() - math.sqrt(var)) < 0.1 * math.sqrt(var)


def test_lottery_matches_a_per_person_draw():
    # The aggregate draw and a literal shuffle of people agree on the distribution.
    rng = np.random.default_rng(9)
    groups = np.tile([30, 70], (20_000, 1))
    aggregate = lottery_select(rng, groups, 25)[:, 0]
    people = np.array([0] * 30 + [1] * 70)
    literal = np.array([(rng.permutation(people)[:25] == 0).sum() for _ in range(20_000)])
    assert abs(aggregate.mean() - literal.mean()) < 0.1
    assert abs(aggregate.var() - literal.var()) < 0.25


def test_priority_list_goes_first_and_the_rest_share_the_remaining_odds():
    params = load_params(overrides={**SMALL, "wave.priority_list": 20_000, "uncertainty.demand_cv": 0.0})
    forecast = summarise(simulate_wave(params, runs=60, seed=3))
    joined = forecast["selection"]["joined"]["mean"]
    expected = (60_000 - 20_000) / (joined - 20_000)
    assert forecast["selection"]["odds_not_on_priority_list"]["mean"] == pytest.approx(expected, rel=0.01)


def test_wave_odds_are_quota_over_joiners_for_rolled_over_and_new(lottery_runs):
    c = lottery_runs.counts
    odds = c["accepted"] / c["joined"]
    assert np.allclose(odds, 60_000 / c["joined"])
    # Rolled-over and new joiners face the same draw: their odds agree within sampling error.
    diff = c["accepted_returning"] / c["returning"] - c["accepted_new"] / c["joined_new"]
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(diff.size) + 1e-4


def test_fcfs_fills_exactly_in_arrival_order():
    params = load_params(overrides={**SMALL, "wave.mode": "fcfs"})
    runs = simulate_wave(params, runs=60, seed=4)
    c = runs.counts
    assert np.array_equal(c["accepted"], np.minimum(60_000, c["joined"]))
    assert not np.isnan(runs.fill_minute).any()
    cumulative = np.cumsum(runs.joins_per_bin.astype(np.float64), axis=1)
    for run in range(5):
        fill_bin = int(np.searchsorted(runs.grid.starts, runs.fill_minute[run]))
        assert cumulative[run, fill_bin] >= 60_000 - 0.5
        assert fill_bin == 0 or cumulative[run, fill_bin - 1] < 60_000


def test_fcfs_select_takes_everyone_before_the_fill_and_splits_the_fill_bin():
    rng = np.random.default_rng(1)
    early = np.array([[10, 20, 30, 40]])
    late = np.array([[5, 5, 5, 5]])
    accepted, fill_bin = fcfs_select(rng, [early, late], quota=52)
    # Cumulative joins 15, 40, 75: the quota fills in bin 2, where 12 of its 35 joiners get in.
    assert fill_bin.tolist() == [2] and accepted.sum() == 52
    assert 30 <= accepted[0, 0] <= 42 and 10 <= accepted[0, 1] <= 15
    accepted, fill_bin = fcfs_select(rng, [early, late], quota=1_000)
    assert fill_bin.tolist() == [-1] and accepted.tolist() == [[100, 20]]


def test_fcfs_with_a_quota_above_the_joiners_accepts_everyone():
    params = load_params(overrides={**SMALL, "wave.mode": "fcfs", "wave.quota": 5_000_000})
    runs = simulate_wave(params, runs=20, seed=4)
    assert np.array_equal(runs.counts["accepted"], runs.counts["joined"])
    assert np.isnan(runs.fill_minute).all()


def test_arrival_curve_holds_the_published_first_day_share():
    for hours in (48.0, 96.0, 117.0):
        params = load_params(
            overrides={
                **SMALL,
                "wave.duration_hours": hours,
                "uncertainty.decay_cv": 0.0,
                "uncertainty.demand_cv": 0.0,
            }
        )
        runs = simulate_wave(params, runs=30, seed=2)
        assert runs.counts["first_24h_share"].mean() == pytest.approx(0.603, abs=0.003)


def test_decay_cannot_be_solved_for_a_one_day_wave():
    from simulator.errors import InvalidOption

    with pytest.raises(InvalidOption, match="arrivals.decay_hours"):
        solve_decay_minutes(load_params(overrides={"wave.duration_hours": 20.0}))
    assert (
        solve_decay_minutes(load_params(overrides={"wave.duration_hours": 20.0, "arrivals.decay_hours": 3.0}))
        == 180
    )


def test_same_seed_same_output_whatever_the_workers_and_another_seed_differs():
    params = load_params(overrides=SMALL)
    a = simulate_wave(params, runs=130, seed=21, workers=1)
    b = simulate_wave(params, runs=130, seed=21, workers=2)
    c = simulate_wave(params, runs=130, seed=22, workers=1)
    for key in a.counts:
        assert np.array_equal(a.counts[key], b.counts[key]), key
    assert np.array_equal(a.joins_per_bin, b.joins_per_bin)
    assert summarise(a) == summarise(b)
    assert not np.array_equal(a.counts["joined"], c.counts["joined"])


def test_peaks_follow_the_crowd_and_upstreams_follow_their_endpoint(lottery_runs):
    peaks = lottery_runs.peaks_per_second
    params = lottery_runs.params
    assert np.allclose(
        peaks["identity_registry"], peaks["PUT /v1/me/identity"] * params["upstreams"]["identity_registry"]
    )
    assert np.allclose(
        peaks["photo_storage"], peaks["POST /v1/me/ktp"] * params["upstreams"]["photo_storage"]
    )
    assert (peaks["all endpoints"] >= peaks["POST /v1/waves/{wave}/join"]).all()
    # Doubling the demand doubles the load (within sampling noise).
    double = simulate_wave(
        load_params(overrides={**SMALL, "demand.prior_pool": 800_000, "demand.new_signups": 600_000}),
        runs=120,
        seed=11,
    )
    ratio = np.median(double.peaks_per_second["all endpoints"]) / np.median(peaks["all endpoints"])
    assert 1.8 < ratio < 2.2
