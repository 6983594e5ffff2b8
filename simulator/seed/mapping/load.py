"""``seed_mapped``: the one loader. A population seeded into any schema through a mapping, all or nothing.

The reference API's schema goes through here too, with its shipped mapping (``reference.toml``) and
:class:`simulator.seed.reference.ReferenceRules`. The population streams in blocks; the funnel
states and timelines come from :func:`simulator.seed.rows.build_chunk`, each mapped table's rows from
its column expressions, the rows go to the database with the engine's bulk loader
(:mod:`simulator.seed.loaders`: COPY, LOAD DATA, batches) on a background thread while the next
block is built and its passwords hash on worker processes.

Two ways to be all or nothing, chosen by engine and mode:

- PostgreSQL ``--truncate``: the staged load (:class:`simulator.seed.staging.PostgresStage`): the
  mapped tables copied empty, without keys and indexes, into a staging schema, loaded with COPY on
  several connections, keys, indexes and foreign keys built afterwards on several connections,
  and swapped in at one commit.
- otherwise (SQLite, MariaDB, ``--append``, PostgreSQL into empty tables): one transaction on one
  connection; on SQLite and PostgreSQL the mapped tables' indexes (PostgreSQL: keys and foreign
  keys too) are dropped for the load and rebuilt over all rows before the commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa
import sqlalchemy as sa

from simulator import DEFAULT_SEED
from simulator.errors import InvalidInputFile, InvalidOption, SimulatorError
from simulator.progress import ProgressCallback
from simulator.seed.hashing import PasswordChoice, parse_cost, parse_distinct
from simulator.seed.loaders import (
    BackgroundLoader,
    PostgresCopyLoader,
    TableRouter,
    make_loader,
)
from simulator.seed.mapping.check import (
    BLOCK_STREAM,
    RESIDENTS_STREAM,
    Plan,
    check_mapping,
)
from simulator.seed.mapping.inplace import Deferral, advance_sequences, empty_tables
from simulator.seed.mapping.passwords import HashWorkers, PasswordColumn, scheme_of
from simulator.seed.mapping.spec import Mapping, load_mapping
from simulator.seed.mapping.stream import Run, Streams, finish_waves, load_rows
from simulator.seed.rows import SeedCursor
from simulator.seed.runner import (
    APPEND,
    BLOCK_ROWS,
    DEFAULT_CHUNK_ROWS,
    DEFAULT_WAVE,
    TRUNCATE,
    ChunkPrefetch,
    SeedResult,
    SideFile,
    as_of_time,
    database_errors,
    first_line,
    git_work_tree,
    passwords_file,
    population_source,
    transaction,
    with_warnings_noted,
)
from simulator.seed.staging import PostgresStage
from simulator.seed.states import STATES, StateMix, parse_states
from simulator.seed.target import POSTGRESQL, Target, connect, create_engine, parse_target
from simulator.seed.waves import WaveCalendar, make_calendar


class RunRules(Protocol):
    """What a schema with rules of its own adds to the load (the reference one:
    :class:`simulator.seed.reference.ReferenceRules`)."""

    appends: bool  # --append is possible: calendar() and cursor() read the earlier runs back

    def prepare(self, engine: sa.Engine, target: Target, mode: str | None) -> str | None:
        """Before the mapping is checked (the options are): e.g. create the schema. Returns the
        mode of the load."""
        ...

    def undo(self, engine: sa.Engine) -> None:
        """The run failed: undo what :meth:`prepare` did."""
        ...

    def calendar(self, conn: sa.Connection) -> WaveCalendar: ...

    def cursor(self, conn: sa.Connection, calendar: WaveCalendar) -> SeedCursor: ...

    def finish(self, conn: sa.Connection, calendar: WaveCalendar) -> list[dict]:
        """Waves' counts and quotas, and the checks no constraint makes, in the load's transaction."""
        ...


def plan_for(db: str, mapping: Mapping | str | os.PathLike[str], *, allow_remote: bool = False) -> Plan:
    """Check a mapping against the database's schema without writing anything (``--check``)."""
    mapping = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    target = parse_target(db, allow_remote=allow_remote)
    engine = create_engine(target)
    try:
        with connect(engine, target) as conn:
            return check_mapping(mapping, conn)
    finally:
        engine.dispose()


