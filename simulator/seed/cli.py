"""The ``prakerja-sim seed-db`` command: a thin click shell over :func:`simulator.seed.seed_database`.

Prints a summary (rows per table, accounts per state, waves, speed) and where the passwords went.
"""

from __future__ import annotations

import datetime as dt
import sys

import click

from simulator import DEFAULT_SEED
from simulator.errors import InvalidOption
from simulator.io.population import parse_shard
from simulator.progress import progress_bar
from simulator.seed.hashing import DEFAULT_DISTINCT_PASSWORDS
from simulator.seed.reference import seed_database
from simulator.seed.runner import (
    APPEND,
    DEFAULT_CHUNK_ROWS,
    DEFAULT_WAVE,
    TRUNCATE,
    SeedResult,
    applicants_in,
)
from simulator.seed.states import PROFILES


@click.command("seed-db")
@click.option(
    "--db", "db", required=True, help="SQLite file path, or postgresql://, mysql:// or mariadb:// URL."
)
@click.option("--size", type=int, default=None, help="Generate a population of this many people and seed it.")
@click.option("--shard", default="0/1", show_default=True, help="Seed shard I/N of the generated population.")
@click.option("--from", "population_dir", default=None, help="Seed a population already generated in DIR.")
@click.option(
    "--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed of the generator and every draw."
)
@click.option(
    "--states",
    default="oct2020",
    show_default=True,
    help=f"Funnel mix: a profile ({', '.join(PROFILES)}) or state=share,... "
    "(registered, email_verified, identity_verified, phone_verified, tested, joined, selected, "
    "training_bought, finished, incentive_paid, revoked).",
)
@click.option(
    "--truncate",
    "truncate",
    is_flag=True,
    help="Replace what the schema's tables hold (all or nothing: emptied in the load's transaction, "
    "or on PostgreSQL loaded aside and swapped in at one commit).",
)
@click.option("--append", "append", is_flag=True, help="Add to a database seeded before.")
@click.option("--wave", type=int, default=DEFAULT_WAVE, show_default=True, help="The wave that is open (K).")
@click.option(
    "--as-of", default=None, help="'Now' of the seeded world, ISO 8601 UTC (default: the next hour)."
)
@click.option("--open-days", type=float, default=7.0, show_default=True, help="How long wave K stays open.")
@click.option(
    "--password-cost",
    default="min",
    show_default=True,
    help="argon2id cost: 'min' (t=1, m=8 KiB) or one of the API's levels 0-4.",
)
@click.option(
    "--distinct-passwords",
    default=str(DEFAULT_DISTINCT_PASSWORDS),
    show_default=True,
    help="Seeds of more people than N share a pool of N test passwords (each hashed once); "
    "'all': every account keeps the population's own password.",
)
@click.option("--workers", type=int, default=None, help="Hashing processes (default: one per CPU).")
@click.option(
    "--chunk-rows",
    type=int,
    default=DEFAULT_CHUNK_ROWS,
    show_default=True,
    help="Rows read at a time (the database does not depend on it).",
)
@click.option(
    "--passwords-out",
    default=None,
    help="CSV of plain passwords (0600). Default: beside a SQLite file; for a server, "
    "$PRAKERJA_PASSWORDS_DIR or ~/.local/share/prakerja-sim/passwords/.",
)
@click.option("--allow-remote", is_flag=True, help="Allow a database that is not on this machine.")
@click.option(
    "--mapping",
    "mapping_file",
    default=None,
    help="Seed your own schema: a TOML mapping of its tables and columns (docs/mapping.md).",
)
@click.option(
    "--suggest-mapping",
    is_flag=True,
    help="Print a draft mapping for the schema in --db (fill in its todo marks, then use --mapping).",
)
@click.option(
    "--check", "check_only", is_flag=True, help="With --mapping: check it against --db and write nothing."
)
def seed_db(
    db: str,
    size: int | None,
    shard: str,
    population_dir: str | None,
    seed: int,
    states: str,
    truncate: bool,
    append: bool,
    wave: int,
    as_of: str | None,
    open_days: float,
    password_cost: str,
    distinct_passwords: str,
    workers: int | None,
    chunk_rows: int,
    passwords_out: str | None,
    allow_remote: bool,
    mapping_file: str | None,
    suggest_mapping: bool,
    check_only: bool,
) -> int:
    """Seed the reference API's database (or, with --mapping, your own schema) with applicants in every
    funnel state."""
    if suggest_mapping or check_only:
        return _mapping_only(db, mapping_file, suggest_mapping, allow_remote)
    if truncate and append:
        raise InvalidOption("--truncate and --append exclude each other")
    mode = TRUNCATE if truncate else APPEND if append else None
    as_of_time = _parse_as_of(as_of)
    shard_pair = parse_shard(shard)
    if size is not None:
        total = size // max(1, shard_pair[1])
    else:
        total = (applicants_in(population_dir) if population_dir else None) or 0
    try:
        with progress_bar(total, "seeding") as advance:
            if mapping_file is not None:
                from simulator.seed.mapping import seed_mapped

                result = seed_mapped(
                    db, mapping_file, size=size, seed=seed, shard=shard_pair, population_dir=population_dir,
                    states=states, mode=mode, wave=wave, as_of=as_of_time, open_days=open_days,
                    password_cost=password_cost if password_cost != "min" else None,
                    distinct_passwords=distinct_passwords, workers=workers, chunk_rows=chunk_rows,
                    passwords_out=passwords_out, allow_remote=allow_remote, progress=advance,
                )  # fmt: skip
                _print_summary(result)
                return 0
            result = seed_database(
                db, size=size, seed=seed, shard=shard_pair, population_dir=population_dir, states=states,
                mode=mode, wave=wave, as_of=as_of_time, open_days=open_days, password_cost=password_cost,
                distinct_passwords=distinct_passwords, workers=workers, chunk_rows=chunk_rows,
                passwords_out=passwords_out, allow_remote=allow_remote, progress=advance,
            )  # fmt: skip
    except KeyboardInterrupt:
        click.echo("interrupted: the transaction was rolled back, the database is as it was", err=True)
        return 130
    _print_summary(result)
    return 0


