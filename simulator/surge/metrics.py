"""What one load-generator process measured, in a form that merges exactly across Locust workers.

Owns the HDR latency histograms (from each request's intended start), counters and per-second series.

Latency is recorded in microseconds in HDR histograms (1 us .. 1 h, 3 significant figures), so
percentiles are exact to 0.1% whatever the number of workers: each worker ships its histograms
encoded, the master adds them. Two histograms per step: ``latency`` from the request's intended
start (the scheduled arrival for the first request, the end of the think time after that), which
is what a person waited and is free of coordinated omission; and ``service`` from the moment the
request was actually sent, which is what the server took.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from simulator.surge.scenario import STEPS

RAW_RESULTS = "surge-raw.json"
"""The file the Locust master writes its merged measurements to (``--surge-out``), read by the runner."""

HIGHEST_US = 3_600_000_000  # one hour: anything slower is clamped and still counted
SIG_FIGS = 3
WINDOW_SIG_FIGS = 2  # the over-time histograms only feed charts

OTP_POLL = "otp_outbox"
"""Sandbox-only requests that read the OTP a real person would get by email or SMS."""

REQUEST_NAMES: tuple[str, ...] = (*STEPS, OTP_POLL)
SERIES = ("scheduled", "started", "late", "dropped", "finished", "errors")

JOURNEY_OUTCOMES = ("completed", "refused", "failed", "unfinished", "dropped")
"""completed: did every step their fate asked for; refused: the system said no as their data
predicted (a defect); failed: gave up after unexpected errors; unfinished: still going when the
run stopped; dropped: never started (load-generator cap)."""

_COUNTERS = (
    "requests",
    "unexpected",
    "acknowledged",
    "unknown",
    "timeouts",
    "journeys",
    "stopped_at",
    "mismatches",
)
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


def new_histogram(sig_figs: int = SIG_FIGS) -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, sig_figs)


def _encode(hist: HdrHistogram) -> str | None:
    return hist.encode().decode("ascii") if hist.get_total_count() else None


def _add_encoded(hist: HdrHistogram, encoded: str | None) -> None:
    if encoded:
        hist.add(HdrHistogram.decode(encoded.encode("ascii")))


def histogram_summary(hist: HdrHistogram) -> dict[str, float | int | None]:
    """Count, mean, max and percentiles in milliseconds (``None`` when empty).

    Same values as HdrHistogram's own ``get_value_at_percentile`` / ``get_mean_value`` (the
    highest / median equivalent value of the bucket), computed on the counts array with numpy:
    the library walks its 23,552 buckets in Python, ~0.5 s per histogram.
    """
    counts = np.ctypeslib.as_array(hist.counts).astype(np.int64)
    total = int(counts.sum())
    if not total:
        return {"count": 0, "mean": None, "max": None, **{k: None for k in PERCENTILES}}
    highest, median = _bucket_values(hist)
    cumulative = np.cumsum(counts)
    values = {}
    for key, percentile in PERCENTILES.items():
        target = max(int(percentile * total / 100 + 0.5), 1)
        values[key] = int(highest[np.searchsorted(cumulative, target)]) / 1000.0
    mean = float((counts * median).sum()) / total / 1000.0
    return {"count": total, "mean": mean, "max": hist.get_max_value() / 1000.0, **values}


_BUCKET_VALUES: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}


def _bucket_values(hist: HdrHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Highest and median equivalent value of every counts index (HdrHistogram's index layout)."""
    key = (hist.counts_len, hist.sub_bucket_half_count_magnitude, hist.unit_magnitude)
    if key not in _BUCKET_VALUES:
        index = np.arange(hist.counts_len, dtype=np.int64)
        bucket = (index >> hist.sub_bucket_half_count_magnitude) - 1
        sub_bucket = (index & (hist.sub_bucket_half_count - 1)) + hist.sub_bucket_half_count
        first = bucket < 0
        sub_bucket = np.where(first, sub_bucket - hist.sub_bucket_half_count, sub_bucket)
        bucket = np.where(first, 0, bucket)
        lowest = sub_bucket << (bucket + hist.unit_magnitude)
        size = np.int64(1) << (bucket + hist.unit_magnitude)
        _BUCKET_VALUES[key] = (lowest + size - 1, lowest + (size >> 1))
    return _BUCKET_VALUES[key]