def seed_mapped(
    db: str,
    mapping: Mapping | str | os.PathLike[str],
    *,
    size: int | None = None,
    seed: int = DEFAULT_SEED,
    shard: tuple[int, int] = (0, 1),
    population_dir: str | os.PathLike[str] | None = None,
    states: str | StateMix | None = None,
    mode: str | None = None,
    wave: int = DEFAULT_WAVE,
    as_of: dt.datetime | None = None,
    open_days: float = 7.0,
    password_cost: str | int | None = None,
    distinct_passwords: str | int | None = None,
    workers: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    block_rows: int = BLOCK_ROWS,
    passwords_out: str | os.PathLike[str] | None = None,
    allow_remote: bool = False,
    progress: ProgressCallback | None = None,
    on_chunk: Callable[[int], None] | None = None,
    rules: RunRules | None = None,
) -> SeedResult:
    """Seed the tables a mapping names, in ``db``'s own schema, with a population in one transaction.

    The mapping is read and checked against the reflected schema first; a problem raises
    :class:`MappingError` (one line naming the mapping key) and nothing is written. ``mode``:
    ``"truncate"`` replaces what the mapped tables (and those the mapping empties) hold; ``"append"``
    (only with ``rules`` that read earlier runs back) adds to them; ``None`` needs them empty.
    ``password_cost``: the argon2id cost of argon2id password columns (``"min"``, 0-4), over the
    mapping's own. ``distinct_passwords``: a pool size, or ``"all"`` (each applicant keeps the
    population's password); runs no bigger than the pool keep their own. ``chunk_rows`` is how many
    rows are read at a time; the rows are built in blocks of ``block_rows`` (the same blocks
    whatever ``chunk_rows`` and ``workers``). ``on_chunk(i)`` is called after block ``i`` is loaded
    (tests use it to interrupt a run). ``rules``: see :class:`RunRules`.
    """
    mapping = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    target = parse_target(db, allow_remote=allow_remote)
    source = population_source(size, seed, population_dir, shard)
    mix = states if isinstance(states, StateMix) else parse_states(states)
    distinct = parse_distinct(distinct_passwords)
    if mode == APPEND and not (rules is not None and rules.appends):
        raise InvalidOption(
            "--append is not available with --mapping: seed with --truncate (or into empty tables)"
        )
    if mode not in (None, TRUNCATE, APPEND):
        raise InvalidOption(f"mode must be {TRUNCATE!r} or {APPEND!r}, got {mode!r}")
    if chunk_rows < 100:
        raise InvalidOption(f"--chunk-rows must be at least 100, got {chunk_rows}")
    if block_rows < 100:
        raise InvalidOption(f"block_rows must be at least 100, got {block_rows}")
    if workers is not None and workers < 1:
        raise InvalidOption(f"--workers must be at least 1, got {workers}")
    as_of = as_of_time(as_of)
    calendar = make_calendar(wave, as_of, open_days) if mode != APPEND else None
    passwords_path = passwords_file(target, passwords_out)
    if password_cost is not None:
        parse_cost(password_cost)  # a bad level is refused before anything is written
    engine = create_engine(target)
    started = time.perf_counter()
    try:
        if rules is not None:
            mode = rules.prepare(engine, target, mode)
            calendar = make_calendar(wave, as_of, open_days) if mode != APPEND else None
        try:
            with connect(engine, target) as conn:
                plan = check_mapping(mapping, conn)
                _check_target_tables(conn, plan, mode=mode)
            choice = PasswordChoice.for_run(source.seed, distinct, source.applicants())
            run = Run(
                target, plan, source, mix, choice, mode, workers, chunk_rows, block_rows, passwords_path,
                progress or (lambda _n: None), on_chunk, rules, password_cost,
            )  # fmt: skip
            try:
                result = _run(engine, run, calendar)
            except database_errors() as err:
                hint = " (with --append: is this population already in it?)" if mode == APPEND else ""
                raise SimulatorError(
                    f"{target.label} refused the rows ({first_line(err)}); the transaction was rolled "
                    f"back and the database is as it was{hint}"
                ) from err
        except BaseException:
            if rules is not None:
                rules.undo(engine)
            raise
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def _check_target_tables(conn: sa.Connection, plan: Plan, *, mode: str | None) -> None:
    names = {t.name for t in plan.tables} | {t.name for t in plan.emptied}
    if mode == TRUNCATE:
        inspector = sa.inspect(conn)
        for other in sorted(set(inspector.get_table_names()) - names):
            for fk in inspector.get_foreign_keys(other):
                if fk["referred_table"] in names:
                    raise InvalidOption(
                        f"--truncate: table {other} (not in the mapping) refers to {fk['referred_table']}; "
                        f"map it, or list it in the mapping's empty = [...]"
                    )
    if mode is not None:
        return
    for table in plan.tables:
        if conn.execute(sa.select(sa.literal(1)).select_from(table.table).limit(1)).first() is not None:
            raise InvalidOption(
                f"table {table.name} already holds rows: pass --truncate to replace what the mapped "
                "tables hold"
            )