def _mapping_only(db: str, mapping_file: str | None, suggest: bool, allow_remote: bool) -> int:
    """--suggest-mapping (a draft on stdout) or --check (the mapping against the schema)."""
    from simulator.seed.mapping import plan_for, suggest_mapping
    from simulator.seed.target import connect, create_engine, parse_target

    if suggest:
        if mapping_file is not None:
            raise InvalidOption("--suggest-mapping writes a new mapping; drop --mapping")
        target = parse_target(db, allow_remote=allow_remote)
        engine = create_engine(target)
        try:
            with connect(engine, target) as conn:
                click.echo(suggest_mapping(conn), nl=False)
        finally:
            engine.dispose()
        return 0
    if mapping_file is None:
        raise InvalidOption("--check checks a mapping: give --mapping FILE")
    plan = plan_for(db, mapping_file, allow_remote=allow_remote)
    click.echo(f"{mapping_file}: valid for {db} ({', '.join(t.name for t in plan.tables)}, in load order)")
    return 0


def _parse_as_of(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidOption(
            f"--as-of {text!r} is not an ISO 8601 date-time (e.g. 2020-11-02T05:00)"
        ) from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def _print_summary(result: SeedResult) -> None:
    out = sys.stdout
    click.echo(f"seeded {result.target} with {result.loader}", file=out)
    for note in result.notes:
        click.echo(f"note: {note}", file=out)
    click.echo(f"  {result.accounts:,} accounts, {result.residents:,} registry residents", file=out)
    click.echo("  accounts per state:", file=out)
    for state, count in result.states.items():
        share = count / result.accounts if result.accounts else 0.0
        click.echo(f"    {state:<18} {count:>12,}  {share:7.2%}", file=out)
    click.echo("  rows per table:", file=out)
    for table, count in result.rows.items():
        if count:
            click.echo(f"    {table:<18} {count:>12,}", file=out)
    click.echo("  waves (number state quota joined selected):", file=out)
    for wave in result.waves:
        click.echo(
            f"    {wave['number']:>3} {wave['state']:<6} {wave['quota']:>10,} {wave['joined_count']:>10,}"
            f" {wave['selected_count']:>10,}",
            file=out,
        )
    click.echo(
        f"  {result.total_rows:,} rows in {result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s); "
        f"passwords {result.password_cost} on {result.hash_workers} process(es)",
        file=out,
    )
    click.echo(
        f"  passwords: {result.passwords}; {result.passwords_hashed:,} distinct hashed in "
        f"{result.hash_seconds:.1f} s of waiting",
        file=out,
    )
    click.echo(f"plain passwords of the test users: {result.passwords_file}", file=out)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
