"""Scenario files: one TOML file describes one wave opening to replay against a registration API.

Owns the schema (dataclasses), the loader with its one-line errors (read through
simulator.surge.toml_table), and the writer used by ``demand --emit-scenario``.
docs/scenario-file.md describes every key, its type, default and meaning; docs/traces.md the
``[arrivals] trace`` keys; docs/target-profile.md what ``[target] target_profile`` names.

Over 500 lines: each table's dataclass and its reader sit side by side, as in profile/format.py.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from simulator.errors import InvalidInputFile
from simulator.rules.arrivals import UnreachableShare, decay_for_first_day_share
from simulator.rules.reasons import UPLOAD_REASONS
from simulator.surge.toml_table import TomlTable, parse_toml, read_toml_source

STEPS: tuple[str, ...] = (
    "create_account",
    "verify_email",
    "login",
    "identity",
    "profile",
    "ktp_upload",
    "phone",
    "verify_phone",
    "test",
    "join",
)
"""The registration flow, in order (docs/domain.md, 'The registration flow (2020)')."""

SELECTION_MODES = ("lottery", "fcfs")
FUNNEL_SOURCES = ("population", "scenario")
SLO_METRICS = (
    "latency_ms",
    "error_rate",
    "dropped_arrivals",
    "completion_rate",
    "throughput_rps",
    "reconciliation",
)
LATENCY_STATS = ("p50", "p90", "p99", "p99.9", "max", "mean")
SHARE_METRICS = ("error_rate", "dropped_arrivals", "completion_rate")
"""SLO metrics that are shares (0..1); the others are counts or times (>= 0)."""
EXPECTED_TOTAL_MAX = 300e6
"""More people than Indonesia has (about 275 million) cannot arrive for one wave."""
KTP_DEFECT_CODES: tuple[str, ...] = tuple(str(r) for r in UPLOAD_REASONS)
"""Ways a KTP upload can be wrong (the reason codes the upload rules answer with)."""

# Mean think time before each step, wave seconds. The test is ~15 minutes of 18 questions
# (docs/domain.md, step 6); the rest are form-filling guesses, overridable per scenario.
DEFAULT_THINK_S: dict[str, float] = {
    "create_account": 90.0,
    "verify_email": 120.0,
    "login": 15.0,
    "identity": 60.0,
    "profile": 120.0,
    "ktp_upload": 90.0,
    "phone": 30.0,
    "verify_phone": 45.0,
    "test": 900.0,
    "join": 30.0,
}


@dataclass(frozen=True)
class Target:
    host: str | None = None
    timeout_s: float = 30.0
    open_wave: bool = True
    apply_faults: bool = True
    reuse_connections: bool = False
    upstreams: str | None = None
    target_profile: str | None = None


@dataclass(frozen=True)
class Wave:
    number: int
    quota: int
    opens_at: dt.datetime
    selection: str = "lottery"
    duration_h: float = 72.0


@dataclass(frozen=True)
class Replay:
    length_s: float
    start_s: float = 0.0
    time_scale: float = 1.0
    population_scale: float = 1.0
    drain_s: float = 30.0
    late_after_s: float = 1.0
    max_in_flight: int = 0

    @property
    def harness_length_s(self) -> float:
        """Harness seconds during which arrivals are scheduled."""
        return self.length_s / self.time_scale


@dataclass(frozen=True)
class Arrivals:
    expected_total: float
    pre_open_crowd: float = 0.0
    crowd_release_s: float = 60.0
    first_24h_share: float | None = None
    decay_half_life_h: float | None = None
    baseline_per_s: float = 0.0
    daily_rhythm: tuple[float, ...] | None = None
    trace: str | None = None
    trace_format: str | None = None
    trace_time_column: str | None = None
    trace_path: str | None = None
    trace_opening: dt.datetime | None = None

    @property
    def trace_spec(self):  # simulator.surge.trace.TraceSpec
        from simulator.surge.trace import TraceSpec

        return TraceSpec(
            self.trace,
            self.trace_format or "auto",
            self.trace_time_column or "timestamp",
            self.trace_path,
            self.trace_opening,
        )

    def tail_total(self, duration_s: float) -> float:
        """People in the decaying tail: everybody who is neither the opening crowd nor the baseline."""
        return max(0.0, self.expected_total - self.pre_open_crowd - self.baseline_per_s * duration_s)

    def tail_time_constant_s(self, duration_s: float) -> float:
        """Time constant of the exponential tail (truncated to the wave), from whichever key was given.

        Raises ValueError (with the reason) when ``first_24h_share`` cannot be reached.
        """
        if self.decay_half_life_h is not None:
            return self.decay_half_life_h * 3600.0 / math.log(2.0)
        if self.tail_total(duration_s) <= 0:
            return math.inf
        try:
            return decay_for_first_day_share(
                self.first_24h_share,
                duration_s,
                crowd_share=self.pre_open_crowd / self.expected_total,
                crowd_release_s=self.crowd_release_s,
                baseline_share=self.baseline_per_s * duration_s / self.expected_total,
            )
        except UnreachableShare:
            raise
        except ValueError as err:
            raise ValueError(f"{err}; give decay_half_life_h instead") from err


@dataclass(frozen=True)
class Funnel:
    source: str = "population"
    email_verify: float = 0.65
    identity_submit: float = 0.77
    phone_verify: float = 0.90
    test_finish: float = 0.95
    join: float = 0.90
    retries_max: int = 2
    retry_backoff_s: float = 20.0
    ktp_uploads_mean: float = 1.0
    otp_poll_s: float = 0.5
    otp_wait_s: float = 30.0
    think_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THINK_S))


@dataclass(frozen=True)
class Defects:
    applicant_share: float | None = None
    ktp: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Faults:
    dukcapil_latency_ms: float = 0.0
    dukcapil_latency_p99_ms: float | None = None
    dukcapil_error_rate: float = 0.0
    sms_delay_s: float = 0.0
    sms_loss_rate: float = 0.0
    email_delay_s: float = 0.0

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class Threshold:
    metric: str
    step: str = "all"
    stat: str | None = None
    max: float | None = None
    min: float | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        what = self.metric if self.stat is None else f"{self.metric} {self.stat}"
        if self.step != "all":
            what += f" [{self.step}]"
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        return f"{what} {' and '.join(bounds)}"


@dataclass(frozen=True)
class Scenario:
    name: str
    wave: Wave
    replay: Replay
    arrivals: Arrivals
    description: str = ""
    seed: int = 1
    target: Target = field(default_factory=Target)
    funnel: Funnel = field(default_factory=Funnel)
    defects: Defects = field(default_factory=Defects)
    faults: Faults = field(default_factory=Faults)
    slo: tuple[Threshold, ...] = ()
    source: str | None = field(default=None, compare=False)
    """Where it was loaded from (a path or ``builtin:NAME``); not written by :func:`dump_scenario`."""

    @property
    def scaled_quota(self) -> int:
        """The wave's quota shrunk like the population (at least 1 place)."""
        return max(1, round(self.wave.quota * self.replay.population_scale))