def _run(engine: sa.Engine, run: Run, calendar: WaveCalendar | None) -> SeedResult:
    plan, seed = run.plan, run.source.seed
    # Exits run bottom-up: the data is committed (inside the load) before the side file is moved
    # into place.
    with (
        SideFile(run.passwords_path, append=run.mode == APPEND) as side_file,
        contextlib.ExitStack() as stack,
    ):
        # Worker processes first, while this process is small: each keeps what it was forked with.
        chunks = stack.enter_context(ChunkPrefetch(run.source)) if run.source.directory is None else None
        hashers = HashWorkers(run.workers if run.workers is not None else (os.cpu_count() or 1))
        stack.callback(hashers.close)
        columns = {
            (t.name, c.name): PasswordColumn(
                hashers,
                scheme_of(
                    c.expression.arg,
                    rounds=c.expression.option("rounds"),
                    iterations=c.expression.option("iterations"),
                    cost=run.password_cost
                    if run.password_cost is not None and c.expression.arg == "argon2id"
                    else c.expression.option("cost"),
                ),
                seed,
                run.choice.pool,
            )  # fmt: skip
            for t in plan.tables
            for c in t.columns
            if c.expression.op == "password"
        }
        streams = Streams(columns, side_file, chunks)
        if run.target.kind == POSTGRESQL and run.mode == TRUNCATE:
            _load_staged(engine, run, calendar, streams)
        else:
            _load_in_one_transaction(engine, run, calendar, streams)
        result, cursor = streams.result, streams.cursor
        result.accounts = cursor.accounts
        result.states = {s.value: int(c) for s, c in zip(STATES, cursor.states, strict=True)}
        result.passwords = run.choice.label
        result.password_cost = (
            ", ".join(sorted({c.scheme.label for c in columns.values()})) or "no password column"
        )
        result.passwords_hashed = sum(c.hashed for c in columns.values())
        result.hash_workers = hashers.workers
        result.passwords_file = str(run.passwords_path)
        tree = git_work_tree(run.passwords_path)
        if tree is not None:
            result.warnings.append(
                f"the plain passwords are in {run.passwords_path}, inside the git work tree {tree}: "
                "keep them out of commits (.gitignore) or choose --passwords-out elsewhere"
            )
    return result


