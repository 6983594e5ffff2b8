"""Bulk loaders, one per engine: PostgreSQL ``COPY``, MariaDB ``LOAD DATA LOCAL INFILE``, SQLite batches.

Each loader writes whole pyarrow tables into a table of the schema inside the caller's open
transaction; nothing here commits. Rows are encoded column-wise (no Python loop per row).
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import warnings
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from simulator.errors import SimulatorError
from simulator.seed.copy_binary import COPY_HEADER, COPY_TRAILER, encode_binary_rows, writes_binary
from simulator.seed.target import MARIADB, POSTGRESQL, SQLITE

# The text format PostgreSQL's COPY and MariaDB's LOAD DATA both read: tab-separated fields,
# one line per row, backslash escapes, \N for NULL.
_NULL = "\\N"
_NEEDS_ESCAPE = r"[\\\t\n\r]"
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def _time_text(column: pa.Array | pa.ChunkedArray, fractions: bool) -> pa.Array | pa.ChunkedArray:
    """Times as ``YYYY-MM-DD HH:MM:SS`` (``.ffffff`` with ``fractions``), dates as ``YYYY-MM-DD``.

    A cast, not ``strftime``: Arrow's cast prints ISO text about 25 times faster.
    """
    if pa.types.is_timestamp(column.type):
        unit = "us" if fractions else "s"
        if column.type.unit != unit:
            column = column.cast(pa.timestamp(unit, column.type.tz), safe=False)
    return column.cast(pa.string())


class Loader(Protocol):
    """Writes rows into one table of the schema inside the connection's current transaction."""

    kind: str
    method: str  # what the loader does, for the run summary ("COPY", "LOAD DATA LOCAL INFILE", ...)

    def load(self, table: sa.Table, rows: pa.Table) -> int: ...

    def close(self) -> None: ...


def make_loader(conn: sa.Connection, kind: str, *, batch_rows: int = 5000) -> Loader:
    """The fastest correct loader the connected server allows."""
    if kind == POSTGRESQL:
        return PostgresCopyLoader(conn)
    if kind == MARIADB:
        if mariadb_allows_local_infile(conn):
            return MariaDbLoadDataLoader(conn)
        warnings.warn(
            "the MariaDB server has local_infile=OFF: loading with multi-row INSERT batches instead of "
            "LOAD DATA LOCAL INFILE (slower; SET GLOBAL local_infile=1 to enable the bulk path)",
            stacklevel=2,
        )
        return MariaDbInsertLoader(conn, batch_rows=batch_rows)
    if kind == SQLITE:
        return SqliteLoader(conn, batch_rows=batch_rows)
    raise SimulatorError(f"no bulk loader for database kind {kind!r}")


# --- text encoding shared by COPY and LOAD DATA ---------------------------------------------------


def _column_as_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One column as escaped text with \\N for NULL."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_boolean(kind):
        text = pc.if_else(column, "1", "0")
    elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        text = _time_text(column, fractions=False)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = column.cast(pa.string())
        if pc.any(pc.match_substring_regex(text, _NEEDS_ESCAPE)).as_py():
            for raw, escaped in _ESCAPES:
                text = pc.replace_substring(text, raw, escaped)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        text = column.cast(pa.string())
    else:
        raise SimulatorError(f"cannot bulk-load a column of type {kind}")
    return pc.fill_null(text, _NULL)


def encode_text_rows(rows: pa.Table) -> memoryview:
    """The rows in COPY / LOAD DATA text format, as one contiguous buffer (no per-row Python)."""
    if rows.num_rows == 0:
        return memoryview(b"")
    fields = [_column_as_text(rows.column(i)) for i in range(rows.num_columns)]
    fields[-1] = pc.binary_join_element_wise(fields[-1], "\n", "")
    lines = pc.binary_join_element_wise(*fields, "\t") if len(fields) > 1 else fields[0]
    lines = lines.cast(pa.large_string())
    # Every line ends in "\n", so the array's data buffer between the first and last offsets is
    # exactly the file: hand that memory to the driver instead of joining strings in Python.
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])]


def _quoted_columns(conn: sa.Connection, rows: pa.Table) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return ", ".join(quote(name) for name in rows.column_names)


