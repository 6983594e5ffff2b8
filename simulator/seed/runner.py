"""``seed_database``: one seed run, from population chunks to a committed database and a side file.

The whole load is one transaction (the schema is created first by the API's own
``create_schema``; if the run fails, tables it created are dropped again), so an interrupted run
leaves the database as it was. The plain-password side file appears only once the data is committed.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import multiprocessing
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc  # noqa: F401 - pa.ipc
import sqlalchemy as sa

from simulator.database import schema
from simulator.errors import InvalidInputFile, InvalidOption, SimulatorError
from simulator.io.atomic import AtomicFile
from simulator.io.leftovers import HANDOVER_PREFIX, sweep
from simulator.progress import ProgressCallback
from simulator.rules.eligibility import MAX_KK_RECIPIENTS
from simulator.seed.hashing import HashBook, PasswordChoice, PasswordHasherPool, parse_cost, parse_distinct
from simulator.seed.loaders import BackgroundLoader, Loader, PostgresCopyLoader, TableRouter, make_loader
from simulator.seed.rows import RESIDENT_COLUMNS, SeedCursor, build_chunk, check_columns
from simulator.seed.staging import PostgresStage
from simulator.seed.states import STATES, StateMix, parse_states
from simulator.seed.target import POSTGRESQL, SQLITE, Target, connect, create_engine, parse_target
from simulator.seed.waves import WaveCalendar, make_calendar

TRUNCATE = "truncate"
APPEND = "append"

DEFAULT_CHUNK_ROWS = 20_000  # rows read from the population at a time
BLOCK_ROWS = 20_000
"""Applicants per block: rows are built block by block (states drawn, timelines, hashes), blocks
cut at fixed positions of the input, so the database does not depend on ``--chunk-rows``."""
GENERATE_AHEAD = 1
"""Population chunks (100,000 people each) a worker process generates ahead of the rows being loaded."""
DEFAULT_WAVE = 11  # the morning of wave 11 (2 Nov 2020), right after the 30 Oct 2020 funnel

# Tables a seed fills or empties, parents first. schema_meta is the schema's own.
_DATA_TABLES = [t for t in schema.metadata.sorted_tables if t.name != "schema_meta"]


@dataclass
class SeedResult:
    """What a seed run did, for the command's summary and for tests."""

    target: str
    loader: str
    accounts: int = 0
    residents: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    waves: list[dict] = field(default_factory=list)
    passwords_file: str | None = None
    password_cost: str = ""
    hash_workers: int = 1
    seconds: float = 0.0
    hash_seconds: float = 0.0
    passwords_hashed: int = 0
    passwords: str = ""  # how passwords were chosen, for the summary
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for the user's attention (stderr)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def rows_per_second(self) -> float:
        return self.total_rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class PopulationSource:
    """Where applicants and residents come from: the generator, or files already generated."""

    size: int | None = None
    seed: int = 0
    directory: Path | None = None
    shard: tuple[int, int] = (0, 1)

    @property
    def label(self) -> str:
        return (
            str(self.directory)
            if self.directory
            else f"generated population (size {self.size}, seed {self.seed})"
        )

    def applicants(self) -> int | None:
        """The size of the whole population (every shard: they choose passwords alike), if known."""
        if self.directory is not None:
            return applicants_in(self.directory)
        return self.size

    def parts(self, chunk_rows: int, chunks: ChunkPrefetch | None = None) -> Iterator[tuple[str, pa.Table]]:
        """``("residents", table)`` and ``("applicants", table)`` parts, streamed.

        A family card's residents always come before its applicants, so the registry's own
        recipients are known before anyone of that KK is selected. ``chunks``: this source's
        generated chunks, already started (see :class:`ChunkPrefetch`).
        """
        if self.directory is None:
            # The generator's own chunking decides the population; re-slice it for loading.
            with contextlib.ExitStack() as stack:
                if chunks is None:
                    chunks = stack.enter_context(ChunkPrefetch(self))
                for chunk in chunks:
                    yield "residents", chunk.residents
                    for start in range(0, chunk.applicants.num_rows, chunk_rows):
                        yield "applicants", chunk.applicants.slice(start, chunk_rows)
            return
        from simulator.io.reader import iter_batches

        for name in ("residents", "applicants"):
            for batch in iter_batches(self.directory, name, batch_rows=chunk_rows):
                yield name, _as_table(batch)


