"""seed-db speed: rows per second into PostgreSQL against ``pgbench -i`` on the same server, same run.

Baseline: ``pgbench -i -s SCALE`` (client-side generated rows, COPY, vacuum, primary keys after)
into a scratch database, at the scale whose row count is nearest the seed's (pgbench writes 100,000
rows per unit and gets faster per row as it grows, so a smaller baseline would flatter the ratio of
a big seed); ``--scale`` fixes it instead. Ours: ``prakerja-sim seed-db --size N`` (population
generated, argon2 hashed once per distinct password, binary COPY into a staging schema, keys /
indexes / foreign keys built after, swapped in) into another. Both count every row written. Each
pair runs ``--repeat`` times, back to back; prints both rates, the ratio (goal >= 0.5) and its
median, the CPU seconds each side used (client process tree, and the PostgreSQL server's processes
when the server runs on this machine: on a shared machine the wall-clock ratio moves with the load,
CPU time much less) against the CPU the goal leaves the seed on this machine (all CPUs busy for
twice pgbench's time per row), the same seed with one hash per account (``--distinct-passwords
all``: what the password pool saves), and, with ``--million``, the time and peak memory (the whole
process tree) of seeding 1,000,000 applicants.

    python benchmarks/bench_seed_db.py [--pg URL] [--size 200000] [--scale N] [--repeat 3] [--million]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import psutil
from _measure import PeakMemory  # benchmarks/, first on the path of a script run from it
from sqlalchemy.engine import make_url

from simulator.api.testing import scratch_database

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def children_cpu() -> float:
    """CPU seconds of this process's finished children (and of theirs, once they were waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu() -> float | None:
    """CPU seconds the local PostgreSQL server has used so far: its live processes, plus the
    backends and workers that have exited (the postmaster's children). None if it is not visible
    (another machine, another container): then only the client side is counted."""
    total, seen = 0.0, False
    for process in psutil.process_iter(["username", "name"]):
        if process.info["username"] != "postgres":
            continue
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seen = True
        total += times.user + times.system
        if _is_postmaster(process):
            total += times.children_user + times.children_system  # backends and workers that exited
    return total if seen else None


def _is_postmaster(process: psutil.Process) -> bool:
    try:
        parent = process.parent()
        return parent is None or parent.username() != "postgres"
    except psutil.Error:
        return False


def server_cpu_since(before: float | None) -> float | None:
    time.sleep(0.3)  # the run's backends exit once their connections close
    after = server_cpu()
    return None if before is None or after is None else after - before


def pgbench_init(db_url: str, scale: int) -> tuple[int, float, float, float | None]:
    """(rows, seconds, client CPU, server CPU) of ``pgbench -i -s scale`` into ``db_url``."""
    if shutil.which("pgbench") is None:
        sys.exit("pgbench is not installed (apt-get install postgresql-client)")
    url = make_url(db_url)
    cmd = [
        "pgbench",
        "-i",
        "-q",
        "-s",
        str(scale),
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
    ]
    if url.username:
        cmd += ["-U", url.username]
    env = dict(os.environ, PGPASSWORD=url.password or "")
    server, client = server_cpu(), children_cpu()
    started = time.perf_counter()
    subprocess.run([*cmd, url.database], check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - started
    client = children_cpu() - client
    rows = 100_000 * scale + 10 * scale + scale  # accounts, tellers, branches
    return rows, seconds, client, server_cpu_since(server)


def matching_scale(rows: int) -> int:
    """The pgbench scale whose ``-i`` writes about ``rows`` rows (100,011 per unit)."""
    return max(1, round(rows / 100_011))


def database_bytes(db_url: str) -> int:
    """Size on disk of a database (tables, indexes, TOAST): the work a load leaves behind."""
    import sqlalchemy as sa

    from simulator.api.db import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar())
    finally:
        engine.dispose()


@dataclass
class SeedRun:
    rows: int
    seconds: float
    peak: int  # bytes (0: not sampled)
    summary: str
    client_cpu: float
    server_cpu: float | None


