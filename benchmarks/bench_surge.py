"""Surge harness benchmarks: harness cost against a bare Locust user, and arrival-time accuracy.

    python benchmarks/bench_surge.py [--seconds 20] [--concurrency 20] [--target cheap|reference]
    python benchmarks/bench_surge.py --cost      # CPU per request of the smoke journey mix

1. Harness cost, measured with the load generator as the bottleneck. The target is
   benchmarks/_cheap_target.py (an asyncio server answering canned JSON, far cheaper per request
   than a Locust client) pinned with ``taskset`` to its own core, the Locust process to the other
   (when the machine has two cores and taskset). One Locust process drives the journey machinery
   (scheduled arrivals, one user per journey, intended-start timing, HDR recording, outcome
   checks, retries), every step one GET, with as many journeys in flight as the bare run has
   users; then a bare FastHttpUser loops on the same path. Journeys run twice: on a shared
   keep-alive pool, and with a new connection per person (the default). Each run prints its
   steady requests per second, the client's CPU microseconds per request (from the Locust
   process's CPU time over the same steady seconds: the figure least moved by other load on the
   machine) and how busy each side was, so the output says which side was saturated.
   Goal: journeys/bare >= 0.85 with keep-alive, >= 0.70 with a connection per person.
2. Arrival accuracy. A wave-opening curve (crowd, decay, baseline), each arrival one request:
   started vs scheduled arrivals per 10 s window, at 45 arrivals/s and at the harness's top rate
   (what `surge --plan` rates one load-generator process for: HEADROOM of a core at
   CPU_MS_PER_REQUEST per request, simulator/surge/cost.py), one process, a connection per person.
   Goal: within 2% per window.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from simulator.api.testing import running_server
from simulator.surge.cost import CPU_MS_PER_REQUEST, HEADROOM
from simulator.surge.metrics import RAW_RESULTS, SurgeMetrics
from simulator.surge.scenario import STEPS

HERE = Path(__file__).resolve().parent

CHEAP_JOURNEY = textwrap.dedent(
    '''
    """Benchmark: the full journey machinery, every step one GET on the cheapest path."""
    from simulator.surge.controller import register
    from simulator.surge.harness import JourneyUser
    from loadtests.shape import WaveOpening

    PATH = "{path}"


    def _step(name):
        def step(self, intended):
            self.call(name, "GET", PATH, intended)
        return step


    class CheapJourney(JourneyUser):
        pass


    for _name in {steps!r}:
        setattr(CheapJourney, _name, _step(_name))

    register(lambda: CheapJourney)
    '''
)

PROFILE_JOURNEY = textwrap.dedent(
    '''
    """Benchmark: the profile-driven journey (simulator/surge/profile), steps from --surge-target-profile."""
    from simulator.surge.controller import register
    from simulator.surge.profile.journey import ProfileJourney
    from loadtests.shape import WaveOpening


    class BenchProfileJourney(ProfileJourney):
        pass


    register(lambda: BenchProfileJourney)
    '''
)


def profile_toml(path: str) -> str:
    """A target profile for the cheap target: a JSON sign-up keeping a bearer token, then nine GETs."""
    steps = [
        textwrap.dedent(
            f"""
            [[step]]
            name = "{STEPS[0]}"
            method = "POST"
            path = "{path}"
            json = {{ name = "{{applicant.full_name}}", email = "{{applicant.email}}" }}
            keep = {{ token = "json:/ok" }}
            """
        )
    ]
    steps += [f'\n[[step]]\nname = "{step}"\nmethod = "GET"\npath = "{path}"\n' for step in STEPS[1:]]
    head = textwrap.dedent(
        """
        [profile]
        name = "bench"
        version = 1

        [defaults]
        refusal_code = "json:/error/code"

        [session]
        kind = "bearer"
        token = "{kept.token}"

        [reconcile]
        source = "off"
        """
    )
    return head + "".join(steps)


def profile_available() -> bool:
    try:
        import simulator.surge.profile.journey  # noqa: F401
    except ImportError:
        return False
    return True


BARE_USER = textwrap.dedent(
    '''
    """Benchmark baseline: a bare FastHttpUser looping on the cheapest path."""
    from locust import task
    from locust.contrib.fasthttp import FastHttpUser


    class Bare(FastHttpUser):
        @task
        def hello(self):
            self.client.get("{path}", name="hello")
    '''
)


def scenario_toml(
    name: str, seconds: float, *, baseline: float, crowd: float, cap: int, one_step: bool, reuse: bool = False
) -> str:
    think = "\n".join(f"{step} = 0.0" for step in STEPS)
    return (
        textwrap.dedent(
            f"""
        [scenario]
        name = "{name}"
        seed = 99

        [wave]
        number = 1
        quota = 1000000
        opens_at = 2020-11-02T12:00:00+07:00
        duration_h = 1.0

        [target]
        open_wave = false
        reuse_connections = {"true" if reuse else "false"}

        [replay]
        length_s = {seconds}
        drain_s = 5.0
        max_in_flight = {cap}

        [arrivals]
        expected_total = {crowd + baseline * 3600 + 1000:.1f}
        pre_open_crowd = {crowd}
        crowd_release_s = 15.0
        decay_half_life_h = 0.005
        baseline_per_s = {baseline}

        [funnel]
        source = "scenario"
        email_verify = {0.0 if one_step else 1.0}
        identity_submit = 1.0
        phone_verify = 1.0
        test_finish = 1.0
        join = 1.0

        [funnel.think_s]
        """
        )
        + think
        + "\n"
    )


def cheapest_path(host: str) -> str:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(host + "/hello", timeout=5):
            return "/hello"
    except urllib.error.HTTPError:
        return "/healthz"


# -- where the processes run and what they cost ---------------------------------------------------
@dataclass
class Placement:
    """CPU pinning: the Locust process on one core, the target on another (``None``: not pinned)."""

    client: str | None = None
    target: str | None = None

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        if not pin or shutil.which("taskset") is None:
            return cls()
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls()
        return cls(client=str(cpus[0]), target=str(cpus[1]))

    @staticmethod
    def prefix(core: str | None) -> list[str]:
        return ["taskset", "-c", core] if core is not None else []

    def describe(self) -> str:
        if self.client is None:
            return "not pinned"
        return f"Locust pinned to CPU {self.client}, target to CPU {self.target} (taskset)"


def _cpu_s(process: psutil.Process) -> float:
    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in tree:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


class CpuSampler:
    """Samples the CPU seconds of the load generator and the target every 0.1 s, with wall time."""

    def __init__(self, client_pid: int, target_pid: int | None):
        self.client = psutil.Process(client_pid)
        self.target = psutil.Process(target_pid) if target_pid else None
        self.samples: list[tuple[float, float, float]] = []  # (epoch, client CPU s, target CPU s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            target = _cpu_s(self.target) if self.target else 0.0
            client = _cpu_s(self.client)
            if client:
                self.samples.append((time.time(), client, target))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> tuple[float, float]:
        """(client, target) CPU seconds used between two epoch times (linear between samples)."""
        if len(self.samples) < 2:
            return float("nan"), float("nan")
        at, client, target = (np.array(column) for column in zip(*self.samples, strict=True))
        return (
            float(np.interp(end, at, client) - np.interp(start, at, client)),
            float(np.interp(end, at, target) - np.interp(start, at, target)),
        )


@dataclass
class Measured:
    """One run's steady part: the busy seconds, leaving out the first and last two."""

    rps: float  # median requests per second
    requests: int
    wall_s: float
    client_cpu_s: float
    target_cpu_s: float
    detail: str = ""
    capped: bool = True  # journeys: the in-flight cap dropped arrivals (else the schedule set the pace)

    @property
    def client_us(self) -> float:
        return 1e6 * self.client_cpu_s / max(self.requests, 1)

    @property
    def client_busy(self) -> float:
        return self.client_cpu_s / self.wall_s

    @property
    def target_busy(self) -> float:
        return self.target_cpu_s / self.wall_s

    def saturated(self) -> str:
        """Which side set the pace: the busier one, when it is clearly busier and the journeys
        were held back by the in-flight cap (not by the schedule)."""
        if not self.capped:
            return "neither saturated (arrival-limited)"
        if self.client_busy > 2 * self.target_busy:
            return "load generator saturated"
        if self.target_busy > 2 * self.client_busy:
            return "target saturated"
        return "saturation unclear"

    def line(self, label: str) -> str:
        return (
            f"  {label:<44} {self.rps:7.0f} req/s  {self.client_us:6.0f} client CPU-us/req  "
            f"busy: client {self.client_busy:4.2f} target {self.target_busy:4.2f} of a core "
            f"-> {self.saturated()}{('  ' + self.detail) if self.detail else ''}"
        )


