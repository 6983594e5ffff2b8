"""Benchmark: account creation (POST /v1/accounts) against the same stack's bare hello, with wrk.

Starts the reference API (2 worker processes by default) on embedded SQLite, and on PostgreSQL
when PRAKERJA_TEST_POSTGRES_URL is set, drives it with wrk from this machine, and prints sign-ups/s,
p99, the ratio to the bare GET /hello of the same server in the same run, and where a sign-up's
server time goes (framework, argon2, database), from server CPU time and in-process timings.

    python benchmarks/bench_api.py [--seconds 10] [--connections 32] [--workers 2] [--password-cost 1]
                                   [--access-log] [--skip-postgres] [--against REV]

Goal (issue 4): the real wave-1 peak, about 1,300 sign-ups/s, with p99 under 100 ms. Besides the
saturated run (32 connections as fast as they go), a paced run offers about 1,300 sign-ups/s
(connections with a think time) and reads the p99 at that rate. GET /healthz is measured too:
issue 13's limits (body limits, read deadlines, throttles) must keep it within 10% of before.
``--against REV`` runs the same measurements, in turns, on the code of git revision REV (exported
to a temporary directory) and prints each figure's ratio to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from simulator.api.settings import Settings
from simulator.api.testing import running_server, scratch_database

WRK_SCRIPT = r"""
local counter = 0
local threads = {}
local next_id = 0
local run = "%(run)s"

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local mode = "GET"
local think_ms = 0

function init(args)
  mode = args[1] or "GET"
  think_ms = tonumber(args[2] or "0")
  math.randomseed(id * 7919 + os.time())
end

-- Paced runs: each connection waits a random think time (mean think_ms) before each request,
-- so the offered rate is about connections / (think + latency) instead of "as fast as it goes".
function delay()
  if think_ms > 0 then
    return math.floor(think_ms * 2 * math.random())
  end
  return 0
end