# --------------------------------------------------------------------------------------------
# Loading


def builtin_scenarios() -> list[str]:
    """Names of the scenario files that ship with the package (``scenarios/*.toml``)."""
    root = importlib.resources.files("scenarios")
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def load_scenario(path_or_name: str | Path) -> Scenario:
    """Read and validate a scenario from a file path or the name of a built-in scenario.

    Raises :class:`InvalidInputFile` naming the file, the key and what was expected.
    """
    text, source = read_toml_source(
        path_or_name,
        "scenarios",
        file_noun="scenario file",
        builtin_noun="built-in scenario",
        builtins=builtin_scenarios(),
    )
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Validate the TOML text of a scenario; ``source`` names it in error messages."""
    root = parse_toml(text, source)
    scenario = _read_scenario(root)
    root.finish()
    return scenario


def _offset_datetime(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise TypeError
    return value


def _read_scenario(root: TomlTable) -> Scenario:
    meta = root.table("scenario", required=True)
    name = meta.string("name")
    if not name.strip():
        raise meta.fail("name", "a non-empty string", name)
    description = meta.string("description", "")
    seed = meta.integer("seed", 1, low=0)
    meta.finish()

    target = _read_target(root.table("target"), root.source)
    wave = _read_wave(root.table("wave", required=True))
    replay = _read_replay(root.table("replay", required=True))
    wave_s = wave.duration_h * 3600
    if replay.start_s + replay.length_s > wave_s + 1e-6:
        raise InvalidInputFile(
            f"{root.source}: key 'replay.length_s': expected the replay to end within the wave "
            f"(start_s + length_s <= wave.duration_h * 3600 = {wave_s:g}), got {replay.length_s:g}"
        )
    arrivals = _read_arrivals(root.table("arrivals", required=True), wave)
    funnel = _read_funnel(root.table("funnel"))
    defects = _read_defects(root.table("defects"))
    faults = _read_faults(root.table("faults"))
    slo = _read_slo(root)
    return Scenario(
        name=name,
        description=description,
        seed=seed,
        target=target,
        wave=wave,
        replay=replay,
        arrivals=arrivals,
        funnel=funnel,
        defects=defects,
        faults=faults,
        slo=slo,
        source=root.source,
    )


def _read_target(t: TomlTable, source: str) -> Target:
    host = t.string("host", None)
    if host is not None and not host.startswith(("http://", "https://")):
        raise t.fail("host", "a URL starting with http:// or https://", host)
    target = Target(
        host=host,
        timeout_s=t.number("timeout_s", 30.0, low=0, low_open=True),
        open_wave=t.boolean("open_wave", True),
        apply_faults=t.boolean("apply_faults", True),
        reuse_connections=t.boolean("reuse_connections", False),
        upstreams=t.string("upstreams", None),
        target_profile=_profile_path(t.string("target_profile", None), source),
    )
    if target.upstreams is not None and not target.upstreams.startswith("http://"):
        raise t.fail("upstreams", "a URL starting with http://", target.upstreams)
    t.finish()
    return target


def _profile_path(value: str | None, source: str) -> str | None:
    """A profile file relative to the scenario file (kept as given when it names a built-in)."""
    if value is None or Path(value).is_absolute():
        return value
    base = Path(source).parent if not source.startswith(("builtin:", "<")) else Path.cwd()
    candidate = base / value
    if candidate.suffix or "/" in value or candidate.is_file():
        return str(candidate.resolve())
    return value  # a built-in profile's name, e.g. "reference"


def _read_wave(t: TomlTable) -> Wave:
    wave = Wave(
        number=t.integer("number", low=1),
        quota=t.integer("quota", low=1),
        selection=t.string("selection", "lottery", choices=SELECTION_MODES),
        opens_at=t.get(
            "opens_at", kind="an offset date-time such as 2020-11-02T12:00:00+07:00", check=_offset_datetime
        ),
        duration_h=t.number("duration_h", 72.0, low=0, low_open=True),
    )
    t.finish()
    return wave


def _read_replay(t: TomlTable) -> Replay:
    replay = Replay(
        start_s=t.number("start_s", 0.0, low=0),
        length_s=t.number("length_s", low=0, low_open=True),
        time_scale=t.number("time_scale", 1.0, low=0, low_open=True),
        population_scale=t.number("population_scale", 1.0, low=0, high=1, low_open=True),
        drain_s=t.number("drain_s", 30.0, low=0),
        late_after_s=t.number("late_after_s", 1.0, low=0, low_open=True),
        max_in_flight=t.integer("max_in_flight", 0, low=0),
    )
    t.finish()
    return replay


def _read_arrivals(t: TomlTable, wave: Wave) -> Arrivals:
    if "trace" in t.data:
        from simulator.surge.trace import read_trace_arrivals

        return read_trace_arrivals(t)

    def rhythm(value: Any) -> tuple[float, ...]:
        if not isinstance(value, list) or len(value) != 24:
            raise TypeError
        hours = tuple(float(v) for v in value if not isinstance(v, bool) and isinstance(v, int | float))
        if len(hours) != 24 or any(h < 0 or not math.isfinite(h) for h in hours) or sum(hours) <= 0:
            raise ValueError
        return hours

    arrivals = Arrivals(
        expected_total=t.number("expected_total", low=0, high=EXPECTED_TOTAL_MAX, low_open=True),
        pre_open_crowd=t.number("pre_open_crowd", 0.0, low=0),
        crowd_release_s=t.number("crowd_release_s", 60.0, low=0, low_open=True),
        first_24h_share=t.number("first_24h_share", None, low=0, high=1, low_open=True, high_open=True),
        decay_half_life_h=t.number("decay_half_life_h", None, low=0, low_open=True),
        baseline_per_s=t.number("baseline_per_s", 0.0, low=0),
        daily_rhythm=t.get(
            "daily_rhythm",
            None,
            kind="a list of 24 numbers >= 0 (local hours 00..23), not all zero",
            check=rhythm,
        ),
    )
    if (arrivals.first_24h_share is None) == (arrivals.decay_half_life_h is None):
        raise InvalidInputFile(
            f"{t.source}: keys '{t.key('first_24h_share')}' / '{t.key('decay_half_life_h')}': "
            "expected exactly one of them (how fast the tail of arrivals decays)"
        )
    baseline_total = arrivals.baseline_per_s * wave.duration_h * 3600
    tail = arrivals.expected_total - arrivals.pre_open_crowd - baseline_total
    if tail < 0:
        raise InvalidInputFile(
            f"{t.source}: key '{t.key('expected_total')}': expected at least pre_open_crowd + "
            f"baseline_per_s * wave duration = {arrivals.expected_total - tail:,.0f}, "
            f"got {arrivals.expected_total:,.0f}"
        )
    try:
        arrivals.tail_time_constant_s(wave.duration_h * 3600)
    except ValueError as err:
        raise InvalidInputFile(
            f"{t.source}: key '{t.key('first_24h_share')}': {err}, got {arrivals.first_24h_share!r}"
        ) from err
    t.finish()
    return arrivals


def _read_funnel(t: TomlTable) -> Funnel:
    defaults = Funnel()
    rates = {
        key: t.number(key, getattr(defaults, key), low=0, high=1)
        for key in ("email_verify", "identity_submit", "phone_verify", "test_finish", "join")
    }
    think_table = t.table("think_s")
    think = dict(DEFAULT_THINK_S)
    for step in STEPS:
        think[step] = think_table.number(step, DEFAULT_THINK_S[step], low=0)
    think_table.finish()
    funnel = Funnel(
        source=t.string("source", "population", choices=FUNNEL_SOURCES),
        retries_max=t.integer("retries_max", 2, low=0),
        retry_backoff_s=t.number("retry_backoff_s", 20.0, low=0),
        ktp_uploads_mean=t.number("ktp_uploads_mean", 1.0, low=1),
        otp_poll_s=t.number("otp_poll_s", 0.5, low=0, low_open=True),
        otp_wait_s=t.number("otp_wait_s", 30.0, low=0, low_open=True),
        think_s=think,
        **rates,
    )
    t.finish()
    return funnel


def _read_defects(t: TomlTable) -> Defects:
    share = t.number("applicant_share", None, low=0, high=1)
    ktp_table = t.table("ktp")
    for name in ktp_table.data:
        if name not in KTP_DEFECT_CODES:
            raise ktp_table.fail(name, "an upload reason code: " + ", ".join(KTP_DEFECT_CODES), show=False)
    ktp = {name: ktp_table.number(name, low=0, high=1) for name in list(ktp_table.data)}
    if sum(ktp.values()) > 1 + 1e-9:
        raise InvalidInputFile(
            f"{t.source}: key '{t.key('ktp')}': expected shares summing to at most 1, "
            f"got {sum(ktp.values()):g}"
        )
    ktp_table.finish()
    t.finish()
    return Defects(applicant_share=share, ktp=ktp)


def _read_faults(t: TomlTable) -> Faults:
    faults = Faults(
        dukcapil_latency_ms=t.number("dukcapil_latency_ms", 0.0, low=0),
        dukcapil_latency_p99_ms=t.number("dukcapil_latency_p99_ms", None, low=0),
        dukcapil_error_rate=t.number("dukcapil_error_rate", 0.0, low=0, high=1),
        sms_delay_s=t.number("sms_delay_s", 0.0, low=0),
        sms_loss_rate=t.number("sms_loss_rate", 0.0, low=0, high=1),
        email_delay_s=t.number("email_delay_s", 0.0, low=0),
    )
    p99, median = faults.dukcapil_latency_p99_ms, faults.dukcapil_latency_ms
    if p99 is not None and p99 < median:
        raise t.fail("dukcapil_latency_p99_ms", f"a number >= dukcapil_latency_ms ({median:g})", p99)
    t.finish()
    return faults


def _read_slo(root: TomlTable) -> tuple[Threshold, ...]:
    root.seen.add("slo")
    entries = root.data.get("slo", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise root.fail("slo", "an array of tables [[slo]]", entries)
    thresholds = []
    for index, entry in enumerate(entries):
        t = TomlTable(root.source, f"slo[{index}].", entry)
        metric = t.string("metric", choices=SLO_METRICS)
        step = t.string("step", "all", choices=("all", *STEPS))
        if metric == "latency_ms":
            stat = t.string("stat", "p99", choices=LATENCY_STATS)
        else:
            stat = None
            if "stat" in t.data:
                raise t.fail("stat", f"no 'stat' for metric {metric!r} (only latency_ms has one)", show=False)
            t.seen.add("stat")
        high = 1.0 if metric in SHARE_METRICS else None  # shares of requests, arrivals, journeys
        threshold = Threshold(
            metric=metric,
            step=step,
            stat=stat,
            max=t.number("max", None, low=0, high=high),
            min=t.number("min", None, low=0, high=high),
            name=t.string("name", None),
        )
        if threshold.max is None and threshold.min is None:
            raise InvalidInputFile(f"{root.source}: table 'slo[{index}]': expected a 'max' or a 'min' bound")
        if threshold.max is not None and threshold.min is not None and threshold.min > threshold.max:
            raise InvalidInputFile(
                f"{root.source}: table 'slo[{index}]': 'min' {threshold.min:g} is above "
                f"'max' {threshold.max:g}: no run could pass"
            )
        t.finish()
        thresholds.append(threshold)
    return tuple(thresholds)


# --------------------------------------------------------------------------------------------
# Writing


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain TOML-ready data (``None`` values left out), e.g. for ``report.json``."""

    def plain(obj: Any) -> Any:
        if hasattr(obj, "__dataclass_fields__"):
            values = {f.name: getattr(obj, f.name) for f in fields(obj)}
            return {name: plain(value) for name, value in values.items() if value is not None}
        if isinstance(obj, Mapping):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, tuple | list):
            return [plain(v) for v in obj]
        return obj

    data = plain(scenario)
    data.pop("source", None)  # where it was read from is not part of the scenario
    top = {"scenario": {key: data.pop(key) for key in ("name", "description", "seed")}}
    slo = data.pop("slo")
    top.update(data)
    if slo:
        top["slo"] = slo
    return top


def dump_scenario(scenario: Scenario) -> str:
    """TOML text that :func:`parse_scenario` reads back into an equal :class:`Scenario`."""
    return tomli_w.dumps(scenario_to_dict(scenario))
