"""The stand-ins' own counters: calls by outcome, a latency histogram and calls per second, per service.

Histograms are cumulative log-spaced buckets, so a harness that reads them before and after a run
gets the run's own percentiles from the difference (:func:`window`).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from typing import Any

BUCKETS_PER_DECADE = 20
LOW_MS, HIGH_MS = 0.01, 1_000_000.0
BOUNDS_MS: tuple[float, ...] = tuple(
    LOW_MS * 10 ** (i / BUCKETS_PER_DECADE)
    for i in range(int(round(math.log10(HIGH_MS / LOW_MS) * BUCKETS_PER_DECADE)) + 1)
)
"""Upper bounds of the latency buckets, 10 us to 1000 s, 20 per decade (+-6 % resolution)."""
SERIES_SECONDS = 3_600
"""Seconds of calls-per-second history kept (one hour; older seconds are overwritten)."""


class ServiceCounters:
    """Counters of one service (``registry``, ``sms`` or ``smtp``)."""

    def __init__(self, name: str, clock=time.time):  # a callable returning epoch seconds
        self.name = name
        self.clock = clock
        self.started = clock()
        self.calls = 0
        self.outcomes: Counter[str] = Counter()
        self.buckets = [0] * (len(BOUNDS_MS) + 1)
        self.latency_sum_ms = 0.0
        self._second = [0] * SERIES_SECONDS
        self._second_of = [-1] * SERIES_SECONDS

    def record(self, outcome: str, latency_ms: float | None = None) -> None:
        self.calls += 1
        self.outcomes[outcome] += 1
        if latency_ms is not None:
            self.buckets[bisect.bisect_left(BOUNDS_MS, latency_ms)] += 1
            self.latency_sum_ms += latency_ms
        second = int(self.clock())
        slot = second % SERIES_SECONDS
        if self._second_of[slot] != second:
            self._second_of[slot], self._second[slot] = second, 0
        self._second[slot] += 1

    def per_second(self, since: float, until: float | None = None) -> list[tuple[int, int]]:
        """``(epoch second, calls)`` for the seconds in ``[since, until]`` still held, oldest first."""
        until = self.clock() if until is None else until
        # Only the last SERIES_SECONDS are held: an older ``since`` starts where the history does.
        first = max(int(since), int(until) - SERIES_SECONDS + 1)
        out = []
        for second in range(first, int(until) + 1):
            slot = second % SERIES_SECONDS
            out.append((second, self._second[slot] if self._second_of[slot] == second else 0))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "outcomes": dict(self.outcomes),
            "latency_ms": summary(self.buckets, self.latency_sum_ms),
            "latency_buckets": list(self.buckets),
            "uptime_s": round(self.clock() - self.started, 3),
        }


def quantile_ms(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a bucket histogram: the upper bound of the bucket that holds it."""
    total = sum(buckets)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank and n:
            return BOUNDS_MS[i] if i < len(BOUNDS_MS) else math.inf
    return BOUNDS_MS[-1]


def summary(buckets: list[int], total_ms: float | None = None) -> dict[str, float | int | None]:
    count = sum(buckets)
    out: dict[str, float | int | None] = {"count": count}
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)):
        value = quantile_ms(buckets, q)
        out[label] = None if value is None else round(value, 3)
    if total_ms is not None:
        out["mean"] = round(total_ms / count, 3) if count else None
    return out


def window(before: dict[str, Any] | None, after: dict[str, Any], seconds: float) -> dict[str, Any]:
    """One service's load between two snapshots: calls, calls/s, outcomes, latency percentiles."""
    before = before or {"calls": 0, "outcomes": {}, "latency_buckets": [0] * len(after["latency_buckets"])}
    calls = after["calls"] - before["calls"]
    outcomes = {
        k: after["outcomes"].get(k, 0) - before["outcomes"].get(k, 0)
        for k in sorted(set(after["outcomes"]) | set(before["outcomes"]))
    }
    buckets = [a - b for a, b in zip(after["latency_buckets"], before["latency_buckets"], strict=True)]
    return {
        "calls": calls,
        "calls_per_s": calls / seconds if seconds > 0 else None,
        "outcomes": {k: v for k, v in outcomes.items() if v},
        "latency_ms": summary(buckets),
    }
