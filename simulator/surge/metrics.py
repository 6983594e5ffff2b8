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

FLUSH_EVERY = 4096
"""Recorded times kept before they are added to the histograms in one go (SurgeMetrics.flush)."""

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


def _us(seconds: np.ndarray) -> np.ndarray:
    """Harness seconds to whole microseconds in the histograms' range: ``min(max(int(s * 1e6), 1),
    HIGHEST_US)`` for each value, as the per-value code did."""
    return np.clip(seconds * 1e6, 1, HIGHEST_US).astype(np.int64)


def record_many(hist: HdrHistogram, values: np.ndarray) -> None:
    """Record many values (ints in 1..HIGHEST_US) at once: the same counts, total, min and max as
    calling ``hist.record_value`` for each, computed with numpy on the counts array.

    HdrHistogram's index of a value: bucket = bit_length(value | sub_bucket_mask) - unit_magnitude
    - (sub_bucket_half_count_magnitude + 1); sub-bucket = value >> (bucket + unit_magnitude);
    index = (bucket + 1) << sub_bucket_half_count_magnitude + sub-bucket - sub_bucket_half_count.
    ``frexp`` gives the exact bit length of an integer below 2**53.
    """
    if not len(values):
        return
    values = np.asarray(values, dtype=np.int64)
    bits = np.frexp((values | hist.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bits - hist.unit_magnitude - (hist.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + hist.unit_magnitude)
    index = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + (sub_bucket - hist.sub_bucket_half_count)
    counts = np.ctypeslib.as_array(hist.counts)
    index, n = np.unique(index, return_counts=True)
    counts[index] += n.astype(counts.dtype)
    hist.total_count += len(values)
    hist.min_value = min(hist.min_value, int(values.min()))
    hist.max_value = max(hist.max_value, int(values.max()))


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
        # What the properties below return, once the values recorded since were added (flush).
        self._latency = {name: new_histogram() for name in REQUEST_NAMES}
        self._service = {name: new_histogram() for name in REQUEST_NAMES}
        self._window_latency = [new_histogram(WINDOW_SIG_FIGS) for _ in range(self.windows)]
        self._arrival_lag = new_histogram()
        self._journey_time = new_histogram()
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
        self._steps = np.zeros((len(REQUEST_NAMES), self.seconds), dtype=np.int64)
        self._step_index = {name: i for i, name in enumerate(REQUEST_NAMES)}
        # Times recorded since the last flush: a list append per request instead of three
        # histogram updates in Python (HdrHistogram.record_value), added in bulk by flush().
        self._pending: list[tuple[int, float, float, float]] = []  # (name index, intended, sent, end)
        self._pending_lags: list[float] = []
        self._pending_journeys: list[float] = []

    # -- the histograms, up to date --------------------------------------------------------------
    @property
    def latency(self) -> dict[str, HdrHistogram]:
        """Per request name, from each attempt's intended start to its answer."""
        self.flush()
        return self._latency

    @property
    def service(self) -> dict[str, HdrHistogram]:
        """Per request name, from the moment the attempt was sent to its answer."""
        self.flush()
        return self._service

    @property
    def window_latency(self) -> list[HdrHistogram]:
        """Latency of journey steps (OTP polls left out), one histogram per window of ``window_s``."""
        self.flush()
        return self._window_latency

    @property
    def arrival_lag(self) -> HdrHistogram:
        self.flush()
        return self._arrival_lag

    @property
    def journey_time(self) -> HdrHistogram:
        self.flush()
        return self._journey_time

    def flush(self) -> None:
        """Add the times recorded since the last flush to the histograms and per-second counts."""
        if self._pending:
            data = np.array(self._pending, dtype=np.float64)
            self._pending = []
            names = data[:, 0].astype(np.int64)
            intended, sent, end = data[:, 1], data[:, 2], data[:, 3]
            latency, service = _us(end - intended), _us(end - sent)
            seconds = np.clip(end.astype(np.int64), 0, self.seconds - 1)
            for i in np.unique(names).tolist():
                mine = names == i
                record_many(self._latency[REQUEST_NAMES[i]], latency[mine])
                record_many(self._service[REQUEST_NAMES[i]], service[mine])
                self._steps[i] += np.bincount(seconds[mine], minlength=self.seconds)
            steps = names != self._step_index[OTP_POLL]
            windows = np.clip((intended / self.window_s).astype(np.int64), 0, self.windows - 1)
            for w in np.unique(windows[steps]).tolist():
                record_many(self._window_latency[w], latency[steps & (windows == w)])
        if self._pending_lags:
            record_many(self._arrival_lag, _us(np.array(self._pending_lags, dtype=np.float64)))
            self._pending_lags = []
        if self._pending_journeys:
            record_many(self._journey_time, _us(np.array(self._pending_journeys, dtype=np.float64)))
            self._pending_journeys = []

    # -- recording (hot path: a list append each; the histograms are filled by flush) ------------
    def _second(self, h: float) -> int:
        return min(max(int(h), 0), self.seconds - 1)

    def record_request(
        self, name: str, intended_h: float, sent_h: float, end_h: float, outcome: str, unexpected: bool
    ) -> None:
        """One HTTP exchange; times are harness seconds, ``outcome`` like ``201`` or ``404 NIK_NOT_FOUND``."""
        self.requests[name] += 1
        self.outcomes[name][outcome] += 1
        pending = self._pending
        pending.append((self._step_index[name], intended_h, sent_h, end_h))
        if unexpected:
            self.unexpected[name] += 1
            self._series["errors"][self._second(end_h)] += 1
        if len(pending) >= FLUSH_EVERY:
            self.flush()

    def record_scheduled(self, scheduled_h: np.ndarray) -> None:
        """All arrivals this process is responsible for (counted once, before the run)."""
        seconds = np.clip(scheduled_h.astype(np.int64), 0, self.seconds - 1)
        counts = np.bincount(seconds, minlength=self.seconds)[: self.seconds]
        self._series["scheduled"] = (np.asarray(self._series["scheduled"]) + counts).tolist()

    def record_arrival(self, scheduled_h: float, started_h: float, late_after_s: float) -> None:
        lag = started_h - scheduled_h
        self._pending_lags.append(lag)
        if len(self._pending_lags) >= FLUSH_EVERY:
            self.flush()
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
            self._pending_journeys.append(end_h - scheduled_h)
            if len(self._pending_journeys) >= FLUSH_EVERY:
                self.flush()
            self._series["finished"][self._second(end_h)] += 1

    @property
    def series(self) -> dict[str, np.ndarray]:
        """Per-second counts: scheduled, started, late, dropped, finished, errors (copies)."""
        return {name: np.asarray(values, dtype=np.int64) for name, values in self._series.items()}

    @property
    def step_series(self) -> np.ndarray:
        """Responses per second, one row per name of REQUEST_NAMES (a copy)."""
        self.flush()
        return self._steps.copy()

    # -- shipping and merging --------------------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        """Plain JSON-able data (histograms base64-encoded, compressed) for Locust messages."""
        self.flush()
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
            "step_series": {name: self._steps[i].tolist() for i, name in enumerate(REQUEST_NAMES)},
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
            self._steps[self._step_index[name]] += np.asarray(values, dtype=np.int64)

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
