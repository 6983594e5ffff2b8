"""Funnel states of a seeded applicant and the ``--states`` mix: named profiles and ``name=share`` lists.

A state is the furthest step an applicant has reached; counts per state follow the mix exactly
(to within one row per state), chunk by chunk, so a streamed seed and a whole one agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from simulator.errors import InvalidOption


class FunnelState(StrEnum):
    """Where an applicant stands; each state includes every step before it."""

    REGISTERED = "registered"  # account created, email not confirmed
    EMAIL_VERIFIED = "email_verified"
    IDENTITY_VERIFIED = "identity_verified"  # NIK + KK + birth date matched the registry; profile filled
    PHONE_VERIFIED = "phone_verified"  # KTP photo accepted, phone OTP confirmed; test not taken
    TESTED = "tested"  # basic-skills test done; has not joined a wave
    JOINED = "joined"  # joined the open wave K (fresh, or rolled over from a wave that did not pick them)
    SELECTED = "selected"  # accepted (SK) in a closed wave; no training bought yet
    TRAINING_BOUGHT = "training_bought"
    FINISHED = "finished"  # finished a training; no incentive paid yet
    INCENTIVE_PAID = "incentive_paid"  # 1..4 monthly incentives of Rp600,000 paid
    REVOKED = "revoked"  # selected, but bought no training within 30 days: the place was revoked


STATES: tuple[FunnelState, ...] = tuple(FunnelState)
"""The states in funnel order; an applicant's state is stored as its index in this tuple."""

STATE_CODE: dict[FunnelState, int] = {state: code for code, state in enumerate(STATES)}

# How many steps each state has done: the depth an applicant's defects must allow. Revoked
# people were selected first, so they need as much as selected ones.
DEPTH = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 6], dtype=np.int8)


_ALIASES = {
    "email": FunnelState.EMAIL_VERIFIED,
    "identity": FunnelState.IDENTITY_VERIFIED,
    "nik_verified": FunnelState.IDENTITY_VERIFIED,
    "phone": FunnelState.PHONE_VERIFIED,
    "joined_wave": FunnelState.JOINED,
    "accepted": FunnelState.SELECTED,
    "bought": FunnelState.TRAINING_BOUGHT,
    "paid": FunnelState.INCENTIVE_PAID,
    "incentive_months_paid": FunnelState.INCENTIVE_PAID,
}

# --- named profiles -------------------------------------------------------------------------------
# Shares of all accounts, from the cumulative funnels published by the program office
# (okezone, 3 Nov 2020; tirto.id; see docs/domain.md "Funnel"). Each share is one stage minus
# the next. Two stages are not published: accounts that verified their phone but did not take the
# test, and those who took it but never joined a wave; we assume 2.5% of accounts each.

# 30 Oct 2020 (waves 1-10): 40M accounts, 26M email, 20M NIK+KK, 18M phone, 5.59M accepted,
# 5.2M bought, 4.94M finished, 4.9M paid; 382,868 places revoked in waves 1-10.
OCT_2020 = {
    FunnelState.REGISTERED: 14.0 / 40,
    FunnelState.EMAIL_VERIFIED: 6.0 / 40,
    FunnelState.IDENTITY_VERIFIED: 2.0 / 40,
    FunnelState.PHONE_VERIFIED: 1.0 / 40,
    FunnelState.TESTED: 1.0 / 40,
    FunnelState.JOINED: (18.0 - 2.0 - 5.59) / 40,
    FunnelState.SELECTED: (5.59 - 5.2 - 0.382868) / 40,
    FunnelState.TRAINING_BOUGHT: (5.2 - 4.94) / 40,
    FunnelState.FINISHED: (4.94 - 4.9) / 40,
    FunnelState.INCENTIVE_PAID: 4.9 / 40,
    FunnelState.REVOKED: 0.382868 / 40,
}

# 15 Sep 2020 (waves 1-9): 23.17M accounts, 18M email, 13.4M NIK, ~12M phone, 3.88M accepted,
# 3.2M bought, 2M completed, 1.2M paid; 189,436 places revoked in waves 1-9.
SEP_2020 = {
    FunnelState.REGISTERED: (23.17 - 18.0) / 23.17,
    FunnelState.EMAIL_VERIFIED: (18.0 - 13.4) / 23.17,
    FunnelState.IDENTITY_VERIFIED: (13.4 - 12.0) / 23.17,
    FunnelState.PHONE_VERIFIED: 0.025,
    FunnelState.TESTED: 0.025,
    FunnelState.JOINED: (12.0 - 3.88) / 23.17 - 0.05,
    FunnelState.SELECTED: (3.88 - 3.2 - 0.189436) / 23.17,
    FunnelState.TRAINING_BOUGHT: (3.2 - 2.0) / 23.17,
    FunnelState.FINISHED: (2.0 - 1.2) / 23.17,
    FunnelState.INCENTIVE_PAID: 1.2 / 23.17,
    FunnelState.REVOKED: 0.189436 / 23.17,
}