def steady(per_second: np.ndarray, first_epoch: float, sampler: CpuSampler, detail: str = "") -> Measured:
    """``per_second[i]`` counts requests answered in epoch second ``first_epoch + i``."""
    busy = np.flatnonzero(per_second)
    if len(busy) < 6:
        lo, hi = (busy[0], busy[-1] + 1) if len(busy) else (0, 1)
    else:
        lo, hi = busy[0] + 2, busy[-1] - 1
    window = per_second[lo:hi]
    start, end = first_epoch + lo, first_epoch + hi
    client, target = sampler.between(start, end)
    return Measured(float(np.median(window)), int(window.sum()), end - start, client, target, detail)


def run_locust(args: list[str], placement: Placement, target_pid: int | None) -> CpuSampler:
    command = [sys.executable, "-m", "locust", "--headless", "--only-summary", "--loglevel", "WARNING", *args]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            Placement.prefix(placement.client) + command, stdout=subprocess.DEVNULL, stderr=log
        )
        sampler = CpuSampler(process.pid, target_pid)
        returncode = process.wait()
        sampler.stop()
        if returncode not in (0, 1):  # 1: a scenario threshold failed, the measurement stands
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])
            raise SystemExit(f"locust exited with code {returncode}")
    return sampler


@dataclass
class Target:
    host: str
    path: str
    pid: int | None  # the process whose CPU is the target's (None: unknown)
    kind: str


