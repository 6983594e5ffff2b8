"""PostgreSQL ``--truncate`` seeds: load a private staging schema over several connections, then swap it in.

One transaction holds one server process, so a seed done in one transaction builds its keys,
indexes and foreign keys one after the other on one CPU. Here the mapped tables (and those the
mapping empties) are copied, empty and without keys or indexes, into a staging schema of their own
(``prakerja_seed_stage_<hex>``: ``CREATE TABLE ... (LIKE target INCLUDING DEFAULTS, CONSTRAINTS,
IDENTITY, GENERATED, STORAGE, COMMENTS)``, serial columns given sequences of their own), loaded
with ``COPY`` on several connections, and their keys and indexes (the target tables' own, by
name) are built on several connections at once; foreign keys are added ``NOT VALID`` and then
validated, also in parallel, so each is checked over every row. Only then, in one short
transaction, the target tables are dropped and the staged ones moved into their place
(``ALTER TABLE ... SET SCHEMA``), with the waves' counts and the rules no constraint holds
checked in that same transaction.

All or nothing: until that last commit the target tables are untouched (the API may keep
serving them); a failed or interrupted run drops its staging schema. A run killed outright
(SIGKILL, power loss) leaves the schema behind; the next seed of that database drops it and says
so. An advisory lock keeps two seeds of one database from running at once.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from simulator.errors import SimulatorError

STAGE_PREFIX = "prakerja_seed_stage_"
_LOCK_KEY = 0x7072616B65726A61  # "prakerja": one seed-db run per database at a time
DEFAULT_CONNECTIONS = 2
"""Connections building keys and indexes at once (one per CPU of a small server)."""
MAINTENANCE_WORK_MEM = "256MB"


@dataclass(frozen=True)
class _Deferred:
    """A key, unique constraint, index or foreign key of a staged table, built after the load."""

    table: str  # schema-qualified, quoted
    name: str
    kind: str  # "p", "u" (constraint on a unique index), "i" (plain index), "f" (foreign key)
    definition: str  # CREATE [UNIQUE] INDEX ... for p/u/i; the FOREIGN KEY clause for f


class PostgresStage:
    """A staging schema for one seed: made on enter, swapped in by :meth:`swap`, dropped otherwise.

    ``tables``: the target tables to replace (they must exist in the user's schema); each is made
    again in the staging schema as its target is, without keys, unique constraints, indexes and
    foreign keys, which :meth:`build_constraints` adds after the load, under the target's names.
    """

    def __init__(self, engine: sa.Engine, tables: list[sa.Table], *, connections: int = DEFAULT_CONNECTIONS):
        self.tables = tables
        self.connections = max(1, connections)
        self.name = STAGE_PREFIX + secrets.token_hex(6)
        self.notes: list[str] = []
        self._engine = engine
        self.target_schema: str | None = None
        self.engine: sa.Engine | None = None
        self._admin: sa.Connection | None = None
        self._deferred: list[_Deferred] = []
        self._swapped = False

    # --- set-up and tear-down --------------------------------------------------------------------

    def __enter__(self) -> PostgresStage:
        admin = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._admin = admin
        try:
            if not admin.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).scalar():
                raise SimulatorError(
                    "another seed-db run is seeding this database right now; wait for it to finish"
                )
            self.target_schema = admin.exec_driver_sql("SELECT current_schema()").scalar()
            if self.target_schema is None:
                raise SimulatorError("the database user has no schema to seed (search_path is empty)")
            self._drop_leftovers(admin)
            # The staging schema first on the search path, then the target's (for foreign keys to
            # tables the seed does not replace); nothing pooled.
            self.engine = sa.create_engine(
                self._engine.url,
                poolclass=sa.pool.NullPool,
                isolation_level="READ COMMITTED",
                connect_args={"options": f"-c search_path={self.name},{self.target_schema}"},
            )
            admin.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
            names = [t.name for t in self.tables]
            self._deferred = _target_constraints(admin, self.target_schema, self.name, names)
            with self.engine.begin() as conn:
                for name in names:
                    _copy_table(conn, self.target_schema, self.name, name)
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._cleanup()

    def _drop_leftovers(self, admin: sa.Connection) -> None:
        # Holding the lock: any staging schema here belongs to a run that is gone.
        left = admin.exec_driver_sql(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s) ORDER BY 1", (STAGE_PREFIX,)
        ).scalars().all()  # fmt: skip
        for name in left:
            admin.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
            self.notes.append(f"dropped staging schema {name}, left by an interrupted seed-db run")

    def _cleanup(self) -> None:
        admin, self._admin = self._admin, None
        if admin is None:
            return
        try:
            if not self._swapped:
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    admin.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                admin.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        finally:
            admin.close()
            if self.engine is not None:
                self.engine.dispose()

    # --- loading ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def loading(self, tables: list[sa.Table]) -> Iterator[sa.Connection]:
        """A connection in a transaction that has just emptied ``tables`` (so COPY may freeze rows);
        committed when the block ends without an error, rolled back otherwise."""
        with self.engine.connect() as conn, conn.begin():
            names = ", ".join(conn.dialect.identifier_preparer.format_table(t) for t in tables)
            conn.exec_driver_sql(f"TRUNCATE {names}")
            yield conn

    # --- keys, indexes, foreign keys ------------------------------------------------------------

    def build_constraints(self) -> None:
        """Every key, unique constraint, index and foreign key the staged tables were made without.

        Unique indexes and indexes are built on several connections at once (each a table scan and
        a sort), then attached as the tables' keys and unique constraints; foreign keys are added
        ``NOT VALID`` and validated on several connections (each checks every row). A duplicate
        or an orphan fails the run here, before anything reaches the target tables.
        """
        with self.engine.connect() as conn:
            size = {
                f"{_quoted(self.name)}.{_quoted(relname)}": pages
                for relname, pages in conn.exec_driver_sql(
                    "SELECT relname, pg_relation_size(oid) FROM pg_class "
                    "WHERE relnamespace = %s::regnamespace AND relkind = 'r'",
                    (self.name,),
                ).all()
            }
        # The biggest first, so that the last to finish are small ones.
        indexes = sorted((d for d in self._deferred if d.kind != "f"), key=lambda d: -size.get(d.table, 0))
        # One process per connection: the connections already keep the server's CPUs busy, and a
        # build's parallel workers on top cost more CPU than they save time (measured on 2 CPUs).
        self._run_parallel(
            [d.definition for d in indexes], settings=("max_parallel_maintenance_workers = 0",)
        )
        foreign = sorted((d for d in self._deferred if d.kind == "f"), key=lambda d: -size.get(d.table, 0))
        with self.engine.begin() as conn:
            for d in indexes:
                if d.kind in ("p", "u"):
                    what = "PRIMARY KEY" if d.kind == "p" else "UNIQUE"
                    conn.exec_driver_sql(
                        f'ALTER TABLE {d.table} ADD CONSTRAINT "{d.name}" {what} USING INDEX "{d.name}"'
                    )
            for d in foreign:
                conn.exec_driver_sql(
                    f'ALTER TABLE {d.table} ADD CONSTRAINT "{d.name}" {d.definition} NOT VALID'
                )
        # Each check is an anti-join of the child's keys against accounts' or waves' key: with both
        # indexes built, a merge join reads them in order; the planner's default, a hash of the
        # whole parent per foreign key, costs about twice the CPU.
        self._run_parallel(
            [f'ALTER TABLE {d.table} VALIDATE CONSTRAINT "{d.name}"' for d in foreign],
            settings=("enable_hashjoin = off",),
        )

    def _run_parallel(self, statements: list[str], settings: tuple[str, ...] = ()) -> None:
        """Run the statements on up to ``connections`` connections at once (each its own commit),
        each connection with ``settings`` (``name = value``) for its session."""
        if not statements:
            return
        pending = list(reversed(statements))  # popped from the end: the first statement first
        lock = threading.Lock()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    conn.exec_driver_sql(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
                    for setting in settings:
                        conn.exec_driver_sql(f"SET {setting}")
                    while True:
                        with lock:
                            if errors or not pending:
                                return
                            statement = pending.pop()
                        conn.exec_driver_sql(statement)
            except BaseException as err:  # handed to the caller below
                with lock:
                    errors.append(err)

        threads = [
            threading.Thread(target=work, name=f"seed-build-{i}", daemon=True)
            for i in range(min(self.connections, len(statements)))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    # --- the swap -------------------------------------------------------------------------------------

    def swap(self, conn: sa.Connection) -> None:
        """In ``conn``'s transaction (on :attr:`engine`): drop the target tables and move the staged ones
        into their place (with the sequences their columns own). Takes effect when that
        transaction commits."""
        prep = conn.dialect.identifier_preparer
        target = prep.quote_schema(self.target_schema)
        stage = prep.quote_schema(self.name)
        conn.exec_driver_sql(f"DROP TABLE {', '.join(f'{target}.{prep.quote(t.name)}' for t in self.tables)}")
        for table in self.tables:
            conn.exec_driver_sql(f"ALTER TABLE {stage}.{prep.quote(table.name)} SET SCHEMA {target}")
        conn.exec_driver_sql(f"DROP SCHEMA {stage}")
        self._swapped = True


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _copy_table(conn: sa.Connection, target: str, stage: str, name: str) -> None:
    """``stage.name`` made empty as ``target.name`` is (columns, defaults, NOT NULL and CHECK
    constraints, identity, generated columns), with no key, unique constraint, index or foreign key;
    a serial column gets a sequence of its own (moved with the table at the swap)."""
    source, copy = f"{_quoted(target)}.{_quoted(name)}", f"{_quoted(stage)}.{_quoted(name)}"
    conn.exec_driver_sql(
        f"CREATE TABLE {copy} (LIKE {source} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY "
        "INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMMENTS)"
    )
    owned = conn.exec_driver_sql(
        "SELECT a.attname, s.relname, format_type(q.seqtypid, NULL) FROM pg_depend d "
        "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
        "JOIN pg_sequence q ON q.seqrelid = s.oid "
        "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE d.classid = 'pg_class'::regclass AND d.refobjid = %s::regclass AND d.deptype = 'a'",
        (source,),
    ).all()
    for column, sequence, kind in owned:
        qualified = f"{_quoted(stage)}.{_quoted(sequence)}"
        conn.exec_driver_sql(f"CREATE SEQUENCE {qualified} AS {kind} OWNED BY {copy}.{_quoted(column)}")
        literal = qualified.replace("'", "''")
        conn.exec_driver_sql(
            f"ALTER TABLE {copy} ALTER COLUMN {_quoted(column)} SET DEFAULT nextval('{literal}'::regclass)"
        )


def _target_constraints(conn: sa.Connection, target: str, stage: str, names: list[str]) -> list[_Deferred]:
    """The keys, unique constraints, indexes and foreign keys of the target tables, as statements
    on their staged copies (same names; foreign keys to staged tables refer to the staged ones)."""
    in_tables = (
        "SELECT oid FROM pg_class WHERE relnamespace = %(schema)s::regnamespace AND relname = ANY(%(names)s)"
    )
    rows = conn.exec_driver_sql(
        "SELECT c.conrelid, c.conname, c.contype, "
        "CASE WHEN c.contype = 'f' THEN pg_get_constraintdef(c.oid) ELSE pg_get_indexdef(c.conindid) END "
        f"FROM pg_constraint c WHERE c.contype IN ('p', 'u', 'f') AND c.conrelid IN ({in_tables}) "
        "UNION ALL "
        "SELECT i.indrelid, i.indexrelid::regclass::text, 'i', pg_get_indexdef(i.indexrelid) "
        f"FROM pg_index i WHERE i.indrelid IN ({in_tables}) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        {"schema": target, "names": names},
    ).all()
    relnames = {
        oid: (relname, printed)
        for oid, relname, printed in conn.exec_driver_sql(
            "SELECT c.oid, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE c.oid IN ({in_tables})",
            {"schema": target, "names": names},
        ).all()
    }
    deferred = []
    for oid, name, kind, definition in rows:
        relname, printed = relnames[oid]
        staged = f"{_quoted(stage)}.{_quoted(relname)}"
        if kind != "f":  # CREATE [UNIQUE] INDEX name ON [ONLY] target.table USING ...: on the staged copy
            for on in (f" ON {printed} ", f" ON ONLY {printed} "):
                head, found, tail = definition.partition(on)
                if found:
                    break
            else:
                raise SimulatorError(
                    f"cannot stage index {name} of {relname}: unexpected definition {definition!r}"
                )
            definition = f"{head} ON {staged} {tail}"
        deferred.append(_Deferred(staged, name.rpartition(".")[2].strip('"'), kind, definition))
    return deferred
