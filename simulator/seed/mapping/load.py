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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
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
    encode_text_rows,
    make_loader,
)
from simulator.seed.mapping.build import (
    BuiltTable,
    Keyed,
    build_table,
    check_values,
    keyed_values,
    lookup_keyed,
    lookup_rows,
    select_rows,
)
from simulator.seed.mapping.check import (
    BLOCK_STREAM,
    GLOBAL_STREAM,
    RESIDENTS_STREAM,
    Plan,
    PlannedTable,
    check_mapping,
)
from simulator.seed.mapping.passwords import HashWorkers, PasswordColumn, scheme_of
from simulator.seed.mapping.sources import WAVE_TOTALS, block_frames, population_frame, wave_frame
from simulator.seed.mapping.spec import Mapping, MappingError, load_mapping
from simulator.seed.rows import RESIDENT_COLUMNS, SeedCursor, build_chunk, check_columns
from simulator.seed.runner import (
    APPEND,
    BLOCK_ROWS,
    DEFAULT_CHUNK_ROWS,
    DEFAULT_WAVE,
    TRUNCATE,
    ChunkPrefetch,
    PopulationSource,
    SeedResult,
    SideFile,
    as_of_time,
    database_errors,
    first_line,
    git_work_tree,
    in_blocks,
    note_registry_recipients,
    passwords_file,
    population_source,
    transaction,
    with_warnings_noted,
)
from simulator.seed.staging import PostgresStage
from simulator.seed.states import STATES, StateMix, parse_states
from simulator.seed.target import POSTGRESQL, SQLITE, Target, connect, create_engine, parse_target
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
            run = _Run(
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


@dataclass
class _Run:
    """What the whole load needs, whichever way the rows reach the database."""

    target: Target
    plan: Plan
    source: PopulationSource
    mix: StateMix
    choice: PasswordChoice
    mode: str | None
    workers: int | None
    chunk_rows: int
    block_rows: int
    passwords_path: Path
    advance: ProgressCallback
    on_chunk: Callable[[int], None] | None
    rules: RunRules | None
    password_cost: str | int | None


@dataclass
class _Block:
    """A block's built tables waiting for their password hashes, then for the loader."""

    tables: list[tuple[PlannedTable, BuiltTable]]
    hashing: dict[tuple[str, str], object]
    credentials: pa.Table | None
    size: int
    index: int


@dataclass
class _Totals:
    """Joins and selections per wave, for the waves' counts and quotas at the end."""

    joined: np.ndarray
    selected: np.ndarray


@dataclass
class _Streams:
    """The run's moving parts: hashing per password column, the side file, and what the load counts."""

    columns: dict[tuple[str, str], PasswordColumn]
    side_file: SideFile
    chunks: ChunkPrefetch | None
    result: SeedResult | None = None
    cursor: SeedCursor | None = None
    totals: _Totals | None = None


def _run(engine: sa.Engine, run: _Run, calendar: WaveCalendar | None) -> SeedResult:
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
        streams = _Streams(columns, side_file, chunks)
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
    engine: sa.Engine, run: _Run, calendar: WaveCalendar | None, streams: _Streams
) -> None:
    """SQLite, MariaDB, ``--append`` and PostgreSQL into empty tables: every row in one transaction
    of one connection."""
    plan, target = run.plan, run.target
    with transaction(engine, target) as conn:
        inner, notes = with_warnings_noted(lambda: _make_loader(conn, target))
        result = streams.result = SeedResult(target=target.label, loader=inner.method, notes=notes)
        result.rows = {t.name: 0 for t in plan.tables}
        appending = run.mode == APPEND
        if appending:
            calendar = run.rules.calendar(conn)
            streams.cursor = run.rules.cursor(conn, calendar)
        else:
            streams.cursor = SeedCursor()
        deferred = _Deferral(conn, target, plan)
        if run.mode == TRUNCATE:
            _empty(conn, target, plan)
            if isinstance(inner, _PostgresLoader):
                inner.copy.emptied([t.table for t in plan.tables])
        if not appending:
            deferred.drop()
        loader = BackgroundLoader(inner)
        try:
            wave_rows = _load_rows(run, calendar, streams, loader, load_global=not appending,
                                   key_order=True)  # fmt: skip
        finally:
            loader.close()
        deferred.restore()  # checks every key over all rows at once
        result.waves = _finish(conn, run, calendar, streams, wave_rows)
        _advance_sequences(conn, target, plan)
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


