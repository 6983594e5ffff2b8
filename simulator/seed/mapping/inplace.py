"""The mapped tables loaded in one transaction on one connection (SQLite, MariaDB, ``--append``,
PostgreSQL into empty tables): emptied in it, their indexes (PostgreSQL: keys and foreign keys too)
dropped for the load and built again over all rows before the commit, sequences moved on after.

The other way, PostgreSQL ``--truncate``, is the staged load of :mod:`simulator.seed.staging`.
"""

from __future__ import annotations

import sqlalchemy as sa

from simulator.seed.mapping.check import Plan
from simulator.seed.target import POSTGRESQL, SQLITE, Target


def empty_tables(conn: sa.Connection, target: Target, plan: Plan) -> None:
    prep = conn.dialect.identifier_preparer
    tables = [t.table for t in plan.tables]
    if target.kind == POSTGRESQL:
        names = ", ".join(prep.format_table(t) for t in [*tables, *plan.emptied])
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY")
        return
    # MariaDB's TRUNCATE commits on its own; DELETE stays inside the transaction (as on SQLite).
    for table in [*plan.emptied, *reversed(tables)]:
        conn.execute(sa.delete(table))


class Deferral:
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


def advance_sequences(conn: sa.Connection, target: Target, plan: Plan) -> None:
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
