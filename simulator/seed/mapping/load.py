"""``seed_mapped``: a population seeded into any schema through a mapping, in one transaction.

The reference seed's own machinery does the work: the population stream and its blocks, the funnel
states and timelines of :func:`simulator.seed.rows.build_chunk`, the bulk loaders of
:mod:`simulator.seed.loaders` (COPY, LOAD DATA, batches); keys, indexes and foreign keys of the
mapped tables are dropped for the load and rebuilt over all rows before the commit, as the staged load does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from simulator.errors import InvalidInputFile, InvalidOption, SimulatorError
from simulator.progress import ProgressCallback
from simulator.seed.hashing import PasswordChoice, parse_distinct
from simulator.seed.loaders import BackgroundLoader, PostgresCopyLoader, encode_text_rows, make_loader
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
    SeedResult,
    _as_of,
    _database_errors,
    _first_line,
    _in_blocks,
    _note_registry_recipients,
    _SideFile,
    _source,
    _transaction,
    passwords_file,
)
from simulator.seed.states import STATES, StateMix, parse_states
from simulator.seed.target import POSTGRESQL, SQLITE, Target, connect, create_engine, parse_target
from simulator.seed.waves import WaveCalendar, make_calendar


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
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    population_dir: str | os.PathLike[str] | None = None,
    states: str | StateMix | None = None,
    mode: str | None = None,
    wave: int = DEFAULT_WAVE,
    as_of: dt.datetime | None = None,
    open_days: float = 7.0,
    distinct_passwords: str | int | None = None,
    workers: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    block_rows: int = BLOCK_ROWS,
    passwords_out: str | os.PathLike[str] | None = None,
    allow_remote: bool = False,
    progress: ProgressCallback | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> SeedResult:
    """Seed the tables a mapping names, in ``db``'s own schema, with a population in one transaction.

    The mapping is read and checked against the reflected schema first; a problem raises
    :class:`MappingError` (one line naming the mapping key) and nothing is written. ``mode``:
    ``"truncate"`` empties the mapped tables in the load's transaction; ``None`` needs them empty.
    Other arguments as :func:`simulator.seed.seed_database`.
    """
    mapping = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    target = parse_target(db, allow_remote=allow_remote)
    source = _source(size, seed, population_dir, shard)
    mix = states if isinstance(states, StateMix) else parse_states(states)
    distinct = parse_distinct(distinct_passwords)
    if mode == APPEND:
        raise InvalidOption(
            "--append is not available with --mapping: seed with --truncate (or into empty tables)"
        )
    if mode not in (None, TRUNCATE):
        raise InvalidOption(f"mode must be {TRUNCATE!r} or None, got {mode!r}")
    if chunk_rows < 100 or block_rows < 100:
        raise InvalidOption("--chunk-rows and block_rows must be at least 100")
    if workers is not None and workers < 1:
        raise InvalidOption(f"--workers must be at least 1, got {workers}")
    as_of = _as_of(as_of)
    calendar = make_calendar(wave, as_of, open_days)
    passwords_path = passwords_file(target, passwords_out)
    engine = create_engine(target)
    started = time.perf_counter()
    try:
        with connect(engine, target) as conn:
            plan = check_mapping(mapping, conn)
            _check_target_tables(conn, plan, truncate=mode == TRUNCATE)
        choice = PasswordChoice.for_run(source.seed, distinct, source.applicants())
        try:
            result = _run(engine, target, plan, source, mix, calendar, choice, mode == TRUNCATE, workers,
                          chunk_rows, block_rows, passwords_path, progress, on_chunk)  # fmt: skip
        except _database_errors() as err:
            raise SimulatorError(
                f"{target.label} refused the rows ({_first_line(err)}); the transaction was rolled back "
                "and the database is as it was"
            ) from err
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def _check_target_tables(conn: sa.Connection, plan: Plan, *, truncate: bool) -> None:
    names = {t.name for t in plan.tables} | {t.name for t in plan.emptied}
    if truncate:
        inspector = sa.inspect(conn)
        for other in sorted(set(inspector.get_table_names()) - names):
            for fk in inspector.get_foreign_keys(other):
                if fk["referred_table"] in names:
                    raise InvalidOption(
                        f"--truncate: table {other} (not in the mapping) refers to {fk['referred_table']}; "
                        f"map it, or list it in the mapping's empty = [...]"
                    )
    if truncate:
        return
    for table in plan.tables:
        if conn.execute(sa.select(sa.literal(1)).select_from(table.table).limit(1)).first() is not None:
            raise InvalidOption(
                f"table {table.name} already holds rows: pass --truncate to replace what the mapped "
                "tables hold"
            )


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


def _run(
    engine: sa.Engine, target: Target, plan: Plan, source, mix: StateMix, calendar: WaveCalendar,  # noqa: ANN001
    choice: PasswordChoice, truncate: bool, workers: int | None, chunk_rows: int, block_rows: int,
    passwords_path: Path, progress: ProgressCallback | None, on_chunk: Callable[[int], None] | None,
) -> SeedResult:  # fmt: skip
    advance = progress or (lambda _n: None)
    seed = source.seed
    with _SideFile(passwords_path, append=False) as side_file, contextlib.ExitStack() as stack:
        chunks = stack.enter_context(ChunkPrefetch(source)) if source.directory is None else None
        hashers = HashWorkers(workers if workers is not None else (os.cpu_count() or 1))
        stack.callback(hashers.close)
        columns = {
            (t.name, c.name): PasswordColumn(
                hashers,
                scheme_of(
                    c.expression.arg,
                    rounds=c.expression.option("rounds"),
                    iterations=c.expression.option("iterations"),
                    cost=c.expression.option("cost"),
                ),
                seed,
                choice.pool,
            )  # fmt: skip
            for t in plan.tables
            for c in t.columns
            if c.expression.op == "password"
        }
        with _transaction(engine, target) as conn:
            inner = _make_loader(conn, target)
            result = SeedResult(target=target.label, loader=inner.method)
            result.rows = {t.name: 0 for t in plan.tables}
            deferred = _Deferral(conn, target, plan)
            if truncate:
                _empty(conn, target, plan)
                if isinstance(inner, _PostgresLoader):
                    inner.copy.emptied([t.table for t in plan.tables])
            deferred.drop()
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
                result.rows[table.name] += inner.load(table.table, rows)
            loader = BackgroundLoader(inner)
            totals = _Totals(np.zeros(calendar.open_wave, np.int64), np.zeros(calendar.open_wave, np.int64))
            try:
                cursor = _fill(plan, source, mix, calendar, choice, columns, keyed, loader, result, totals,
                               side_file, advance, on_chunk, chunk_rows, block_rows, chunks)  # fmt: skip
            finally:
                loader.close()
            if cursor.accounts == 0:
                raise InvalidInputFile(
                    f"{source.label}: no applicant could be seeded (no rows, or all refused)"
                )
            deferred.restore()
            result.waves = _finish_waves(conn, plan, calendar, cursor, totals, wave_rows)
            _advance_sequences(conn, target, plan)
        result.accounts = cursor.accounts
        result.states = {s.value: int(c) for s, c in zip(STATES, cursor.states, strict=True)}
        result.residents = result.rows.get("residents", 0)
        result.passwords = choice.label
        result.password_cost = (
            ", ".join(sorted({c.scheme.label for c in columns.values()})) or "no password column"
        )
        result.passwords_hashed = sum(c.hashed for c in columns.values())
        result.hash_workers = hashers.workers
        result.passwords_file = str(passwords_path)
    return result


def _lookup_matches(table: PlannedTable, lookup: str) -> list[str]:
    return [
        c.expression.option("match", c.expression.arg.partition(".")[2])
        for c in table.columns
        if c.expression.op == "ref" and c.expression.arg.partition(".")[0] == lookup
    ]


def _fill(
    plan: Plan, source, mix: StateMix, calendar: WaveCalendar, choice: PasswordChoice,  # noqa: ANN001
    columns: dict, keyed: dict[str, Keyed], loader: BackgroundLoader, result: SeedResult, totals: _Totals,
    side_file: _SideFile, advance: ProgressCallback, on_chunk, chunk_rows: int, block_rows: int,  # noqa: ANN001
    chunks: ChunkPrefetch | None,
) -> SeedCursor:  # fmt: skip
    """Stream the population: residents' tables as their parts arrive, the accounts' block by block
    (each block's passwords hash on the workers while the previous block loads)."""
    cursor = SeedCursor()
    counters = {t.name: 0 for t in plan.tables}
    residents_tables = [t for t in plan.tables if t.stream == RESIDENTS_STREAM]
    block_tables = [t for t in plan.tables if t.stream == BLOCK_STREAM]
    pending: _Block | None = None
    index = 0
    needs = plan.needs()
    for kind, part in _in_blocks(source.parts(chunk_rows, chunks), block_rows):
        if part.num_rows == 0:
            continue
        if kind == "residents":
            check_columns(part, RESIDENT_COLUMNS, source.label + " residents")
            _note_registry_recipients(cursor, part)
            if residents_tables:
                frame = population_frame(part.select(sorted(needs["residents"] & set(part.column_names))))
                built = _build(residents_tables, {"residents": frame}, counters, source.seed, dict(keyed))
                _load_built(loader, built, result)
            continue
        rows = build_chunk(part, chunk_index=index, seed=source.seed, mix=mix, calendar=calendar,
                           cursor=cursor, source=source.label, choice=choice)  # fmt: skip
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
            (table.name, name): columns[(table.name, name)].submit(plain)
            for table, b in built
            for name, plain in b.passwords.items()
        }
        block = _Block(built, hashing, rows.credentials, part.num_rows, index)
        index += 1
        if pending is not None:
            _finish(pending, columns, loader, result, side_file, advance, on_chunk)
        pending = block
    if pending is not None:
        _finish(pending, columns, loader, result, side_file, advance, on_chunk)
    loader.flush()
    return cursor


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
    loader: BackgroundLoader, built: list[tuple[PlannedTable, BuiltTable]], result: SeedResult
) -> None:
    for table, made in built:  # parents first: the plan's order
        result.rows[table.name] += loader.load(table.table, made.rows)


def _finish(block: _Block, columns: dict, loader: BackgroundLoader, result: SeedResult, side_file: _SideFile,
            advance: ProgressCallback, on_chunk) -> None:  # noqa: ANN001  # fmt: skip
    tick = time.perf_counter()
    for (table_name, column), pending in block.hashing.items():
        hashes = columns[(table_name, column)].collect(pending)
        for table, made in block.tables:
            if table.name == table_name:
                made.rows = made.rows.set_column(made.rows.schema.get_field_index(column), column, hashes)
                check_values(table, made.rows)
    result.hash_seconds += time.perf_counter() - tick
    _load_built(loader, block.tables, result)
    if block.credentials is not None:
        side_file.write(block.credentials)
    advance(block.size)
    if on_chunk is not None:
        on_chunk(block.index)


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
