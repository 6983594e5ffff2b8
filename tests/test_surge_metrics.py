"""HDR metrics: exact percentiles, and merging workers' encoded data equals measuring in one place."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from simulator.surge.metrics import SurgeMetrics, histogram_summary, new_histogram


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
