"""seed-db's funnel mix, its streaming apportionment, the labels' depth caps and the wave calendar."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import InvalidOption
from simulator.seed.rows import KkLedger, depth_caps, group_rank
from simulator.seed.states import DEPTH, PROFILES, STATES, FunnelState, apportion, parse_states
from simulator.seed.waves import PUBLISHED_WAVES, make_calendar


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_sums_to_one_and_covers_every_state(name):
    mix = parse_states(name)
    assert sum(mix.shares) == pytest.approx(1.0)
    assert len(mix.shares) == len(STATES)
    assert all(share >= 0 for share in mix.shares)


def test_default_profile_is_the_30_oct_2020_funnel():
    mix = parse_states(None)
    shares = mix.as_dict()
    # 40M accounts, 26M verified their email: 14M (35%) stopped at registering.
    assert shares["registered"] == pytest.approx(14 / 40)
    # 4.9M were paid an incentive.
    assert shares["incentive_paid"] == pytest.approx(4.9 / 40)
    # 5.59M accepted = selected + bought + finished + paid + revoked.
    accepted = sum(
        shares[s] for s in ("selected", "training_bought", "finished", "incentive_paid", "revoked")
    )
    assert accepted * 40 == pytest.approx(5.59)


def test_a_share_list_with_percentages_and_aliases():
    mix = parse_states("registered=30%, Email-Verified=0.2, joined_wave=50%")
    shares = mix.as_dict()
    assert shares["registered"] == pytest.approx(0.3)
    assert shares["email_verified"] == pytest.approx(0.2)
    assert shares["joined"] == pytest.approx(0.5)
    assert shares["revoked"] == 0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("registered=0.5", "add up to 0.5"),
        ("registered=0.5,nonsense=0.5", "unknown state 'nonsense'"),
        ("registered=0.5,registered=0.5", "given twice"),
        ("registered=half,joined=0.5", "not a number"),
        ("registered=1.5", "between 0 and 1"),
        ("oct2021", "neither a profile"),
        (",", "empty"),
    ],
)
def test_bad_mixes_are_refused_with_the_reason(text, fragment):
    with pytest.raises(InvalidOption, match=fragment):
        parse_states(text)


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(0, 1000), min_size=2, max_size=11).filter(lambda w: sum(w) > 0),
    chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=12),
)
def test_streamed_chunks_add_up_to_the_mix_and_never_go_negative(weights, chunks):
    weights = np.array(weights, dtype=np.int64)
    given_so_far = np.zeros(weights.size, dtype=np.int64)
    stop = 0
    for size in chunks:
        stop += size
        counts = apportion(weights, given_so_far, stop)
        assert counts.sum() == size
        assert (counts >= 0).all()
        assert (counts[weights == 0] == 0).all()
        given_so_far += counts
    exact = stop * weights / weights.sum()
    assert np.abs(given_so_far - exact).max() <= 2.0


def test_labels_cap_how_far_an_applicant_can_go():
    outcome = pa.array(["accept", "NIK_NOT_FOUND", "EMAIL_TAKEN", "EMAIL_DOMAIN_TYPO", "PHONE_TAKEN", None])
    caps = depth_caps(outcome)
    assert caps[0] == DEPTH.max()  # anyone valid may go all the way
    assert caps[1] == DEPTH[STATES.index(FunnelState.EMAIL_VERIFIED)]  # refused at the identity step
    assert caps[2] == -1  # the account itself is refused: never seeded
    assert caps[3] == DEPTH[STATES.index(FunnelState.REGISTERED)]  # the OTP never arrives
    assert caps[4] == DEPTH[STATES.index(FunnelState.IDENTITY_VERIFIED)]  # the phone step refuses
    assert caps[5] == DEPTH[STATES.index(FunnelState.EMAIL_VERIFIED)]


def test_kk_ledger_counts_across_chunks():
    ledger = KkLedger()
    ledger.add(np.array([5, 7, 5], dtype=np.int64))
    ledger.add(np.array([7, 9], dtype=np.int64))
    assert ledger.existing(np.array([5, 7, 9, 11], dtype=np.int64)).tolist() == [2, 2, 1, 0]
    assert group_rank(np.array([3, 1, 3, 3, 1])).tolist() == [0, 0, 1, 2, 1]


def test_calendar_opens_wave_k_now_and_keeps_the_published_spacing():
    as_of = dt.datetime(2026, 11, 27, 22, 0)
    calendar = make_calendar(11, as_of, open_days=3)
    assert calendar.opens_at[-1] == np.datetime64("2026-11-27T21:00:00")
    assert calendar.closes_at[-1] == np.datetime64("2026-11-30T22:00:00")
    # wave 10 opened 26 Sep 2020 12:00 WIB, wave 11 on 2 Nov 2020 12:00 WIB: 37 days before.
    assert calendar.opens_at[-1] - calendar.opens_at[-2] == np.timedelta64(37, "D")
    assert (calendar.closes_at[:-1] < np.datetime64(as_of)).all()
    assert calendar.closed_waves.tolist() == list(range(1, 11))


def test_quotas_scale_with_accounts_and_fit_every_wave_selection():
    calendar = make_calendar(11, dt.datetime(2026, 1, 1))
    selected = np.array([30, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    quotas = calendar.quotas(accounts=400_000, selected=selected)
    published = np.array([w.accepted for w in PUBLISHED_WAVES[:11]])
    assert quotas[0] >= 30
    assert (quotas >= np.ceil(published * 400_000 / 40_000_000) - 1).all()
    assert quotas[10] == pytest.approx(400_000 * 400_000 / 40_000_000, abs=1)


def test_unknown_wave_is_refused():
    with pytest.raises(InvalidOption, match="--wave"):
        make_calendar(13, dt.datetime(2026, 1, 1))