def _load_staged(engine: sa.Engine, run: _Run, calendar: WaveCalendar, streams: _Streams) -> None:
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
                copy = _PostgresLoader(connections.enter_context(stage.loading(tables)))
                copy.copy.emptied(tables)
                background = BackgroundLoader(copy)
                connections.callback(background.close)
                loaders.update({t.name: background for t in tables})
            router = TableRouter(loaders)
            wave_rows = _load_rows(run, calendar, streams, router, load_global=True, key_order=False)
        stage.build_constraints()
        with stage.engine.begin() as conn:
            result.waves = _finish(conn, run, calendar, streams, wave_rows)
            _advance_sequences(conn, target, plan)
            stage.swap(conn)


def _finish(conn: sa.Connection, run: _Run, calendar: WaveCalendar, streams: _Streams,
            wave_rows: dict[str, pa.Table]) -> list[dict]:  # fmt: skip
    if streams.cursor.accounts == 0:
        raise InvalidInputFile(f"{run.source.label}: no applicant could be seeded (no rows, or all refused)")
    if run.rules is not None:
        return run.rules.finish(conn, calendar)
    return _finish_waves(conn, run.plan, calendar, streams.cursor, streams.totals, wave_rows)


def _load_rows(
    run: _Run, calendar: WaveCalendar, streams: _Streams, loader: BackgroundLoader | TableRouter, *,
    load_global: bool, key_order: bool,
) -> dict[str, pa.Table]:  # fmt: skip
    """The fixed tables (lookups, waves: loaded unless appending), then the population's; returns
    the rows of each table of waves (for their counts at the end)."""
    plan, seed, result = run.plan, run.source.seed, streams.result
    keyed: dict[str, Keyed] = {}
    waves = wave_frame(calendar, seed)
    wave_rows: dict[str, pa.Table] = {}
    for table in plan.tables:
        if table.stream != GLOBAL_STREAM:
            continue
        if table.spec.source == "lookup":
            rows = lookup_rows(table)
            for match in {c for t in plan.tables for c in _lookup_matches(t, table.name)}:
                keyed[f"{table.name}:{match}"] = lookup_keyed(match, rows)
        else:
            frame = select_rows(table, waves)
            rows = build_table(table, frame, 0, seed, keyed).rows
            keyed[table.name] = keyed_values(table, frame, rows)
            wave_rows[table.name] = rows
        if load_global:
            result.rows[table.name] += loader.load(table.table, rows)
    streams.totals = _Totals(np.zeros(calendar.open_wave, np.int64), np.zeros(calendar.open_wave, np.int64))
    _fill(run, calendar, streams, keyed, loader, key_order=key_order)
    return wave_rows


def _lookup_matches(table: PlannedTable, lookup: str) -> list[str]:
    return [
        c.expression.option("match", c.expression.arg.partition(".")[2])
        for c in table.columns
        if c.expression.op == "ref" and c.expression.arg.partition(".")[0] == lookup
    ]