def _quoted_table(conn: sa.Connection, table: sa.Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _insert_statement(conn: sa.Connection, table: sa.Table, rows: pa.Table, marker: str) -> str:
    """``INSERT INTO table (columns) VALUES (marker, ...)`` for an ``executemany`` of ``rows``."""
    placeholders = ", ".join([marker] * rows.num_columns)
    return f"INSERT INTO {_quoted_table(conn, table)} ({_quoted_columns(conn, rows)}) VALUES ({placeholders})"


# --- PostgreSQL -------------------------------------------------------------------------------------


class PostgresCopyLoader:
    """``COPY table (columns) FROM STDIN`` through psycopg 3, in the caller's transaction: binary
    (:mod:`simulator.seed.copy_binary`) when every column has a binary encoding there, else text."""

    kind = POSTGRESQL
    method = "COPY FROM STDIN (psycopg 3)"

    def __init__(self, conn: sa.Connection):
        self._conn = conn
        self._raw = conn.connection.driver_connection
        # Timestamps are written as UTC wall-clock values; make the session read them that way.
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        self._emptied: set[str] = set()

    def emptied(self, tables: list[sa.Table]) -> None:
        """Note tables truncated in this transaction (COPY may then write frozen rows)."""
        self._emptied.update(t.name for t in tables)

    def load(self, table: sa.Table, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        # FREEZE (as pgbench -i): rows of a table emptied in this transaction are written
        # already frozen, so the API's first reads do not rewrite every page to set hint bits.
        freeze = ", FREEZE" if table.name in self._emptied else ""
        start = f"COPY {_quoted_table(self._conn, table)} ({_quoted_columns(self._conn, rows)}) FROM STDIN"
        if not writes_binary(table, rows.column_names):  # uuid, numeric, json...: the server parses text
            with self._raw.cursor() as cursor, cursor.copy(f"{start} (FORMAT text{freeze})") as copy:
                copy.write(encode_text_rows(rows))
            return rows.num_rows
        # Binary, not text: the server spends about 40% less CPU per row when it parses no
        # dates, times or numbers.
        payload = encode_binary_rows(table, rows)
        with self._raw.cursor() as cursor, cursor.copy(f"{start} (FORMAT binary{freeze})") as copy:
            copy.write(COPY_HEADER)
            copy.write(payload)
            copy.write(COPY_TRAILER)
        return rows.num_rows

    def close(self) -> None:
        return None


# --- MariaDB / MySQL --------------------------------------------------------------------------------


def mariadb_allows_local_infile(conn: sa.Connection) -> bool:
    """Whether the server takes ``LOAD DATA LOCAL INFILE`` (its global ``local_infile``); if not,
    :func:`make_loader` falls back to multi-row INSERT batches and warns."""
    return bool(int(conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar() or 0))


class MariaDbLoadDataLoader:
    """``LOAD DATA LOCAL INFILE`` from a private temporary file, in the caller's transaction.

    With LOCAL, the server turns duplicate keys and bad values into warnings and skips the row
    instead of failing; every load is therefore checked: the rows it took must be all the rows
    sent, with no warning, or the load raises (and the caller's transaction rolls back).
    """

    kind = MARIADB
    method = "LOAD DATA LOCAL INFILE (pymysql)"

    def __init__(self, conn: sa.Connection):
        self._conn = conn
        self._raw = conn.connection.driver_connection
        self._dir = tempfile.TemporaryDirectory(prefix="prakerja-seed-")

    def load(self, table: sa.Table, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        path = os.path.join(self._dir.name, f"{table.name}.tsv")
        with open(path, "wb") as handle:
            handle.write(encode_text_rows(rows))
        statement = (
            f"LOAD DATA LOCAL INFILE %s INTO TABLE {_quoted_table(self._conn, table)} CHARACTER SET utf8mb4 "
            r"FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n' "
            f"({_quoted_columns(self._conn, rows)})"
        )
        with self._raw.cursor() as cursor:
            loaded = cursor.execute(statement, (path,))
            warning_count = cursor.warning_count
            if loaded != rows.num_rows or warning_count:
                cursor.execute("SHOW WARNINGS LIMIT 3")
                shown = "; ".join(str(w[2]) for w in cursor.fetchall())
                raise SimulatorError(
                    f"LOAD DATA into {table.name} took {loaded} of {rows.num_rows} rows"
                    f" ({warning_count} warnings: {shown or 'none shown'}); nothing was kept"
                )
        os.unlink(path)
        return rows.num_rows

    def close(self) -> None:
        self._dir.cleanup()


class MariaDbInsertLoader:
    """Multi-row ``INSERT`` batches: the fallback when the server refuses ``LOAD DATA LOCAL``."""

    kind = MARIADB
    method = "multi-row INSERT batches (server has local_infile=OFF)"

    def __init__(self, conn: sa.Connection, *, batch_rows: int):
        self._conn = conn
        self._raw = conn.connection.driver_connection
        self._batch_rows = batch_rows

    def load(self, table: sa.Table, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        # pymysql's executemany rewrites "INSERT ... VALUES (...)" into multi-row statements.
        statement = _insert_statement(self._conn, table, rows, "%s")
        with self._raw.cursor() as cursor:
            for start in range(0, rows.num_rows, self._batch_rows):
                cursor.executemany(
                    statement, python_rows(rows.slice(start, self._batch_rows), fractions=False)
                )
        return rows.num_rows

    def close(self) -> None:
        return None


# --- SQLite -----------------------------------------------------------------------------------------


def python_rows(rows: pa.Table, fractions: bool) -> list[tuple]:
    """Row tuples for a DB-API ``executemany``; times as text in the engine's storage format."""
    columns = []
    for column in rows.columns:
        if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
            column = _time_text(column, fractions)
        columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


class SqliteLoader:
    """``executemany`` in batches inside the one transaction the seed run holds.

    Times go in as SQLAlchemy's own SQLite storage text (``YYYY-MM-DD HH:MM:SS.ffffff``), so the
    API reads them back as it reads its own.
    """

    kind = SQLITE
    method = "batched executemany in one transaction (sqlite3)"

    def __init__(self, conn: sa.Connection, *, batch_rows: int):
        self._conn = conn
        self._raw = conn.connection.driver_connection
        self._batch_rows = batch_rows
        # Bulk-load settings for this connection only; the journal keeps the load atomic.
        self._raw.execute("PRAGMA cache_size = -262144")

    def load(self, table: sa.Table, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        statement = _insert_statement(self._conn, table, rows, "?")
        for start in range(0, rows.num_rows, self._batch_rows):
            self._raw.executemany(statement, python_rows(rows.slice(start, self._batch_rows), fractions=True))
        return rows.num_rows

    def close(self) -> None:
        return None


# --- overlap ----------------------------------------------------------------------------------------


class BackgroundLoader:
    """Runs another loader's loads on one background thread, in order, so the database works on
    chunk k while the main thread builds chunk k+1 (drivers and Arrow release the GIL while they
    wait or encode). :meth:`flush` waits for every queued load and re-raises the first failure;
    nothing else may use the connection until it has returned."""

    def __init__(self, loader: Loader, *, depth: int = 16):
        self.inner = loader
        self.kind = loader.kind
        self.method = loader.method
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seed-loader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None and not self._stopping.is_set():
                    table, rows = item
                    self.inner.load(table, rows)
            except BaseException as err:  # handed to the main thread by flush() / load()
                self._error = err
            finally:
                self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def load(self, table: sa.Table, rows: pa.Table) -> int:
        self._raise_failure()
        if rows.num_rows:
            self._queue.put((table, rows))
        return rows.num_rows

    def flush(self) -> None:
        self._queue.join()
        self._raise_failure()

    def close(self) -> None:
        """Stop after the load in progress (queued ones are dropped), then close the inner loader."""
        self._stopping.set()
        while True:  # drop what is queued so the sentinel gets in
            try:
                self._queue.get_nowait()
                self._queue.task_done()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join()
        self.inner.close()


class TableRouter:
    """Loads each table's rows with the (background) loader that owns the table, so that tables
    go to the server over several connections at once."""

    def __init__(self, loaders: dict[str, BackgroundLoader]):
        self._by_table = loaders
        self._loaders = list({id(loader): loader for loader in loaders.values()}.values())

    def load(self, table: sa.Table, rows: pa.Table) -> int:
        return self._by_table[table.name].load(table, rows)

    def flush(self) -> None:
        for loader in self._loaders:
            loader.flush()

    def close(self) -> None:
        errors = []
        for loader in self._loaders:
            try:
                loader.close()
            except BaseException as err:  # close them all, then report the first failure
                errors.append(err)
        if errors:
            raise errors[0]
