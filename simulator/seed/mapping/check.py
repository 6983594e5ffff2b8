"""A mapping checked against the schema reflected from the database, before any row is written.

Unknown tables and columns, values a column's type cannot hold, NOT NULL columns left empty, unique
columns fed by a source that repeats: each found as one line naming the mapping key. What passes
becomes a :class:`Plan`: the tables in load order (parents first), each column with its target kind.

Over 500 lines: every check of every expression kind reads the same table and source
catalogue, and splitting them would only pass those around.
"""

from __future__ import annotations

import datetime as dt
import string
from dataclasses import dataclass, field

import sqlalchemy as sa

from simulator.seed.mapping.passwords import HASH_LENGTHS
from simulator.seed.mapping.sources import (
    ACCOUNT_SOURCES,
    BOOLEAN,
    DATE,
    INTEGER,
    NEVER,
    TEXT,
    TIMESTAMP,
    SourceColumn,
    base_depth,
    catalogue,
    column_kind,
    state_depths,
)
from simulator.seed.mapping.spec import Expression, Mapping, MappingError, TableSpec

UUID, NUMBER = "uuid", "number"  # target kinds besides the source kinds

_ACCEPTS = {
    TEXT: {TEXT, INTEGER, BOOLEAN, DATE, TIMESTAMP, NUMBER},
    UUID: {TEXT},
    INTEGER: {INTEGER, BOOLEAN},
    BOOLEAN: {BOOLEAN},
    DATE: {DATE, TIMESTAMP},
    TIMESTAMP: {TIMESTAMP, DATE},
    NUMBER: {INTEGER, NUMBER, TEXT},
}
"""What each kind of target column can hold (text is made from anything)."""

RESIDENTS_STREAM, BLOCK_STREAM, GLOBAL_STREAM = "residents", "block", "global"
_KEY_OF = {"residents": "nik", "applicants": "applicant_id", "waves": "number"}
_BY_DEFAULT = {"residents": "nik", "applicants": "applicant_id", "waves": "wave_number"}
ONE_PER_ACCOUNT = ("accounts", "identities", "profiles", "ktp_uploads", "test_results", "recipients")


def stream_of(source: str) -> str:
    if source == "residents":
        return RESIDENTS_STREAM
    if source in ("waves", "lookup"):
        return GLOBAL_STREAM
    return BLOCK_STREAM


def key_of(spec: TableSpec) -> str | None:
    """The source column a row of this table is found by when another table refers to it."""
    if spec.source in ONE_PER_ACCOUNT:
        return "account_id"
    return _KEY_OF.get(spec.source)


@dataclass(frozen=True)
class Value:
    """What an expression yields: its kind, and whether it may be NULL, is unique, how long it gets."""

    kind: str
    nullable: bool = False
    unique: bool = False
    max_length: int | None = None


@dataclass
class PlannedColumn:
    name: str
    expression: Expression
    target: str  # target kind
    length: int | None  # the column's declared text length
    not_null: bool


@dataclass
class PlannedTable:
    spec: TableSpec
    table: sa.Table
    columns: list[PlannedColumn]
    stream: str
    min_depth: int
    referenced: set[str] = field(default_factory=set)  # its columns other tables refer to
    ref_by: dict[str, str] = field(default_factory=dict)  # ref column -> source column the parent is found by
    direct_refs: set[str] = field(default_factory=set)
    """Refs whose value is the row's own ``by`` column: the parent copies that very key and holds a row
    for every row of this table (no lookup needed)."""

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Plan:
    tables: list[PlannedTable]  # parents first
    metadata: sa.MetaData
    emptied: list[sa.Table] = field(default_factory=list)  # emptied by --truncate, not filled

    def needs(self) -> dict[str, set[str]]:
        """The source columns each source must provide for the planned tables (none others are built)."""
        needed: dict[str, set[str]] = {}
        for table in self.tables:
            names = needed.setdefault(table.spec.source, set())
            names |= set(table.spec.where) | set(table.ref_by.values())
            if table.spec.states is not None:
                names.add("state")
            key = key_of(table.spec)
            if key:
                names.add(key)
            for column in table.columns:
                op, arg = column.expression.op, column.expression.arg
                if op == "copy":
                    names.add(arg)
                elif op == "template":
                    names |= {f for _, f, _, _ in string.Formatter().parse(arg) if f is not None}
                elif op == "password":
                    names.add("password")
        return needed

    def table(self, name: str) -> PlannedTable:
        return next(t for t in self.tables if t.name == name)