def _fill(
    run: _Run, calendar: WaveCalendar, streams: _Streams, keyed: dict[str, Keyed],
    loader: BackgroundLoader | TableRouter, *, key_order: bool,
) -> None:  # fmt: skip
    """Stream the population: residents' tables as their parts arrive, the accounts' block by block
    (each block's passwords hash on the workers while the previous block loads). ``key_order``:
    registry rows sorted by their key first (worth it only where the keys are live during the load;
    a staged load builds them afterwards, from the whole table)."""
    plan, source, cursor, totals = run.plan, run.source, streams.cursor, streams.totals
    counters = {t.name: 0 for t in plan.tables}
    residents_tables = [t for t in plan.tables if t.stream == RESIDENTS_STREAM]
    block_tables = [t for t in plan.tables if t.stream == BLOCK_STREAM]
    pending: _Block | None = None
    index = 0
    needs = plan.needs()
    for kind, part in in_blocks(source.parts(run.chunk_rows, streams.chunks), run.block_rows):
        if part.num_rows == 0:
            continue
        if kind == "residents":
            check_columns(part, RESIDENT_COLUMNS, source.label + " residents")
            note_registry_recipients(cursor, part)
            streams.result.residents += part.num_rows
            if residents_tables:
                frame = population_frame(part.select(sorted(needs["residents"] & set(part.column_names))))
                built = _build(residents_tables, {"residents": frame}, counters, source.seed, dict(keyed))
                if key_order:
                    for table, made in built:
                        key = [c.name for c in table.table.primary_key.columns]
                        if key and all(k in made.rows.column_names for k in key):
                            made.rows = made.rows.sort_by([(k, "ascending") for k in key])
                _load_built(loader, built, streams.result)
            continue
        rows = build_chunk(part, chunk_index=index, seed=source.seed, mix=run.mix, calendar=calendar,
                           cursor=cursor, source=source.label, choice=run.choice)  # fmt: skip
        frames = block_frames(part, rows, calendar.open_wave, needs)
        joins = rows.tables["wave_joins"]
        number = joins.column("wave_number").to_numpy() - 1
        totals.joined += np.bincount(number, minlength=calendar.open_wave)[: calendar.open_wave]
        chosen = number[np.asarray(joins.column("selected").fill_null(False))]
        totals.selected += np.bincount(chosen, minlength=calendar.open_wave)[: calendar.open_wave]
        sources = {"accounts": frames.accounts, **frames.events}
        if "applicants" in needs:
            sources["applicants"] = population_frame(
                part.select(sorted(needs["applicants"] & set(part.column_names)))
            )
        built = _build(block_tables, sources, counters, source.seed, dict(keyed))
        hashing = {
            (table.name, name): streams.columns[(table.name, name)].submit(plain)
            for table, b in built
            for name, plain in b.passwords.items()
        }
        block = _Block(built, hashing, rows.credentials, part.num_rows, index)
        index += 1
        if pending is not None:
            _finish_block(pending, run, streams, loader)
        pending = block
    if pending is not None:
        _finish_block(pending, run, streams, loader)
    loader.flush()


def _build(
    tables: list[PlannedTable], sources: dict[str, pa.Table], counters: dict[str, int], seed: int,
    keyed: dict[str, Keyed],
) -> list[tuple[PlannedTable, BuiltTable]]:  # fmt: skip
    built = []
    for table in tables:
        frame = select_rows(table, sources[table.spec.source])
        made = build_table(table, frame, counters[table.name], seed, keyed)
        counters[table.name] += frame.num_rows
        if table.referenced:
            keyed[table.name] = keyed_values(table, frame, made.rows)
        built.append((table, made))
    return built


def _load_built(
    loader: BackgroundLoader | TableRouter, built: list[tuple[PlannedTable, BuiltTable]], result: SeedResult
) -> None:
    for table, made in built:  # parents first: the plan's order
        result.rows[table.name] += loader.load(table.table, made.rows)


def _finish_block(
    block: _Block, run: _Run, streams: _Streams, loader: BackgroundLoader | TableRouter
) -> None:
    tick = time.perf_counter()
    for (table_name, column), pending in block.hashing.items():
        hashes = streams.columns[(table_name, column)].collect(pending)
        for table, made in block.tables:
            if table.name == table_name:
                made.rows = made.rows.set_column(made.rows.schema.get_field_index(column), column, hashes)
                check_values(table, made.rows)
    streams.result.hash_seconds += time.perf_counter() - tick
    _load_built(loader, block.tables, streams.result)
    if block.credentials is not None:
        streams.side_file.write(block.credentials)
    run.advance(block.size)
    if run.on_chunk is not None:
        run.on_chunk(block.index)


# --- loaders, emptying, keys and indexes -------------------------------------------------------------

