"""Arrivals from recorded traffic: a CSV/JSONL file with a timestamp column, or common/combined
access-log lines filtered by path, streamed (never loaded whole) into the surge's arrival schedule.

The trace is shifted to the opening, compressed by ``time_scale``, and thinned or multiplied to the
target total by systematic sampling (the k-th copy of event i exists iff floor((i+1)f) > floor(i f) + k),
so every window keeps its share exactly; a synthetic trace generator serves the tests.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import math
import os
import re
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import InvalidInputFile

TRACE_FORMATS = ("auto", "csv", "jsonl", "access_log")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".log": "access_log"}
_ACCESS = re.compile(r'^\S+ \S+ \S+ \[([^\]]+)\] "(\S+) (\S+)[^"]*" (\d{3})')
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
MAX_BAD_LINES_SHOWN = 1


@dataclass(frozen=True)
class TraceSpec:
    """Where the trace is and how to read it (the ``[arrivals] trace*`` keys)."""

    path: str
    format: str = "auto"
    time_column: str = "timestamp"
    path_filter: str | None = None
    opening: dt.datetime | None = None

    @property
    def kind(self) -> str:
        if self.format != "auto":
            return self.format
        return _EXTENSIONS.get(Path(self.path).suffix.lower(), "access_log")


@dataclass(frozen=True)
class TraceSummary:
    """What a pass over the trace found: its count, first and last event, and arrivals per minute."""

    events: int
    first_epoch: float
    last_epoch: float
    opening_epoch: float
    per_minute: tuple[int, ...]  # minute 0 = the minute starting at the opening
    whole_seconds: bool  # every timestamp is a whole second (access logs): spread within each second

    def as_dict(self) -> dict[str, Any]:
        peak = int(np.argmax(self.per_minute)) if self.per_minute else 0
        return {
            "events": self.events,
            "first": _iso(self.first_epoch),
            "last": _iso(self.last_epoch),
            "opening": _iso(self.opening_epoch),
            "duration_s": self.last_epoch - self.first_epoch,
            "peak_minute": peak,
            "peak_per_minute": self.per_minute[peak] if self.per_minute else 0,
            "mean_per_minute": self.events / max(len(self.per_minute), 1),
            "per_minute": list(self.per_minute),
        }


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


# ------------------------------------------------------------------------------------------------
# Reading


def _epoch(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise InvalidInputFile(f"{where}: {value!r} is not a timestamp")
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInputFile(
                    f"{where}: {text[:40]!r} is not a timestamp (epoch seconds or ISO 8601)"
                ) from None
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.UTC)
            return stamp.timestamp()
    if not math.isfinite(number):
        raise InvalidInputFile(f"{where}: {value!r} is not a timestamp")
    return number / 1000.0 if number > 1e11 else number  # epoch milliseconds


@functools.lru_cache(maxsize=4096)
def _access_epoch(text: str) -> float:
    # "10/Oct/2000:13:55:36 -0700"; cached: a log repeats each second's stamp many times.
    try:
        day, month, rest = text.split("/", 2)
        year, hh, mm, rest2 = rest.split(":", 3)
        ss, zone = rest2.split(" ")
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        stamp = dt.datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=dt.UTC)
    except (ValueError, KeyError, IndexError):
        raise ValueError(text) from None
    return stamp.timestamp() - offset


def iter_epochs(spec: TraceSpec) -> Iterator[float]:
    """Each event's epoch seconds, in file order, streaming (one line at a time)."""
    path = Path(spec.path)
    kind = spec.kind
    try:
        handle = open(path, encoding="utf-8", errors="replace", newline="")
    except OSError as err:
        raise InvalidInputFile(f"{path}: cannot read the trace ({err.strerror or err})") from None
    with handle:
        if kind == "csv":
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or spec.time_column not in reader.fieldnames:
                raise InvalidInputFile(
                    f"{path}: no column {spec.time_column!r} "
                    f"(columns: {', '.join(reader.fieldnames or [])}); "
                    "set [arrivals] trace_time_column"
                )
            for row in reader:
                yield _epoch(row[spec.time_column], f"{path}: line {reader.line_num}")
        elif kind == "jsonl":
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise InvalidInputFile(f"{path}: line {number}: not a JSON object") from None
                if not isinstance(record, dict) or spec.time_column not in record:
                    raise InvalidInputFile(
                        f"{path}: line {number}: no key {spec.time_column!r}; "
                        "set [arrivals] trace_time_column"
                    )
                yield _epoch(record[spec.time_column], f"{path}: line {number}")
        else:
            wanted = spec.path_filter
            matched = 0
            for number, line in enumerate(handle, start=1):
                found = _ACCESS.match(line)
                if found is None:
                    if line.strip() and matched == 0 and number >= 100:
                        raise InvalidInputFile(
                            f"{path}: the first 100 lines hold no common/combined access-log line "
                            '(host ident user [10/Oct/2000:13:55:36 -0700] "GET /path HTTP/1.1" 200 ...)'
                        )
                    continue
                if wanted is not None and found.group(3).split("?", 1)[0] != wanted:
                    continue
                try:
                    epoch = _access_epoch(found.group(1))
                except ValueError:
                    raise InvalidInputFile(
                        f"{path}: line {number}: bad time [{found.group(1)[:40]}]"
                    ) from None
                matched += 1
                yield epoch


