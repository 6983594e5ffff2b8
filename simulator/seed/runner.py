"""What every seed run shares, whichever schema it fills: the population stream, its blocks, the
result, the plain-password side file, the transaction and how database errors are reported.

The load itself is :func:`simulator.seed.mapping.seed_mapped` (every schema, the reference one
through its shipped mapping: :func:`simulator.seed.reference.seed_database`).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import multiprocessing
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc  # pa.ipc
import sqlalchemy as sa

from simulator.errors import InvalidInputFile, InvalidOption, SimulatorError
from simulator.io import handover
from simulator.io.atomic import AtomicFile
from simulator.io.leftovers import sweep
from simulator.seed.rows import SeedCursor
from simulator.seed.target import SQLITE, Target, connect

TRUNCATE = "truncate"
APPEND = "append"

DEFAULT_CHUNK_ROWS = 20_000  # rows read from the population at a time
BLOCK_ROWS = 20_000
"""Applicants per block: rows are built block by block (states drawn, timelines, hashes), blocks
cut at fixed positions of the input, so the database does not depend on ``--chunk-rows``."""
GENERATE_AHEAD = 1
"""Population chunks (100,000 people each) a worker process generates ahead of the rows being loaded."""
DEFAULT_WAVE = 11  # the morning of wave 11 (2 Nov 2020), right after the 30 Oct 2020 funnel


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
    before them (a population of one chunk is made in this process, and so is every chunk when
    /dev/shm has no room for the hand-over).

    A chunk comes back through shared memory (:mod:`simulator.io.handover`, as the population
    writer's do) and is copied once into this process's memory, which frees its slot at once:
    pickled through a pipe, a chunk of 100,000 people (about 75 MB) cost both processes more CPU
    than generating it.

    The worker is forked when this is made: do that early, while this process is small (a
    forked process keeps its own copy of every page the parent frees afterwards)."""

    def __init__(self, source: PopulationSource, plan=None, slot_bytes_per_person: int | None = None):
        """``plan``: a PopulationPlan (default: generate()'s); ``slot_bytes_per_person``: a slot's room
        per person of a chunk (default :data:`HANDOVER_BYTES_PER_PERSON`; a chunk that does not fit
        travels in a block of its own)."""
        from simulator.generators.population import make_plan
        from simulator.regions import region_tables

        self.plan = plan or make_plan(source.size, source.seed)  # as generate() makes it
        self.chunks = list(self.plan.shard_chunks(*source.shard))
        self._executor: ProcessPoolExecutor | None = None
        self._slots: handover.Slots | None = None
        self._ahead: collections.deque = collections.deque()
        self._following = iter(self.chunks[1 + GENERATE_AHEAD :])
        if len(self.chunks) > 1:
            sweep()  # what killed runs left: shared memory, hand-over directories, semaphores
        if len(self.chunks) > 1 and _handover_room():
            region_tables()  # loaded once, before the fork: the worker shares them
            self._run = handover.run_name()
            self._slots = handover.Slots(
                self._run,
                1 + GENERATE_AHEAD,
                self.plan.options.chunk_rows * (slot_bytes_per_person or HANDOVER_BYTES_PER_PERSON),
            )
            self._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("fork")
            )
            # The first chunk too: it is made while this process sets the database up.
            self._ahead.extend(self._submit(k) for k in self.chunks[: 1 + GENERATE_AHEAD])

    def _submit(self, k: int) -> tuple[int, str, object]:
        slot = self._slots.acquire()
        return k, slot, self._executor.submit(generate_and_hand_over, self.plan, k, self._run, slot)

    def __iter__(self) -> Iterator:
        from simulator.generators.population import PopulationChunk, generate_chunk

        if self._executor is None:  # one chunk (or none), or no room for the hand-over: made here
            yield from (generate_chunk(self.plan, k) for k in self.chunks)
            return
        while self._ahead:
            _, slot, future = self._ahead.popleft()
            try:
                index, start, stop, handles = future.result()
                tables = handover.received(self._slots, handles)
            except OSError as err:  # e.g. /dev/shm is full
                raise SimulatorError(
                    f"could not hand a generated population chunk over through shared memory: {err}"
                ) from err
            finally:
                self._slots.release(slot)
            k = next(self._following, None)
            if k is not None:
                self._ahead.append(self._submit(k))
            yield PopulationChunk(index=index, start=start, stop=stop, **tables)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._slots is not None:
            self._slots.abandon([k for k, _, _ in self._ahead], ("residents", "applicants"))
            self._ahead.clear()
            self._slots.close()
            self._slots = None

    def __enter__(self) -> ChunkPrefetch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