def target_kind(column_type: sa.types.TypeEngine) -> str:
    if isinstance(column_type, sa.Uuid):
        return UUID
    if isinstance(column_type, sa.Numeric | sa.Float):
        return NUMBER
    return column_kind(column_type)


def fills_itself(column: sa.Column) -> bool:
    """The database gives the column a value when a row leaves it out."""
    if column.server_default is not None or column.identity is not None or column.computed is not None:
        return True
    table = column.table
    return (
        column.primary_key
        and len(table.primary_key.columns) == 1
        and isinstance(column.type, sa.Integer)
        and column.autoincrement in (True, "auto")
    )


def unique_columns(table: sa.Table, inspector: sa.Inspector) -> set[str]:
    """Columns that alone must be unique: a one-column key, unique constraint or unique index."""
    unique = set()
    if len(table.primary_key.columns) == 1:
        unique.add(next(iter(table.primary_key.columns)).name)
    for constraint in inspector.get_unique_constraints(table.name):
        if len(constraint["column_names"]) == 1:
            unique.add(constraint["column_names"][0])
    for index in inspector.get_indexes(table.name):
        if index.get("unique") and len(index["column_names"]) == 1 and index["column_names"][0]:
            unique.add(index["column_names"][0])
    return unique


class _Errors:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def raise_any(self) -> None:
        if self.lines:
            more = f" (and {len(self.lines) - 1} more problem(s))" if len(self.lines) > 1 else ""
            raise MappingError(self.lines[0] + more)


def check_mapping(mapping: Mapping, conn: sa.Connection) -> Plan:
    """Reflect the database and check ``mapping`` against it; any problem raises :class:`MappingError`."""
    errors = _Errors()
    plan = _checked(mapping, conn, errors)
    errors.raise_any()
    return plan


def mapping_problems(mapping: Mapping, conn: sa.Connection) -> list[str]:
    """Every problem of ``mapping`` against the database, one line each (empty: it validates)."""
    errors = _Errors()
    try:
        _checked(mapping, conn, errors)
    except MappingError as err:
        return errors.lines or [str(err)]
    return errors.lines


def _checked(mapping: Mapping, conn: sa.Connection, errors: _Errors) -> Plan:
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names())
    for spec in mapping.tables.values():
        if spec.name not in existing:
            errors.add(f"{spec.key}: no table {spec.name!r} in the database")
    for name in mapping.empty:
        if name not in existing:
            errors.add(f"empty: no table {name!r} in the database")
    errors.raise_any()
    metadata = sa.MetaData()
    metadata.reflect(bind=conn, only=list(mapping.tables))
    planned = {
        name: _plan_table(spec, metadata.tables[name], inspector) for name, spec in mapping.tables.items()
    }
    for table in planned.values():
        _check_table(table, planned, inspector, errors)
    emptied = sa.MetaData()
    emptied.reflect(bind=conn, only=list(mapping.empty))
    return Plan(_load_order(planned, errors), metadata, [emptied.tables[n] for n in mapping.empty])


