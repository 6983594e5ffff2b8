"""seed-db speed: rows per second into PostgreSQL against ``pgbench -i`` on the same server, same run.

Baseline: ``pgbench -i -s SCALE`` (client-side generated rows, COPY, primary keys after) into a
scratch database. Ours: ``prakerja-sim seed-db --size N`` (population generated, argon2 hashed
once per distinct password, COPY, keys / indexes / foreign keys built after) into another. Both
count every row written. Prints both rates, the ratio (goal >= 0.5), the same seed with one hash
per account (``--distinct-passwords all``: what the password pool saves), and, with
``--million``, the time and peak memory (the whole process tree) of seeding 1,000,000 applicants.

    python benchmarks/bench_seed_db.py [--pg URL] [--size 200000] [--scale 10] [--million]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from sqlalchemy.engine import make_url

from simulator.api.testing import scratch_database

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def pgbench_init(db_url: str, scale: int) -> tuple[int, float]:
    """(rows, seconds) of ``pgbench -i -s scale`` into ``db_url``."""
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
    started = time.perf_counter()
    subprocess.run([*cmd, url.database], check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - started
    rows = 100_000 * scale + 10 * scale + scale  # accounts, tellers, branches
    return rows, seconds


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


class PeakMemory:
    """Samples the memory of a process and all its children (hash workers) every 0.5 s (reading every
    process's page tables costs CPU the seed would otherwise have).

    PSS (proportional set size), not RSS: forked workers share the parent's pages, and RSS would
    count each shared page once per process."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.5)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def seed(db_url: str, size: int, passwords: str, *extra: str) -> tuple[int, float, int, str]:
    """(rows, seconds, peak bytes, summary) of ``prakerja-sim seed-db --size`` in a subprocess."""
    cmd = [
        sys.executable, "-m", "simulator.cli", "seed-db", "--db", db_url, "--size", str(size), "--seed", "1",
        "--truncate", "--passwords-out", passwords, *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    memory = PeakMemory(process.pid)
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    peak = memory.stop()
    if process.returncode != 0:
        sys.exit(f"seed-db failed ({process.returncode}): {err.strip()}")
    match = re.search(r"([\d,]+) rows in", out)
    rows = int(match.group(1).replace(",", "")) if match else 0
    return rows, seconds, peak, out


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
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (100,000 accounts per unit)")
    parser.add_argument("--million", action="store_true", help="also seed 1,000,000 applicants")
    args = parser.parse_args()

    one, many, workers = hash_rates()
    print(f"argon2id t=1 m=8KiB: {one:,.0f} hashes/s on 1 process, {many:,.0f}/s on {workers} processes")
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        with scratch_database(args.pg, prefix="bench_pgbench") as db:
            base_rows, base_s = pgbench_init(db, args.scale)
            base_bytes = database_bytes(db)
        with scratch_database(args.pg, prefix="bench_seed") as db:
            rows, seconds, peak, summary = seed(db, args.size, os.path.join(tmp, "pw.csv"))
            seed_bytes = database_bytes(db)
        base_rate, rate = base_rows / base_s, rows / seconds
        print(f"pgbench -i -s {args.scale}: {base_rows:,} rows in {base_s:.2f} s = {base_rate:,.0f} rows/s")
        print(f"seed-db --size {args.size:,}: {rows:,} rows in {seconds:.2f} s = {rate:,.0f} rows/s")
        print(f"  ({args.size / seconds:,.0f} applicants/s, peak memory {peak / 2**20:,.0f} MiB)")
        print(f"ratio seed-db / pgbench -i: {rate / base_rate:.2f} (goal >= 0.50)")
        base_mbs, seed_mbs = base_bytes / base_s / 2**20, seed_bytes / seconds / 2**20
        print(
            f"  by bytes on disk (wider rows, more keys): pgbench {base_mbs:.1f} MiB/s, seed-db "
            f"{seed_mbs:.1f} MiB/s, ratio {seed_mbs / base_mbs:.2f}"
        )
        with scratch_database(args.pg, prefix="bench_seed_allpw") as db:
            all_rows, all_s, _, _ = seed(
                db, args.size, os.path.join(tmp, "pw0.csv"), "--distinct-passwords", "all"
            )
        all_rate = all_rows / all_s
        print(
            f"  same seed, one argon2 hash per account (--distinct-passwords all): {all_rate:,.0f} rows/s, "
            f"ratio {all_rate / base_rate:.2f}; the password pool saves {1 - seconds / all_s:.0%} of the time"
        )
        print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        if args.million:
            with scratch_database(args.pg, prefix="bench_seed_1m") as db:
                rows, seconds, peak, summary = seed(db, 1_000_000, os.path.join(tmp, "pw1m.csv"))
            print(
                f"1,000,000 applicants: {rows:,} rows in {seconds:.1f} s, peak memory {peak / 2**20:,.0f} MiB"
            )
            print(summary)


if __name__ == "__main__":
    main()
