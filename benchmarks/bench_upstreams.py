"""Benchmark: the upstream stand-ins on one core, each against a bare server.

The stand-ins (``prakerja-sim upstreams``) run pinned to CPU 0, the load generators on CPU 1:
- registry checks/s (wrk, 64 connections) against a bare ASGI hello world on uvicorn/httptools/
  uvloop (the stack the stand-ins ran on before their lean protocol), and the stand-ins' CPU time
  per check (user + system, from /proc: the figure other processes on the machine disturb least);
- registry p99 at ~3,000 checks/s (wrk, 32 connections each pausing 0-20 ms between checks),
  ``--repeats`` times: the best and the median, and at the planner's wave-1 peak, ~750/s;
- SMS sink messages/s (wrk, form bodies to ever new numbers), against the same hello world;
- SMTP sink messages/s over persistent smtplib connections, against a bare aiosmtpd server whose
  handler only says 250;
- memory over a soak (registry + SMS + SMTP at once, ``--soak`` seconds): RSS at the start, each
  minute and at the end.

    python benchmarks/bench_upstreams.py [--seconds 10] [--soak 120] [--size 100000] [--repeats 5]

Goals (issue 17): registry >= 3,000 checks/s and p99 < 10 ms at ~3,000/s without faults (judged on
the median run), SMS >= 3,000 messages/s, SMTP >= 500 messages/s, memory flat over a 10-minute
soak (``--soak 600``: the last half grows less than 5 % and 10 MiB). Each goal prints MET or NOT MET.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from simulator.api.testing import free_ports
from simulator.io.population import write_population
from simulator.io.reader import read_table
from simulator.upstreams.testing import _wait_healthy, upstreams_command

GOALS = {"registry_rps": 3000, "registry_p99_ms": 10.0, "sms_rps": 3000, "smtp_mps": 500}
PACED_RATE_FLOOR = 2_850
"""A p99 "at ~3,000/s" counts only when the paced run reached this rate (95 %)."""
FLAT_GROWTH = (0.05, 10.0)
"""Memory is flat when the soak's second half grows less than 5 % and less than 10 MiB."""
SERVER_CPU, LOAD_CPU = "0", "1"

REGISTRY_LUA = r"""
local bodies = {%(bodies)s}
local think_ms = tonumber("%(think_ms)s")
local i = 0
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) i = math.random(#bodies) end
function delay() if think_ms > 0 then return math.floor(think_ms * 2 * math.random()) end return 0 end
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i])
end
%(done)s
"""
SMS_LUA = r"""
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
request = function()
  local body = string.format("to=08%%010d&text=Kode+OTP+Prakerja+Anda%%%%3A+%%06d",
                             math.random(0, 9999999999), math.random(0, 999999))
  return wrk.format("POST", nil, {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
%(done)s
"""
HELLO_LUA = r"""
local think_ms = tonumber("%(think_ms)s")
function delay() if think_ms > 0 then return math.floor(think_ms * 2 * math.random()) end return 0 end
request = function() return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, '{"a":1}') end
%(done)s
"""
DONE_LUA = r"""
done = function(summary, latency, requests)
  io.write(string.format('WRK_JSON {"requests": %d, "seconds": %f, "non2xx": %d, "errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
HELLO_SERVER = r"""
import sys, uvicorn
UVICORN_OPTIONS = {"loop": "uvloop", "http": "httptools", "access_log": False, "log_level": "warning"}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"hello":"world"}'})

options = dict(UVICORN_OPTIONS, lifespan="off")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), **options)
"""
BARE_SMTP = r"""
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Nothing:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Nothing()), "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