request = function()
  if mode == "POST" then
    counter = counter + 1
    local email = string.format("b-%%s-%%d-%%d@example.co.id", run, id, counter)
    local body = '{"name":"Bench Applicant","email":"' .. email .. '","password":"rahasia123"}'
    return wrk.format("POST", "/v1/accounts", {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", wrk.path)
end

done = function(summary, latency, requests)
  local out = string.format(
    '{"requests": %%d, "seconds": %%f, "non2xx": %%d, "errors": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max)
  io.write("WRK_JSON " .. out .. "\n")
end
"""


GOAL_RATE = 1300
"""The real wave-1 peak in sign-ups per second (issue 4)."""

PACED_CONNECTIONS = 128


def wrk(
    url: str, method: str, seconds: float, connections: int, threads: int = 2, think_ms: float = 0
) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"run": uuid.uuid4().hex[:8]})
    env = dict(os.environ)
    try:
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            script.name,
            url,
            "--",
            method,
            f"{think_ms:g}",
        ]  # the script turns POST into a fresh sign-up each time
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.unlink(script.name)
    for line in run.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result = json.loads(line[len("WRK_JSON ") :])
            result["rps"] = (result["requests"] - result["non2xx"]) / result["seconds"]
            wrk_cpu = (children_after.ru_utime - children_before.ru_utime) + (
                children_after.ru_stime - children_before.ru_stime
            )
            result["wrk_cpu_ms_per_request"] = 1000 * wrk_cpu / max(1, result["requests"])
            return result
    raise RuntimeError(f"wrk failed: {run.stdout}\n{run.stderr}")


def server_cpu_seconds(root_pid: int) -> float:
    """User + system CPU of the server's supervisor and workers so far."""
    total = 0.0
    try:
        root = psutil.Process(root_pid)
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return total


def database_cpu_seconds(db_url: str) -> float:
    """User + system CPU of the PostgreSQL backends serving ``db_url``'s database (0 for SQLite)."""
    if not db_url.startswith("postgres"):
        return 0.0
    name = db_url.rsplit("/", 1)[-1].split("?")[0]
    total = 0.0
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith("postgres:") and f" {name} " in cmdline:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    return total


def measure(
    base_url: str, pid: int, path: str, method: str, seconds: float, connections: int, db_url: str = ""
) -> dict:
    wrk(base_url + path, method, 2, connections)  # warm-up: connections, pools, caches
    before, before_db = server_cpu_seconds(pid), database_cpu_seconds(db_url)
    result = wrk(base_url + path, method, seconds, connections)
    cpu, db_cpu = server_cpu_seconds(pid) - before, database_cpu_seconds(db_url) - before_db
    result["server_cpu_ms_per_request"] = 1000 * cpu / max(1, result["requests"])
    result["database_cpu_ms_per_request"] = 1000 * db_cpu / max(1, result["requests"])
    return result


def in_process_costs(db_url: str, password_cost: int, n: int = 320, batch: int = 16) -> dict:
    """Microseconds of the pieces of a sign-up, timed in this process.

    The database part is timed as the server runs it: `Signups.create_batch`, alone (an idle
    server) and as a group commit of ``batch`` sign-ups (a busy one), per sign-up.
    """
    from simulator.api.otps import OtpStore
    from simulator.api.settings import Settings
    from simulator.api.signup import Signups
    from simulator.api.store import Store
    from simulator.database.db import make_engine
    from simulator.database.passwords import hash_password
    from simulator.database.schema import create_schema

    engine = create_schema(make_engine(db_url))
    store = Store(engine, Settings(db_url=db_url, otp_resend_interval_s=0))
    signups = Signups(store, OtpStore(store), password_cost)
    tag = uuid.uuid4().hex[:6]
    hashing = []
    for _ in range(n):
        started = time.perf_counter()
        hash_password("rahasia123", password_cost)
        hashing.append(time.perf_counter() - started)
    password_hash = hash_password("rahasia123", password_cost)
    costs = {"argon2_us": 1e6 * statistics.median(hashing)}
    for label, size in (("alone", 1), ("batched", batch)):
        walls, cpus = [], []
        for i in range(n // size):
            batch_of = [
                ("Bench", f"inproc-{tag}-{label}-{i}-{k}@example.co.id", password_hash) for k in range(size)
            ]
            started, started_cpu = time.perf_counter(), time.process_time()
            signups.create_batch(batch_of)
            cpus.append((time.process_time() - started_cpu) / size)
            walls.append((time.perf_counter() - started) / size)
        costs[f"db_{label}_us"] = 1e6 * statistics.median(walls)
        costs[f"db_{label}_cpu_us"] = 1e6 * statistics.mean(cpus)
    engine.dispose()
    return costs


def _line(label: str, result: dict, unit: str) -> str:
    return (
        f"  {label:<22} : {result['rps']:8.0f} {unit}   p50 {result['p50_us'] / 1000:6.1f} ms   "
        f"p99 {result['p99_us'] / 1000:6.1f} ms   "
        f"server CPU {result['server_cpu_ms_per_request']:.2f} ms/req   "
        f"non-2xx {result['non2xx']}  socket errors {result['errors']}"
    )


def bench_database(label: str, db_url: str, args) -> dict:
    settings = {
        "workers": args.workers,
        "password_cost": args.password_cost,
        "sandbox": False,
        "access_log": args.access_log,
    }
    with running_server(db_url, **settings) as base_url:
        pid = base_url.process.pid
        hello = measure(base_url, pid, "/hello", "GET", args.seconds, args.connections)
        health = measure(base_url, pid, "/healthz", "GET", args.seconds, args.connections)
        signup = measure(base_url, pid, "/v1/accounts", "POST", args.seconds, args.connections, db_url)
        # The goal is a rate with a latency: offer about GOAL_RATE sign-ups/s (128 connections,
        # each with a think time) and read the p99 at that rate, not at saturation. A short
        # calibration run tells how much of each connection's cycle the answer itself takes.
        think = 1000 * PACED_CONNECTIONS / GOAL_RATE
        trial = wrk(base_url + "/v1/accounts", "POST", 3, PACED_CONNECTIONS, think_ms=think)
        answer_ms = max(0.0, 1000 * PACED_CONNECTIONS / max(1.0, trial["rps"]) - think)
        paced = wrk(
            base_url + "/v1/accounts",
            "POST",
            args.seconds,
            PACED_CONNECTIONS,
            think_ms=max(1.0, think - answer_ms),
        )
    costs = in_process_costs(db_url, args.password_cost)
    ratio = signup["rps"] / hello["rps"]
    goal = "meets" if signup["rps"] >= 1300 and signup["p99_us"] < 100_000 else "misses"
    print(
        f"\n== {label}: {args.workers} workers, {args.connections} connections, {args.seconds:g} s, "
        f"argon2id cost level {args.password_cost}, access log {'on' if args.access_log else 'off'}"
    )
    print(_line("bare GET /hello", hello, "req/s     "))
    print(_line("POST /v1/accounts", signup, "sign-ups/s"))
    print(_line("GET /healthz", health, "req/s     "))
    print(
        f"  ratio sign-ups / hello : {ratio:.3f}   (saturated: as fast as {args.connections} connections go)"
    )
    paced_goal = "meets" if paced["rps"] >= 0.97 * GOAL_RATE and paced["p99_us"] < 100_000 else "misses"
    print(
        f"  {'paced at ~' + str(GOAL_RATE) + '/s':<22} : {paced['rps']:8.0f} sign-ups/s   "
        f"p50 {paced['p50_us'] / 1000:6.1f} ms   p99 {paced['p99_us'] / 1000:6.1f} ms   "
        f"({PACED_CONNECTIONS} connections, think time)   "
        f"non-2xx {paced['non2xx']}  socket errors {paced['errors']}"
    )
    print(f"  goal, about 1,300 sign-ups/s with p99 < 100 ms: saturated run {goal}, paced run {paced_goal}")
    framework = hello["server_cpu_ms_per_request"]
    argon2_ms, db_cpu_ms = costs["argon2_us"] / 1000, costs["db_batched_cpu_us"] / 1000
    rest = max(0.0, signup["server_cpu_ms_per_request"] - framework - argon2_ms - db_cpu_ms)
    print("  where a sign-up's server CPU goes (ms per request; in-process timings for the parts):")
    print(f"    HTTP + routing + JSON (the hello's CPU)              {framework:6.2f}")
    print(f"    argon2id hash                                        {argon2_ms:6.2f}")
    print(
        f"    account + email OTP, group commit of 16 (client CPU) {db_cpu_ms:6.2f}"
        f"   (wall {costs['db_batched_us'] / 1000:.2f} ms per sign-up; alone: CPU "
        f"{costs['db_alone_cpu_us'] / 1000:.2f} ms, wall {costs['db_alone_us'] / 1000:.2f} ms)"
    )
    print(f"    rest: body read, checks, batch hand-off, middleware  {rest:6.2f}")
    database_ms = signup["database_cpu_ms_per_request"]
    if database_ms:
        print(f"    and in the PostgreSQL server's own backends          {database_ms:6.2f}")
    # What the CPU alone allows when nothing else runs: every core shared by the server, the
    # database and wrk at the CPU per sign-up measured here (an estimate, not a measurement).
    per_signup = signup["server_cpu_ms_per_request"] + database_ms + signup["wrk_cpu_ms_per_request"]
    print(
        f"  CPU per sign-up, server + database + wrk: {per_signup:.2f} ms -> on an otherwise idle "
        f"{psutil.cpu_count()}-core machine about {1000 * psutil.cpu_count() / per_signup:,.0f} sign-ups/s "
        "(estimate)"
    )
    print(f"  load average after this run: {os.getloadavg()[0]:.1f}")
    return {
        "hello": hello["rps"],
        "healthz": health["rps"],
        "sign-ups": signup["rps"],
        "sign-up p99 ms": signup["p99_us"] / 1000,
        "sign-up CPU ms": signup["server_cpu_ms_per_request"],
        "healthz CPU ms": health["server_cpu_ms_per_request"],
    }


@contextlib.contextmanager
def code_of_revision(rev: str):
    """Run the servers started inside on the code of git revision ``rev`` (exported, then removed)."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="bench-api-rev-") as tree:
        archive = subprocess.run(["git", "-C", str(root), "archive", rev], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = tree  # `python -m simulator.cli serve` imports the old code first
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--password-cost",
        type=int,
        default=Settings().password_cost,
        help="argon2id cost level (default: serve's own default, the one issue 13's goal is stated at)",
    )
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--against", metavar="REV", help="also measure git revision REV, in turns (SQLite)")
    parser.add_argument("--turns", type=int, default=2, help="turns of each code with --against")
    parser.add_argument(
        "--access-log", action="store_true", help="keep serve's JSON access log on (to /dev/null)"
    )
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    print(f"bench_api: {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    if args.against:
        figures: dict[str, list[dict]] = {"this": [], args.against: []}
        for turn in range(args.turns):  # in turns, so the machine's other load falls on both alike
            for who in (args.against, "this") if turn % 2 == 0 else ("this", args.against):
                context = code_of_revision(args.against) if who != "this" else contextlib.nullcontext()
                with context, scratch_database() as db_url:
                    figures[who].append(
                        bench_database(f"SQLite, code of {who}, turn {turn + 1}", db_url, args)
                    )
        print(f"\n== this code against {args.against} (SQLite, medians of {args.turns} turns)")
        for name in figures["this"][0]:
            mine = statistics.median(f[name] for f in figures["this"])
            theirs = statistics.median(f[name] for f in figures[args.against])
            print(f"  {name:<16} {mine:9.2f} against {theirs:9.2f}   ratio {mine / theirs:.3f}")
        return 0
    with scratch_database() as db_url:
        bench_database("SQLite (embedded, WAL)", db_url, args)
    pg = os.environ.get("PRAKERJA_TEST_POSTGRES_URL")
    if pg and not args.skip_postgres:
        with scratch_database(pg, prefix="bench_api") as db_url:
            bench_database("PostgreSQL", db_url, args)
    else:
        print("\n(PostgreSQL skipped: set PRAKERJA_TEST_POSTGRES_URL to include it)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