@contextlib.contextmanager
def cheap_target(placement: Placement) -> Iterator[Target]:
    command = [sys.executable, str(HERE / "_cheap_target.py")]
    process = subprocess.Popen(
        Placement.prefix(placement.target) + command, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(process.stdout.readline())
        yield Target(f"http://127.0.0.1:{port}", "/hello", process.pid, "canned-JSON asyncio server")
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def reference_target(placement: Placement) -> Iterator[Target]:
    with running_server(password_cost=0, access_log=False, workers=1) as host:
        if placement.target is not None:
            subprocess.run(
                ["taskset", "-a", "-p", "-c", placement.target, str(host.process.pid)],
                stdout=subprocess.DEVNULL,
                check=False,
            )
        yield Target(host, cheapest_path(host), host.process.pid, "reference API (prakerja-sim serve)")


# -- the runs -------------------------------------------------------------------------------------
def run_surge(
    locustfile: Path,
    target: Target,
    scenario: Path,
    out: Path,
    placement: Placement,
    profile: Path | None = None,
) -> tuple[SurgeMetrics, dict, CpuSampler]:
    """Run one headless surge of ``scenario`` through ``locustfile``; its merged metrics and raw results."""
    sampler = run_locust(
        (["--surge-target-profile", str(profile)] if profile else [])
        + [
            "-f",
            str(locustfile),
            "--host",
            target.host,
            "--surge-scenario",
            str(scenario),
            "--surge-out",
            str(out),
            "--surge-progress",
            "0",
            "--json-file",
            str(out / "locust"),
        ],
        placement,
        target.pid,
    )
    raw = json.loads((out / RAW_RESULTS).read_text())
    return SurgeMetrics.from_wire(raw["metrics"]), raw, sampler


def bare_run(work: Path, target: Target, seconds: float, concurrency: int, placement: Placement) -> Measured:
    locustfile = work / "bare.py"
    locustfile.write_text(BARE_USER.format(path=target.path), encoding="utf-8")
    stats_file = work / "bare.json"
    sampler = run_locust(
        [
            "-f",
            str(locustfile),
            "--host",
            target.host,
            "-u",
            str(concurrency),
            "-r",
            str(concurrency),
            "-t",
            f"{int(seconds)}s",
            "--json-file",
            str(stats_file.with_suffix("")),  # Locust adds ".json"
        ],
        placement,
        target.pid,
    )
    stats = json.loads(stats_file.read_text())
    entry = next(s for s in stats if s["name"] == "hello")
    by_second = {int(k): v for k, v in entry["num_reqs_per_sec"].items()}
    first, last = min(by_second), max(by_second)
    per_second = np.array([by_second.get(t, 0) for t in range(first, last + 1)])
    return steady(per_second, float(first), sampler)


def journey_run(
    work: Path,
    target: Target,
    locustfile: Path,
    seconds: float,
    concurrency: int,
    bare: Measured,
    reuse: bool,
    placement: Placement,
    label: str,
    profile: Path | None = None,
) -> Measured:
    scenario = work / f"{label}.toml"
    # Arrivals well above what the bare rate could serve (10 requests per journey): the cap
    # keeps `concurrency` journeys in flight, like the bare run's users, and drops the rest.
    scenario.write_text(
        scenario_toml(
            "harness-cost",
            seconds,
            baseline=round(max(2.0 * bare.rps / len(STEPS), 100.0), 1),
            crowd=0.0,
            cap=concurrency,
            one_step=False,
            reuse=reuse,
        ),
        encoding="utf-8",
    )
    metrics, raw, sampler = run_surge(locustfile, target, scenario, work / f"{label}-out", placement, profile)
    per_second = metrics.step_series.sum(axis=0)
    journeys = dict(metrics.journeys)
    unexpected = metrics.step_unexpected()
    detail = f"journeys {journeys}" + (f", {unexpected} unexpected errors" if unexpected else "")
    measured = steady(per_second, float(raw["t0_epoch"]), sampler, detail)
    # Capacity-bound when the cap dropped at least 5% of the arrivals.
    measured.capped = journeys.get("dropped", 0) >= 0.05 * sum(journeys.values())
    return measured


def arrival_accuracy(
    work: Path, target: Target, locustfile: Path, seconds: float, peak: float, placement: Placement
) -> tuple[float, float, list[tuple[int, int]]]:
    """Worst window deviation, measured peak arrivals per second, (scheduled, started) per 10 s window.

    The crowd is released over the first 15 s at ``peak`` arrivals per second (less the baseline),
    then the rate decays to the baseline: 1/3 of the peak.
    """
    baseline = round(peak / 3, 1)
    crowd = round((peak - baseline) * 15.0, 0)
    scenario = work / f"accuracy-{peak:.0f}.toml"
    scenario.write_text(
        scenario_toml("arrival-accuracy", seconds, baseline=baseline, crowd=crowd, cap=0, one_step=True),
        encoding="utf-8",
    )
    out = work / f"accuracy-{peak:.0f}-out"
    metrics, _raw, _sampler = run_surge(locustfile, target, scenario, out, placement)
    windows = int(seconds // 10)
    series = metrics.series
    scheduled = series["scheduled"][: windows * 10].reshape(windows, 10).sum(axis=1)
    started = series["started"][: windows * 10].reshape(windows, 10).sum(axis=1)
    worst = float(np.max(np.abs(started - scheduled) / np.maximum(scheduled, 1)))
    measured_peak = float(series["scheduled"][:15].max())
    return worst, measured_peak, list(zip(scheduled.tolist(), started.tolist(), strict=True))


def journey_cpu(work: Path, arrivals: float) -> tuple[float, float, int]:
    """(load-generator CPU s, reference-API CPU s, requests) of one headless run of the smoke
    journey mix stretched to 60 s, with ``arrivals`` expected (the API on SQLite, cost 0)."""
    import resource

    import psutil

    from simulator.io.population import write_population
    from simulator.surge.runner import locustfile_path

    scenario = work / f"cost-{arrivals:g}.toml"
    text = (Path(__file__).parent.parent / "scenarios" / "smoke.toml").read_text(encoding="utf-8")
    text = text.replace("expected_total = 200.0", f"expected_total = {arrivals:g}")
    text = text.replace("pre_open_crowd = 20.0", f"pre_open_crowd = {arrivals / 10:g}")
    text = text.replace("baseline_per_s = 0.03", f"baseline_per_s = {arrivals * 0.03 / 200:g}")
    scenario.write_text(text.replace("time_scale = 30.0", "time_scale = 10.0"), encoding="utf-8")
    population = work / "cost-pop"
    if not population.exists():
        write_population(population, 2000, 3, fmt="parquet")
    out = work / f"cost-out-{arrivals:g}"
    with running_server(str(work / f"cost-{arrivals:g}.db"), population, password_cost=0) as host:
        server = psutil.Process(host.process.pid)
        tree = lambda: [server, *server.children(recursive=True)]  # noqa: E731
        server_before = sum(sum(p.cpu_times()[:2]) for p in tree())
        client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run_locust(
            ["-f", str(locustfile_path()), "--host", host, "--surge-scenario", str(scenario)]
            + ["--surge-population", str(population), "--surge-out", str(out), "--surge-progress", "0"],
            Placement(),
            None,
        )
        client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_cpu = sum(sum(p.cpu_times()[:2]) for p in tree()) - server_before
    client_cpu = (client_after.ru_utime + client_after.ru_stime) - (
        client_before.ru_utime + client_before.ru_stime
    )
    metrics = SurgeMetrics.from_wire(json.loads((out / RAW_RESULTS).read_text())["metrics"])
    return client_cpu, server_cpu, sum(metrics.requests.values())


def cost(work: Path) -> None:
    """CPU per journey request: two runs, a near-empty one and a busy one; their difference
    cancels what every run costs whatever its size (imports, preparing, the report)."""
    idle = journey_cpu(work, 20.0)
    busy = journey_cpu(work, 900.0)
    requests = busy[2] - idle[2]
    print(
        f"scenario cost: smoke journey mix over 60 s, {idle[2]:,} then {busy[2]:,} requests "
        "(OTP polls included)"
    )
    print(f"  load generator  {1000 * (busy[0] - idle[0]) / requests:6.2f} CPU ms per request")
    print(
        f"  reference API   {1000 * (busy[1] - idle[1]) / requests:6.2f} CPU ms per request (SQLite, cost 0)"
    )


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measured run")
    parser.add_argument("--concurrency", type=int, default=20, help="bare users = journeys in flight")
    parser.add_argument(
        "--target",
        choices=("cheap", "reference"),
        default="cheap",
        help="cheap: a canned-JSON asyncio server (the load generator is the bottleneck); "
        "reference: prakerja-sim serve (its cheapest endpoint)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the processes with taskset")
    parser.add_argument("--skip-accuracy", action="store_true", help="only measure the harness cost")
    parser.add_argument(
        "--cost", action="store_true", help="only measure CPU per journey request (simulator/surge/cost.py)"
    )
    args = parser.parse_args()
    if args.cost:
        with tempfile.TemporaryDirectory(prefix="bench-surge-") as tmp:
            cost(Path(tmp))
        return
    placement = Placement.choose(not args.no_pin)
    serving = cheap_target if args.target == "cheap" else reference_target
    with tempfile.TemporaryDirectory(prefix="bench-surge-") as tmp, serving(placement) as target:
        work = Path(tmp)
        print(f"load average at start {loadavg()} (1/5/15 min; other work on this machine moves the figures)")
        locustfile = work / "cheap_journey.py"
        locustfile.write_text(CHEAP_JOURNEY.format(path=target.path, steps=STEPS), encoding="utf-8")
        run = lambda reuse, label: journey_run(  # noqa: E731
            work, target, locustfile, args.seconds, args.concurrency, bare, reuse, placement, label
        )
        bare = bare_run(work, target, args.seconds, args.concurrency, placement)
        shared = run(True, "journeys-shared")
        own = run(False, "journeys-own")
        runs = [
            ("journeys, shared keep-alive pool", "shared keep-alive pool", shared, 0.85),
            ("journeys, new connection per person", "connection per person", own, 0.70),
        ]
        if profile_available():
            profile_file = work / "bench-profile.toml"
            profile_file.write_text(profile_toml(target.path), encoding="utf-8")
            profile_locustfile = work / "profile_journey.py"
            profile_locustfile.write_text(PROFILE_JOURNEY, encoding="utf-8")
            for reuse, label, short, goal in (
                (True, "profile journeys, shared keep-alive pool", "profile, shared pool", 0.85),
                (False, "profile journeys, new connection per person", "profile, per person", 0.70),
            ):
                measured = journey_run(
                    work,
                    target,
                    profile_locustfile,
                    args.seconds,
                    args.concurrency,
                    bare,
                    reuse,
                    placement,
                    "profile-" + ("shared" if reuse else "own"),
                    profile_file,
                )
                runs.append((label, short, measured, goal))
        print(
            f"harness cost: GET {target.path} on the {target.kind}, {args.concurrency} in flight, "
            f"one Locust process, {args.seconds:g} s each; {placement.describe()}"
        )
        print(bare.line("bare FastHttpUser (keep-alive per user)"))
        for label, _short, measured, _goal in runs:
            print(measured.line(label))
        for _label, label, measured, goal in runs:
            ratio = measured.rps / bare.rps
            cpu_ratio = bare.client_us / measured.client_us
            # A client that got less than 90% of a core in either run: its requests per second
            # measured the machine's other work, so the verdict is on CPU per request.
            starved = min(bare.client_busy, measured.client_busy) < 0.9
            judged, by = (cpu_ratio, "CPU") if starved else (ratio, "req/s")
            print(
                f"  ratio journeys/bare, {label:<23} {ratio:5.2f} req/s, {cpu_ratio:5.2f} by client CPU "
                f"per request   (goal >= {goal:.2f} by {by}: {'met' if judged >= goal else 'NOT met'})"
            )
        print(f"load average after the cost runs {loadavg()}")
        if args.skip_accuracy:
            return
        length = max(args.seconds * 3, 60.0)
        # The top rate: what `surge --plan` rates one load-generator process for (HEADROOM of a
        # core at CPU_MS_PER_REQUEST each, simulator/surge/cost.py), one request per arrival.
        top = HEADROOM / (CPU_MS_PER_REQUEST["load_generator"] / 1000.0)
        print(
            "arrival accuracy: started vs scheduled per 10 s window (one request per arrival, "
            f"own connection), at 45/s and at the top rate surge --plan gives one process ({top:.0f}/s)"
        )
        for peak in (45.0, top):
            worst, measured_peak, windows = arrival_accuracy(
                work, target, locustfile, length, peak, placement
            )
            print(
                f"  {peak:.0f} arrivals/s at the peak (busiest second {measured_peak:.0f}), "
                f"load average {loadavg()}"
            )
            for k, (scheduled, started) in enumerate(windows):
                print(f"    {k * 10:4d}-{k * 10 + 10:<4d}s  scheduled {scheduled:6d}  started {started:6d}")
            verdict = "met" if worst <= 0.02 else "NOT met"
            print(f"    worst window deviation {worst:.2%}   (goal <= 2%: {verdict})")


if __name__ == "__main__":
    main()
