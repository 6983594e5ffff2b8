"""A chunk's tables as the bytes of a text file: RFC 4180 CSV and JSON lines (runs in worker processes)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


def _needs_escape(text: pa.Array) -> bool:
    # A byte scan of the string data: quotes, backslashes or control characters need escaping.
    if len(text) == 0:
        return False
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return bool(((data < 0x20) | (data == 0x22) | (data == 0x5C)).any())


def _json_values(column: pa.Array) -> tuple[pa.Array, bool]:
    """Each value of ``column`` as JSON text, and whether it goes between quotes."""
    t = column.type
    if pa.types.is_boolean(t):
        return pc.if_else(column, "true", "false"), False
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return column.cast(pa.string()), False
    text = column.cast(pa.string())
    if _needs_escape(text):
        for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            text = pc.replace_substring(text, raw, escaped)
        if pc.any(pc.match_substring_regex(text, "[\\x00-\\x1f]")).as_py():
            # Rare control characters: let the json module spell them (\u0001 ...).
            raw_values = column.cast(pa.string()).to_pylist()
            text = pa.array([json.dumps(v, ensure_ascii=False)[1:-1] for v in raw_values], type=pa.string())
    return text, True


def encode_jsonl(table: pa.Table) -> bytes:
    """JSON Lines for a table, built column-wise (no Python loop per row); key order = columns.

    Values are never null in population tables (the contract has no optional column).
    """
    if table.num_rows == 0:
        return b""
    parts: list[pa.Array | str] = []
    closing = ""  # the closing quote of the previous value travels with the next key
    for i, name in enumerate(table.column_names):
        values, quoted = _json_values(table.column(i).combine_chunks())
        if values.null_count:
            raise ValueError(f"column {name} has nulls; population tables have none")
        parts.append(closing + ("{" if i == 0 else ",") + json.dumps(name) + ":" + ('"' if quoted else ""))
        parts.append(values)
        closing = '"' if quoted else ""
    parts.append(closing + "}\n")
    lines = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()


def encode_csv(table: pa.Table, header: bool) -> pa.Buffer:
    """RFC 4180 CSV (strings quoted, so leading zeros survive spreadsheets' guessing)."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=header))
    return sink.getvalue()
