"""A planned table's rows for one block of its source: every column computed as a whole Arrow array.

Draws (choices, NULLs, UUIDs) come from generators keyed by the seed, the table, the column and the
table's row count before the block, so the same seed gives the same rows whatever the chunking.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.seed.hashing import mix64
from simulator.seed.mapping.check import (
    BOOLEAN,
    DATE,
    INTEGER,
    NUMBER,
    TEXT,
    TIMESTAMP,
    UUID,
    PlannedColumn,
    PlannedTable,
    key_of,
    target_kind,
)
from simulator.seed.mapping.spec import Expression, MappingError

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DASHES = (8, 13, 18, 23)
_ORDERED_EPOCH_MS = 1_586_606_400_000  # 2020-04-11 12:00 UTC, wave 1's opening: ordered UUIDs count from it


def tag(text: str) -> int:
    """A stable 32-bit number for a name (Python's hash() changes between runs)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


@dataclass
class Keyed:
    """The values of a table's referred-to columns, by the source key of each of its rows."""

    keys: pa.Array
    values: dict[str, pa.Array] = field(default_factory=dict)


@dataclass
class BuiltTable:
    """One block's rows of a planned table; password columns hold plain text until hashed."""

    rows: pa.Table
    passwords: dict[str, pa.Array] = field(default_factory=dict)  # column -> plain passwords


def select_rows(table: PlannedTable, frame: pa.Table) -> pa.Table:
    """The rows of ``frame`` the table takes: its states, then its ``where``."""
    spec = table.spec
    keep = None
    if spec.states is not None and "state" in frame.column_names:
        keep = pc.is_in(frame.column("state"), value_set=pa.array(list(spec.states), pa.string()))
    for column, values in spec.where.items():
        data = frame.column(column)
        try:
            wanted = pa.array(values).cast(data.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise MappingError(
                f"{spec.key}.where.{column}: {values!r} cannot be compared with {data.type}"
            ) from None
        match = pc.is_in(data, value_set=wanted)
        keep = match if keep is None else pc.and_(keep, match)
    return frame if keep is None else frame.filter(keep)


def build_table(
    table: PlannedTable, frame: pa.Table, start: int, seed: int, keyed: dict[str, Keyed]
) -> BuiltTable:
    """The table's rows for ``frame`` (already selected); ``start``: its rows made before this block."""
    n = frame.num_rows
    columns: dict[str, pa.Array] = {}
    passwords: dict[str, pa.Array] = {}
    for column in table.columns:
        expression = column.expression
        if expression.op == "default":
            continue
        if expression.op == "password":
            plain = _combined(frame.column("password")).cast(pa.string())
            passwords[column.name] = plain
            columns[column.name] = plain
            continue
        # Draws only where the expression makes some (choices, NULLs); the generator is keyed the same.
        draws = expression.op == "choice" or bool(expression.option("null"))
        rng = np.random.default_rng([seed, 23, tag(table.name), tag(column.name), start]) if draws else None
        if expression.op == "ref":
            value = _referred(expression, table, frame, keyed)
        else:
            value = _evaluate(expression, frame, n, start, seed ^ tag(table.name), rng)
        value = _modified(expression, value, n, rng)
        columns[column.name] = _as_target(column, value)
    rows = pa.table(columns) if columns else pa.table({"_": pa.nulls(n)}).drop_columns(["_"])
    check_values(table, rows)
    return BuiltTable(rows, passwords)


def keyed_values(table: PlannedTable, frame: pa.Table, rows: pa.Table) -> Keyed:
    """What other tables need of this one's block: its referred-to columns by source key."""
    key = key_of(table.spec)
    keys = _combined(frame.column(key)) if key and key in frame.column_names else pa.array([], pa.string())
    return Keyed(
        keys, {name: _combined(rows.column(name)) for name in table.referenced if name in rows.column_names}
    )


def lookup_rows(table: PlannedTable) -> pa.Table:
    """A lookup table's fixed rows, each column typed as its target column."""
    columns = {}
    for sa_column in table.table.columns:
        if not any(sa_column.name in row for row in table.spec.rows):
            continue
        column = PlannedColumn(
            sa_column.name, Expression(f"{table.spec.key}.rows", "const", None),
            target_kind(sa_column.type), None, False,
        )  # fmt: skip
        values = pa.array([row.get(sa_column.name) for row in table.spec.rows])
        columns[sa_column.name] = _as_target(column, values)
    return pa.table(columns)


def check_values(table: PlannedTable, rows: pa.Table) -> None:
    """What only the rows can tell: a NOT NULL column given a NULL, text longer than its column."""
    for column in table.columns:
        if column.name not in rows.column_names or column.expression.op == "password":
            continue
        data = rows.column(column.name)
        if column.not_null and data.null_count:
            raise MappingError(
                f"{column.expression.key}: {data.null_count} row(s) would get NULL in a NOT NULL column"
            )
        if column.length and column.target == TEXT and len(data):
            longest = pc.max(pc.utf8_length(data)).as_py()
            if longest is not None and longest > column.length:
                raise MappingError(
                    f"{column.expression.key}: a value of {longest} characters does not fit "
                    f"{column.length} (add max_length = {column.length} to cut it)"
                )


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _evaluate(
    expression: Expression, frame: pa.Table, n: int, start: int, salt: int, rng: np.random.Generator | None
) -> pa.Array:
    op, arg = expression.op, expression.arg
    names = (
        [arg]
        if op == "copy"
        else [f for _, f, _, _ in string.Formatter().parse(arg) if f]
        if op == "template"
        else []
    )
    missing = [name for name in names if name not in frame.column_names]
    if missing:  # a population read with --from that lacks a column the generator makes
        raise MappingError(f"{expression.key}: the population has no column {missing[0]!r}")
    if op == "copy":
        return _combined(frame.column(arg))
    if op == "template":
        parts: list[pa.Array | str] = []
        for literal, name, _, _ in string.Formatter().parse(arg):
            if literal:
                parts.append(literal)
            if name is not None:
                parts.append(_as_text(_combined(frame.column(name))))
        if len(parts) == 1:
            return parts[0]
        return pc.binary_join_element_wise(*parts, "")
    if op == "const":
        return pa.nulls(n) if arg is None else pa.repeat(pa.scalar(arg), n)
    if op == "sequence":
        step = expression.option("step", 1)
        return pa.array(arg + step * (start + np.arange(n, dtype=np.int64)), pa.int64())
    if op == "uuid":
        return uuids(n, start, salt, ordered=arg == "ordered")
    if op == "choice":
        weights = np.asarray(expression.option("weights", [1] * len(arg)), dtype=np.float64)
        picks = rng.choice(len(arg), size=n, p=weights / weights.sum())
        return pa.array(arg).take(pa.array(picks))
    raise AssertionError(op)  # pragma: no cover - check admits no other operation


def _referred(
    expression: Expression, table: PlannedTable, frame: pa.Table, keyed: dict[str, Keyed]
) -> pa.Array:
    if expression.key in table.direct_refs:  # the parent's key is this row's own (see check)
        return _combined(frame.column(table.ref_by[expression.key]))
    parent, _, column = expression.arg.partition(".")
    found = keyed.get(f"{parent}:{expression.option('match', column)}") or keyed[parent]
    keys = _combined(frame.column(table.ref_by[expression.key]))
    if found.keys.type != keys.type:
        keys = keys.cast(found.keys.type)
    return found.values[column].take(pc.index_in(keys, value_set=found.keys))


def lookup_keyed(match: str, rows: pa.Table) -> Keyed:
    """A lookup table's rows found by the values of its column ``match``."""
    return Keyed(
        rows.column(match).combine_chunks(), {c: rows.column(c).combine_chunks() for c in rows.column_names}
    )


def _modified(expression: Expression, value: pa.Array, n: int, rng: np.random.Generator | None) -> pa.Array:
    case = expression.option("case")
    if case:
        value = {"upper": pc.utf8_upper, "lower": pc.utf8_lower, "title": pc.utf8_title}[case](
            value.cast(pa.string())
        )
    phone = expression.option("phone")
    if phone:
        national = pc.replace_substring_regex(value.cast(pa.string()), r"^(\+?62|0)", "")
        value = pc.binary_join_element_wise({"08": "0", "+62": "+62", "62": "62"}[phone], national, "")
    fmt = expression.option("format")
    if fmt:
        if pa.types.is_date(value.type):
            value = value.cast(pa.timestamp("s"))
        value = pc.strftime(value, format=fmt)
    cut = expression.option("max_length")
    if cut:
        value = pc.utf8_slice_codeunits(value.cast(pa.string()), 0, cut)
    null = expression.option("null")
    if null:
        blank = pa.array(rng.random(n) < null)
        value = pc.if_else(blank, pa.nulls(n, value.type), value)
    return value


def _as_text(value: pa.Array) -> pa.Array:
    if pa.types.is_timestamp(value.type) and value.type.unit != "s":
        value = value.cast(pa.timestamp("s"), safe=False)
    return value.cast(pa.string())


def _as_target(column: PlannedColumn, value: pa.Array) -> pa.Array:
    """The value as the Arrow type the loaders write into a column of this kind."""
    target = column.target
    try:
        if target in (TEXT, UUID, NUMBER) and pa.types.is_null(value.type):
            return value.cast(pa.string())
        if target in (TEXT, UUID):
            return value if pa.types.is_string(value.type) else _as_text(value)
        if target == NUMBER:
            return (
                value
                if pa.types.is_integer(value.type) or pa.types.is_floating(value.type)
                else _as_text(value)
            )
        if target == INTEGER:  # any integer width: the loaders write the column's own
            return value if pa.types.is_integer(value.type) else value.cast(pa.int64())
        if target == BOOLEAN:
            return value.cast(pa.bool_())
        if target == DATE:
            return value.cast(pa.date32())
        if target == TIMESTAMP:
            return value.cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise MappingError(f"{column.expression.key}: cannot make {target} values of it ({err})") from None
    raise AssertionError(target)  # pragma: no cover


def uuids(n: int, start: int, salt: int, *, ordered: bool = False) -> pa.Array:
    """``n`` UUIDs (text, 36 characters) for rows ``start..start+n-1``: version 4 from the salt, or
    version 7 ordered by row (a 48-bit millisecond counter first), so B-tree keys grow at the end."""
    index = (start + np.arange(n, dtype=np.int64)).astype(np.uint64)
    high = mix64(index * np.uint64(2), salt)
    low = mix64(index * np.uint64(2) + np.uint64(1), salt)
    raw = np.empty((n, 16), dtype=np.uint8)
    raw[:, :8] = high.astype(">u8").view(np.uint8).reshape(n, 8)
    raw[:, 8:] = low.astype(">u8").view(np.uint8).reshape(n, 8)
    if ordered:
        millis = (np.uint64(_ORDERED_EPOCH_MS) + index).astype(">u8").view(np.uint8).reshape(n, 8)
        raw[:, :6] = millis[:, 2:]
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70
    else:
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 15]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    keep = np.ones(36, dtype=bool)
    keep[list(_UUID_DASHES)] = False
    text[:, keep] = digits
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))
