"""The budget: published per-person amounts, commitments and the schedule by month."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.demand.forecast import budget_schedule, summarise
from simulator.demand.model import lag_cdf_days, simulate_wave
from simulator.demand.params import load_params, per_person_budget_idr


def test_per_person_budget_is_the_published_rp_3_55_million():
    params = load_params()
    assert per_person_budget_idr(params) == 1_000_000 + 600_000 * 4 + 50_000 * 3 == 3_550_000


def test_committed_budget_is_accepted_times_per_person_and_the_schedule_adds_up():
    params = load_params(
        overrides={"demand.prior_pool": 300_000, "demand.new_signups": 200_000, "wave.quota": 50_000}
    )
    runs = simulate_wave(params, runs=40, seed=1)
    forecast = summarise(runs)
    assert forecast["budget"]["committed_idr"]["p50"] == 50_000 * 3_550_000
    schedule = budget_schedule(params, runs)
    bought = np.median(runs.counts["bought"])
    paid = np.median(runs.counts["incentive_paid"])
    assert sum(r["training_idr"] for r in schedule) == pytest.approx(bought * 1_000_000, rel=1e-4)
    assert sum(r["incentive_idr"] for r in schedule) == pytest.approx(paid * 2_400_000, rel=1e-4)
    assert sum(r["survey_idr"] for r in schedule) == pytest.approx(paid * 150_000, rel=1e-4)
    months = [r["month"] for r in schedule]
    assert months == sorted(months) and months[0] == runs.results_at.strftime("%Y-%m")
    # The incentive is paid over 4 months, so it spreads over at least 4 calendar months.
    assert sum(1 for r in schedule if r["incentive_idr"] > 0) >= 4


def test_changing_an_amount_changes_the_per_person_total():
    params = load_params(overrides={"budget.incentive_idr": 700_000})
    assert per_person_budget_idr(params) == 3_950_000


def test_buying_is_done_within_the_30_day_window():
    cdf = lag_cdf_days(load_params())
    assert cdf["bought"][30] == pytest.approx(1.0)
    assert cdf["bought"][29] < 1.0
    assert (np.diff(cdf["incentive_paid"]) >= -1e-12).all()
    assert (cdf["incentive_paid"] <= cdf["finished_training"] + 1e-12).all()