_BINARY_COPY_TYPES = (sa.Boolean, sa.Integer, sa.DateTime, sa.Date, sa.String)


class _PostgresLoader:
    """Binary COPY (the reference loader) for tables of the types it writes; text COPY for others
    (uuid, numeric, json...), which the server parses."""

    kind = POSTGRESQL

    def __init__(self, conn: sa.Connection):
        self.copy = PostgresCopyLoader(conn)
        self.method = self.copy.method
        self._conn = conn
        self._raw = conn.connection.driver_connection

    def load(self, table: sa.Table, rows: pa.Table) -> int:
        if all(isinstance(table.c[name].type, _BINARY_COPY_TYPES) for name in rows.column_names):
            return self.copy.load(table, rows)
        if rows.num_rows == 0:
            return 0
        prep = self._conn.dialect.identifier_preparer
        names = ", ".join(prep.quote(name) for name in rows.column_names)
        with (
            self._raw.cursor() as cursor,
            cursor.copy(f"COPY {prep.format_table(table)} ({names}) FROM STDIN") as copy,
        ):
            copy.write(encode_text_rows(rows))
        return rows.num_rows

    def close(self) -> None:
        self.copy.close()


def _make_loader(conn: sa.Connection, target: Target):  # noqa: ANN202 - a Loader
    if target.kind == POSTGRESQL:
        return _PostgresLoader(conn)
    return make_loader(conn, target.kind)


def _empty(conn: sa.Connection, target: Target, plan: Plan) -> None:
    prep = conn.dialect.identifier_preparer
    tables = [t.table for t in plan.tables]
    if target.kind == POSTGRESQL:
        names = ", ".join(prep.format_table(t) for t in [*tables, *plan.emptied])
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
        return
    # MariaDB's TRUNCATE commits on its own; DELETE stays inside the transaction (as on SQLite).
    for table in [*plan.emptied, *reversed(tables)]:
        conn.execute(sa.delete(table))


class _Deferral:
    """Keys, unique constraints, indexes and foreign keys of the mapped tables, dropped before the
    load and built again over all rows after it, in the same transaction (PostgreSQL, SQLite);
    MariaDB keeps them live, as the reference seed does. A key another (unmapped) table's foreign
    key depends on stays."""

    def __init__(self, conn: sa.Connection, target: Target, plan: Plan):
        self.conn, self.kind = conn, target.kind
        self.names = [t.name for t in plan.tables]
        self.saved: list[tuple[str, str, str, str]] = []

    def drop(self) -> None:
        if self.kind == SQLITE:
            marks = ", ".join("?" * len(self.names))
            self.saved = [
                ("i", name, "", sql)
                for name, sql in self.conn.exec_driver_sql(
                    f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                    f"AND tbl_name IN ({marks})", tuple(self.names),
                ).all()
            ]  # fmt: skip
            for _, name, _, _ in self.saved:
                self.conn.exec_driver_sql(f'DROP INDEX "{name}"')
        elif self.kind == POSTGRESQL:
            self.saved = _postgres_deferrable(self.conn, self.names)
            for kind, name, table, _ in sorted(self.saved, key=lambda d: "fpui".index(d[0])):
                if kind == "i":
                    self.conn.exec_driver_sql(f'DROP INDEX "{name}"')
                else:
                    self.conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')

    def restore(self) -> None:
        if self.kind == SQLITE:
            for _, _, _, sql in self.saved:
                self.conn.exec_driver_sql(sql)
        elif self.kind == POSTGRESQL:
            # Indexes first (keys among them), then the foreign keys, each checked over every row.
            self.conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
            for kind, name, table, definition in self.saved:
                if kind in "pui":
                    self.conn.exec_driver_sql(definition)
                if kind in "pu":
                    what = "PRIMARY KEY" if kind == "p" else "UNIQUE"
                    self.conn.exec_driver_sql(
                        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {what} USING INDEX "{name}"'
                    )
            for kind, name, table, definition in self.saved:
                if kind == "f":
                    self.conn.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        self.saved = []


