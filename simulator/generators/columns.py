"""Column building blocks: numbers to fixed-width digit strings and table lookups, all vectorised.

Strings are built straight into Arrow buffers (no Python object per row), so a 16-digit NIK
column of a million rows costs a few milliseconds.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_POW10 = 10 ** np.arange(18, -1, -1, dtype=np.int64)  # 10^18 .. 10^0


def _digit_matrix(values: np.ndarray, width: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    return ((values[:, None] // _POW10[-width:]) % 10 + 48).astype(np.uint8)


# "0000" .. "9999" as little-endian uint32 words: four digits of a number cost one lookup.
_QUADS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), dtype="<u4")


def digits(values: np.ndarray, width: int) -> pa.Array:
    """Non-negative integers as zero-padded strings of ``width`` digits (wider numbers keep all theirs).

    The characters are written straight into the column's data buffer, four digits per lookup.
    """
    values = np.asarray(values, dtype=np.int64)
    n = len(values)
    if n == 0 or width > 18 or values.min() < 0 or values.max() >= 10**width:
        text = pa.array(values).cast(pa.string())
        return pc.utf8_lpad(text, width=width, padding="0")
    groups = -(-width // 4)
    words = np.empty((n, groups), dtype="<u4")
    rest = values
    for g in range(groups - 1, -1, -1):
        words[:, g] = _QUADS[rest % 10_000]
        rest = rest // 10_000
    data = words.view(np.uint8).reshape(n, groups * 4)
    if groups * 4 != width:
        data = np.ascontiguousarray(data[:, groups * 4 - width :])
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def digits_varwidth(values: np.ndarray, widths: np.ndarray) -> pa.StringArray:
    """Integers as zero-padded strings whose width varies per row (``widths``, at most 18)."""
    widths = np.asarray(widths, dtype=np.int64)
    n = len(values)
    if n == 0:
        return pa.array([], type=pa.string())
    top = int(widths.max())
    matrix = _digit_matrix(values, top)
    keep = np.arange(top)[None, :] >= (top - widths)[:, None]  # the last ``width`` digits of a row
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(matrix[keep]))


def iso_dates(days: np.ndarray) -> pa.Array:
    """``datetime64[D]`` as an Arrow ``date32`` column (ISO 8601 in CSV and JSON)."""
    return pa.array(np.asarray(days, dtype="datetime64[D]"), type=pa.date32())


def take(table: pa.Array, index: np.ndarray) -> pa.Array:
    """``table[index]`` with -1 meaning null (a missing name part, say)."""
    index = np.asarray(index, dtype=np.int64)
    mask = index < 0
    if mask.any():
        return pc.take(table, pa.array(np.where(mask, 0, index), mask=mask))
    return pc.take(table, pa.array(index))


def join(parts: list[pa.Array | str], separator: str = "") -> pa.Array:
    """Concatenate string columns (or constants) row by row, skipping nulls."""
    return pc.binary_join_element_wise(*parts, separator, null_handling="skip")


def choice(rng: np.random.Generator, n: int, weights: dict[str, float] | tuple[float, ...]) -> np.ndarray:
    """``n`` category indices drawn with the given weights (normalised here)."""
    p = np.fromiter(weights.values() if isinstance(weights, dict) else weights, dtype=float)
    return bucket(np.cumsum(p / p.sum()), rng.random(n)).clip(0, len(p) - 1)


_CELLS = 4096  # a power of two: u * _CELLS is exact, so each u falls in exactly one cell


@functools.lru_cache(maxsize=512)
def _cell_table(edges_bytes: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the ascending ``edges`` (float64 bytes): per cell [c/_CELLS, (c+1)/_CELLS) of [0, 1), the
    answer for its first value and whether an edge falls inside it (then the answer varies)."""
    edges = np.frombuffer(edges_bytes, dtype=np.float64)
    starts = np.arange(_CELLS + 1, dtype=np.float64) / _CELLS
    first = np.searchsorted(edges, starts[:-1], side="right")
    last = np.searchsorted(edges, starts[1:], side="left")  # edges below the next cell's start
    return edges, first.astype(np.int32), first != last


def bucket(edges: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``np.searchsorted(edges, u, side="right")``: how many of the ascending ``edges`` are <= each u."""
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    if len(edges) <= 4:
        # Very few edges: counting them is faster than any lookup.
        index = np.zeros(len(u), dtype=np.int64)
        for edge in edges:
            index += u >= edge
        return index
    if len(edges) > 1024 or len(u) == 0 or u.min() < 0.0 or u.max() >= 1.0:
        return np.searchsorted(edges, u, side="right")
    # Uniform draws in [0, 1): a table of cells answers at once for all but the few values whose
    # cell holds an edge, which take the binary search. Same answers, a fraction of the cost.
    edges, first, mixed = _cell_table(edges.tobytes())
    cell = (u * _CELLS).astype(np.intp)
    index = first[cell].astype(np.int64)
    hard = np.flatnonzero(mixed[cell])
    if len(hard):
        index[hard] = np.searchsorted(edges, u[hard], side="right")
    return index


DICTIONARY = pa.dictionary(pa.int32(), pa.string())


def lookup(values: pa.Array | tuple[str, ...] | list[str], index: np.ndarray) -> pa.DictionaryArray:
    """``values[index]`` as a dictionary column: each row costs an int32, not a copy of its string.

    For columns drawn from a small table (provinces, religions, reason codes): taking from it,
    writing it to Parquet and decoding it to plain strings all work on the indices.
    """
    if not isinstance(values, pa.Array):
        values = pa.array(list(values), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(index, dtype=np.int32)), values)


def group_rank(keys: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows (in row order) share its key: 0, 1, 2, ..."""
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - first
    return rank
