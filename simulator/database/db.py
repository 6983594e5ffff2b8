"""Database engines for the reference API and seed-db: URL normalisation, SQLite tuning, write transactions.

One place decides how SQLite, PostgreSQL and MariaDB are opened so the store and seed-db agree.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from simulator.errors import InvalidOption

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another process's write lock before giving up."""

_SCHEMES = {
    "sqlite": "sqlite",
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "mysql+pymysql": "mysql+pymysql",
    "mariadb+pymysql": "mysql+pymysql",
}


def normalize_url(url: str | Path) -> str:
    """Turn what a user types into a SQLAlchemy URL with the driver we ship.

    A bare path means a SQLite file; ``postgres(ql)://`` uses psycopg 3; ``mysql://`` and
    ``mariadb://`` use PyMySQL with utf8mb4.
    """
    text = str(url).strip()
    if not text:
        raise InvalidOption("--db: empty database URL")
    if "://" not in text:
        return "sqlite:///" + str(Path(text).expanduser().absolute())
    scheme, _, rest = text.partition("://")
    driver = _SCHEMES.get(scheme.lower())
    if driver is None:
        raise InvalidOption(
            f"--db: unsupported database URL scheme {scheme!r}; use a SQLite path, "
            "sqlite:///FILE, postgresql://... or mysql://... / mariadb://..."
        )
    normalized = f"{driver}://{rest}"
    if driver == "mysql+pymysql" and "charset=" not in rest:
        normalized += ("&" if "?" in rest else "?") + "charset=utf8mb4"
    return normalized


def dialect_of(url: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` for a normalised URL."""
    return make_url(url).get_backend_name()


def make_engine(url: str | Path, *, pool_size: int = 8, background_checkpoints: bool = False) -> Engine:
    """An engine tuned for many short transactions from several threads and processes.

    ``background_checkpoints`` (SQLite): commits never run a WAL checkpoint themselves (SQLite's
    auto-checkpoint does it inside a commit, holding the write lock while it syncs the file);
    the owner calls `checkpoint` from elsewhere instead, as the API server does once a second.
    """
    normalized = normalize_url(url)
    backend = dialect_of(normalized)
    if backend == "sqlite":
        database = make_url(normalized).database
        if not database or database == ":memory:":
            raise InvalidOption("--db: SQLite needs a file (several server processes share it)")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            normalized,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size * 3,
        )
        _tune_sqlite(engine, autocheckpoint=not background_checkpoints)
        return engine
    return create_engine(
        normalized,
        pool_size=pool_size,
        max_overflow=pool_size * 3,
        pool_pre_ping=False,
        pool_recycle=3600,
        # Every invariant is held by unique constraints and conditional UPDATEs, which READ
        # COMMITTED gives on both engines; MariaDB's default REPEATABLE READ adds gap locks.
        isolation_level="READ COMMITTED",
    )


def checkpoint(engine: Engine) -> None:
    """A passive WAL checkpoint (SQLite; nothing elsewhere): copies what it can, never blocks writers."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def _tune_sqlite(engine: Engine, autocheckpoint: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # DBAPI hook
        # Let SQLAlchemy's "begin" event below decide BEGIN vs BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")  # a commit survives a killed process
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-20000")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that later upgrades
        # to a writer fails with SQLITE_BUSY at once instead of waiting (busy_timeout is not
        # honoured on upgrade), which would turn load into errors.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# SQLite lets one writer in at a time; queueing this process's threads on a lock (fair, no
# polling) keeps the busy handler's sleep-and-retry for the other processes only.
_sqlite_write_lock = threading.Lock()

_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)
_RETRYABLE_MYSQL = {1213, 1205}  # deadlock, lock wait timeout (MariaDB)


def _retryable(err: exc.DBAPIError) -> bool:
    orig = err.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _RETRYABLE_MYSQL:
        return True
    return "database is locked" in str(orig)


_lock_files: dict[tuple[int, str], int] = {}


@contextlib.contextmanager
def _cross_process_lock(engine: Engine) -> Iterator[None]:
    """An exclusive ``flock`` on ``<database>.writelock`` held around each SQLite write.

    SQLite's own busy handler makes a waiting process sleep and retry (1 ms, 2 ms, ... up to
    100 ms), so with several workers a lock that is free again after half a millisecond is
    noticed late: throughput drops and p99 grows. The kernel hands a flock to the next waiter
    at once. The file is opened once per process: a descriptor inherited across fork would
    share the lock instead of excluding.
    """
    database = engine.url.database or ""
    key = (os.getpid(), database)
    fd = _lock_files.get(key)
    if fd is None:
        fd = os.open(database + ".writelock", os.O_RDWR | os.O_CREAT, 0o644)
        _lock_files[key] = fd
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One short write transaction: committed on exit, rolled back on any exception.

    On SQLite it is ``BEGIN IMMEDIATE`` behind a per-process lock and a cross-process file lock.
    Callers that can be retried safely use `run_write`, which retries deadlocks and
    serialization failures.
    """
    if engine.dialect.name == "sqlite":
        with _sqlite_write_lock, _cross_process_lock(engine), engine.connect() as conn:
            conn = conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn
    else:
        with engine.begin() as conn:
            yield conn


def run_write(engine: Engine, work, attempts: int = 4):  # generic callable
    """Run ``work(conn)`` in a write transaction, retrying deadlocks a few times."""
    for attempt in range(attempts):
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except exc.DBAPIError as err:
            if isinstance(err, exc.IntegrityError) or not _retryable(err) or attempt == attempts - 1:
                raise
            time.sleep(0.002 * (attempt + 1) + (os.getpid() % 7) * 0.0003)
    raise AssertionError("unreachable")


class PreparedStatement:
    """A Core statement compiled once for an engine, run with ``exec_driver_sql``.

    The hot path (account creation) skips SQLAlchemy's per-call statement building and cache-key
    work, which profiling showed costs more than SQLite's own insert and commit. Values go
    through the column types' bind processors, so stored values are what SQLAlchemy would store.
    """

    def __init__(self, engine: Engine, statement):  # any Core executable
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.names = list(compiled.binds)
        self.positions = compiled.positiontup
        # Each bind's type processor, through the public TypeEngine API (what SQLAlchemy applies).
        self.processors = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
            if processor is not None:
                self.processors[name] = processor

    def params(self, values: dict):
        processed = {}
        for name in self.names:
            value = values.get(name)
            processor = self.processors.get(name)
            processed[name] = processor(value) if processor is not None and value is not None else value
        if self.positions is not None:
            return tuple(processed[name] for name in self.positions)
        return processed

    def execute(self, conn: Connection, values: dict):  # a CursorResult
        return conn.exec_driver_sql(self.sql, self.params(values))


def savepoint(conn: Connection) -> contextlib.AbstractContextManager:
    """A SAVEPOINT around a statement that may hit a unique constraint, where the transaction goes
    on after it: PostgreSQL aborts the whole transaction on an error otherwise. SQLite and MariaDB
    undo just the failed statement, so they need none."""
    return conn.begin_nested() if conn.dialect.name == "postgresql" else contextlib.nullcontext()