def seed(db_url: str, size: int, passwords: str, *extra: str, sample_memory: bool = False) -> SeedRun:
    """``prakerja-sim seed-db --size`` in a subprocess: rows, time, CPU and (if asked) peak memory.

    Memory is sampled only when asked: reading every process's page tables costs the run CPU."""
    cmd = [
        sys.executable, "-m", "simulator.cli", "seed-db", "--db", db_url, "--size", str(size), "--seed", "1",
        "--truncate", "--passwords-out", passwords, *extra,
    ]  # fmt: skip
    server, client = server_cpu(), children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = PeakMemory(process.pid) if sample_memory else None
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    peak = memory.stop() if memory else 0
    if process.returncode != 0:
        sys.exit(f"seed-db failed ({process.returncode}): {err.strip()}")
    client = children_cpu() - client
    match = re.search(r"([\d,]+) rows in", out)
    rows = int(match.group(1).replace(",", "")) if match else 0
    return SeedRun(rows, seconds, peak, out, client, server_cpu_since(server))


def _cpu(client: float, server: float | None) -> str:
    return f"CPU {client:.1f} s client" + (f" + {server:.1f} s server" if server is not None else "")


def _per_cpu_second(rows: int, client: float, server: float | None) -> float | None:
    return rows / (client + server) if server is not None and client + server > 0 else None


def cpu_budget_line(rows: int, base_rows: int, base_s: float, client: float, server: float | None) -> str:
    """What the goal leaves the seed to spend: at ratio 0.5 the seed may take twice pgbench's time per
    row, so with every CPU of this machine busy all that time it could use ``CPUs x that`` CPU-seconds.
    A seed that needs more than that cannot reach the goal here, however well it keeps the CPUs busy."""
    cpus = os.cpu_count() or 1
    allowed = 2 * base_s * rows / base_rows  # seconds the seed may take at ratio 0.5
    used = client + (server or 0.0)
    line = (
        f"  CPU budget at the goal: {cpus} CPUs x {allowed:.1f} s = {cpus * allowed:.1f} CPU-s; "
        f"seed-db used {used:.1f}"
    )
    if server is not None:
        line += f" (server alone {server:.1f})"
    return line + ("" if server is not None else ", client only: the server is not on this machine")