class SurgeMetrics:
    """Counters of one process (or, after :meth:`merge`, of the whole run).

    ``length_s`` is the harness length including the drain; per-second series have one bucket
    per second plus an overflow bucket at the end. ``window_s`` is the width of the over-time
    latency histograms; every process of a run must use the same value.
    """

    def __init__(self, length_s: float, window_s: float):
        self.length_s = float(length_s)
        self.window_s = float(window_s)
        self.seconds = int(math.ceil(length_s)) + 1
        self.windows = int(math.ceil(length_s / window_s)) + 1
        self.latency = {name: new_histogram() for name in REQUEST_NAMES}
        self.service = {name: new_histogram() for name in REQUEST_NAMES}
        self.window_latency = [new_histogram(WINDOW_SIG_FIGS) for _ in range(self.windows)]
        self.arrival_lag = new_histogram()
        self.journey_time = new_histogram()
        self.requests: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = {name: Counter() for name in REQUEST_NAMES}
        self.acknowledged: Counter[str] = Counter()  # journeys the API told "done" at each step
        self.unknown: Counter[str] = Counter()  # requests whose fate the client never learnt
        self.timeouts: Counter[str] = Counter()  # attempts with no answer within the client timeout
        self.journeys: Counter[str] = Counter()
        self.stopped_at: Counter[str] = Counter()  # the last step a journey reached, by outcome
        self.mismatches: Counter[str] = Counter()  # the API answered other than the data predicts
        # Plain lists on the hot path: a list item += 1 costs a tenth of a numpy scalar update.
        self._series = {name: [0] * self.seconds for name in SERIES}
        self._steps = [[0] * self.seconds for _ in REQUEST_NAMES]
        self._step_index = {name: i for i, name in enumerate(REQUEST_NAMES)}

    # -- recording (hot path: a few microseconds each) -----------------------------------------
    def _second(self, h: float) -> int:
        return min(max(int(h), 0), self.seconds - 1)

    def record_request(
        self, name: str, intended_h: float, sent_h: float, end_h: float, outcome: str, unexpected: bool
    ) -> None:
        """One HTTP exchange; times are harness seconds, ``outcome`` like ``201`` or ``404 NIK_NOT_FOUND``."""
        latency_us = min(max(int((end_h - intended_h) * 1e6), 1), HIGHEST_US)
        self.latency[name].record_value(latency_us)
        self.service[name].record_value(min(max(int((end_h - sent_h) * 1e6), 1), HIGHEST_US))
        window = min(max(int(intended_h / self.window_s), 0), self.windows - 1)
        if name != OTP_POLL:
            self.window_latency[window].record_value(latency_us)
        self.requests[name] += 1
        self.outcomes[name][outcome] += 1
        second = self._second(end_h)
        self._steps[self._step_index[name]][second] += 1
        if unexpected:
            self.unexpected[name] += 1
            self._series["errors"][second] += 1

    def record_scheduled(self, scheduled_h: np.ndarray) -> None:
        """All arrivals this process is responsible for (counted once, before the run)."""
        seconds = np.clip(scheduled_h.astype(np.int64), 0, self.seconds - 1)
        counts = np.bincount(seconds, minlength=self.seconds)[: self.seconds]
        self._series["scheduled"] = (np.asarray(self._series["scheduled"]) + counts).tolist()

    def record_arrival(self, scheduled_h: float, started_h: float, late_after_s: float) -> None:
        lag = started_h - scheduled_h
        self.arrival_lag.record_value(min(max(int(lag * 1e6), 1), HIGHEST_US))
        second = self._second(started_h)
        self._series["started"][second] += 1
        if lag > late_after_s:
            self._series["late"][second] += 1

    def record_dropped(self, scheduled_h: float) -> None:
        self._series["dropped"][self._second(scheduled_h)] += 1
        self.journeys["dropped"] += 1

    def record_journey(self, outcome: str, last_step: str, scheduled_h: float, end_h: float) -> None:
        self.journeys[outcome] += 1
        self.stopped_at[f"{outcome}:{last_step}"] += 1
        if outcome in ("completed", "refused"):
            self.journey_time.record_value(min(max(int((end_h - scheduled_h) * 1e6), 1), HIGHEST_US))
            self._series["finished"][self._second(end_h)] += 1

    @property
    def series(self) -> dict[str, np.ndarray]:
        """Per-second counts: scheduled, started, late, dropped, finished, errors (copies)."""
        return {name: np.asarray(values, dtype=np.int64) for name, values in self._series.items()}

    @property
    def step_series(self) -> np.ndarray:
        """Responses per second, one row per name of REQUEST_NAMES (a copy)."""
        return np.asarray(self._steps, dtype=np.int64)

    # -- shipping and merging --------------------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        """Plain JSON-able data (histograms base64-encoded, compressed) for Locust messages."""
        return {
            "length_s": self.length_s,
            "window_s": self.window_s,
            "latency": {k: _encode(h) for k, h in self.latency.items()},
            "service": {k: _encode(h) for k, h in self.service.items()},
            "window_latency": [_encode(h) for h in self.window_latency],
            "arrival_lag": _encode(self.arrival_lag),
            "journey_time": _encode(self.journey_time),
            "requests": dict(self.requests),
            "unexpected": dict(self.unexpected),
            "outcomes": {k: dict(v) for k, v in self.outcomes.items() if v},
            "acknowledged": dict(self.acknowledged),
            "unknown": dict(self.unknown),
            "timeouts": dict(self.timeouts),
            "journeys": dict(self.journeys),
            "stopped_at": dict(self.stopped_at),
            "mismatches": dict(self.mismatches),
            "series": {k: list(v) for k, v in self._series.items()},
            "step_series": {name: list(self._steps[i]) for i, name in enumerate(REQUEST_NAMES)},
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> SurgeMetrics:
        metrics = cls(data["length_s"], data["window_s"])
        metrics.merge(data)
        return metrics

    def merge(self, data: dict[str, Any]) -> None:
        """Add another process's :meth:`to_wire` data to this one."""
        if data["window_s"] != self.window_s or data["length_s"] != self.length_s:
            raise ValueError("metrics from processes with different run lengths cannot be merged")
        for name, encoded in data["latency"].items():
            _add_encoded(self.latency[name], encoded)
        for name, encoded in data["service"].items():
            _add_encoded(self.service[name], encoded)
        for hist, encoded in zip(self.window_latency, data["window_latency"], strict=True):
            _add_encoded(hist, encoded)
        _add_encoded(self.arrival_lag, data["arrival_lag"])
        _add_encoded(self.journey_time, data["journey_time"])
        for attr in _COUNTERS:
            getattr(self, attr).update(data[attr])
        for name, counts in data["outcomes"].items():
            self.outcomes[name].update(counts)
        for name, values in data["series"].items():
            self._series[name] = (
                np.asarray(self._series[name]) + np.asarray(values, dtype=np.int64)
            ).tolist()
        for name, values in data["step_series"].items():
            row = self._step_index[name]
            self._steps[row] = (np.asarray(self._steps[row]) + np.asarray(values, dtype=np.int64)).tolist()

    # -- reading ---------------------------------------------------------------------------------
    def step_table(self) -> dict[str, dict[str, Any]]:
        """Per request name: throughput, latency and service percentiles (ms), outcomes."""
        active = max(self.length_s, 1e-9)
        table = {}
        for name in REQUEST_NAMES:
            if not self.requests[name]:
                continue
            table[name] = {
                "requests": self.requests[name],
                "throughput_rps": self.requests[name] / active,
                "unexpected_errors": self.unexpected[name],
                "latency_ms": histogram_summary(self.latency[name]),
                "service_ms": histogram_summary(self.service[name]),
                "outcomes": dict(sorted(self.outcomes[name].items())),
            }
        return table

    def overall_latency(self, steps_only: bool = True) -> HdrHistogram:
        total = new_histogram()
        for name, hist in self.latency.items():
            if steps_only and name == OTP_POLL:
                continue
            total.add(hist)
        return total

    def step_requests(self) -> int:
        return sum(n for name, n in self.requests.items() if name != OTP_POLL)

    def step_unexpected(self) -> int:
        return sum(n for name, n in self.unexpected.items() if name != OTP_POLL)

    def latency_over_time(self) -> list[dict[str, float | None]]:
        rows = []
        for i, hist in enumerate(self.window_latency):
            summary = histogram_summary(hist)
            rows.append(
                {
                    "start_s": i * self.window_s,
                    "count": summary["count"],
                    **{k: summary[k] for k in ("p50", "p90", "p99", "max")},
                }
            )
        return rows
