"""The open-model arrival schedule: when each applicant arrives, independent of how slow the server is.

Owns the arrival curve (crowd, decaying tail, baseline, daily rhythm) and its Poisson sample.

Times: ``t`` is wave seconds since the opening, at real scale; ``h`` is harness seconds since the
run started. ``h = (t - replay.start_s) / time_scale`` and the harness rate is the real rate times
``population_scale * time_scale``. The whole schedule is drawn once from the scenario's seed;
Locust worker ``k`` of ``n`` takes arrivals ``k, k + n, k + 2n, ...``, so the split is exact and the
union is the same schedule whatever ``n`` is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.errors import InvalidInputFile
from simulator.surge.scenario import Scenario

# Random streams drawn from the scenario seed; one number per purpose so they never overlap.
STREAM_SCHEDULE = 1
STREAM_APPLICANTS = 2
STREAM_JOURNEY = 3

MAX_ARRIVALS = 5_000_000
"""Arrivals one run may schedule: each costs the harness a few hundred bytes of plans per worker,
and needs an applicant of its own (the biggest built-in scenario schedules about 44,000)."""


class ArrivalCurve:
    """Expected arrivals of one wave: rate and cumulative count, vectorised over numpy arrays."""

    def __init__(self, scenario: Scenario):
        arrivals, wave = scenario.arrivals, scenario.wave
        self.replay = scenario.replay
        self.duration_s = wave.duration_h * 3600.0
        self.crowd = arrivals.pre_open_crowd
        self.crowd_tau = arrivals.crowd_release_s
        self.tail = arrivals.tail_total(self.duration_s)
        self.tail_tau = arrivals.tail_time_constant_s(self.duration_s)
        self.baseline_total = arrivals.baseline_per_s * self.duration_s

        # Piecewise-constant daily rhythm on local-hour segments of the wave.
        local = wave.opens_at.replace(tzinfo=None)  # the wall clock in the opening's own UTC offset
        seconds_into_day = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        first_edge = 3600.0 - (seconds_into_day % 3600.0)
        inner = np.arange(first_edge, self.duration_s, 3600.0)
        self.edges = np.concatenate(([0.0], inner[inner > 0], [self.duration_s]))
        first_hour = int(seconds_into_day // 3600)
        hours = (first_hour + np.arange(len(self.edges) - 1)) % 24
        if arrivals.daily_rhythm is None:
            self.weights = np.ones(len(hours))
        else:
            rhythm = np.asarray(arrivals.daily_rhythm, dtype=float)
            self.weights = (rhythm / rhythm.mean())[hours]

        # Cumulative (unnormalised) integrals at the edges, so a count over [0, t] is one lookup.
        self._tail_cum = self._cumulative_at_edges(self.tail_tau)
        self._base_cum = self._cumulative_at_edges(math.inf)

    # -- pieces ------------------------------------------------------------------------------------
    def _segment_integral(
        self, start: np.ndarray, end: np.ndarray, weight: np.ndarray, tau: float
    ) -> np.ndarray:
        if math.isinf(tau):
            return weight * (end - start)
        return weight * tau * (np.exp(-start / tau) - np.exp(-end / tau))

    def _cumulative_at_edges(self, tau: float) -> np.ndarray:
        pieces = self._segment_integral(self.edges[:-1], self.edges[1:], self.weights, tau)
        return np.concatenate(([0.0], np.cumsum(pieces)))

    def _weighted(self, t: np.ndarray, cum: np.ndarray, tau: float) -> np.ndarray:
        segment = np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, len(self.weights) - 1)
        start = self.edges[segment]
        partial = self._segment_integral(start, np.maximum(t, start), self.weights[segment], tau)
        return (cum[segment] + partial) / cum[-1] if cum[-1] > 0 else np.zeros_like(t)

    # -- real scale --------------------------------------------------------------------------------
    def cumulative(self, t: np.ndarray | float) -> np.ndarray:
        """Expected arrivals in the wave's ``[0, t]`` at real scale."""
        t = np.clip(np.asarray(t, dtype=float), 0.0, self.duration_s)
        crowd = self.crowd * -np.expm1(-t / self.crowd_tau) / -math.expm1(-self.duration_s / self.crowd_tau)
        tail = self.tail * self._weighted(t, self._tail_cum, self.tail_tau)
        base = self.baseline_total * self._weighted(t, self._base_cum, math.inf)
        return crowd + tail + base

    def rate(self, t: np.ndarray | float) -> np.ndarray:
        """Arrivals per second at wave time ``t``, real scale (0 outside the wave)."""
        t = np.asarray(t, dtype=float)
        inside = (t >= 0) & (t <= self.duration_s)
        tc = np.clip(t, 0.0, self.duration_s)
        segment = np.clip(np.searchsorted(self.edges, tc, side="right") - 1, 0, len(self.weights) - 1)
        weight = self.weights[segment]
        crowd_norm = -math.expm1(-self.duration_s / self.crowd_tau)
        crowd = self.crowd / self.crowd_tau * np.exp(-tc / self.crowd_tau) / crowd_norm
        decay = np.exp(-tc / self.tail_tau) if math.isfinite(self.tail_tau) else 1.0
        tail_density = 0.0 if self._tail_cum[-1] <= 0 else weight * decay / self._tail_cum[-1]
        base_density = weight / self._base_cum[-1]
        return np.where(inside, crowd + self.tail * tail_density + self.baseline_total * base_density, 0.0)

    # -- harness scale -----------------------------------------------------------------------------
    def to_wave_time(self, h: np.ndarray | float) -> np.ndarray:
        return self.replay.start_s + np.asarray(h, dtype=float) * self.replay.time_scale

    def harness_cumulative(self, h: np.ndarray | float) -> np.ndarray:
        """Expected arrivals in harness ``[0, h]`` after the population scale."""
        start = self.cumulative(self.replay.start_s)
        return (self.cumulative(self.to_wave_time(h)) - start) * self.replay.population_scale

    def harness_rate(self, h: np.ndarray | float) -> np.ndarray:
        """Expected arrivals per harness second at harness time ``h``."""
        return self.rate(self.to_wave_time(h)) * self.replay.population_scale * self.replay.time_scale

    def invert_harness_cumulative(self, counts: np.ndarray) -> np.ndarray:
        """Harness times at which the expected count reaches ``counts`` (vectorised bisection)."""
        low = np.zeros(len(counts))
        high = np.full(len(counts), self.replay.harness_length_s)
        for _ in range(60):  # 2**-60 of the replay length: far below a microsecond
            mid = (low + high) / 2
            below = self.harness_cumulative(mid) < counts
            low = np.where(below, mid, low)
            high = np.where(below, high, mid)
        return (low + high) / 2


