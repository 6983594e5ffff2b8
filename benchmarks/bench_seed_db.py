"""seed-db speed against PostgreSQL's own floor: ``pg_restore -j 2`` of a dump of the very database
seeded, into an empty database created for it, in the same run.

Each pair: ``prakerja-sim seed-db --size N --truncate`` into a scratch database (population
generated, argon2 hashed once per distinct password, binary COPY into a staging schema, keys /
indexes / foreign keys built after, swapped in), ``pg_dump -Fc`` of it, then ``pg_restore -j 2``
of that dump into a fresh empty database, timed. The ratio is seed-db's time over pg_restore's
(1.0: as fast as restoring the same rows, keys and indexes; below 1 is not expected). Pairs run
``--repeat`` times at ``--size`` and, with ``--million``, at 1,000,000 applicants (time and peak
memory of the whole process tree too). CPU seconds of each side are printed (client process tree,
and the PostgreSQL server's processes when it runs on this machine: on a shared machine the
wall-clock ratio moves with the load, CPU time much less).

With ``--foreign``, each pair also seeds a mapped schema of similar width and another shape (the
Django-style schema of ``bench_seed_mapping.py``, through ``--mapping``) into a database of its own,
and restores its dump the same way: its time against pg_restore of its own rows, and against the
reference seed of the same population in the same round (issue #19's goal: within 1.2x).

What the checks of issue #14 cost, same run: the remote guard's resolution of ``--db``, and the
manifest + size + sha256 verification every reader makes, timed on the population written for a
``seed-db --from`` run of the same size, against that run's time (goal: under 5%).

    python benchmarks/bench_seed_db.py [--pg URL] [--size 200000] [--repeat 3] [--million] [--j1] [--foreign]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from _measure import PeakMemory  # benchmarks/, first on the path of a script run from it

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


@dataclass
class SeedRun:
    rows: int
    seconds: float
    peak: int  # bytes (0: not sampled)
    summary: str
    client_cpu: float
    server_cpu: float | None


def seed(
    db_url: str,
    size: int,
    passwords: str,
    *extra: str,
    sample_memory: bool = False,
    population: str | None = None,
) -> SeedRun:
    """``prakerja-sim seed-db --size`` (or ``--from population``) in a subprocess: rows, time, CPU
    and (if asked) peak memory.

    Memory is sampled only when asked: reading every process's page tables costs the run CPU."""
    source = ["--from", population] if population else ["--size", str(size)]
    cmd = [
        sys.executable, "-m", "simulator.cli", "seed-db", "--db", db_url, *source, "--seed", "1",
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


def pg_tool(*args: str) -> None:
    """Run a PostgreSQL client tool (pg_dump, pg_restore); exit with its message if it fails."""
    result = subprocess.run(list(args), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}")


@dataclass
class RestoreRun:
    seconds: float
    client_cpu: float
    server_cpu: float | None
    dump_bytes: int


def restore_anchor(seeded: str, server: str, dump: str, jobs: int) -> RestoreRun:
    """``pg_dump -Fc`` of ``seeded``, then ``pg_restore -j jobs`` of it into a new empty database, timed."""
    pg_tool("pg_dump", "-Fc", "-f", dump, libpq_url(seeded))
    with scratch_database(server, prefix="bench_restore") as empty:
        before_server, before_client = server_cpu(), children_cpu()
        started = time.perf_counter()
        pg_tool("pg_restore", "-j", str(jobs), "--no-owner", "-d", libpq_url(empty), dump)
        seconds = time.perf_counter() - started
        client = children_cpu() - before_client
        return RestoreRun(seconds, client, server_cpu_since(before_server), os.path.getsize(dump))


def libpq_url(url: str) -> str:
    """The URL as libpq reads it (no SQLAlchemy ``+driver`` in the scheme)."""
    scheme, _, rest = url.partition("://")
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def check_costs(server: str, size: int, tmp: str) -> str:
    """The guard's resolution and the readers' verification, against a ``seed-db --from`` of ``size``."""
    from simulator.io.population import write_population
    from simulator.io.reader import check_population
    from simulator.seed.target import parse_target

    started = time.perf_counter()
    for _ in range(100):
        parse_target(server)
    guard_s = (time.perf_counter() - started) / 100
    population = Path(tmp) / f"population-{size}"
    write_population(population, size, 1, workers=os.cpu_count() or 1)
    started = time.perf_counter()
    check_population(population)
    verify_s = time.perf_counter() - started
    with scratch_database(server, prefix="bench_seed_from") as db:
        run = seed(db, size, os.path.join(tmp, "pw-from.csv"), population=str(population))
    written = sum(f.stat().st_size for f in population.iterdir())
    return (
        f"  checks: guard {guard_s * 1000:.2f} ms; verifying {written / 2**20:,.0f} MiB of population "
        f"(manifest, size, sha256) {verify_s:.2f} s = {verify_s / run.seconds:.1%} of seed-db --from's "
        f"{run.seconds:.1f} s (goal < 5%)"
    )


def foreign_pair(server: str, size: int, tmp: str, reference: SeedRun) -> float:
    """The Django-style mapped schema seeded and its dump restored, as the reference pair; returns the
    mapped / reference time ratio."""
    from bench_seed_mapping import FOREIGN_DDL, FOREIGN_MAPPING, prepared

    mapping = os.path.join(tmp, "foreign.toml")
    with open(mapping, "w", encoding="utf-8") as handle:
        handle.write(FOREIGN_MAPPING)
    with scratch_database(server, prefix="bench_seed_map") as db:
        prepared(db, FOREIGN_DDL)
        run = seed(db, size, os.path.join(tmp, "pw-map.csv"), "--mapping", mapping)
        anchor = restore_anchor(db, server, os.path.join(tmp, "mapped.dump"), 2)
    ratio = run.seconds / reference.seconds
    print(
        f"  --mapping (Django-style schema): {run.rows:,} rows in {run.seconds:.2f} s "
        f"({_cpu(run.client_cpu, run.server_cpu)}); pg_restore -j 2 of its dump: {anchor.seconds:.2f} s "
        f"({_cpu(anchor.client_cpu, anchor.server_cpu)}), ratio {run.seconds / anchor.seconds:.2f}"
    )
    if run.server_cpu is not None and anchor.server_cpu is not None and reference.server_cpu is not None:
        mapped_cpu = run.client_cpu + run.server_cpu
        print(f"    by CPU time: {mapped_cpu / (anchor.client_cpu + anchor.server_cpu):.2f} against its "
              f"pg_restore, {mapped_cpu / (reference.client_cpu + reference.server_cpu):.2f} against "
              "the reference seed")  # fmt: skip
    print(f"    mapped / reference seed time: {ratio:.2f} (goal <= 1.20)")
    return ratio


def pairs(
    server: str, size: int, repeat: int, tmp: str, *, j1: bool, sample_memory: bool, foreign: bool = False
) -> None:
    """``repeat`` seed / dump / restore pairs of ``size`` applicants; prints each and the median ratio."""
    ratios, mapped = [], []
    for _ in range(repeat):
        with scratch_database(server, prefix="bench_seed") as db:
            run = seed(db, size, os.path.join(tmp, "pw.csv"), sample_memory=sample_memory)
            dump = os.path.join(tmp, "seed.dump")
            anchor = restore_anchor(db, server, dump, 2)
            single = restore_anchor(db, server, dump, 1) if j1 else None
        ratios.append(run.seconds / anchor.seconds)
        memory = f", peak memory {run.peak / 2**20:,.0f} MiB" if run.peak else ""
        print(
            f"seed-db --size {size:,}: {run.rows:,} rows in {run.seconds:.2f} s = "
            f"{run.rows / run.seconds:,.0f} rows/s ({_cpu(run.client_cpu, run.server_cpu)}){memory}"
        )
        print(
            f"  pg_restore -j 2 of its dump ({anchor.dump_bytes / 2**20:,.0f} MiB, -Fc) into an empty "
            f"database: {anchor.seconds:.2f} s ({_cpu(anchor.client_cpu, anchor.server_cpu)})"
        )
        if single is not None:
            print(f"  pg_restore -j 1: {single.seconds:.2f} s (ratio {run.seconds / single.seconds:.2f})")
        print(f"  ratio seed-db / pg_restore -j 2: {run.seconds / anchor.seconds:.2f}")
        if run.server_cpu is not None and anchor.server_cpu is not None:
            # On a shared machine the wall-clock ratio moves with the load; CPU time much less.
            seed_cpu, restore_cpu = run.client_cpu + run.server_cpu, anchor.client_cpu + anchor.server_cpu
            print(
                f"  by CPU time (client + server): {seed_cpu:.1f} s / {restore_cpu:.1f} s = "
                f"{seed_cpu / restore_cpu:.2f}"
            )
        if foreign:
            mapped.append(foreign_pair(server, size, tmp, run))
        print(f"  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"{size:,} applicants: median ratio over {len(ratios)} pair(s): {statistics.median(ratios):.2f}")
    if mapped:
        print(f"{size:,} applicants: median mapped / reference ratio: {statistics.median(mapped):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("PRAKERJA_TEST_POSTGRES_URL", DEFAULT_PG))
    parser.add_argument("--size", type=int, default=200_000, help="applicants for the ratio run")
    parser.add_argument("--repeat", type=int, default=3, help="seed / restore pairs per size")
    parser.add_argument("--million", action="store_true", help="also pairs at 1,000,000 applicants")
    parser.add_argument("--j1", action="store_true", help="also time pg_restore -j 1 of each dump")
    parser.add_argument("--foreign", action="store_true", help="also seed a mapped Django-style schema")
    parser.add_argument("--no-checks", action="store_true", help="skip the #14 checks' cost")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        pairs(args.pg, args.size, args.repeat, tmp, j1=args.j1, sample_memory=False, foreign=args.foreign)
        if not args.no_checks:
            print(check_costs(args.pg, args.size, tmp))
        if args.million:
            pairs(args.pg, 1_000_000, args.repeat, tmp, j1=args.j1, sample_memory=True, foreign=args.foreign)
            if not args.no_checks:
                print(check_costs(args.pg, 1_000_000, tmp))


if __name__ == "__main__":
    main()