HANDOVER_BYTES_PER_PERSON = 1_536
"""A slot's room per person of a chunk (residents and applicants as Arrow IPC, about 750 bytes):
generous, a page costs nothing until it is written; a bigger chunk travels in blocks of its own."""
_HANDOVER_ROOM = 1 << 30
"""Free space /dev/shm needs before chunks are handed over there (two or three chunks of about
75 MB live at once; containers often mount only 64 MB)."""


def _handover_room() -> bool:
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= _HANDOVER_ROOM and os.access("/dev/shm", os.W_OK)


def generate_and_hand_over(plan, k: int, run: str, slot: str) -> tuple[int, int, int, dict]:
    """On the worker: chunk ``k`` of ``plan``, its tables left in ``slot`` for the parent."""
    from simulator.generators.population import generate_chunk

    chunk = generate_chunk(plan, k)
    handles = handover.put(run, slot, k, {"residents": chunk.residents, "applicants": chunk.applicants})
    return chunk.index, chunk.start, chunk.stop, handles


def _as_table(batch) -> pa.Table:  # a RecordBatch or a Table
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def applicants_in(population_dir: str | os.PathLike[str]) -> int | None:
    """How many applicants a population directory holds, by its manifests (None if unreadable)."""
    from simulator.io.manifest import load_manifests

    try:
        return sum(int(m["files"]["applicants"]["rows"]) for m in load_manifests(population_dir))
    except (SimulatorError, OSError, KeyError, TypeError, ValueError):
        return None  # the seed run reports what is wrong with the directory


def database_errors() -> tuple[type[BaseException], ...]:
    # The bulk paths talk to the drivers directly, so their own errors arrive unwrapped too.
    import sqlite3

    import psycopg
    import pymysql

    return (sa.exc.DBAPIError, sqlite3.DatabaseError, psycopg.Error, pymysql.err.MySQLError)


def first_line(err: BaseException) -> str:
    orig = getattr(err, "orig", None) or err
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def population_source(
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


def as_of_time(as_of: dt.datetime | None) -> dt.datetime:
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
        raise InvalidOption(
            f"cannot create {directory} for the passwords file ({err.strerror}); give --passwords-out FILE"
        ) from None
    return directory / f"seed-{target.url.database}.passwords.csv"


def _user_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "prakerja-sim"


def git_work_tree(path: Path) -> Path | None:
    """The git work tree ``path`` lies in (a ``.git`` entry in it or a parent), or None."""
    for directory in path.absolute().parents:
        if (directory / ".git").exists():
            return directory
    return None


@contextlib.contextmanager
def transaction(engine: sa.Engine, target: Target) -> Iterator[sa.Connection]:
    """One connection in one transaction (SQLite: taking the write lock at once)."""
    with connect(engine, target) as conn:
        if target.kind == SQLITE:
            conn = conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            yield conn


def with_warnings_noted(make: Callable[[], object]) -> tuple[object, list[str]]:
    """``make()``, and the warnings it gave as lines for the run summary."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = make()
    return loader, [str(w.message) for w in caught]


def in_blocks(parts: Iterator[tuple[str, pa.Table]], block_rows: int) -> Iterator[tuple[str, pa.Table]]:
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


def note_registry_recipients(cursor: SeedCursor, residents: pa.Table) -> None:
    """People the registry already knows as recipients count towards their KK's limit too."""
    # People the registry already knows as recipients count towards their KK's limit too.
    if "is_recipient" in residents.column_names:
        flagged = residents.filter(pc.fill_null(residents.column("is_recipient"), False))
        if flagged.num_rows:
            cursor.ledger.add(pc.cast(flagged.column("kk"), pa.int64()).to_numpy())


# --- side file --------------------------------------------------------------------------------------


class SideFile:
    """The plain passwords of the seeded accounts, as CSV, moved into place only after the commit.

    Private (0600 whatever the umask): it holds plain passwords. With ``append``, the new rows
    follow the previous file's.
    """

    def __init__(self, path: Path, *, append: bool):
        self.path = path
        self.append = append
        self._writer: pacsv.CSVWriter | None = None
        self._file: AtomicFile | None = None

    def __enter__(self) -> SideFile:
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

    def __exit__(self, exc_type, exc, tb) -> None:
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
