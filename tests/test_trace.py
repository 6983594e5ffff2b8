"""Surges from recorded traffic: reading CSV / JSONL / access-log traces, shifting, compressing,
thinning and multiplying them, streaming a long log, scenario errors, and a replay whose started
arrivals match the trace per 10 s window."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from simulator.errors import InvalidInputFile
from simulator.surge.scenario import dump_scenario, load_scenario, parse_scenario
from simulator.surge.schedule import build_schedule
from simulator.surge.trace import (
    TraceSpec,
    iter_epochs,
    summarise,
    synthetic_epochs,
    write_synthetic_trace,
)

OPENING = dt.datetime(2020, 11, 2, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=7)))
SCENARIO = """
[scenario]
name = "trace"
seed = 3

[wave]
number = 2
quota = 100
opens_at = 2020-11-02T12:00:00+07:00
duration_h = 1.0

[replay]
length_s = {length_s}
time_scale = {time_scale}
population_scale = {population_scale}
drain_s = 5.0

[arrivals]
trace = "{trace}"
{extra}
"""


def epochs(seed: int = 1, crowd: int = 1500, tail: int = 2500) -> np.ndarray:
    return synthetic_epochs(
        opening_epoch=OPENING.timestamp(),
        crowd=crowd,
        crowd_release_s=40.0,
        tail=tail,
        decay_s=300.0,
        baseline_per_s=0.5,
        duration_s=1800.0,
        seed=seed,
    )


def scenario(
    tmp_path: Path,
    trace: Path,
    *,
    length_s: float = 600.0,
    time_scale: float = 10.0,
    population_scale: float = 1.0,
    extra: str = "",
    funnel: str = "",
) -> Path:
    path = tmp_path / "trace.toml"
    path.write_text(
        SCENARIO.format(
            length_s=length_s,
            time_scale=time_scale,
            population_scale=population_scale,
            trace=trace.name,
            extra=extra,
        )
        + funnel,
        encoding="utf-8",
    )
    return path


def harness_windows(times_s: np.ndarray, length_s: float, window_s: float = 10.0) -> np.ndarray:
    return np.histogram(times_s, bins=np.arange(0, length_s + window_s, window_s))[0]


@pytest.mark.parametrize("kind", ["csv", "jsonl", "access_log"])
def test_each_format_streams_every_event(tmp_path, kind):
    recorded = epochs()
    trace = write_synthetic_trace(
        tmp_path / f"t.{'log' if kind == 'access_log' else kind}", recorded, kind, noise_every=3
    )
    spec = TraceSpec(str(trace), path_filter="/v1/accounts" if kind == "access_log" else None)
    got = np.fromiter(iter_epochs(spec), dtype=float)
    assert len(got) == len(recorded), "access logs: the other paths are filtered out"
    tolerance = 1.0 if kind == "access_log" else 1e-3  # access logs keep whole seconds
    assert np.all(np.abs(got - recorded) < tolerance)
    summary = summarise(spec)
    assert summary.events == len(recorded) and sum(summary.per_minute) == len(recorded)
    assert summary.whole_seconds == (kind == "access_log")


def test_replayed_as_recorded_shifted_to_the_opening_and_compressed(tmp_path):
    recorded = epochs()
    trace = write_synthetic_trace(tmp_path / "t.csv", recorded, "csv")
    first_at_zero = build_schedule(load_scenario(scenario(tmp_path, trace, length_s=600.0, time_scale=10.0)))
    assert first_at_zero.starts_s[0] == 0.0, "by default the trace's first event is the opening"
    opening = "trace_opening = 2020-11-02T12:00:00+07:00"
    loaded = load_scenario(scenario(tmp_path, trace, length_s=600.0, time_scale=10.0, extra=opening))
    schedule = build_schedule(loaded)
    assert parse_scenario(dump_scenario(loaded), "again") == loaded, "workers get the scenario as text"
    wave_t = recorded - OPENING.timestamp()
    expected = wave_t[wave_t < 600.0] / 10.0
    assert len(schedule) == len(expected)
    assert np.allclose(schedule.starts_s, expected, atol=1e-5)
    assert np.array_equal(schedule.counts_per_window(10.0), harness_windows(expected, 60.0))


@pytest.mark.parametrize(("target", "population_scale"), [(1000.0, 1.0), (12_000.0, 1.0), (8000.0, 0.25)])
def test_thinned_or_multiplied_to_the_target_total_keeping_the_shape(tmp_path, target, population_scale):
    recorded = epochs(seed=4)
    trace = write_synthetic_trace(tmp_path / "t.log", recorded, "access_log")
    loaded = load_scenario(
        scenario(
            tmp_path,
            trace,
            length_s=1800.0,
            time_scale=30.0,
            population_scale=population_scale,
            extra=f'trace_path = "/v1/accounts"\nexpected_total = {target}',
        )
    )
    schedule = build_schedule(loaded)
    factor = target * population_scale / len(recorded)
    assert len(schedule) == pytest.approx(target * population_scale, abs=1)
    wave_t = np.floor(recorded) - OPENING.timestamp()
    reference = harness_windows((wave_t + 0.5) / 30.0, 60.0, 10.0) * factor
    got = schedule.counts_per_window(10.0)
    assert np.all(np.abs(got - reference) <= np.maximum(0.02 * reference, 1.0 + factor)), (got, reference)
    assert np.array_equal(build_schedule(loaded).starts_s, schedule.starts_s), "same seed, same schedule"


def test_a_long_log_streams_in_bounded_memory(tmp_path):
    # 100k lines (a 10M-line log behaves the same, only slower): memory must not grow with the file.
    recorded = epochs(seed=5, crowd=40_000, tail=60_000)
    trace = write_synthetic_trace(tmp_path / "big.log", recorded, "access_log")
    assert trace.stat().st_size > 8_000_000
    tracemalloc.start()
    loaded = load_scenario(
        scenario(
            tmp_path,
            trace,
            length_s=60.0,
            time_scale=1.0,
            population_scale=0.01,
            extra='trace_path = "/v1/accounts"',
        )
    )
    schedule = build_schedule(loaded)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0 < len(schedule) < 2000
    assert peak < trace.stat().st_size / 4, (
        f"peak {peak / 1e6:.1f} MB while reading a {trace.stat().st_size / 1e6:.0f} MB log"
    )


@pytest.mark.parametrize(
    ("content", "extra", "fragment"),
    [
        ("when,path\n1,/\n", "", "no column 'timestamp'"),
        ("timestamp\nyesterday\n", "", "is not a timestamp"),
        ("timestamp\n", "", "holds no arrivals"),
        ("timestamp\n1604293200\n", "decay_half_life_h = 1.0", "no curve keys beside 'trace'"),
        ("timestamp\n1604293200\n", 'trace_format = "xml"', "trace_format"),
        ("timestamp\n1604293200\n", 'trace_path = "v1"', "trace_path"),
    ],
)
def test_bad_traces_are_refused_naming_the_file_and_key(tmp_path, content, extra, fragment):
    trace = tmp_path / "t.csv"
    trace.write_text(content)
    with pytest.raises(InvalidInputFile, match="trace.toml") as err:
        load_scenario(scenario(tmp_path, trace, extra=extra))
    assert fragment in str(err.value)


def test_access_log_without_a_matching_path_is_refused(tmp_path):
    trace = write_synthetic_trace(tmp_path / "t.log", epochs()[:50], "access_log")
    with pytest.raises(InvalidInputFile, match="no line requests the path '/daftar'"):
        load_scenario(scenario(tmp_path, trace, extra='trace_path = "/daftar"'))
    missing = tmp_path / "missing.csv"
    with pytest.raises(InvalidInputFile, match="cannot read the trace"):
        load_scenario(scenario(tmp_path, missing))


@pytest.mark.slow
def test_started_arrivals_match_the_trace_per_10_s_window(tmp_path):
    """A real surge against the reference API: what started each 10 s is the trace's count within 2%."""
    from simulator.api.testing import running_server
    from simulator.surge.runner import SurgeOptions, run_surge

    recorded = epochs(seed=6, crowd=700, tail=900)
    trace = write_synthetic_trace(tmp_path / "t.jsonl", recorded, "jsonl")
    # Everybody signs up and stops there: the arrivals are what is measured.
    funnel = '\n[funnel]\nsource = "scenario"\nemail_verify = 0.0\n'
    path = scenario(
        tmp_path,
        trace,
        length_s=300.0,
        time_scale=10.0,
        funnel=funnel,
        extra="trace_opening = 2020-11-02T12:00:00+07:00",
    )
    with running_server(password_cost=0, log_path=tmp_path / "api.log") as api:
        run_surge(SurgeOptions(scenario=path, out=tmp_path / "out", host=api), say=lambda line: None)
    data = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    started = np.asarray(data["arrivals"]["per_second"]["started"], dtype=float)
    started = np.pad(started, (0, max(0, 30 - len(started))))[:30].reshape(3, 10).sum(axis=1)
    wave_t = recorded - OPENING.timestamp()
    reference = harness_windows(wave_t[wave_t < 300.0] / 10.0, 30.0, 10.0)
    assert reference.min() > 100
    assert np.all(np.abs(started - reference) <= 0.02 * reference), (started, reference)
    summary = data["arrivals"]["trace"]
    assert summary["events"] == len(recorded) and summary["peak_minute"] == 0
