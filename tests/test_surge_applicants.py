"""Who arrives and what they do: disjoint applicants, the same journeys whatever the worker count."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.errors import InvalidInputFile
from simulator.generators.population import generate_tables
from simulator.rules.reasons import ACCEPT
from simulator.surge.applicants import KTP_CHOICES, build_plans, select_applicants
from simulator.surge.scenario import STEPS, load_scenario
from simulator.surge.schedule import build_schedule


@pytest.fixture(scope="module")
def applicants():
    return generate_tables(400, 11)[1]


def test_journeys_do_not_depend_on_the_number_of_workers(applicants):
    scenario = load_scenario("smoke")
    schedule = build_schedule(scenario)
    rows = select_applicants(applicants, len(schedule), scenario)
    alone = build_plans(scenario, schedule, applicants, rows, 0, 1)
    parts = [build_plans(scenario, schedule, applicants, rows, k, 3) for k in range(3)]
    order = np.argsort(np.concatenate([p.arrivals for p in parts]))
    np.testing.assert_array_equal(np.concatenate([p.arrivals for p in parts])[order], alone.arrivals)
    for field in ("scheduled_s", "last_step", "retries", "think_s", "backoff_s", "ktp_uploads"):
        joined = np.concatenate([getattr(p, field) for p in parts])[order]
        np.testing.assert_array_equal(joined, getattr(alone, field), err_msg=field)
    ids = [a["applicant_id"] for p in parts for a in p.applicants]
    assert len(ids) == len(set(ids)) == len(schedule), "an applicant arrived twice"


def test_fates_come_from_the_population(applicants):
    scenario = load_scenario("smoke")
    schedule = build_schedule(scenario)
    rows = select_applicants(applicants, len(schedule), scenario)
    plans = build_plans(scenario, schedule, applicants, rows)
    verified = applicants.column("fate_email_verified").to_numpy(zero_copy_only=False)[rows]
    joins = applicants.column("fate_joins_wave").to_numpy(zero_copy_only=False)[rows]
    assert np.all(plans.last_step[~verified] == STEPS.index("create_account"))
    assert np.all(plans.last_step[joins & verified] == STEPS.index("join"))
    retries = applicants.column("fate_retries").to_numpy(zero_copy_only=False)[rows]
    np.testing.assert_array_equal(plans.retries, retries)


def test_scenario_funnel_rates_replace_fates_when_asked(applicants):
    base = load_scenario("wave-11")
    scenario = dataclasses.replace(
        base, funnel=dataclasses.replace(base.funnel, source="scenario", email_verify=0.5)
    )
    schedule = build_schedule(
        dataclasses.replace(scenario, replay=dataclasses.replace(scenario.replay, length_s=60))
    )
    rows = select_applicants(applicants, min(len(schedule), 400), scenario)
    schedule = dataclasses.replace(schedule, starts_s=schedule.starts_s[: len(rows)])
    plans = build_plans(scenario, schedule, applicants, rows)
    stopped = np.mean(plans.last_step == STEPS.index("create_account"))
    assert abs(stopped - 0.5) < 4 * np.sqrt(0.25 / len(rows))


def test_defect_share_is_honoured(applicants):
    base = load_scenario("smoke")
    scenario = dataclasses.replace(base, defects=dataclasses.replace(base.defects, applicant_share=0.25))
    rows = select_applicants(applicants, 80, scenario)
    outcomes = applicants.column("expected_outcome").to_numpy(zero_copy_only=False)[rows]
    defective = np.mean(outcomes != ACCEPT)
    assert abs(defective - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 80)
    assert len(set(rows.tolist())) == 80


def test_bad_photos_are_retaken_until_one_passes(applicants):
    base = load_scenario("ktp-upload-storm")
    schedule = build_schedule(base)
    rows = select_applicants(applicants, 300, base)
    schedule = dataclasses.replace(schedule, starts_s=schedule.starts_s[:300])
    plans = build_plans(base, schedule, applicants, rows)
    attempts = plans.ktp_uploads
    last = (attempts >= 0).sum(axis=1) - 1
    final_choice = attempts[np.arange(len(attempts)), last]
    assert np.all(final_choice == KTP_CHOICES.index(ACCEPT))
    bad_share = np.mean(attempts[attempts >= 0] > 0)
    assert 0.05 < bad_share < 0.2  # 20% bad photos, diluted by the valid retakes and extra uploads
    assert (attempts >= 0).sum(axis=1).mean() > 2.5  # ktp_uploads_mean = 3


def test_too_small_a_population_is_a_clear_error(applicants):
    scenario = load_scenario("smoke")
    with pytest.raises(InvalidInputFile, match=r"pop-dir: 400 applicants .* schedules 500 arrivals"):
        select_applicants(applicants, 500, scenario, source="pop-dir")
    with pytest.raises(InvalidInputFile, match="skipping 390"):
        select_applicants(applicants, 20, scenario, skip=390, source="pop-dir")
