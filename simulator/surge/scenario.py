"""Scenario files: one TOML file describes one wave opening to replay against a registration API.

Owns the schema (dataclasses), the loader with its error messages, and the writer used by ``demand``.

A scenario file has these tables; every key is optional unless marked *required*. Times are in
*wave seconds* (the real world's clock) unless the key says ``harness``; rates and counts are at
real scale (the whole country) and are shrunk by ``replay.population_scale`` when run.

``[scenario]``
    ``name`` (str, required): short identifier, used in reports.
    ``description`` (str): what it models and which published figures it rests on.
    ``seed`` (int, default 1): seeds the arrival schedule, think times, fates and upload choices.
      The same seed gives the same schedule whatever the number of Locust workers.

``[target]``
    ``host`` (str): base URL of the API, e.g. ``http://127.0.0.1:8000``; ``--host`` overrides it.
    ``timeout_s`` (float > 0, default 30): client timeout for one request.
    ``open_wave`` (bool, default true): open the wave through ``POST /v1/admin/waves`` before the
      first arrival (the reference API and staging systems with the admin endpoints).
    ``apply_faults`` (bool, default true): inject ``[faults]``: the demo starts the reference API
      with them; ``surge`` prints the ``prakerja-sim serve`` options that set them (the reference
      API takes faults at start).
    ``reuse_connections`` (bool, default false): false, each applicant opens their own connections,
      as people's phones do; true, journeys share one keep-alive pool per load generator, like
      traffic arriving through a reverse proxy (cheaper for the load generator).
    ``target_profile`` (str): the target profile (docs/target-profile.md) that says how to drive the
      API, relative to the scenario file, or a built-in's name; default ``reference``;
      ``surge --target-profile`` overrides it.
    ``upstreams`` (str): base URL of ``prakerja-sim upstreams``' read API, e.g. ``http://127.0.0.1:8100``:
      OTPs are read there instead of the target's sandbox outbox, and the report shows the upstream
      load beside the planner's forecast (docs/upstreams.md); ``--upstreams`` overrides it.

``[wave]``
    ``number`` (int >= 1, required): the wave (gelombang) joined at the end of each journey.
    ``quota`` (int >= 1, required): places in the wave at real scale (scaled like the population).
    ``selection`` (``"lottery"`` or ``"fcfs"``, default lottery): lottery draws after closing, as
      the program did; fcfs refuses joins once the quota is taken (``WAVE_FULL``).
    ``opens_at`` (offset date-time, required): the opening, e.g. ``2020-11-02T12:00:00+07:00``;
      its UTC offset is the local time the daily rhythm follows.
    ``duration_h`` (float > 0, default 72): how long the wave stays open.

``[replay]`` which slice of the wave is replayed, and how it is shrunk to fit a machine
    ``start_s`` (float >= 0, default 0): where the replay starts, in seconds after the opening.
    ``length_s`` (float > 0, required): how many wave seconds are replayed.
    ``time_scale`` (float > 0, default 1): wave seconds per harness second; 60 replays an hour
      in a minute (arrival rates and think times are compressed by the same factor).
    ``population_scale`` (0 < float <= 1, default 1): share of the real crowd that arrives;
      0.01 replays wave 11 at 1/100 on a laptop, 1 is the whole country on a cluster.
    ``drain_s`` (float >= 0, default 30): harness seconds after the last arrival for journeys in
      flight to finish before the run stops (the unfinished ones are counted, not hidden).
    ``late_after_s`` (float > 0, harness, default 1): an arrival that starts later than this
      after its scheduled time counts as late (it still runs; its latency includes the lag).
    ``max_in_flight`` (int >= 0, default 0 = no cap): journeys one load-generator process keeps
      in flight; an arrival beyond the cap is dropped and counted (k6's dropped_iterations).

``[arrivals]`` the arrival curve, people per second at real scale, ``t`` = seconds since opening
    ``expected_total`` (float > 0 and <= 3e8, required): people who arrive during the whole wave.
    ``pre_open_crowd`` (float >= 0, default 0): people already waiting at the opening; they are
      released at T0 and get in over an exponential with time constant ``crowd_release_s``.
    ``crowd_release_s`` (float > 0, default 60).
    ``first_24h_share`` (0 < float < 1): share of all the wave's arrivals in its first 24 hours
      (wave 9: 3.5M of 5.8M); fixes the decay of the tail. Give it or ``decay_half_life_h``.
    ``decay_half_life_h`` (float > 0): half-life of the exponentially decaying tail.
    ``baseline_per_s`` (float >= 0, default 0): a steady trickle on top of the tail.
    ``daily_rhythm`` (24 floats >= 0): relative arrival weight of each local hour 00..23
      (normalised to a mean of 1); multiplies the tail and the baseline, not the crowd.
    The tail holds ``expected_total - pre_open_crowd - baseline_per_s * duration``, which must not
    be negative.
    ``trace`` (str): arrivals from recorded traffic instead of the curve (docs/traces.md): a CSV or
      JSONL file with a timestamp column, or a common/combined access log; relative to the scenario
      file. With it: ``trace_format`` (auto, csv, jsonl, access_log), ``trace_time_column`` (default
      ``timestamp``), ``trace_path`` (access logs: only requests to this path), ``trace_opening``
      (offset date-time of the trace's T0; default its first event), and ``expected_total`` becomes
      optional: the trace is thinned or multiplied to it (default: as recorded).

``[funnel]`` who goes how far, and how long they think
    ``source`` (``"population"`` or ``"scenario"``, default population): take each applicant's
      behaviour from the population file's ``fate_*`` columns, or draw it from the rates below.
      Populations without ``fate_*`` columns always use the rates.
    ``email_verify``, ``identity_submit``, ``phone_verify``, ``test_finish``, ``join`` (0..1):
      conditional probability of doing that step given the previous ones were done. Defaults
      follow the funnel to 30 Oct 2020 (okezone / tirto.id): 40M accounts -> 26M email (0.65) ->
      20M NIK+KK (0.77) -> 18M phone (0.90).
    ``retries_max`` (int >= 0, default 2): retries after a failed request when the population
      carries no ``fate_retries``.
    ``retry_backoff_s`` (float >= 0, default 20): mean wait before a retry.
    ``ktp_uploads_mean`` (float >= 1, default 1): 1 + the mean number of extra uploads after the
      accepted one (double taps, second thoughts). Bad photos (``[defects.ktp]``) come on top:
      each is retaken until one passes.
    ``otp_poll_s`` (float > 0, harness, default 0.5): how often a user checks the sandbox outbox.
    ``otp_wait_s`` (float > 0, harness, default 30): give up on an OTP after this long.
    ``[funnel.think_s]``: mean think time before each step, one key per step of
      :data:`STEPS`; drawn from an exponential, compressed by ``time_scale``.

``[defects]`` how much of the traffic is wrong on purpose
    ``applicant_share`` (0..1): share of arrivals drawn from applicants whose
      ``expected_outcome`` is not ``accept``; omitted = the population's own mix.
    ``[defects.ktp]``: share of KTP uploads that are bad in one way, keyed by the upload reason
      code the API should answer (``TOO_BLURRY = 0.05``, ``FILE_TOO_LARGE``, ``PHOTOCOPY``, ...;
      see :data:`KTP_DEFECT_CODES`), 0..1 each, summing to at most 1; the rest are valid photos.

``[faults]`` upstream trouble injected into the target (reference API: admin fault endpoint)
    ``dukcapil_latency_ms`` (float >= 0, default 0): median latency of the identity registry.
    ``dukcapil_latency_p99_ms`` (float >= median): its 99th percentile (lognormal in between).
    ``dukcapil_error_rate`` (0..1, default 0): share of registry calls that fail.
    ``sms_delay_s`` (float >= 0, default 0): median delay of SMS OTP delivery.
    ``sms_loss_rate`` (0..1, default 0): share of SMS that never arrive (the user asks again).
    ``email_delay_s`` (float >= 0, default 0): median delay of email OTP delivery.

``[[slo]]`` thresholds; any breach makes ``surge`` exit with code 1 (like k6 thresholds)
    ``metric`` (required): ``latency_ms`` (``stat`` one of p50, p90, p99, p99.9, max, mean),
      ``error_rate`` (unexpected errors / requests), ``dropped_arrivals`` (share of scheduled
      arrivals that could not start on time), ``completion_rate`` (journeys that reached their
      fate / started), ``throughput_rps``, or ``reconciliation`` (``max`` = mismatches allowed).
    ``step`` (default ``"all"``): a step of :data:`STEPS` or ``all``.
    ``stat``: for ``latency_ms``, default p99.
    ``max`` / ``min`` (float >= 0; <= 1 for the rates): the bound; at least one, min <= max.
    ``name`` (str): shown in the report; defaults to a description of the bound.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from simulator.errors import InvalidInputFile
from simulator.rules.arrivals import UnreachableShare, decay_for_first_day_share
from simulator.rules.reasons import UPLOAD_REASONS

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
    def trace_spec(self):  # noqa: ANN201 - simulator.surge.trace.TraceSpec
        from simulator.surge.trace import TraceSpec

        return TraceSpec(self.trace, self.trace_format or "auto", self.trace_time_column or "timestamp",
                         self.trace_path, self.trace_opening)

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
    path = Path(path_or_name)
    if path.is_file():
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInputFile(f"{source}: cannot read the scenario file ({err})") from err
    else:
        name = str(path_or_name)
        resource = importlib.resources.files("scenarios") / f"{name}.toml"
        if path.suffix or "/" in name or not resource.is_file():
            known = ", ".join(builtin_scenarios())
            raise InvalidInputFile(
                f"{path_or_name}: no such scenario file, and no built-in scenario of that name "
                f"(built-ins: {known})"
            )
        source = f"builtin:{name}"
        text = resource.read_text(encoding="utf-8")
    return parse_scenario(text, source)


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Validate the TOML text of a scenario; ``source`` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInputFile(f"{source}: not valid TOML ({err})") from err
    root = _Table(source, "", document)
    scenario = _read_scenario(root)
    root.finish()
    return scenario


class _Table:
    """A TOML table being validated: hands out typed values and remembers which keys were read."""

    def __init__(self, source: str, prefix: str, data: Mapping[str, Any]):
        self.source, self.prefix, self.data = source, prefix, data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, expected: str, got: Any = None, *, show: bool = True) -> InvalidInputFile:
        shown = f", got {got!r}" if show else ""
        return InvalidInputFile(f"{self.source}: key '{self.key(name)}': expected {expected}{shown}")

    def table(self, name: str, required: bool = False) -> _Table:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "a table [" + self.key(name) + "]", show=False)
            return _Table(self.source, self.key(name) + ".", {})
        value = self.data[name]
        if not isinstance(value, dict):
            raise self.fail(name, "a table", value)
        return _Table(self.source, self.key(name) + ".", value)

    def get(self, name: str, default: Any = ..., *, kind: str, check: Callable[[Any], Any]) -> Any:
        """Return ``check(value)``; ``check`` raises ValueError when the value is not a ``kind``."""
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                raise InvalidInputFile(f"{self.source}: key '{self.key(name)}' is required ({kind})")
            return default
        value = self.data[name]
        try:
            return check(value)
        except (TypeError, ValueError) as err:
            raise self.fail(name, kind, value) from err

    def number(
        self,
        name: str,
        default: Any = ...,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        kind = "a number" + _range_text(low, high, low_open, high_open)

        def check(value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise TypeError
            if low is not None and (value < low or (low_open and value == low)):
                raise ValueError
            if high is not None and (value > high or (high_open and value == high)):
                raise ValueError
            return float(value)

        return self.get(name, default, kind=kind, check=check)

    def integer(self, name: str, default: Any = ..., *, low: int | None = None) -> int:
        kind = "an integer" + ("" if low is None else f" >= {low}")

        def check(value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            if low is not None and value < low:
                raise ValueError
            return value

        return self.get(name, default, kind=kind, check=check)

    def string(self, name: str, default: Any = ..., *, choices: tuple[str, ...] | None = None) -> str:
        kind = "a string" if choices is None else "one of " + ", ".join(f'"{c}"' for c in choices)

        def check(value: Any) -> str:
            if not isinstance(value, str):
                raise TypeError
            if choices is not None and value not in choices:
                raise ValueError
            return value

        return self.get(name, default, kind=kind, check=check)

    def boolean(self, name: str, default: Any = ...) -> bool:
        def check(value: Any) -> bool:
            if not isinstance(value, bool):
                raise TypeError
            return value

        return self.get(name, default, kind="true or false", check=check)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise InvalidInputFile(
                f"{self.source}: unknown key '{self.key(unknown[0])}' (expected one of: {known})"
            )


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return (" " + " and ".join(parts)) if parts else ""


def _offset_datetime(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise TypeError
    return value


def _read_scenario(root: _Table) -> Scenario:
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


def _read_target(t: _Table, source: str) -> Target:
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


def _read_wave(t: _Table) -> Wave:
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


def _read_replay(t: _Table) -> Replay:
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


def _read_arrivals(t: _Table, wave: Wave) -> Arrivals:
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


def _read_funnel(t: _Table) -> Funnel:
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


def _read_defects(t: _Table) -> Defects:
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


def _read_faults(t: _Table) -> Faults:
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


def _read_slo(root: _Table) -> tuple[Threshold, ...]:
    root.seen.add("slo")
    entries = root.data.get("slo", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise root.fail("slo", "an array of tables [[slo]]", entries)
    thresholds = []
    for index, entry in enumerate(entries):
        t = _Table(root.source, f"slo[{index}].", entry)
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
            raise InvalidInputFile(f"{root.source}: table 'slo[{index}]': 'min' {threshold.min:g} is above "
                                   f"'max' {threshold.max:g}: no run could pass")
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