@dataclass(frozen=True)
class Schedule:
    """Every arrival of the run: ``starts_s[i]`` is when applicant ``i`` arrives (harness seconds)."""

    starts_s: np.ndarray
    length_s: float
    expected: float

    def __len__(self) -> int:
        return len(self.starts_s)

    def worker_indices(self, index: int, count: int) -> np.ndarray:
        """Global arrival numbers run by worker ``index`` of ``count`` (round robin, disjoint, exact)."""
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"worker index {index} out of range for {count} workers")
        return np.arange(index, len(self.starts_s), count)

    def counts_per_window(self, window_s: float) -> np.ndarray:
        """Scheduled arrivals in consecutive harness windows ``[k*w, (k+1)*w)``."""
        bins = _window_edges(self.length_s, window_s)
        return np.histogram(self.starts_s, bins=bins)[0]


def _window_edges(length_s: float, window_s: float) -> np.ndarray:
    n = max(1, math.ceil(length_s / window_s - 1e-9))
    return np.arange(n + 1) * window_s


def expected_per_window(curve: ArrivalCurve, window_s: float) -> np.ndarray:
    """Expected arrivals in each harness window, for comparing a sample with its curve."""
    edges = np.minimum(_window_edges(curve.replay.harness_length_s, window_s), curve.replay.harness_length_s)
    return np.diff(curve.harness_cumulative(edges))


def build_schedule(scenario: Scenario, seed: int | None = None) -> Schedule:
    """Draw the non-homogeneous Poisson arrivals of the replay window from the scenario's curve.

    Poisson count for the window, then each arrival's time by inverting the cumulative curve at
    sorted uniforms (the order statistics of the arrival density), all from one seeded stream.
    """
    if scenario.arrivals.trace is not None:  # recorded traffic, replayed (simulator/surge/trace.py)
        from simulator.surge.trace import trace_starts

        starts, expected = trace_starts(scenario, scenario.seed if seed is None else seed)
        return Schedule(starts_s=starts, length_s=scenario.replay.harness_length_s, expected=expected)
    curve = ArrivalCurve(scenario)
    length = scenario.replay.harness_length_s
    expected = float(curve.harness_cumulative(length))
    rng = np.random.default_rng([scenario.seed if seed is None else seed, STREAM_SCHEDULE])
    count = int(rng.poisson(expected))
    if count > MAX_ARRIVALS:  # sized before anything per arrival is allocated
        raise InvalidInputFile(
            f"the scenario schedules {count:,} arrivals in its replay window; at most {MAX_ARRIVALS:,} "
            "fit one run (lower replay.population_scale or shorten the window)"
        )
    targets = np.sort(rng.random(count)) * expected
    starts = curve.invert_harness_cumulative(targets)
    return Schedule(starts_s=starts, length_s=length, expected=expected)