def _postgres_deferrable(conn: sa.Connection, names: list[str]) -> list[tuple[str, str, str, str]]:
    mapped = (
        "SELECT oid FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
        "AND relname = ANY(%(names)s)"
    )
    rows = conn.exec_driver_sql(
        "SELECT c.contype, c.conname, c.conrelid::regclass::text, "
        "CASE WHEN c.contype = 'f' THEN pg_get_constraintdef(c.oid) ELSE pg_get_indexdef(c.conindid) END "
        f"FROM pg_constraint c WHERE c.contype IN ('p', 'u', 'f') AND c.conrelid IN ({mapped}) "
        "AND NOT (c.contype IN ('p', 'u') AND EXISTS (SELECT 1 FROM pg_constraint r WHERE r.contype = 'f' "
        f"AND r.conindid = c.conindid AND r.conrelid NOT IN ({mapped}))) "
        "UNION ALL "
        "SELECT 'i', i.indexrelid::regclass::text, i.indrelid::regclass::text, pg_get_indexdef(i.indexrelid) "
        f"FROM pg_index i WHERE i.indrelid IN ({mapped}) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        {"names": names},
    ).all()
    return [
        (kind, name.rpartition(".")[2].strip('"'), table, definition)
        for kind, name, table, definition in rows
    ]


# --- after the rows: waves' counts, sequences ---------------------------------------------------------


def _finish_waves(
    conn: sa.Connection, plan: Plan, calendar: WaveCalendar, cursor: SeedCursor, totals: _Totals,
    wave_rows: dict[str, pa.Table],
) -> list[dict]:  # fmt: skip
    """Each wave's quota and counts, now that every join is known, set in the tables from waves."""
    quotas = calendar.quotas(cursor.accounts, totals.selected[: calendar.open_wave - 1])
    values = {"quota": quotas, "joined_count": totals.joined, "selected_count": totals.selected}
    summary = [
        {"number": w + 1, "state": "open" if w + 1 == calendar.open_wave else "closed",
         "quota": int(quotas[w]),
         "joined_count": int(totals.joined[w]), "selected_count": int(totals.selected[w])}
        for w in range(calendar.open_wave)
    ]  # fmt: skip
    for table in plan.tables:
        if table.spec.source != "waves":
            continue
        sets = {
            c.name: c.expression.arg
            for c in table.columns
            if c.expression.op == "copy" and c.expression.arg in WAVE_TOTALS
        }
        if not sets:
            continue
        key = [c.name for c in table.table.primary_key.columns]
        rows = wave_rows[table.name]
        if not key or any(k not in rows.column_names for k in key):
            raise MappingError(
                f"{table.spec.key}: a table of waves with quota or counts needs its primary key mapped"
            )
        numbers = select_rows(table, wave_frame(calendar, 0)).column("number").to_pylist()
        for position, number in enumerate(numbers):
            where = [table.table.c[k] == rows.column(k)[position].as_py() for k in key]
            update = {column: int(values[total][number - 1]) for column, total in sets.items()}
            conn.execute(sa.update(table.table).where(*where).values(**update))
    return summary


def _advance_sequences(conn: sa.Connection, target: Target, plan: Plan) -> None:
    """PostgreSQL: serial and identity sequences moved past the ids the seed wrote (MariaDB and SQLite
    move their counters themselves), so the application's next insert does not collide."""
    if target.kind != POSTGRESQL:
        return
    prep = conn.dialect.identifier_preparer
    for table in plan.tables:
        for column in table.columns:
            if column.expression.op == "default" or not isinstance(
                table.table.c[column.name].type, sa.Integer
            ):
                continue
            name = prep.format_table(table.table)
            sequence = conn.exec_driver_sql(
                "SELECT pg_get_serial_sequence(%s, %s)", (name, column.name)
            ).scalar()
            if sequence:
                conn.exec_driver_sql(
                    f"SELECT setval(%s, COALESCE((SELECT MAX({prep.quote(column.name)}) FROM {name}), 0) "
                    "+ 1, false)",
                    (sequence,),
                )


__all__ = ["seed_mapped", "plan_for"]
