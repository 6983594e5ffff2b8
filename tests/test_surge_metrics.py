"""HDR metrics: exact percentiles, and merging workers' encoded data equals measuring in one place."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from simulator.surge import metrics as metrics_module
from simulator.surge.metrics import (
    HIGHEST_US,
    REQUEST_NAMES,
    SurgeMetrics,
    histogram_summary,
    new_histogram,
    record_many,
)


def record_some(metrics: SurgeMetrics, rng: np.random.Generator, n: int) -> None:
    steps = ["create_account", "identity", "join"]
    for _ in range(n):
        intended = rng.uniform(0, 50)
        sent = intended + rng.exponential(0.01)
        end = sent + rng.lognormal(-3, 1)
        step = steps[rng.integers(3)]
        bad = rng.random() < 0.1
        metrics.record_request(step, intended, sent, end, "503 REGISTRY_UNAVAILABLE" if bad else "200", bad)
        metrics.record_arrival(intended, intended + rng.exponential(0.5), late_after_s=1.0)
    metrics.record_journey("completed", "join", 1.0, 30.0)
    metrics.acknowledged["join"] += 1


def test_summary_matches_hdrhistogram_own_percentiles():
    hist = new_histogram()
    for value in np.random.default_rng(3).lognormal(9, 2, 5000).astype(int) + 1:
        hist.record_value(int(value))
    summary = histogram_summary(hist)
    for key, percentile in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)):
        assert summary[key] == hist.get_value_at_percentile(percentile) / 1000.0
    assert summary["mean"] == pytest.approx(hist.get_mean_value() / 1000.0)
    assert summary["count"] == 5000


def test_three_significant_figures_not_two():
    hist = new_histogram()
    hist.record_value(123_456)  # 123.456 ms
    assert histogram_summary(hist)["p50"] == pytest.approx(123.456, rel=1e-3)


def test_merged_workers_equal_one_process():
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(2)
    a, b, both = SurgeMetrics(60, 2), SurgeMetrics(60, 2), SurgeMetrics(60, 2)
    record_some(a, rng_a, 400)
    record_some(b, rng_b, 300)
    record_some(both, np.random.default_rng(1), 400)
    record_some(both, np.random.default_rng(2), 300)
    merged = SurgeMetrics(60, 2)
    for part in (a, b):
        merged.merge(json.loads(json.dumps(part.to_wire())))  # as it travels between processes
    assert merged.step_table() == both.step_table()
    assert merged.latency_over_time() == both.latency_over_time()
    assert histogram_summary(merged.arrival_lag) == histogram_summary(both.arrival_lag)
    for name in ("started", "late", "errors"):
        np.testing.assert_array_equal(merged.series[name], both.series[name])
    assert merged.journeys == both.journeys and merged.acknowledged["join"] == 2


def test_latency_counts_from_the_intended_start():
    metrics = SurgeMetrics(10, 1)
    # Meant to start at 1.0 s, sent late at 3.0 s (the load generator lagged), answered at 3.1 s.
    metrics.record_request("login", 1.0, 3.0, 3.1, "201", False)
    assert histogram_summary(metrics.latency["login"])["max"] == pytest.approx(2100, rel=1e-3)
    assert histogram_summary(metrics.service["login"])["max"] == pytest.approx(100, rel=1e-3)


def test_merging_different_runs_is_refused():
    with pytest.raises(ValueError):
        SurgeMetrics(60, 2).merge(SurgeMetrics(30, 1).to_wire())


def test_empty_histograms_summarise_to_none():
    summary = histogram_summary(HdrHistogram(1, 1000, 3))
    assert summary["count"] == 0 and summary["p99"] is None


def edge_values() -> list[int]:
    """Values at every power-of-two boundary of the histograms' range, and the range's ends."""
    values = {1, 2, 3, HIGHEST_US - 1, HIGHEST_US}
    for bit in range(1, 32):
        values.update(v for v in (2**bit - 1, 2**bit, 2**bit + 1) if 1 <= v <= HIGHEST_US)
    return sorted(values)


@pytest.mark.parametrize("sig_figs", [3, 2])
def test_bulk_recording_equals_one_value_at_a_time(sig_figs):
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            np.clip(rng.lognormal(9, 3, 20_000), 1, HIGHEST_US).astype(np.int64),
            np.array(edge_values(), dtype=np.int64),
        ]
    )
    one, bulk = new_histogram(sig_figs), new_histogram(sig_figs)
    for value in values.tolist():
        one.record_value(value)
    record_many(bulk, values[:1000])
    record_many(bulk, values[1000:])  # twice: adds to what is there
    np.testing.assert_array_equal(np.ctypeslib.as_array(bulk.counts), np.ctypeslib.as_array(one.counts))
    assert (bulk.get_total_count(), bulk.get_min_value(), bulk.get_max_value()) == (
        one.get_total_count(),
        one.get_min_value(),
        one.get_max_value(),
    )
    assert bulk.encode() == one.encode()


def test_recorded_times_are_the_same_flushed_early_or_late(monkeypatch):
    """Times wait in a list until a read or FLUSH_EVERY of them: when they are added changes nothing."""
    late = SurgeMetrics(60, 2)
    record_some(late, np.random.default_rng(5), 700)
    monkeypatch.setattr(metrics_module, "FLUSH_EVERY", 7)
    early = SurgeMetrics(60, 2)
    record_some(early, np.random.default_rng(5), 700)
    assert early.to_wire() == late.to_wire()
    np.testing.assert_array_equal(early.step_series, late.step_series)


def test_times_land_where_one_value_at_a_time_put_them():
    """Each attempt's latency and service time, its over-time window and its second, as the
    per-value arithmetic did it (whole microseconds, clamped to the histograms' range)."""
    rng = np.random.default_rng(11)
    metrics = SurgeMetrics(60, 2)
    latency, service = new_histogram(), new_histogram()
    windows = [new_histogram(2) for _ in range(metrics.windows)]
    seconds = np.zeros(metrics.seconds, dtype=np.int64)
    for _ in range(3000):
        intended = float(rng.uniform(-1, 70))  # before the start and past the end clamp too
        sent = intended + float(rng.exponential(0.01))
        end = sent + float(rng.choice([rng.lognormal(-3, 1), 0.0, 1e-7, 5000.0]))
        metrics.record_request("identity", intended, sent, end, "200", False)
        us = min(max(int((end - intended) * 1e6), 1), HIGHEST_US)
        latency.record_value(us)
        service.record_value(min(max(int((end - sent) * 1e6), 1), HIGHEST_US))
        windows[min(max(int(intended / 2), 0), metrics.windows - 1)].record_value(us)
        seconds[min(max(int(end), 0), metrics.seconds - 1)] += 1
    assert metrics.latency["identity"].encode() == latency.encode()
    assert metrics.service["identity"].encode() == service.encode()
    assert [h.get_total_count() for h in metrics.window_latency] == [h.get_total_count() for h in windows]
    for mine, expected in zip(metrics.window_latency, windows, strict=True):
        assert mine.encode() == expected.encode() or not expected.get_total_count()
    np.testing.assert_array_equal(metrics.step_series[REQUEST_NAMES.index("identity")], seconds)
    assert metrics.requests["identity"] == 3000