class ChunkPrefetch:
    """The chunks of a generated population (``generate()``'s, in order), made on a worker process
    up to :data:`GENERATE_AHEAD` ahead while this process builds and loads the rows of the chunks
    before them (a population of one chunk is made in this process).

    A chunk comes back as Arrow IPC files (see :func:`_generate_to_files`), which this process
    maps without copying: pickled through a pipe, a chunk of 100,000 people (about 75 MB) cost
    both processes more CPU than generating it.

    The worker is forked when this is made: do that early, while this process is small (a
    forked process keeps its own copy of every page the parent frees afterwards)."""

    def __init__(self, source: PopulationSource, plan=None):  # noqa: ANN001 - a PopulationPlan
        from simulator.generators.population import make_plan
        from simulator.regions import region_tables

        self.plan = plan or make_plan(source.size, source.seed)  # as generate() makes it
        self.chunks = list(self.plan.shard_chunks(*source.shard))
        self._executor: ProcessPoolExecutor | None = None
        self._directory: str | None = None
        self._ahead: collections.deque = collections.deque()
        self._following = iter(self.chunks[1 + GENERATE_AHEAD :])
        if len(self.chunks) > 1:
            region_tables()  # loaded once, before the fork: the worker shares them
            base = _handover_dir()
            sweep(base)  # what killed runs left: hand-over directories, shared memory
            # Named after this process, so a later run can tell when it was killed.
            self._directory = tempfile.mkdtemp(prefix=f"{HANDOVER_PREFIX}{os.getpid()}-", dir=base)
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("fork")
            )
            # The first chunk too: it is made while this process sets the database up.
            self._ahead.extend(self._submit(k) for k in self.chunks[: 1 + GENERATE_AHEAD])

    def _submit(self, k: int):  # noqa: ANN202 - a Future
        return self._executor.submit(_generate_to_files, self.plan, k, self._directory)

    def __iter__(self) -> Iterator:
        from simulator.generators.population import generate_chunk

        if self._executor is None:  # one chunk (or none): made here
            yield from (generate_chunk(self.plan, k) for k in self.chunks)
            return
        while self._ahead:
            try:
                chunk = _read_files(self._ahead.popleft().result())
            except OSError as err:  # e.g. the hand-over directory's disk is full
                raise SimulatorError(
                    f"could not hand a generated population chunk over through {self._directory}: {err}"
                ) from err
            k = next(self._following, None)
            if k is not None:
                self._ahead.append(self._submit(k))
            yield chunk

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self) -> ChunkPrefetch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_HANDOVER_BYTES = 1 << 30
"""Free space a RAM-backed /dev/shm needs before chunks are handed over there (two or three
chunks of about 75 MB each live at once; containers often mount only 64 MB)."""
def _handover_dir() -> str:
    """Where the worker leaves its chunks: /dev/shm (memory) when it has room, else the temp dir."""
    try:
        stat = os.statvfs("/dev/shm")
        if stat.f_bavail * stat.f_frsize >= _HANDOVER_BYTES and os.access("/dev/shm", os.W_OK):
            return "/dev/shm"
    except OSError:
        pass
    return tempfile.gettempdir()


