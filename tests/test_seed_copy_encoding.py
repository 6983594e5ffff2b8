"""COPY's binary rows, as seed-db encodes them column-wise, against a plain row-by-row encoder."""

from __future__ import annotations

import datetime as dt
import struct

import pyarrow as pa
import pytest
import sqlalchemy as sa

from simulator.database import schema as t
from simulator.seed.copy_binary import encode_binary_rows

_EPOCH = dt.datetime(2000, 1, 1)


def _field(column: sa.Column, value) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    kind = column.type
    if isinstance(kind, sa.Boolean):
        data = b"\x01" if value else b"\x00"
    elif isinstance(kind, sa.BigInteger):
        data = struct.pack(">q", value)
    elif isinstance(kind, sa.SmallInteger):
        data = struct.pack(">h", value)
    elif isinstance(kind, sa.Integer):
        data = struct.pack(">i", value)
    elif isinstance(kind, sa.DateTime):
        data = struct.pack(">q", (value - _EPOCH) // dt.timedelta(microseconds=1))
    elif isinstance(kind, sa.Date):
        data = struct.pack(">i", (value - _EPOCH.date()).days)
    else:
        data = value.encode()
    return struct.pack(">i", len(data)) + data


def reference(table: sa.Table, rows: pa.Table) -> bytes:
    out = []
    for row in rows.to_pylist():
        out.append(struct.pack(">h", len(row)))
        out += [_field(table.c[name], value) for name, value in row.items()]
    return b"".join(out)


METADATA = sa.MetaData()
KINDS = sa.Table(
    "kinds",
    METADATA,
    sa.Column("varying", sa.String(50)),
    sa.Column("code", sa.String(4)),
    sa.Column("sex", sa.String(1)),
    sa.Column("n", sa.Integer),
    sa.Column("maybe", sa.String(20)),
    sa.Column("at", t.Timestamp),
    sa.Column("empty", sa.String(5)),
    sa.Column("big", sa.BigInteger),
    sa.Column("flag", sa.Boolean),
    sa.Column("day", sa.Date),
    sa.Column("small", sa.SmallInteger),
)
N = 7
ROWS = pa.table(
    {
        # text of varying length, then text all of one length (goes into the fixed-width matrix)
        "varying": pa.array(["a", "Ñusa 🙂", "", "tab\there", "longer text", "x", "yz"]),
        "code": pa.array(["3201", "3202", "1101", "9471", "3201", "3273", "5171"]),
        "sex": pa.array(["L", "P", "P", "L", "L", "P", "L"]),
        "n": pa.array(range(N), pa.int32()),
        "maybe": pa.array(["same", None, "same", "same", None, "same", "same"]),
        "at": pa.array(
            [dt.datetime(2020, 11, 2, 8, 0, 0, 123456), None] + [dt.datetime(1999, 12, 31, 23, 59)] * 5
        ),
        "empty": pa.array([""] * N),
        "big": pa.array([2**40 + i for i in range(N)], pa.int64()),
        "flag": pa.array([True, False, True, None, False, True, True]),
        "day": pa.array([dt.date(2000, 1, 1), dt.date(1960, 2, 29)] + [dt.date(2038, 1, 19)] * 5),
        "small": pa.array([-1, 0, 1, 2, 3, 32767, -32768], pa.int16()),
    }
)


@pytest.mark.parametrize(
    "columns",
    [
        ROWS.column_names,  # every layout: matrices and Arrow parts in turn
        ["code", "n", "empty", "big", "day", "small"],  # only fixed-width fields: one matrix
        ["varying", "code"],  # varying text, then text of one length
        ["varying", "sex"],  # ... of one character (a matrix numpy would lay out column-major)
        ["maybe", "flag", "at"],  # NULLable fields only
    ],
)
def test_binary_rows_are_the_row_by_row_encoding(columns):
    rows = ROWS.select(columns)
    assert bytes(encode_binary_rows(KINDS, rows)) == reference(KINDS, rows)


def test_a_slice_is_encoded_from_its_own_rows():
    # Arrow slices share their parent's buffers, with an offset into them.
    rows = ROWS.slice(2, 4)
    assert bytes(encode_binary_rows(KINDS, rows)) == reference(KINDS, rows)
    chunked = pa.concat_tables([ROWS.slice(0, 3), ROWS.slice(3)])
    assert bytes(encode_binary_rows(KINDS, chunked)) == reference(KINDS, ROWS)