def _plan_table(spec: TableSpec, table: sa.Table, inspector: sa.Inspector) -> PlannedTable:
    depths = state_depths(spec.states)
    floor = base_depth(spec.source)
    min_depth = max(floor, int(depths.min())) if depths is not None else floor
    columns = [
        PlannedColumn(
            name,
            expression,
            target_kind(table.c[name].type) if name in table.c else TEXT,
            getattr(table.c[name].type, "length", None) if name in table.c else None,
            not table.c[name].nullable if name in table.c else False,
        )
        for name, expression in spec.columns.items()
    ]
    return PlannedTable(spec, table, columns, stream_of(spec.source), min_depth)


def _check_table(
    table: PlannedTable, planned: dict[str, PlannedTable], inspector: sa.Inspector, errors: _Errors
) -> None:
    spec = table.spec
    unique = unique_columns(table.table, inspector)
    if spec.source == "lookup":
        _check_lookup(table, unique, errors)
        return
    source = catalogue(spec.source)
    for column, _values in spec.where.items():
        if column not in source:
            errors.add(f"{spec.key}.where.{column}: {spec.source} has no column {column!r}")
    for column in table.columns:
        key = column.expression.key
        if column.name not in table.table.c:
            errors.add(f"{key}: table {spec.name!r} has no column {column.name!r}")
            continue
        if column.expression.op == "default":
            if column.not_null and not fills_itself(table.table.c[column.name]):
                errors.add(f"{key}: the database has no default for this NOT NULL column")
            continue
        value = describe(column.expression, table, planned, source, errors)
        if value is None:
            continue
        if value.kind not in _ACCEPTS[column.target]:
            errors.add(
                f"{key}: a {column.target} column cannot hold {value.kind} values "
                f"({table.table.c[column.name].type})"
            )
        if column.not_null and value.nullable:
            errors.add(
                f"{key}: the column is NOT NULL but this value may be NULL ({_why_null(column.expression)})"
            )
        if column.name in unique and not value.unique:
            errors.add(f"{key}: the column is unique but this value repeats across rows")
        if (
            column.length
            and value.max_length
            and value.max_length > column.length
            and column.target in (TEXT, UUID)
        ):
            errors.add(
                f"{key}: values up to {value.max_length} characters do not fit "
                f"{table.table.c[column.name].type}"
            )
    mapped = set(spec.columns)
    for column in table.table.columns:
        if column.name not in mapped and not column.nullable and not fills_itself(column):
            errors.add(f"{spec.key}.columns.{column.name}: NOT NULL column left empty (map it)")


def _why_null(expression: Expression) -> str:
    if expression.option("null"):
        return "null ="
    if expression.op == "ref":
        return "the referred table does not hold a row for every row of this one"
    return "not every row of the source has it; narrow the table's states"


def _check_lookup(table: PlannedTable, unique: set[str], errors: _Errors) -> None:
    spec = table.spec
    for i, row in enumerate(spec.rows):
        for name, value in row.items():
            key = f"{spec.key}.rows[{i}].{name}"
            if name not in table.table.c:
                errors.add(f"{key}: table {spec.name!r} has no column {name!r}")
                continue
            kind = _const_kind(value)
            target = target_kind(table.table.c[name].type)
            if kind is not None and kind not in _ACCEPTS[target]:
                errors.add(f"{key}: a {target} column cannot hold {kind} values")
        for column in table.table.columns:
            if column.name not in row and not column.nullable and not fills_itself(column):
                errors.add(f"{spec.key}.rows[{i}].{column.name}: NOT NULL column left empty")
    for name in unique:
        values = [row.get(name) for row in spec.rows if row.get(name) is not None]
        if len(values) != len(set(values)):
            errors.add(f"{spec.key}.rows: column {name} is unique but two rows give it the same value")


def _const_kind(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, dt.datetime):
        return TIMESTAMP
    if isinstance(value, dt.date):
        return DATE
    if isinstance(value, str):
        return TEXT
    return "value of another kind"


def _source_value(name: str, column: SourceColumn, depth: int) -> Value:
    return Value(column.kind, column.present_from > depth, column.unique_from <= depth, column.max_length)


