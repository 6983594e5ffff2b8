"""How fast a wave's rush of arrivals decays: the time constant that puts a published share in day one.

One solver for the demand model and the surge scenarios (wave 9: 3.5M of 5.8M joined in 24 hours).

A wave's arrivals are three parts: a crowd waiting at the opening (released over an exponential of
``crowd_release_s``), a steady baseline, and a rush that decays exponentially until the wave closes.
Given the share of *all* arrivals that came in the first 24 hours, the rush's time constant follows.
"""

from __future__ import annotations

import math

DAY_S = 86_400.0
FASTEST_DECAY_S = 1.0
"""Shortest time constant searched: the whole rush in the opening second."""
SLOWEST_DECAY_S = 1e12
"""Longest: indistinguishable from no decay at all over any wave (30,000 years)."""


class UnreachableShare(ValueError):
    """The first-day share cannot be reached with this crowd, baseline and duration.

    ``low`` / ``high`` are the shares the wave can have (no decay, all of the rush in the first second).
    """

    def __init__(self, message: str, low: float, high: float):
        super().__init__(message)
        self.low, self.high = low, high


def truncated_exp_cdf(t: float, tau: float, horizon: float) -> float:
    """P(T <= t) for an exponential with time constant ``tau`` cut off at ``horizon``."""
    t = min(t, horizon)
    return -math.expm1(-t / tau) / -math.expm1(-horizon / tau)


def first_day_share(
    decay_s: float, duration_s: float, *, crowd_share: float, crowd_release_s: float, baseline_share: float
) -> float:
    """Share of all the wave's arrivals in its first 24 hours, for a rush decaying over ``decay_s``."""
    rush_share = 1.0 - crowd_share - baseline_share
    crowd = crowd_share * truncated_exp_cdf(DAY_S, crowd_release_s, duration_s)
    baseline = baseline_share * min(DAY_S, duration_s) / duration_s
    return crowd + baseline + rush_share * truncated_exp_cdf(DAY_S, decay_s, duration_s)


def decay_for_first_day_share(
    share: float,
    duration_s: float,
    *,
    crowd_share: float = 0.0,
    crowd_release_s: float = 60.0,
    baseline_share: float = 0.0,
) -> float:
    """Time constant (seconds) of the rush that puts ``share`` of all arrivals in the first 24 hours.

    ``crowd_share`` and ``baseline_share`` are the other two parts' shares of all arrivals. A wave
    with no rush left returns infinity (nothing to decay). Raises :class:`UnreachableShare` when
    ``share`` lies outside what the wave can have, and ValueError for a wave of 24 hours or less
    (every arrival is in its first day: the share says nothing about the decay).
    """
    if duration_s <= DAY_S:
        raise ValueError("the wave lasts at most 24 hours, so every arrival is in its first day")
    if 1.0 - crowd_share - baseline_share <= 0:
        return math.inf
    parts = {"crowd_share": crowd_share, "crowd_release_s": crowd_release_s, "baseline_share": baseline_share}
    low = first_day_share(SLOWEST_DECAY_S, duration_s, **parts)
    high = first_day_share(FASTEST_DECAY_S, duration_s, **parts)
    if not low < share < high:
        raise UnreachableShare(
            f"with this crowd, baseline and duration the share can only lie between "
            f"{low:.3f} (no decay) and {high:.3f}",
            low,
            high,
        )
    lo, hi = math.log(FASTEST_DECAY_S), math.log(SLOWEST_DECAY_S)
    for _ in range(200):  # bisection on log(tau): the share falls as tau grows
        mid = (lo + hi) / 2
        if first_day_share(math.exp(mid), duration_s, **parts) > share:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)