def hash_rates(count: int = 20_000) -> tuple[float, float, int]:
    """argon2id at seed-db's default cost: hashes/s on one process, and on the worker pool."""
    from simulator.seed.hashing import SEED_COST, PasswordHasherPool, hash_many

    passwords = [f"Sandi{i:06d}!" for i in range(count)]
    keys = [f"bench:{i}" for i in range(count)]
    started = time.perf_counter()
    hash_many(passwords, keys, SEED_COST)
    one = count / (time.perf_counter() - started)
    with PasswordHasherPool(SEED_COST) as pool:
        pool.collect(pool.submit(passwords[:100], keys[:100]))  # workers started
        started = time.perf_counter()
        pool.collect(pool.submit(passwords, keys))
        many = count / (time.perf_counter() - started)
        workers = pool.workers
    return one, many, workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("PRAKERJA_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--size", type=int, default=200_000, help="applicants for the ratio run")
    parser.add_argument(
        "--scale", type=int, default=None,
        help="pgbench scale (100,000 accounts per unit; default: the seed's row count)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="pgbench / seed-db pairs for the ratio")
    parser.add_argument("--million", action="store_true", help="also seed 1,000,000 applicants")
    args = parser.parse_args()

    one, many, workers = hash_rates()
    print(f"argon2id t=1 m=8KiB: {one:,.0f} hashes/s on 1 process, {many:,.0f}/s on {workers} processes")
    ratios, cpu_ratios = [], []
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        for _ in range(args.repeat):
            with scratch_database(args.pg, prefix="bench_seed") as db:
                run = seed(db, args.size, os.path.join(tmp, "pw.csv"))
                seed_bytes = database_bytes(db)
            scale = args.scale or matching_scale(run.rows)
            with scratch_database(args.pg, prefix="bench_pgbench") as db:
                base_rows, base_s, base_client, base_server = pgbench_init(db, scale)
                base_bytes = database_bytes(db)
            base_rate, rate = base_rows / base_s, run.rows / run.seconds
            ratios.append(rate / base_rate)
            print(
                f"pgbench -i -s {scale}: {base_rows:,} rows in {base_s:.2f} s = {base_rate:,.0f} rows/s "
                f"({_cpu(base_client, base_server)})"
            )
            print(
                f"seed-db --size {args.size:,}: {run.rows:,} rows in {run.seconds:.2f} s = "
                f"{rate:,.0f} rows/s ({_cpu(run.client_cpu, run.server_cpu)})"
            )
            print(f"  ratio seed-db / pgbench -i: {rate / base_rate:.2f} (goal >= 0.50)")
            base_mbs, seed_mbs = base_bytes / base_s / 2**20, seed_bytes / run.seconds / 2**20
            print(
                f"  by bytes on disk (wider rows, more keys): pgbench {base_mbs:.1f} MiB/s, seed-db "
                f"{seed_mbs:.1f} MiB/s, ratio {seed_mbs / base_mbs:.2f}"
            )
            base_cpu = _per_cpu_second(base_rows, base_client, base_server)
            seed_cpu = _per_cpu_second(run.rows, run.client_cpu, run.server_cpu)
            if base_cpu and seed_cpu:
                cpu_ratios.append(seed_cpu / base_cpu)
                print(
                    f"  by CPU time (rows per CPU-second, client + server): pgbench {base_cpu:,.0f}, "
                    f"seed-db {seed_cpu:,.0f}, ratio {seed_cpu / base_cpu:.2f}"
                )
            print(cpu_budget_line(run.rows, base_rows, base_s, run.client_cpu, run.server_cpu))
            print(f"  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        print(
            f"median ratio over {len(ratios)} pair(s): {statistics.median(ratios):.2f} (goal >= 0.50)"
            + (f"; by CPU time {statistics.median(cpu_ratios):.2f}" if cpu_ratios else "")
        )
        with scratch_database(args.pg, prefix="bench_seed_allpw") as db:
            every = seed(db, args.size, os.path.join(tmp, "pw0.csv"), "--distinct-passwords", "all")
        all_rate = every.rows / every.seconds
        print(
            f"  same seed, one argon2 hash per account (--distinct-passwords all): {all_rate:,.0f} rows/s, "
            f"ratio {all_rate / base_rate:.2f} against the last pgbench "
            f"({_cpu(every.client_cpu, every.server_cpu)})"
        )
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        if args.million:
            with scratch_database(args.pg, prefix="bench_seed_1m") as db:
                run = seed(db, 1_000_000, os.path.join(tmp, "pw1m.csv"), sample_memory=True)
            scale = args.scale or matching_scale(run.rows)
            with scratch_database(args.pg, prefix="bench_pgbench") as db:
                base_rows, base_s, base_client, base_server = pgbench_init(db, scale)
            rate, base_rate = run.rows / run.seconds, base_rows / base_s
            print(
                f"1,000,000 applicants: {run.rows:,} rows in {run.seconds:.1f} s = {rate:,.0f} rows/s, "
                f"peak memory {run.peak / 2**20:,.0f} MiB ({_cpu(run.client_cpu, run.server_cpu)})"
            )
            print(
                f"  pgbench -i -s {scale} right after: {base_rows:,} rows in {base_s:.1f} s = "
                f"{base_rate:,.0f} rows/s ({_cpu(base_client, base_server)}); "
                f"ratio {rate / base_rate:.2f} (goal >= 0.50)"
            )
            print(cpu_budget_line(run.rows, base_rows, base_s, run.client_cpu, run.server_cpu))
            print(f"  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
            print(run.summary)


if __name__ == "__main__":
    main()