def _load_in_one_transaction(
    engine: sa.Engine, run: Run, calendar: WaveCalendar | None, streams: Streams
) -> None:
    """SQLite, MariaDB, ``--append`` and PostgreSQL into empty tables: every row in one transaction
    of one connection."""
    plan, target = run.plan, run.target
    with transaction(engine, target) as conn:
        inner, notes = with_warnings_noted(lambda: make_loader(conn, target.kind))
        result = streams.result = SeedResult(target=target.label, loader=inner.method, notes=notes)
        result.rows = {t.name: 0 for t in plan.tables}
        appending = run.mode == APPEND
        if appending:
            calendar = run.rules.calendar(conn)
            streams.cursor = run.rules.cursor(conn, calendar)
        else:
            streams.cursor = SeedCursor()
        deferred = Deferral(conn, target, plan)
        if run.mode == TRUNCATE:
            empty_tables(conn, target, plan)
            if isinstance(inner, PostgresCopyLoader):
                inner.emptied([t.table for t in plan.tables])
        if not appending:
            deferred.drop()
        loader = BackgroundLoader(inner)
        try:
            wave_rows = load_rows(run, calendar, streams, loader, load_global=not appending,
                                   key_order=True)  # fmt: skip
        finally:
            loader.close()
        deferred.restore()  # checks every key over all rows at once
        result.waves = _finish(conn, run, calendar, streams, wave_rows)
        advance_sequences(conn, target, plan)
        # Leaving the `with`: the transaction commits.


def _copy_groups(plan: Plan) -> list[list[sa.Table]]:
    """Staged loads: the registry's tables on a connection (a server process) of their own, the
    block's first table (the accounts, the widest) on another, everything else on a third: about
    equal shares of the COPY work."""
    residents = [t.table for t in plan.tables if t.stream == RESIDENTS_STREAM]
    blocks = [t.table for t in plan.tables if t.stream == BLOCK_STREAM]
    first = blocks[:1]
    rest = [t.table for t in plan.tables if t.table not in residents and t.table not in first]
    return [group for group in (rest + list(plan.emptied), residents, first) if group]


def _load_staged(engine: sa.Engine, run: Run, calendar: WaveCalendar, streams: Streams) -> None:
    """PostgreSQL ``--truncate``: a staging schema loaded over several connections, its keys, indexes
    and foreign keys built over several, then swapped in at one commit (see ``simulator.seed.staging``)."""
    plan, target = run.plan, run.target
    with PostgresStage(engine, [t.table for t in plan.tables] + list(plan.emptied)) as stage:
        groups = _copy_groups(plan)
        result = streams.result = SeedResult(
            target=target.label,
            loader=f"{PostgresCopyLoader.method} into a staging schema on {len(groups)} connections, keys "
            f"and indexes built on {stage.connections}, swapped in at one commit",
            notes=list(stage.notes),
        )
        result.rows = {t.name: 0 for t in plan.tables}
        streams.cursor = SeedCursor()
        with contextlib.ExitStack() as connections:
            loaders = {}
            for tables in groups:
                copy = PostgresCopyLoader(connections.enter_context(stage.loading(tables)))
                copy.emptied(tables)
                background = BackgroundLoader(copy)
                connections.callback(background.close)
                loaders.update({t.name: background for t in tables})
            router = TableRouter(loaders)
            wave_rows = load_rows(run, calendar, streams, router, load_global=True, key_order=False)
        _require_accounts(run, streams)  # before the keys are built for nothing
        stage.build_constraints()
        with stage.engine.begin() as conn:
            result.waves = _finish(conn, run, calendar, streams, wave_rows)
            advance_sequences(conn, target, plan)
            stage.swap(conn)


def _finish(conn: sa.Connection, run: Run, calendar: WaveCalendar, streams: Streams,
            wave_rows: dict[str, pa.Table]) -> list[dict]:  # fmt: skip
    _require_accounts(run, streams)
    if run.rules is not None:
        return run.rules.finish(conn, calendar)
    return finish_waves(conn, run.plan, calendar, streams.cursor, streams.totals, wave_rows)


def _require_accounts(run: Run, streams: Streams) -> None:
    if streams.cursor.accounts == 0:
        raise InvalidInputFile(f"{run.source.label}: no applicant could be seeded (no rows, or all refused)")


__all__ = ["RunRules", "plan_for", "seed_mapped"]
