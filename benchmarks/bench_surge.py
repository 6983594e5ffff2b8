"""Surge harness benchmarks: harness cost against a bare Locust user, and arrival-time accuracy.

    python benchmarks/bench_surge.py [--seconds 20] [--concurrency 20]

1. Harness cost. One Locust process drives the journey machinery (scheduled arrivals, one user
   per journey with its own connection, intended-start timing, HDR recording, outcome checks),
   every step hitting the reference API's cheapest endpoint, with as many journeys in flight as
   the bare run has users; then a bare FastHttpUser loops on the same endpoint. Same server, same
   run. Goal: harness >= 80% of bare requests per second.
2. Arrival accuracy. A wave-opening curve (crowd, decay, baseline), each arrival one cheap
   request so the target keeps up: started vs scheduled arrivals per 10 s window. Goal: within 2%.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from simulator.api.testing import running_server
from simulator.surge.metrics import RAW_RESULTS, SurgeMetrics
from simulator.surge.scenario import STEPS

CHEAP_JOURNEY = textwrap.dedent(
    '''
    """Benchmark: the full journey machinery, every step on the API's cheapest endpoint."""
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

BARE_USER = textwrap.dedent(
    '''
    """Benchmark baseline: a bare FastHttpUser looping on the cheapest endpoint."""
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


def run_locust(args: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "locust", "--headless", "--only-summary", "--loglevel", "WARNING", *args],
        stdout=subprocess.DEVNULL,
    )
    if run.returncode not in (0, 1):  # 1: a scenario threshold failed, the measurement stands
        raise SystemExit(f"locust exited with code {run.returncode}")


def steady_median(per_second: np.ndarray) -> float:
    """Median requests per second, leaving out the first and last two seconds (ramp and stop)."""
    busy = np.flatnonzero(per_second)
    if len(busy) < 6:
        return float(per_second.sum()) / max(len(busy), 1)
    return float(np.median(per_second[busy[0] + 2 : busy[-1] - 1]))


def harness_rps(
    work: Path, host: str, path: str, seconds: float, concurrency: int, bare: float, reuse: bool
) -> tuple[float, dict]:
    locustfile = work / "cheap_journey.py"
    locustfile.write_text(CHEAP_JOURNEY.format(path=path, steps=STEPS), encoding="utf-8")
    scenario = work / "harness.toml"
    # Arrivals a little above what the bare rate could serve (10 requests per journey): the cap
    # keeps `concurrency` journeys in flight, like the bare run's users.
    scenario.write_text(
        scenario_toml(
            "harness-cost",
            seconds,
            baseline=round(1.3 * bare / len(STEPS), 1),
            crowd=0.0,
            cap=concurrency,
            one_step=False,
            reuse=reuse,
        ),
        encoding="utf-8",
    )
    out = work / ("harness-out-reuse" if reuse else "harness-out")
    metrics = run_surge(locustfile, host, scenario, out)
    per_second = metrics.step_series.sum(axis=0)
    return steady_median(per_second), {"journeys": dict(metrics.journeys), "requests": int(per_second.sum())}


def run_surge(locustfile: Path, host: str, scenario: Path, out: Path) -> SurgeMetrics:
    """Run one headless surge of ``scenario`` through ``locustfile`` and read back its merged metrics."""
    run_locust(
        [
            "-f",
            str(locustfile),
            "--host",
            host,
            "--surge-scenario",
            str(scenario),
            "--surge-out",
            str(out),
            "--surge-progress",
            "0",
            "--json-file",
            str(out / "locust"),
        ]
    )
    return SurgeMetrics.from_wire(json.loads((out / RAW_RESULTS).read_text())["metrics"])


def bare_rps(work: Path, host: str, path: str, seconds: float, concurrency: int) -> float:
    locustfile = work / "bare.py"
    locustfile.write_text(BARE_USER.format(path=path), encoding="utf-8")
    stats_file = work / "bare.json"
    run_locust(
        [
            "-f",
            str(locustfile),
            "--host",
            host,
            "-u",
            str(concurrency),
            "-r",
            str(concurrency),
            "-t",
            f"{int(seconds)}s",
            "--json-file",
            str(stats_file.with_suffix("")),  # Locust adds ".json"
        ]
    )
    stats = json.loads(stats_file.read_text())
    entry = next(s for s in stats if s["name"] == "hello")
    per_second = np.array([n for _, n in sorted((int(k), v) for k, v in entry["num_reqs_per_sec"].items())])
    return steady_median(per_second)


def arrival_accuracy(work: Path, host: str, path: str, seconds: float) -> tuple[float, list[tuple[int, int]]]:
    locustfile = work / "cheap_journey.py"
    locustfile.write_text(CHEAP_JOURNEY.format(path=path, steps=STEPS), encoding="utf-8")
    scenario = work / "accuracy.toml"
    scenario.write_text(
        scenario_toml("arrival-accuracy", seconds, baseline=20.0, crowd=600.0, cap=0, one_step=True),
        encoding="utf-8",
    )
    out = work / "accuracy-out"
    metrics = run_surge(locustfile, host, scenario, out)
    windows = int(seconds // 10)
    scheduled = metrics.series["scheduled"][: windows * 10].reshape(windows, 10).sum(axis=1)
    started = metrics.series["started"][: windows * 10].reshape(windows, 10).sum(axis=1)
    worst = float(np.max(np.abs(started - scheduled) / np.maximum(scheduled, 1)))
    return worst, list(zip(scheduled.tolist(), started.tolist(), strict=True))


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
            + ["--surge-population", str(population), "--surge-out", str(out), "--surge-progress", "0"]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each measured run")
    parser.add_argument("--concurrency", type=int, default=20, help="bare users = journeys in flight")
    parser.add_argument(
        "--cost", action="store_true", help="only measure CPU per journey request (simulator/surge/cost.py)"
    )
    args = parser.parse_args()
    if args.cost:
        with tempfile.TemporaryDirectory(prefix="bench-surge-") as tmp:
            cost(Path(tmp))
        return
    with (
        tempfile.TemporaryDirectory(prefix="bench-surge-") as tmp,
        running_server(password_cost=0, access_log=False, workers=1) as host,
    ):
        work = Path(tmp)
        path = cheapest_path(host)
        bare = bare_rps(work, host, path, args.seconds, args.concurrency)
        shared, detail = harness_rps(work, host, path, args.seconds, args.concurrency, bare, reuse=True)
        own, own_detail = harness_rps(work, host, path, args.seconds, args.concurrency, bare, reuse=False)
        print(
            f"harness cost: {path}, {args.concurrency} in flight, one Locust process, {args.seconds:g} s each"
        )
        print(f"  bare FastHttpUser                      {bare:8.0f} requests/s (steady median)")
        print(f"  journeys, shared keep-alive pool       {shared:8.0f} requests/s  {detail}")
        print(f"  ratio harness / bare (like for like)   {shared / bare:8.2f}   (goal >= 0.80)")
        print(f"  journeys, own connections per person   {own:8.0f} requests/s  {own_detail}")
        print(f"  ratio with a new connection per person {own / bare:8.2f}   (the realistic default)")
        worst, windows = arrival_accuracy(work, host, path, max(args.seconds * 3, 60.0))
        print("arrival accuracy: started vs scheduled per 10 s window (one cheap request per arrival)")
        for k, (scheduled, started) in enumerate(windows):
            print(f"  {k * 10:4d}-{k * 10 + 10:<4d}s  scheduled {scheduled:6d}  started {started:6d}")
        print(f"  worst window deviation {worst:.2%}   (goal <= 2%)")


if __name__ == "__main__":
    main()
