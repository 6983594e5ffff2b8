"""Days as numbers: day numbers since 1970, birth-day bounds for an age range, days on a residue
lattice (what keeps NIK serials unique across chunks), calendar years by table lookup.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np


def day_number(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def _years_before(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def lattice_days(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, residue: int, modulus: int
) -> np.ndarray:
    """A day in [lo, hi] (day numbers) that is ``residue`` mod ``modulus``, uniform among those."""
    first = lo + (residue - lo) % modulus
    count = (hi - first) // modulus + 1
    return first + modulus * np.floor(rng.random(len(lo)) * count).astype(np.int64)


def birth_day_bounds(ages: np.ndarray, ages_hi: np.ndarray, on: dt.date) -> tuple[np.ndarray, np.ndarray]:
    # Aged a..b on ``on``: born after ``on`` minus (b + 1) years, and on or before ``on`` minus a years.
    lo_table = np.array([day_number(_years_before(on, a + 1)) + 1 for a in range(0, 120)], dtype=np.int64)
    hi_table = np.array([day_number(_years_before(on, a)) for a in range(0, 120)], dtype=np.int64)
    return lo_table[ages_hi], hi_table[ages]


_YEAR_TABLE_FIRST = day_number(dt.date(1900, 1, 1))


@functools.cache
def _year_by_day() -> np.ndarray:
    # Calendar year of every day from 1900-01-01 to 2099-12-31 (days since 1970 - _YEAR_TABLE_FIRST).
    days = np.arange(_YEAR_TABLE_FIRST, day_number(dt.date(2100, 1, 1)), dtype=np.int64)
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def calendar_years(days: np.ndarray) -> np.ndarray:
    """Calendar year of each day number (days since 1970-01-01): one lookup, not datetime casts."""
    table = _year_by_day()
    offset = days - _YEAR_TABLE_FIRST
    if len(offset) and 0 <= offset.min() and offset.max() < len(table):
        return table[offset]
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