EVEN = {state: 1.0 / len(STATES) for state in STATES}
"""Every state equally: the mix QA wants when each state must have plenty of test users."""

PROFILES: dict[str, dict[FunnelState, float]] = {"oct2020": OCT_2020, "sep2020": SEP_2020, "even": EVEN}
DEFAULT_PROFILE = "oct2020"

# Months of incentive paid among those paid anything. Rp5.7T paid to 4.9M people by 30 Oct 2020
# (okezone) is Rp1.16M each, about 1.94 months of Rp600k; these shares average 1.95 months.
INCENTIVE_MONTHS_SHARES = {1: 0.45, 2: 0.25, 3: 0.20, 4: 0.10}

_WEIGHT_SCALE = 1_000_000_000  # shares are held as integers so that chunk counts are exact


@dataclass(frozen=True)
class StateMix:
    """The share of accounts in each funnel state."""

    shares: tuple[float, ...]  # indexed by state code
    name: str  # profile name or the normalised list, for the run summary

    @property
    def weights(self) -> np.ndarray:
        return np.array([round(share * _WEIGHT_SCALE) for share in self.shares], dtype=np.int64)

    def chunk_counts(self, given: np.ndarray, stop: int) -> np.ndarray:
        """How many of the next accounts (up to number ``stop``) go to each state.

        ``given`` is what earlier chunks already placed; see :func:`apportion`.
        """
        return apportion(self.weights, given, stop)

    def as_dict(self) -> dict[str, float]:
        return {state.value: share for state, share in zip(STATES, self.shares, strict=True)}


def parse_states(text: str | None) -> StateMix:
    """Read ``--states``: a profile name (``oct2020``, ``sep2020``, ``even``) or ``state=share,...``.

    Shares may be fractions or percentages (``joined=26%``); they must add up to 1 (100%).
    States left out get nothing.
    """
    text = (text or DEFAULT_PROFILE).strip()
    if text.lower() in PROFILES:
        profile = PROFILES[text.lower()]
        return StateMix(tuple(profile[state] for state in STATES), text.lower())
    shares = dict.fromkeys(STATES, 0.0)
    seen: set[FunnelState] = set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidOption(
                f"--states: {item!r} is neither a profile ({', '.join(PROFILES)}) nor state=share"
            )
        state = _state_named(name)
        if state in seen:
            raise InvalidOption(f"--states: {state.value} is given twice")
        seen.add(state)
        shares[state] = _share(state, value)
    if not seen:
        raise InvalidOption("--states is empty")
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise InvalidOption(
            f"--states: the shares add up to {total:.6g}, not 1 "
            "(use fractions that sum to 1, or percentages that sum to 100%)"
        )
    normalised = ",".join(f"{s.value}={shares[s]:g}" for s in STATES if shares[s] > 0)
    return StateMix(tuple(shares[state] for state in STATES), normalised)


def _state_named(name: str) -> FunnelState:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return FunnelState(key)
    except ValueError:
        pass
    if key in _ALIASES:
        return _ALIASES[key]
    raise InvalidOption(f"--states: unknown state {name.strip()!r}; states are {', '.join(STATES)}")


def _share(state: FunnelState, value: str) -> float:
    text = value.strip()
    percent = text.endswith("%")
    try:
        share = float(text.rstrip("%"))
    except ValueError:
        raise InvalidOption(f"--states: {state.value}={value!r} is not a number") from None
    if percent:
        share /= 100.0
    if not 0.0 <= share <= 1.0 or share != share:
        raise InvalidOption(f"--states: {state.value}={value} must be between 0 and 1 (or 0% and 100%)")
    return share


def apportion(weights: np.ndarray, given: np.ndarray, stop: int) -> np.ndarray:
    """Counts for the next ``stop - given.sum()`` items so that the first ``stop`` follow ``weights``.

    The first ``m`` items hold ``round(m * cumulative share)`` of the categories up to each one,
    so chunks streamed one after another add up to the counts of the whole run (within one
    item per category; a category never gets a negative count, the difference is carried on).
    """
    weights = np.asarray(weights, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    size = int(stop - given.sum())
    if size <= 0:
        return np.zeros_like(given)
    cumulative = np.cumsum(weights)
    total = int(cumulative[-1])
    bounds = np.array([(stop * int(c) + total // 2) // total for c in cumulative], dtype=np.int64)
    need = np.diff(bounds, prepend=0) - given
    need[weights == 0] = 0
    need = np.maximum(need, 0)
    # Clamping added items; take them back from the categories that are most over their share.
    surplus = int(need.sum()) - size
    while surplus > 0:
        k = int(np.argmax(need))
        take = min(surplus, int(need[k]))
        need[k] -= take
        surplus -= take
    while surplus < 0:  # only when zero-weight categories were dropped: give to the largest share
        k = int(np.argmax(weights))
        need[k] += -surplus
        surplus = 0
    return need