import uvloop
uvloop.run(main())
"""


def pinned(cpu: str, cmd: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", cpu, *cmd], **kwargs)


def wrk(url: str, lua: str, seconds: float, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        cmd = [
            "taskset",
            "-c",
            LOAD_CPU,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            script.name,
            url,
        ]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script.name)
    for line in run.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result = json.loads(line[len("WRK_JSON ") :])
            result["rps"] = (result["requests"] - result["non2xx"]) / result["seconds"]
            return result
    raise RuntimeError(f"wrk failed: {run.stdout}\n{run.stderr}")


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def with_cpu(pid: int, run):
    """``run()``'s wrk result, with ``cpu_us`` = the process ``pid``'s CPU time per request."""
    before = cpu_s(pid)
    result = run()
    result["cpu_us"] = (cpu_s(pid) - before) / max(result["requests"], 1) * 1e6
    return result


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def registry_lua(population: Path, think_ms: float = 0, count: int = 2000) -> str:
    residents = read_table(population, "residents").slice(0, count).to_pylist()
    bodies = ",".join(
        "'" + json.dumps({"nik": r["nik"], "kk": r["kk"], "birth_date": r["birth_date"].isoformat()}) + "'"
        for r in residents
    )
    return REGISTRY_LUA % {"bodies": bodies, "think_ms": think_ms, "done": DONE_LUA}


def smtp_load(port: int, seconds: float, connections: int, rate: float | None = None) -> float:
    """Messages/s accepted over ``connections`` persistent smtplib connections (pinned to the load CPU)."""
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    sent = [0] * connections
    deadline = time.monotonic() + seconds
    pause = connections / rate if rate else 0.0  # mean seconds between messages of one connection

    def client(k: int) -> None:
        rng = random.Random(k)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo()
            while time.monotonic() < deadline:
                to = f"applicant{rng.randrange(10**9)}@mail.invalid"
                body = (
                    f"From: noreply@prakerja.invalid\r\nTo: {to}\r\nSubject: Verifikasi email\r\n\r\n"
                    f"Kode OTP Prakerja Anda: {rng.randrange(10**6):06d}\r\n"
                ).encode()
                smtp.sendmail("noreply@prakerja.invalid", [to], body)
                sent[k] += 1
                if pause:
                    time.sleep(pause * rng.random() * 2)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return sum(sent) / (time.monotonic() - started)


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def line(label: str, value: float, unit: str, goal: str, baseline: float | None = None) -> str:
    ratio = f"  {value / baseline:5.2f} x bare ({baseline:,.0f})" if baseline else ""
    return f"{label:<34}{value:>10,.1f} {unit:<6} goal {goal:<10}{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--soak", type=float, default=120.0, help="seconds of the memory soak (0: none)")
    parser.add_argument("--size", type=int, default=100_000, help="residents in the registry")
    parser.add_argument("--repeats", type=int, default=5, help="runs of the p99 at ~3,000/s")
    parser.add_argument(
        "--max-recipients",
        type=int,
        default=20_000,
        help="the stand-ins' recipient bound (small, so a short soak reaches it)",
    )
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("this benchmark pins the server and the load generator to two different CPUs")

    work = Path(tempfile.mkdtemp(prefix="bench-upstreams-"))
    population = work / "population"
    print(f"population of {args.size:,} ...", file=sys.stderr)
    write_population(population, args.size, 17, fmt="parquet", workers=2)
    print(f"load average before: {load_average()}")

    hello_port, smtp_bare_port = free_ports(2)
    hello = pinned(SERVER_CPU, [sys.executable, "-c", HELLO_SERVER, str(hello_port)])
    bare_smtp = pinned(SERVER_CPU, [sys.executable, "-c", BARE_SMTP, str(smtp_bare_port)])
    port, smtp_port = free_ports(2)
    stand_ins = pinned(
        SERVER_CPU,
        upstreams_command(population, port, smtp_port, "--max-recipients", str(args.max_recipients)),
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, stand_ins, 120)
        time.sleep(1.0)
        hello_url = f"http://127.0.0.1:{hello_port}/"
        hello_lua = HELLO_LUA % {"done": DONE_LUA, "think_ms": 0}
        wrk(hello_url, hello_lua, 2, 64)  # warm-up
        wrk(url + "/registry/v1/check", registry_lua(population), 2, 64)

        def bracketed(measure):
            # The machine's load drifts: each figure is taken between two baseline runs and set
            # against their mean, so both see the same contention.
            before = wrk(hello_url, hello_lua, args.seconds, 64)["rps"]
            result = measure()
            after = wrk(hello_url, hello_lua, args.seconds, 64)["rps"]
            return result, (before + after) / 2

        check_url = url + "/registry/v1/check"
        pid = stand_ins.pid
        registry, bare_registry = bracketed(
            lambda: with_cpu(pid, lambda: wrk(check_url, registry_lua(population), args.seconds, 64))
        )
        # p99 at the goal rate: 32 connections, each pausing 0-20 ms (10 on average) between checks:
        # ~3,000/s offered with sub-millisecond answers. Repeated: the machine's load drifts.
        # Each run beside the bare hello world paced the same way: its p99 is the machine's own noise.
        paced_lua = registry_lua(population, think_ms=10)
        paced_hello_lua = HELLO_LUA % {"done": DONE_LUA, "think_ms": 10}
        paced, paced_hello = [], []
        for _ in range(args.repeats):
            paced_hello.append(wrk(hello_url, paced_hello_lua, args.seconds, 32))
            paced.append(with_cpu(pid, lambda: wrk(check_url, paced_lua, args.seconds, 32)))
        # ... and at the planner's wave-1 P50 peak, ~750 checks/s (16 connections, ~20 ms pauses).
        wave1 = with_cpu(pid, lambda: wrk(check_url, registry_lua(population, think_ms=20), args.seconds, 16))
        sms, bare_sms = bracketed(
            lambda: wrk(url + "/sms/v1/send", SMS_LUA % {"done": DONE_LUA}, args.seconds, 64)
        )
        smtp_before = smtp_load(smtp_bare_port, args.seconds, 8)
        smtp = smtp_load(smtp_port, args.seconds, 8)
        smtp_bare = (smtp_before + smtp_load(smtp_bare_port, args.seconds, 8)) / 2

        print(
            f"\nstand-ins on CPU {SERVER_CPU}, load generators on CPU {LOAD_CPU}; "
            f"registry of {args.size:,}; runs of {args.seconds:g} s; load average {load_average()}"
        )
        goals: list[tuple[str, bool]] = []
        print(line("registry checks/s (64 conn.)", registry["rps"], "/s", ">= 3,000", bare_registry))
        goals.append(("registry >= 3,000 checks/s", registry["rps"] >= GOALS["registry_rps"]))
        print(f"{'registry p99 at saturation':<34}{registry['p99_us'] / 1000:>10,.2f} ms")
        p99s = sorted(run["p99_us"] / 1000 for run in paced)
        rates = sorted(run["rps"] for run in paced)
        median_p99, median_rate = p99s[len(p99s) // 2], rates[len(rates) // 2]
        print(
            f"{'registry p99 at ~3,000/s (paced)':<34}{median_p99:>10,.2f} ms     goal < 10 ms    "
            f"median of {len(paced)}; best {p99s[0]:.2f} ms, worst {p99s[-1]:.2f} ms; "
            f"rates {rates[0]:,.0f}-{rates[-1]:,.0f}/s"
        )
        goals.append(
            (
                f"registry p99 < 10 ms at ~3,000/s (median {median_p99:.2f} ms at {median_rate:,.0f}/s)",
                median_p99 < GOALS["registry_p99_ms"] and median_rate >= PACED_RATE_FLOOR,
            )
        )
        hello_p99s = sorted(run["p99_us"] / 1000 for run in paced_hello)
        print(
            f"{'  bare hello p99, paced the same':<34}{hello_p99s[len(hello_p99s) // 2]:>10,.2f} ms     "
            f"(the machine's noise: median; best {hello_p99s[0]:.2f} ms, worst {hello_p99s[-1]:.2f} ms)"
        )
        print(line(f"registry p99 at {wave1['rps']:,.0f}/s (paced)", wave1["p99_us"] / 1000, "ms", "< 10 ms"))
        print(
            f"{'registry server CPU per check':<34}{registry['cpu_us']:>10,.1f} us     at saturation; "
            f"{sorted(r['cpu_us'] for r in paced)[len(paced) // 2]:.1f} us at ~3,000/s, "
            f"{wave1['cpu_us']:.1f} us at ~750/s"
        )
        print(line("SMS sink messages/s", sms["rps"], "/s", ">= 3,000", bare_sms))
        goals.append(("SMS sink >= 3,000 messages/s", sms["rps"] >= GOALS["sms_rps"]))
        print(line("SMTP sink messages/s (8 conn.)", smtp, "/s", ">= 500", smtp_bare))
        goals.append(("SMTP sink >= 500 messages/s", smtp >= GOALS["smtp_mps"]))
        errors = registry["non2xx"] + registry["errors"] + sms["non2xx"] + sms["errors"]
        errors += sum(run["non2xx"] + run["errors"] for run in [*paced, wave1])
        print(f"{'non-2xx / socket errors':<34}{errors:>10,d}")
        if args.soak > 0:
            goals.append(soak(url, smtp_port, stand_ins.pid, population, args))
        print(f"\nload average after: {load_average()}")
        print("goals (issue 17):")
        for label, met in goals:
            print(f"  {verdict(met):<8} {label}")
        if args.soak < 600:
            print("  (memory flat over a 10-minute soak: run with --soak 600)")
    finally:
        for process in (stand_ins, hello, bare_smtp):
            stop(process)


def soak(url: str, smtp_port: int, pid: int, population: Path, args: argparse.Namespace) -> tuple[str, bool]:
    """Registry, SMS and SMTP load at once for ``args.soak`` seconds; RSS of the stand-ins each second,
    printed at the start, each minute (each quarter of a soak under two minutes) and at the end."""
    samples: list[tuple[float, float]] = []  # (seconds since the start, MiB)
    done = threading.Event()
    started = time.monotonic()
    every = 60.0 if args.soak >= 120 else max(args.soak / 4, 1.0)

    def sample() -> None:
        shown = -every
        while not done.is_set():
            at, mib = time.monotonic() - started, rss_mib(pid)
            samples.append((at, mib))
            if at - shown >= every - 0.5:
                shown = at
                print(f"  soak {at:6.0f} s: RSS {mib:6.1f} MiB; load average {load_average()}", flush=True)
            done.wait(1.0)

    print(f"\nsoak of {args.soak:g} s (registry ~750/s, SMS and SMTP at once):", flush=True)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lua = registry_lua(population, think_ms=20)
    results: dict[str, dict] = {}

    def run(name: str, target, *a) -> None:
        results[name] = target(*a)

    loads = [
        threading.Thread(target=run, args=("registry", wrk, url + "/registry/v1/check", lua, args.soak, 16)),
        threading.Thread(
            target=run, args=("sms", wrk, url + "/sms/v1/send", SMS_LUA % {"done": DONE_LUA}, args.soak, 4)
        ),
        threading.Thread(target=run, args=("smtp", smtp_load, smtp_port, args.soak, 2, 200.0)),
    ]
    for t in loads:
        t.start()
    for t in loads:
        t.join()
    done.set()
    sampler.join()
    end_mib = rss_mib(pid)
    print(f"  soak {time.monotonic() - started:6.0f} s: RSS {end_mib:6.1f} MiB (end)")
    with urllib_request(url + "/v1/stats") as response:
        stats = json.load(response)
    outbox = stats["outbox"]
    mibs = [m for _, m in samples]
    half = [m for at, m in samples if at >= args.soak / 2]
    half_start = half[0] if half else mibs[0]
    growth = end_mib - half_start
    registry = results.get("registry", {})
    print(
        f"  RSS start {mibs[0]:.0f} MiB, peak {max(mibs):.0f} MiB, end {end_mib:.0f} MiB; "
        f"second half grew {growth:+.1f} MiB ({growth / half_start * 100:+.1f} %)"
    )
    if registry:
        print(
            f"  registry during the soak: {registry['rps']:,.0f} checks/s, "
            f"p99 {registry['p99_us'] / 1000:.2f} ms; "
            f"SMS {results['sms']['rps']:,.0f}/s, SMTP {results.get('smtp', 0):,.0f}/s"
        )
    print(
        f"  outbox: {outbox['recipients']:,} recipients (bound {outbox['max_recipients']:,}), "
        f"{outbox['messages']:,} messages held, {outbox['evicted_recipients']:,} recipients evicted; "
        f"{stats['services']['registry']['calls']:,} checks, {stats['services']['sms']['calls']:,} SMS, "
        f"{stats['services']['smtp']['calls']:,} emails in all"
    )
    share, mib = FLAT_GROWTH
    flat = growth < share * half_start and growth < mib
    return (f"memory flat over a {args.soak / 60:g}-minute soak ({growth:+.1f} MiB in its second half)", flat)


def urllib_request(url: str):  # a context manager
    import urllib.request

    return urllib.request.urlopen(url, timeout=30)


if __name__ == "__main__":
    main()