@functools.lru_cache(maxsize=8)
def _summary(spec: TraceSpec, _stamp: tuple[int, int]) -> TraceSummary:
    count, first, last, whole = 0, math.inf, -math.inf, True
    minutes: Counter[int] = Counter()
    for epoch in iter_epochs(spec):
        count += 1
        first, last = min(first, epoch), max(last, epoch)
        whole = whole and epoch == int(epoch)
        minutes[int(epoch // 60)] += 1
    if count == 0:
        raise InvalidInputFile(
            f"{spec.path}: the trace holds no arrivals"
            + (f" (no line requests the path {spec.path_filter!r})" if spec.path_filter else "")
        )
    opening = spec.opening.timestamp() if spec.opening is not None else first
    base = int(opening // 60)
    span = int(last // 60) - base + 1
    per_minute = [0] * max(span, 0)
    for minute, n in minutes.items():
        if 0 <= minute - base < span:
            per_minute[minute - base] += n
    return TraceSummary(count, first, last, opening, tuple(per_minute), whole)


def summarise(spec: TraceSpec) -> TraceSummary:
    """One streaming pass over the trace (cached per file version): count, span, per-minute rate."""
    try:
        stat = os.stat(spec.path)
    except OSError as err:
        raise InvalidInputFile(f"{spec.path}: cannot read the trace ({err.strerror or err})") from None
    return _summary(spec, (stat.st_mtime_ns, stat.st_size))


# ------------------------------------------------------------------------------------------------
# The schedule


def trace_factor(scenario: Any, summary: TraceSummary) -> float:
    """Copies per recorded arrival: the target total over the trace's count, times population_scale."""
    return scenario.arrivals.expected_total / summary.events * scenario.replay.population_scale


def trace_starts(scenario: Any, seed: int) -> tuple[np.ndarray, float]:
    """Harness start times of the replay window (sorted) and how many were expected there."""
    spec = scenario.arrivals.trace_spec
    summary = summarise(spec)
    replay = scenario.replay
    factor = trace_factor(scenario, summary)
    rng = np.random.default_rng([seed, 1])
    starts = array("d")
    in_window = 0
    window_end = replay.start_s + replay.length_s
    for i, epoch in enumerate(iter_epochs(spec)):
        t = epoch - summary.opening_epoch
        if not replay.start_s <= t < window_end:
            continue
        in_window += 1
        copies = math.floor((i + 1) * factor) - math.floor(i * factor)
        for _ in range(copies):
            # A whole-second log says "during this second": spread the copies over it.
            jitter = float(rng.random()) if summary.whole_seconds else 0.0
            starts.append((t + jitter - replay.start_s) / replay.time_scale)
    values = np.sort(np.frombuffer(starts, dtype=np.float64)) if len(starts) else np.zeros(0)
    return np.clip(values, 0.0, replay.harness_length_s), in_window * factor


def harness_rate(scenario: Any, h: np.ndarray) -> np.ndarray:
    """Arrivals per harness second the trace asks for at harness times ``h`` (per-minute resolution)."""
    summary = summarise(scenario.arrivals.trace_spec)
    replay = scenario.replay
    t = replay.start_s + np.asarray(h, dtype=float) * replay.time_scale
    minute = np.floor(t / 60).astype(int)
    per_minute = np.asarray(summary.per_minute + (0,), dtype=float)
    index = np.clip(minute, 0, len(per_minute) - 1)
    inside = (minute >= 0) & (minute < len(summary.per_minute))
    return (
        np.where(inside, per_minute[index] / 60.0, 0.0) * trace_factor(scenario, summary) * replay.time_scale
    )


# ------------------------------------------------------------------------------------------------
# Synthetic traces for tests


def synthetic_epochs(
    *,
    opening_epoch: float,
    crowd: int,
    crowd_release_s: float,
    tail: int,
    decay_s: float,
    baseline_per_s: float,
    duration_s: float,
    seed: int = 1,
) -> np.ndarray:
    """Sorted arrival epochs from the surge's own curve: a crowd released at the opening
    (exponential, ``crowd_release_s``), a decaying tail (``decay_s``) and a flat baseline."""
    rng = np.random.default_rng(seed)

    def truncated_exponential(n: int, tau: float) -> np.ndarray:
        u = rng.random(n)
        return -tau * np.log1p(-u * -np.expm1(-duration_s / tau))

    parts = [
        truncated_exponential(crowd, crowd_release_s),
        truncated_exponential(tail, decay_s),
        rng.random(rng.poisson(baseline_per_s * duration_s)) * duration_s,
    ]
    return np.sort(np.concatenate(parts)) + opening_epoch


def write_synthetic_trace(
    path: str | Path, epochs: np.ndarray, kind: str = "csv", *, noise_every: int = 0
) -> Path:
    """Write ``epochs`` as a trace file: ``csv`` / ``jsonl`` (a ``timestamp`` column) or ``access_log``
    (combined format, sign-ups as ``POST /v1/accounts``; with ``noise_every``, other requests between)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        if kind == "csv":
            handle.write("timestamp,path\n")
            for epoch in epochs:
                handle.write(f"{epoch:.6f},/v1/accounts\n")
        elif kind == "jsonl":
            for epoch in epochs:
                stamp = dt.datetime.fromtimestamp(float(epoch), dt.UTC).isoformat()
                handle.write(json.dumps({"timestamp": stamp, "path": "/v1/accounts"}) + "\n")
        elif kind == "access_log":
            for i, epoch in enumerate(epochs):
                stamp = dt.datetime.fromtimestamp(float(epoch), dt.timezone(dt.timedelta(hours=7)))
                when = stamp.strftime("%d/%b/%Y:%H:%M:%S %z")
                if noise_every and i % noise_every == 0:
                    handle.write(
                        f'10.0.0.{i % 250} - - [{when}] "GET /v1/waves/1 HTTP/1.1" 200 88 "-" "Mozilla/5.0"\n'
                    )
                handle.write(
                    f'10.0.0.{i % 250} - - [{when}] "POST /v1/accounts HTTP/1.1" 201 312 "-" "Mozilla/5.0"\n'
                )
        else:
            raise ValueError(f"unknown trace kind {kind!r}")
    return path


# ------------------------------------------------------------------------------------------------
# Hooks: scenario validation and the report


def read_trace_arrivals(t: Any) -> Any:
    """The ``[arrivals]`` table of a scenario that replays a trace (``t`` is the scenario's table reader)."""
    from simulator.surge.scenario import Arrivals, _offset_datetime

    raw = t.string("trace")
    if not raw.strip():
        raise t.fail("trace", "a file name", raw)
    path = Path(raw)
    if not path.is_absolute():
        source = Path(t.source)
        path = (source.parent if source.is_file() else Path.cwd()) / path
    kind = t.string("trace_format", None, choices=TRACE_FORMATS)
    column = t.string("trace_time_column", None)
    path_filter = t.string("trace_path", None)
    if path_filter is not None and not path_filter.startswith("/"):
        raise t.fail("trace_path", "a URL path starting with /", path_filter)
    opening = t.get(
        "trace_opening",
        None,
        kind="an offset date-time such as 2020-11-02T12:00:00+07:00",
        check=_offset_datetime,
    )
    defaults = Arrivals(expected_total=1.0)
    for key in (
        "pre_open_crowd",
        "crowd_release_s",
        "first_24h_share",
        "decay_half_life_h",
        "baseline_per_s",
        "daily_rhythm",
    ):
        t.seen.add(key)
        # A written-out scenario carries the curve's defaults; anything else would be ignored.
        if key in t.data and t.data[key] != getattr(defaults, key):
            raise t.fail(key, "no curve keys beside 'trace' (the trace is the curve)", show=False)
    spec = TraceSpec(str(path.resolve()), kind or "auto", column or "timestamp", path_filter, opening)
    try:
        summary = summarise(spec)
    except InvalidInputFile as err:
        raise InvalidInputFile(f"{t.source}: key '{t.key('trace')}': {err}") from None
    total = t.number("expected_total", float(summary.events), low=0, low_open=True)
    t.finish()
    return Arrivals(
        expected_total=total,
        trace=spec.path,
        trace_format=kind,
        trace_time_column=column,
        trace_path=path_filter,
        trace_opening=opening,
    )


def report_summary(scenario: Any) -> dict[str, Any] | None:
    """The trace's summary for the report (None for a curve): per-minute rate, peak minute, scaling."""
    if scenario.arrivals.trace is None:
        return None
    summary = summarise(scenario.arrivals.trace_spec)
    data = summary.as_dict()
    data.update(
        file=scenario.arrivals.trace,
        format=scenario.arrivals.trace_spec.kind,
        path_filter=scenario.arrivals.trace_path,
        target_total=scenario.arrivals.expected_total,
        copies_per_event=trace_factor(scenario, summary),
    )
    return data