def _generate_to_files(plan, k: int, directory: str) -> tuple[int, int, int, str, str]:  # noqa: ANN001
    """On the worker: chunk ``k`` of ``plan``, each table written to an Arrow IPC file in ``directory``.

    Writing is one copy of each buffer; the parent maps the files (:func:`_read_files`).
    """
    from simulator.generators.population import generate_chunk

    chunk = generate_chunk(plan, k)
    paths = []
    for name in ("residents", "applicants"):
        table = getattr(chunk, name)
        path = os.path.join(directory, f"chunk-{k}-{name}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        paths.append(path)
    return chunk.index, chunk.start, chunk.stop, *paths


def _read_files(handed: tuple[int, int, int, str, str]):  # noqa: ANN202 - a PopulationChunk
    """A chunk from :func:`_generate_to_files`' files: mapped, not read, and unlinked at once (the
    mapping keeps the pages until the last table using them is gone)."""
    from simulator.generators.population import PopulationChunk

    index, start, stop, *paths = handed
    tables = []
    for path in paths:
        tables.append(pa.ipc.open_file(pa.memory_map(path)).read_all())
        os.unlink(path)
    return PopulationChunk(index=index, start=start, stop=stop, residents=tables[0], applicants=tables[1])


def _as_table(batch) -> pa.Table:  # noqa: ANN001 - a RecordBatch or a Table
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def seed_database(
    db: str,
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
    password_cost: str | int | None = None,
    distinct_passwords: str | int | None = None,
    workers: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    block_rows: int = BLOCK_ROWS,
    passwords_out: str | os.PathLike[str] | None = None,
    allow_remote: bool = False,
    progress: ProgressCallback | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> SeedResult:
    """Seed the reference API's schema in ``db`` with a population, in one transaction.

    The population is generated (``size``, ``seed``, optionally one ``shard`` of it, as
    ``prakerja-sim population`` would) or read from ``population_dir``.

    ``mode``: ``"truncate"`` empties the schema's tables first (in the same transaction),
    ``"append"`` adds to what is there (the open wave and calendar are read from the database);
    ``None`` refuses a database that already holds accounts. ``distinct_passwords``: a pool size,
    or ``"all"`` (each applicant keeps the population's password); runs no bigger than the pool
    keep their own. ``chunk_rows`` is how many rows are read at a time; the rows are built in
    blocks of ``block_rows`` (the same blocks whatever ``chunk_rows`` and ``workers``).
    ``on_chunk(i)`` is called after block ``i`` is loaded (tests use it to interrupt a run).
    Returns what was done.
    """
    target = parse_target(db, allow_remote=allow_remote)
    source = _source(size, seed, population_dir, shard)
    mix = states if isinstance(states, StateMix) else parse_states(states)
    cost = parse_cost(password_cost)
    distinct = parse_distinct(distinct_passwords)
    if mode not in (None, TRUNCATE, APPEND):
        raise InvalidOption(f"mode must be {TRUNCATE!r} or {APPEND!r}, got {mode!r}")
    if chunk_rows < 100:
        raise InvalidOption(f"--chunk-rows must be at least 100, got {chunk_rows}")
    if block_rows < 100:
        raise InvalidOption(f"block_rows must be at least 100, got {block_rows}")
    if workers is not None and workers < 1:
        raise InvalidOption(f"--workers must be at least 1, got {workers}")
    as_of = _as_of(as_of)
    passwords_path = passwords_file(target, passwords_out)

    engine = create_engine(target)
    started = time.perf_counter()
    try:
        before = _existing_tables(engine, target)
        if mode is None and "accounts" in before and _count(engine, schema.accounts) > 0:
            raise InvalidOption(
                f"{target.label} already holds seeded or registered accounts: pass --truncate to replace "
                "them or --append to add to them"
            )
        schema.create_schema(engine)
        created = [t for t in _DATA_TABLES if t.name not in before]
        if "schema_meta" not in before:
            created.append(schema.schema_meta)
        choice = PasswordChoice.for_run(source.seed, distinct, source.applicants())
        try:
            result = _load(
                engine, target, source, mix, cost, choice, mode or TRUNCATE, wave, as_of, open_days,
                workers, chunk_rows, block_rows, passwords_path, progress, on_chunk,
            )  # fmt: skip
        except BaseException as err:
            if created:
                # DDL committed by create_schema is undone by hand: the database is as it was.
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    schema.metadata.drop_all(engine, tables=created, checkfirst=True)
            if isinstance(err, _database_errors()):
                raise SimulatorError(
                    f"{target.label} refused the rows ({_first_line(err)}); the transaction was rolled "
                    "back and the database is as it was (with --append: is this population already in it?)"
                ) from err
            raise
    finally:
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result


def applicants_in(population_dir: str | os.PathLike[str]) -> int | None:
    """How many applicants a population directory holds, by its manifests (None if unreadable)."""
    from simulator.io.manifest import load_manifests

    try:
        return sum(int(m["files"]["applicants"]["rows"]) for m in load_manifests(population_dir))
    except (SimulatorError, OSError, KeyError, TypeError, ValueError):
        return None  # seed_database reports what is wrong with the directory


def _database_errors() -> tuple[type[BaseException], ...]:
    # The bulk paths talk to the drivers directly, so their own errors arrive unwrapped too.
    import sqlite3

    import psycopg
    import pymysql

    return (sa.exc.DBAPIError, sqlite3.DatabaseError, psycopg.Error, pymysql.err.MySQLError)


def _first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _source(
    size: int | None, seed: int, population_dir: str | os.PathLike[str] | None, shard: tuple[int, int]
) -> PopulationSource:
    if population_dir is not None:
        if size is not None:
            raise InvalidOption("give either --size (generate a population) or --from DIR, not both")
        directory = Path(population_dir)
        if not directory.is_dir():
            raise InvalidInputFile(f"--from {directory}: no such population directory")
        if tuple(shard) != (0, 1):
            raise InvalidOption("--shard applies to a generated population; --from reads every shard in DIR")
        return PopulationSource(directory=directory, seed=seed)
    if size is None:
        raise InvalidOption("give --size N (generate a population) or --from POPULATION_DIR")
    if size < 1:
        raise InvalidOption(f"--size must be at least 1, got {size}")
    index, count = shard
    if not 0 <= index < count:
        raise InvalidOption(f"--shard must be I/N with 0 <= I < N, got {index}/{count}")
    return PopulationSource(size=size, seed=seed, shard=(index, count))


def _as_of(as_of: dt.datetime | None) -> dt.datetime:
    if as_of is None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(dt.UTC).replace(tzinfo=None)
    return as_of.replace(microsecond=0)


PASSWORDS_DIR_ENV = "PRAKERJA_PASSWORDS_DIR"
"""Where the side files of server databases go when ``--passwords-out`` is not given."""


def passwords_file(target: Target, passwords_out: str | os.PathLike[str] | None) -> Path:
    """Where the plain passwords go: ``--passwords-out``; else beside a SQLite file; else, for a
    server, ``$PRAKERJA_PASSWORDS_DIR`` or the user's own data directory (never the current one).

    Its directory must exist (a typo must not become a tree of directories); InvalidOption if not.
    """
    if passwords_out is not None:
        path = Path(passwords_out).expanduser().absolute()
        if path.is_dir():
            raise InvalidOption(f"--passwords-out {passwords_out}: is a directory; give a file name")
        if not path.parent.is_dir():
            raise InvalidOption(
                f"--passwords-out {passwords_out}: the directory {path.parent} does not exist"
            )
        return path
    if target.kind == SQLITE:
        database = Path(target.url.database)
        return database.with_name(database.name + ".passwords.csv")
    directory = Path(os.environ.get(PASSWORDS_DIR_ENV) or _user_data_dir() / "passwords").expanduser()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidOption(f"cannot create {directory} for the passwords file ({err.strerror}); "
                            "give --passwords-out FILE") from None
    return directory / f"seed-{target.url.database}.passwords.csv"


def _user_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "prakerja-sim"


def git_work_tree(path: Path) -> Path | None:
    """The git work tree ``path`` lies in (a ``.git`` entry in it or a parent), or None."""
    for directory in path.absolute().parents:
        if (directory / ".git").exists():
            return directory
    return None


def _existing_tables(engine: sa.Engine, target: Target) -> set[str]:
    with connect(engine, target) as conn:
        return set(sa.inspect(conn).get_table_names())


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


@contextlib.contextmanager
def _transaction(engine: sa.Engine, target: Target) -> Iterator[sa.Connection]:
    with connect(engine, target) as conn:
        if target.kind == SQLITE:
            conn = conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            yield conn


@dataclass
class _Run:
    """What every chunk of a run needs, whichever way the rows reach the database."""

    source: PopulationSource
    mix: StateMix
    choice: PasswordChoice
    book: HashBook
    side_file: _SideFile
    advance: ProgressCallback
    on_chunk: Callable[[int], None] | None
    chunk_rows: int
    block_rows: int
    chunks: ChunkPrefetch | None = None
    residents_in_key_order: bool = True
    """Sort each part of the registry by NIK before loading it: worth it only where the keys are
    live during the load (a staged load builds them afterwards, from the whole table)."""


def _load(
    engine: sa.Engine,
    target: Target,
    source: PopulationSource,
    mix: StateMix,
    cost,  # noqa: ANN001 - PasswordCost
    choice: PasswordChoice,
    mode: str,
    wave: int,
    as_of: dt.datetime,
    open_days: float,
    workers: int | None,
    chunk_rows: int,
    block_rows: int,
    passwords_path: Path,
    progress: ProgressCallback | None,
    on_chunk: Callable[[int], None] | None,
) -> SeedResult:
    advance = progress or (lambda _n: None)
    # Exits run bottom-up: the data is committed (inside the load) before the side file is moved
    # into place.
    with (
        _SideFile(passwords_path, append=mode == APPEND) as side_file,
        contextlib.ExitStack() as workers_stack,
    ):
        # Worker processes first, while this process is small: each keeps what it was forked with.
        chunks = workers_stack.enter_context(ChunkPrefetch(source)) if source.directory is None else None
        hasher = workers_stack.enter_context(PasswordHasherPool(cost, workers))
        hasher.start()
        book = HashBook(hasher, source.seed, pool=choice.pool)
        staged = target.kind == POSTGRESQL and mode == TRUNCATE
        run = _Run(
            source, mix, choice, book, side_file, advance, on_chunk, chunk_rows, block_rows, chunks,
            residents_in_key_order=not staged,
        )  # fmt: skip
        if staged:
            result, cursor = _load_staged(engine, target, run, wave, as_of, open_days)
        else:
            result, cursor = _load_in_one_transaction(engine, target, run, mode, wave, as_of, open_days)
        result.password_cost = f"argon2id t={cost.time_cost} m={cost.memory_kib}KiB p={cost.parallelism}"
        result.hash_workers = hasher.workers
        result.passwords = choice.label
        result.accounts = cursor.accounts
        result.passwords_hashed = book.hashed
        result.states = {s.value: int(c) for s, c in zip(STATES, cursor.states, strict=True)}
        result.passwords_file = str(passwords_path)
        tree = git_work_tree(passwords_path)
        if tree is not None:
            result.warnings.append(
                f"the plain passwords are in {passwords_path}, inside the git work tree {tree}: "
                "keep them out of commits (.gitignore) or choose --passwords-out elsewhere"
            )
    return result


def _load_in_one_transaction(
    engine: sa.Engine, target: Target, run: _Run, mode: str, wave: int, as_of: dt.datetime, open_days: float
) -> tuple[SeedResult, SeedCursor]:
    """SQLite, MariaDB, and ``--append`` on PostgreSQL: every row in one transaction of one connection."""
    with _transaction(engine, target) as conn:
        loader, notes = _with_warnings_noted(lambda: make_loader(conn, target.kind))
        result = SeedResult(target=target.label, loader=loader.method, notes=notes)
        result.rows = {t.name: 0 for t in _DATA_TABLES}
        try:
            if mode == TRUNCATE:
                _empty_tables(conn, target)
                if hasattr(loader, "emptied"):
                    loader.emptied(_DATA_TABLES)
                calendar = make_calendar(wave, as_of, open_days)
                cursor = SeedCursor()
                _insert_waves(loader, calendar, seed=run.source.seed)
                result.rows["waves"] = calendar.open_wave
            else:
                calendar = _calendar_from_db(conn)
                cursor = _cursor_from_db(conn, calendar)

            deferred = mode == TRUNCATE and hasattr(loader, "defer_constraints")
            if deferred:
                loader.defer_constraints([t for t in _DATA_TABLES if t.name != "waves"])
            # From here the connection belongs to the loader's thread until flush().
            loader = BackgroundLoader(loader)
            _fill(run, calendar, cursor, result, loader)
            if deferred:
                loader.restore_constraints()  # checks every key over all rows at once
            _require_accounts(cursor, run.source)
            result.waves = _finish_waves(conn, calendar)
            _check_constraints(conn)
        finally:
            loader.close()
        # Leaving the `with`: the transaction commits.
    return result, cursor


COPY_GROUPS = (("residents",), ("accounts",))
"""Staged PostgreSQL loads: tables given a connection (a server process) of their own; the
applicants' other tables and the waves share one more. About equal shares of the COPY work."""


def _load_staged(
    engine: sa.Engine, target: Target, run: _Run, wave: int, as_of: dt.datetime, open_days: float
) -> tuple[SeedResult, SeedCursor]:
    """PostgreSQL ``--truncate``: a staging schema loaded over several connections, its keys, indexes
    and foreign keys built over several, then swapped in at one commit (see ``simulator.seed.staging``)."""
    with PostgresStage(engine, _DATA_TABLES) as stage:
        grouped = {name for group in COPY_GROUPS for name in group}
        groups = [[t for t in _DATA_TABLES if t.name not in grouped]] + [
            [t for t in _DATA_TABLES if t.name in group] for group in COPY_GROUPS
        ]
        result = SeedResult(
            target=target.label,
            loader=f"{PostgresCopyLoader.method} into a staging schema on {len(groups)} connections, keys "
            f"and indexes built on {stage.connections}, swapped in at one commit",
            notes=list(stage.notes),
        )
        result.rows = {t.name: 0 for t in _DATA_TABLES}
        calendar = make_calendar(wave, as_of, open_days)
        cursor = SeedCursor()
        with contextlib.ExitStack() as connections:
            copies = []
            for tables in groups:
                copy = PostgresCopyLoader(connections.enter_context(stage.loading(tables)))
                copy.emptied(tables)
                copies.append((tables, copy))
            _insert_waves(copies[0][1], calendar, seed=run.source.seed)
            result.rows["waves"] = calendar.open_wave
            loader = TableRouter({t.name: BackgroundLoader(copy) for tables, copy in copies for t in tables})
            try:
                _fill(run, calendar, cursor, result, loader)
            finally:
                loader.close()
        _require_accounts(cursor, run.source)
        stage.build_constraints()
        with stage.engine.begin() as conn:
            result.waves = _finish_waves(conn, calendar)
            _check_constraints(conn)
            stage.swap(conn)
    return result, cursor


def _require_accounts(cursor: SeedCursor, source: PopulationSource) -> None:
    if cursor.accounts == 0:
        raise InvalidInputFile(f"{source.label}: no applicant could be seeded (no rows, or all refused)")


def _fill(
    run: _Run,
    calendar: WaveCalendar,
    cursor: SeedCursor,
    result: SeedResult,
    loader: BackgroundLoader | TableRouter,
) -> None:
    """Stream the population through ``loader``: residents, and the applicants' rows."""
    source, chunk_rows = run.source, run.chunk_rows
    pending = None
    chunk_index = 0
    residents_queue: list[pa.Table] = []

    def load_queued_residents() -> None:
        while residents_queue:
            result.residents += _load_residents(
                loader, residents_queue.pop(0), source.label, result, in_key_order=run.residents_in_key_order
            )

    for kind, part in _in_blocks(source.parts(chunk_rows, run.chunks), run.block_rows):
        if part.num_rows == 0:
            continue
        if kind == "residents":
            # Known to the KK ledger now; loaded later, while passwords hash.
            check_columns(part, RESIDENT_COLUMNS, source.label + " residents")
            _note_registry_recipients(cursor, part)
            residents_queue.append(part)
            if sum(r.num_rows for r in residents_queue) > 4 * chunk_rows:  # bounded memory
                load_queued_residents()
            continue
        rows = build_chunk(
            part, chunk_index=chunk_index, seed=source.seed, mix=run.mix,
            calendar=calendar, cursor=cursor, source=source.label, choice=run.choice,
        )  # fmt: skip
        prepared = (rows, run.book.submit(rows.passwords), part.num_rows, chunk_index)
        chunk_index += 1
        load_queued_residents()
        # Load the previous chunk while this one's passwords hash on the workers.
        if pending is not None:
            _finish_chunk(pending, run, loader, result)
        pending = prepared
    load_queued_residents()
    if pending is not None:
        _finish_chunk(pending, run, loader, result)
    loader.flush()


def _with_warnings_noted(make: Callable[[], Loader]) -> tuple[Loader, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = make()
    return loader, [str(w.message) for w in caught]


def _in_blocks(parts: Iterator[tuple[str, pa.Table]], block_rows: int) -> Iterator[tuple[str, pa.Table]]:
    """The same parts with applicants re-cut into blocks of ``block_rows`` (the last one shorter).

    Residents pass straight through: those of a family card still come before its applicants'
    block, and which residents precede a block does not depend on how the input was read.
    """
    held: list[pa.Table] = []
    count = 0
    for kind, part in parts:
        if kind != "applicants":
            yield kind, part
            continue
        held.append(part)
        count += part.num_rows
        while count >= block_rows:
            table = pa.concat_tables(held) if len(held) > 1 else held[0]
            yield "applicants", table.slice(0, block_rows)
            rest = table.slice(block_rows)
            held, count = ([rest] if rest.num_rows else []), rest.num_rows
    if count:
        yield "applicants", pa.concat_tables(held) if len(held) > 1 else held[0]


def _finish_chunk(pending, run: _Run, loader: BackgroundLoader | TableRouter, result: SeedResult) -> None:  # noqa: ANN001
    rows, hashing, size, chunk_index = pending
    tick = time.perf_counter()
    hashes = run.book.collect(hashing)
    result.hash_seconds += time.perf_counter() - tick
    tables = rows.with_hashes(hashes)
    for table in _DATA_TABLES:
        chunk = tables.get(table.name)
        if chunk is not None and chunk.num_rows:
            result.rows[table.name] += loader.load(table, chunk)
    run.side_file.write(rows.credentials)
    run.advance(size)
    if run.on_chunk is not None:
        run.on_chunk(chunk_index)


def _note_registry_recipients(cursor: SeedCursor, residents: pa.Table) -> None:
    # People the registry already knows as recipients count towards their KK's limit too.
    if "is_recipient" in residents.column_names:
        flagged = residents.filter(pc.fill_null(residents.column("is_recipient"), False))
        if flagged.num_rows:
            cursor.ledger.add(pc.cast(flagged.column("kk"), pa.int64()).to_numpy())


# --- residents ------------------------------------------------------------------------------------


def _load_residents(
    loader: Loader, residents: pa.Table, source: str, result: SeedResult, *, in_key_order: bool = True
) -> int:
    # The columns were checked as the part arrived (_fill).
    n = residents.num_rows

    def flag(*names: str) -> pa.Array:
        for name in names:
            if name in residents.column_names:
                return pc.fill_null(residents.column(name).cast(pa.bool_()), False)
        return pa.array(np.zeros(n, dtype=bool))

    def text(name: str) -> pa.Array:
        if name in residents.column_names:
            return residents.column(name).cast(pa.string())
        return pa.nulls(n, pa.string())

    birth = residents.column("birth_date")
    if not pa.types.is_date32(birth.type):
        try:
            birth = birth.cast(pa.string()).cast(pa.date32())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidInputFile(f"{source} residents: birth_date must hold ISO dates") from None
    rows = pa.table(
        {
            "nik": text("nik"),
            "kk": text("kk"),
            "birth_date": birth,
            "full_name": text("full_name"),
            "gender": text("gender"),
            "province_code": text("province_code"),
            "regency_code": text("regency_code"),
            "district_code": text("district_code"),
            "village_code": text("village_code"),
            "occupation": text("occupation"),
            "is_recipient": flag("is_recipient", "already_recipient"),
            "receives_other_aid": flag("receives_other_aid", "other_aid"),
            "is_priority": flag("is_priority", "priority"),
        }
    )
    # In key order: each B-tree insert lands next to the previous one.
    loaded = loader.load(schema.residents, rows.sort_by("nik") if in_key_order else rows)
    result.rows["residents"] += loaded
    return loaded


# --- waves ----------------------------------------------------------------------------------------


def _insert_waves(loader: Loader, calendar: WaveCalendar, *, seed: int) -> None:
    n = calendar.open_wave
    closed = np.arange(1, n + 1) < n
    created = calendar.opens_at - np.timedelta64(1, "D")
    rows = pa.table(
        {
            "number": pa.array(np.arange(1, n + 1), pa.int32()),
            "quota": pa.array(np.zeros(n, dtype=np.int64), pa.int32()),  # set once selections are known
            "mode": pa.array(["lottery"] * n, pa.string()),
            "opens_at": pa.array(calendar.opens_at.astype("datetime64[us]"), pa.timestamp("us")),
            "closes_at": pa.array(calendar.closes_at.astype("datetime64[us]"), pa.timestamp("us")),
            "state": pa.array(np.where(closed, "closed", "open").tolist(), pa.string()),
            "province_codes": pa.nulls(n, pa.string()),
            "joined_count": pa.array(np.zeros(n, dtype=np.int64), pa.int32()),
            "selected_count": pa.array(np.zeros(n, dtype=np.int64), pa.int32()),
            "selection_seed": pa.array(np.random.default_rng([seed, 11]).integers(0, 2**62, n), pa.int64()),
            "created_at": pa.array(created.astype("datetime64[us]"), pa.timestamp("us")),
            "closed_at": pa.array(
                calendar.closes_at.astype("datetime64[us]"), pa.timestamp("us"), mask=~closed
            ),
        }
    )
    loader.load(schema.waves, rows)


def _calendar_from_db(conn: sa.Connection) -> WaveCalendar:
    waves = schema.waves
    rows = conn.execute(sa.select(waves.c.number, waves.c.opens_at, waves.c.closes_at, waves.c.state)
                        .order_by(waves.c.number)).all()  # fmt: skip
    open_rows = [r for r in rows if r.state == "open"]
    if not rows or not open_rows:
        raise InvalidOption("--append needs a database seeded before (with an open wave); use --truncate")
    open_wave = open_rows[-1].number
    if [r.number for r in rows[:open_wave]] != list(range(1, open_wave + 1)):
        raise InvalidOption(
            "--append: the waves in the database are not 1..K as seed-db makes them; use --truncate"
        )
    from simulator.seed.waves import PUBLISHED_WAVES

    return WaveCalendar(
        open_wave=open_wave,
        as_of=rows[open_wave - 1].opens_at + dt.timedelta(hours=1),
        opens_at=np.array([r.opens_at for r in rows[:open_wave]], dtype="datetime64[s]"),
        closes_at=np.array([r.closes_at for r in rows[:open_wave]], dtype="datetime64[s]"),
        published_accepted=np.array([w.accepted for w in PUBLISHED_WAVES[:open_wave]], dtype=np.int64),
    )


def _cursor_from_db(conn: sa.Connection, calendar: WaveCalendar) -> SeedCursor:
    cursor = SeedCursor()
    r, j = schema.recipients, schema.wave_joins
    per_wave = np.zeros(calendar.open_wave - 1, dtype=np.int64)
    for number, count in conn.execute(sa.select(r.c.wave_number, sa.func.count()).group_by(r.c.wave_number)):
        if 1 <= number < calendar.open_wave:
            per_wave[number - 1] = count
    cursor.recipients_per_wave = per_wave
    cursor.recipients = int(per_wave.sum())
    joins = np.zeros(calendar.open_wave, dtype=np.int64)
    for number, last in conn.execute(
        sa.select(j.c.wave_number, sa.func.max(j.c.join_order)).group_by(j.c.wave_number)
    ):
        if 1 <= number <= calendar.open_wave:
            joins[number - 1] = last or 0
    cursor.joins_per_wave = joins
    kk_rows = conn.execute(sa.select(r.c.kk, sa.func.count()).group_by(r.c.kk)).all()
    if kk_rows:
        cursor.ledger.keys = np.array([int(k) for k, _ in kk_rows], dtype=np.int64)
        cursor.ledger.counts = np.array([c for _, c in kk_rows], dtype=np.int64)
        order = np.argsort(cursor.ledger.keys)
        cursor.ledger.keys, cursor.ledger.counts = cursor.ledger.keys[order], cursor.ledger.counts[order]
    return cursor


def _finish_waves(conn: sa.Connection, calendar: WaveCalendar) -> list[dict]:
    """Counts and quotas of every wave, from the rows now in the database (earlier runs included)."""
    waves, j = schema.waves, schema.wave_joins
    joined = dict(conn.execute(sa.select(j.c.wave_number, sa.func.count()).group_by(j.c.wave_number)).all())
    selected = dict(
        conn.execute(
            sa.select(j.c.wave_number, sa.func.count())
            .where(j.c.selected.is_(True))
            .group_by(j.c.wave_number)
        ).all()
    )
    accounts = int(conn.execute(sa.select(sa.func.count()).select_from(schema.accounts)).scalar() or 0)
    selected_per_wave = np.array([selected.get(w, 0) for w in range(1, calendar.open_wave)], dtype=np.int64)
    quotas = calendar.quotas(accounts, selected_per_wave)
    existing = dict(conn.execute(sa.select(waves.c.number, waves.c.quota)).all())
    summary = []
    for number in range(1, calendar.open_wave + 1):
        quota = max(int(quotas[number - 1]), int(existing.get(number) or 0))
        values = {
            "quota": quota,
            "joined_count": int(joined.get(number, 0)),
            "selected_count": int(selected.get(number, 0)),
        }
        conn.execute(sa.update(waves).where(waves.c.number == number).values(**values))
        summary.append(
            {"number": number, "state": "open" if number == calendar.open_wave else "closed", **values}
        )
    return summary


def _check_constraints(conn: sa.Connection) -> None:
    """The rules no database constraint holds: a wave's quota, and at most 2 recipients per KK."""
    waves, r = schema.waves, schema.recipients
    over = conn.execute(sa.select(waves.c.number).where(waves.c.selected_count > waves.c.quota)).first()
    if over is not None:
        raise SimulatorError(
            f"internal error: wave {over.number} would select more than its quota; nothing was kept"
        )
    # Counted as the API counts them: recipients not revoked, plus the registry's own recipients.
    members = sa.union_all(
        sa.select(r.c.kk, sa.literal(1).label("seeded")).where(r.c.state != "revoked"),
        sa.select(schema.residents.c.kk, sa.literal(0).label("seeded")).where(
            schema.residents.c.is_recipient.is_(True)
        ),
    ).subquery()
    crowded = conn.execute(
        sa.select(members.c.kk)
        .group_by(members.c.kk)
        .having(sa.func.count() > MAX_KK_RECIPIENTS, sa.func.sum(members.c.seeded) > 0)
        .limit(1)
    ).first()
    if crowded is not None:
        raise SimulatorError(
            f"KK {crowded.kk} would have more than {MAX_KK_RECIPIENTS} recipients; nothing was kept"
        )


def _empty_tables(conn: sa.Connection, target: Target) -> None:
    if target.kind == POSTGRESQL:
        names = ", ".join(conn.dialect.identifier_preparer.format_table(t) for t in _DATA_TABLES)
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
        return
    # MariaDB's TRUNCATE commits on its own; DELETE stays inside the transaction (as on SQLite).
    for table in reversed(_DATA_TABLES):
        conn.execute(sa.delete(table))


# --- side file --------------------------------------------------------------------------------------


class _SideFile:
    """The plain passwords of the seeded accounts, as CSV, moved into place only after the commit.

    Private (0600 whatever the umask): it holds plain passwords. With ``append``, the new rows
    follow the previous file's.
    """

    def __init__(self, path: Path, *, append: bool):
        self.path = path
        self.append = append
        self._writer: pacsv.CSVWriter | None = None
        self._file: AtomicFile | None = None

    def __enter__(self) -> _SideFile:
        sweep(self.path.parent)  # a killed run's .tmp side files
        self._file = AtomicFile(self.path, private=True)
        self._keep_previous = self.append and self.path.exists()
        return self

    def write(self, credentials: pa.Table) -> None:
        assert self._file is not None
        if self._writer is None:
            if self._keep_previous:
                with open(self.path, "rb") as previous:
                    shutil.copyfileobj(previous, self._file.handle)
            self._writer = pacsv.CSVWriter(
                self._file.handle,
                credentials.schema,
                write_options=pacsv.WriteOptions(
                    include_header=not self._keep_previous, quoting_style="needed"
                ),
            )
        self._writer.write_table(credentials)

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        assert self._file is not None
        try:
            if self._writer is not None:
                self._writer.close()
            if exc_type is None:
                self._file.commit()
                return
        except BaseException:
            self._file.abort()
            raise
        self._file.abort()