def describe(
    expression: Expression,
    table: PlannedTable,
    planned: dict[str, PlannedTable],
    source: dict[str, SourceColumn],
    errors: _Errors,
) -> Value | None:
    """What ``expression`` yields for the rows of ``table``; None (and an error noted) if it cannot."""
    key, op, arg = expression.key, expression.op, expression.arg
    null = bool(expression.option("null"))
    value: Value
    if op == "copy":
        if arg not in source:
            errors.add(f"{key}.copy: {table.spec.source} has no column {arg!r}")
            return None
        value = _source_value(arg, source[arg], table.min_depth)
    elif op == "template":
        fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
        missing = [f for f in fields if f not in source]
        if missing or not fields:
            what = f"has no column {missing[0]!r}" if missing else "names no column (use const)"
            errors.add(f"{key}.template: {table.spec.source} {what}")
            return None
        parts = [_source_value(f, source[f], table.min_depth) for f in fields]
        literal = sum(len(text) for text, _, _, _ in string.Formatter().parse(arg))
        lengths = [p.max_length for p in parts]
        value = Value(
            TEXT,
            any(p.nullable for p in parts),
            any(p.unique for p in parts),
            None if None in lengths else literal + sum(lengths),
        )
    elif op == "const":
        kind = _const_kind(arg)
        if kind == "value of another kind":
            errors.add(f"{key}: {arg!r} is not a value a column can hold")
            return None
        value = Value(kind or TEXT, arg is None, False, len(arg) if isinstance(arg, str) else None)
    elif op == "sequence":
        value = Value(INTEGER, False, True)
    elif op == "uuid":
        value = Value(TEXT, False, True, 36)
    elif op == "choice":
        kinds = {_const_kind(v) for v in arg}
        if len(kinds) != 1 or None in kinds:
            errors.add(f"{key}.choice: the choices must all be values of one kind")
            return None
        longest = max((len(v) for v in arg if isinstance(v, str)), default=None)
        value = Value(kinds.pop(), False, False, longest)
    elif op == "password":
        if table.spec.source not in ACCOUNT_SOURCES and table.spec.source != "applicants":
            errors.add(f"{key}.password: only rows of applicants or accounts have a password")
            return None
        value = Value(TEXT, False, False, HASH_LENGTHS.get(arg))
    elif op == "ref":
        value = _describe_ref(expression, table, planned, source, errors)
        if value is None:
            return None
    else:  # pragma: no cover - spec.expression admits no other operation
        raise AssertionError(op)
    if expression.option("case") or expression.option("phone"):
        if value.kind != TEXT:
            errors.add(f"{key}: case and phone apply to text, not {value.kind}")
        if expression.option("case"):
            value = Value(TEXT, value.nullable, False, value.max_length)
        if expression.option("phone") == "+62" and value.max_length:
            value = Value(TEXT, value.nullable, value.unique, value.max_length + 2)
    if expression.option("format"):
        if value.kind not in (DATE, TIMESTAMP):
            errors.add(f"{key}.format: formats dates and times, not {value.kind}")
        value = Value(TEXT, value.nullable, value.unique, None)
    cut = expression.option("max_length")
    if cut:
        value = Value(value.kind, value.nullable, False, min(cut, value.max_length or cut))
    return Value(value.kind, value.nullable or null, value.unique, value.max_length)


