"""The population streamed into the mapped tables: the fixed tables first (lookups, waves), then the
registry's rows as they arrive and the accounts' tables block by block, each block's passwords
hashing on the workers while the previous block loads. Used by :func:`simulator.seed.mapping.seed_mapped`
whichever way it makes the load all or nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from simulator.progress import ProgressCallback
from simulator.seed.hashing import PasswordChoice
from simulator.seed.loaders import BackgroundLoader, TableRouter
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
from simulator.seed.mapping.check import BLOCK_STREAM, GLOBAL_STREAM, RESIDENTS_STREAM, Plan, PlannedTable
from simulator.seed.mapping.passwords import PasswordColumn
from simulator.seed.mapping.sources import WAVE_TOTALS, block_frames, population_frame, wave_frame
from simulator.seed.mapping.spec import MappingError
from simulator.seed.rows import RESIDENT_COLUMNS, SeedCursor, build_chunk, check_columns
from simulator.seed.runner import (
    ChunkPrefetch,
    PopulationSource,
    SeedResult,
    SideFile,
    in_blocks,
    note_registry_recipients,
)
from simulator.seed.states import StateMix
from simulator.seed.target import Target
from simulator.seed.waves import WaveCalendar

if TYPE_CHECKING:
    from simulator.seed.mapping.load import RunRules


@dataclass
class Run:
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
class Totals:
    """Joins and selections per wave, for the waves' counts and quotas at the end."""

    joined: np.ndarray
    selected: np.ndarray


@dataclass
class Streams:
    """The run's moving parts: hashing per password column, the side file, and what the load counts."""

    columns: dict[tuple[str, str], PasswordColumn]
    side_file: SideFile
    chunks: ChunkPrefetch | None
    result: SeedResult | None = None
    cursor: SeedCursor | None = None
    totals: Totals | None = None


def load_rows(
    run: Run, calendar: WaveCalendar, streams: Streams, loader: BackgroundLoader | TableRouter, *,
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
    streams.totals = Totals(np.zeros(calendar.open_wave, np.int64), np.zeros(calendar.open_wave, np.int64))
    _fill(run, calendar, streams, keyed, loader, key_order=key_order)
    return wave_rows


def _lookup_matches(table: PlannedTable, lookup: str) -> list[str]:
    return [
        c.expression.option("match", c.expression.arg.partition(".")[2])
        for c in table.columns
        if c.expression.op == "ref" and c.expression.arg.partition(".")[0] == lookup
    ]


def _fill(
    run: Run, calendar: WaveCalendar, streams: Streams, keyed: dict[str, Keyed],
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


def _finish_block(block: _Block, run: Run, streams: Streams, loader: BackgroundLoader | TableRouter) -> None:
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


def finish_waves(
    conn: sa.Connection, plan: Plan, calendar: WaveCalendar, cursor: SeedCursor, totals: Totals,
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