def _describe_ref(
    expression: Expression,
    table: PlannedTable,
    planned: dict[str, PlannedTable],
    source: dict[str, SourceColumn],
    errors: _Errors,
) -> Value | None:
    key = expression.key
    parent_name, _, parent_column = expression.arg.partition(".")
    parent = planned.get(parent_name)
    if parent is None:
        errors.add(f"{key}.ref: table {parent_name!r} is not in the mapping")
        return None
    if parent is table:
        errors.add(f"{key}.ref: a table cannot refer to itself here (map the column to NULL)")
        return None
    pspec = parent.spec
    if pspec.source == "lookup":
        match = expression.option("match", parent_column)
        by = expression.option("by")
        if by is None or by not in source:
            errors.add(f"{key}.by: a ref to a lookup table needs by = a column of {table.spec.source}")
            return None
        values = [row.get(parent_column) for row in pspec.rows]
        if any(match not in row for row in pspec.rows) or any(v is None for v in values):
            errors.add(f"{key}.ref: every row of {pspec.key} needs {match} and {parent_column}")
            return None
        kind = _const_kind(values[0])
        table.ref_by[expression.key] = by
        # A value the lookup does not hold gives NULL: refused row by row in a NOT NULL column.
        return Value(kind or TEXT, source[by].present_from > table.min_depth, False)
    if stream_of(pspec.source) not in (GLOBAL_STREAM, table.stream):
        errors.add(f"{key}.ref: rows of {table.spec.source} cannot find rows of {pspec.source} ({pspec.key})")
        return None
    parent_key = key_of(pspec)
    if parent_key is None:
        errors.add(
            f"{key}.ref: {pspec.key} comes from {pspec.source}, several rows per account; "
            "refer to a table with one"
        )
        return None
    by = expression.option("by", "account_id" if parent_key == "account_id" else _BY_DEFAULT[pspec.source])
    if by not in source:
        errors.add(f"{key}.by: {table.spec.source} has no column {by!r} to find the row of {pspec.key} by")
        return None
    target = next((c for c in parent.columns if c.name == parent_column), None)
    if target is None or target.expression.op in ("default", "password"):
        errors.add(
            f"{key}.ref: {pspec.key}.columns.{parent_column} must be mapped to a value seed-db makes "
            "(a sequence, a uuid, a copy...), not left to the database"
        )
        return None
    parent.referenced.add(parent_column)
    table.ref_by[expression.key] = by
    shown = describe(target.expression, parent, planned, catalogue(pspec.source), _Errors())
    if shown is None:
        return None
    # Every row finds its parent when the parent holds every account this table may hold.
    covered = (
        stream_of(pspec.source) == GLOBAL_STREAM
        or pspec.source == "applicants"
        or (not pspec.where and _states_cover(pspec, table.spec) and parent.min_depth <= table.min_depth)
    )
    by_value = source[by]
    if (
        covered
        and stream_of(pspec.source) == table.stream
        and target.expression.op == "copy"
        and target.expression.arg == by == parent_key
        and not target.expression.options
        and by_value.present_from <= table.min_depth
    ):
        table.direct_refs.add(expression.key)
    nullable = shown.nullable or not covered or by_value.present_from > table.min_depth
    unique = shown.unique and by_value.unique_from <= table.min_depth
    return Value(shown.kind, nullable, unique, shown.max_length)


def _states_cover(parent: TableSpec, child: TableSpec) -> bool:
    if parent.states is None:
        return True
    return child.states is not None and set(child.states) <= set(parent.states)


def _load_order(planned: dict[str, PlannedTable], errors: _Errors) -> list[PlannedTable]:
    """Parents first: by the database's foreign keys and by the mapping's refs."""
    needs: dict[str, set[str]] = {}
    for name, table in planned.items():
        parents = {fk.column.table.name for fk in table.table.foreign_keys} & set(planned)
        parents |= {c.expression.arg.partition(".")[0] for c in table.columns if c.expression.op == "ref"}
        parents.discard(name)
        needs[name] = parents
    order: list[str] = []
    while needs:
        ready = [name for name, parents in needs.items() if not parents - set(order)]
        if not ready:
            errors.add(
                f"tables: {', '.join(sorted(needs))} refer to each other in a cycle; break it with NULL"
            )
            errors.raise_any()
        order.extend(ready)
        for name in ready:
            del needs[name]
    return [planned[name] for name in order]


__all__ = ["Plan", "PlannedColumn", "PlannedTable", "check_mapping", "describe", "NEVER"]
