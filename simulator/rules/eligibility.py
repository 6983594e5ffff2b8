"""Who may receive a Kartu Prakerja: the eligibility rules as plain functions, scalar and vectorised.

Perpres 36/2020 as amended by Perpres 76/2020: at least 18, not in formal education, not a civil
servant, soldier, police officer, village head or staff, state official, regional legislator or
BUMN/BUMD executive, not already a recipient, no other social aid, at most 2 recipients per KK.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping

import numpy as np

from simulator.rules.reasons import Reason

REFERENCE_DATE = dt.date(2020, 11, 2)
"""Default date ages are computed on: wave 11 opened on 2 Nov 2020. Populations record theirs."""

MIN_AGE = 18
MAX_KK_RECIPIENTS = 2

STUDENT_OCCUPATIONS: frozenset[str] = frozenset({"PELAJAR/MAHASISWA"})

# KTP occupation values (Permendagri list of pekerjaan) that Perpres 76/2020 excludes.
EXCLUDED_OCCUPATIONS: frozenset[str] = frozenset(
    {
        "PEGAWAI NEGERI SIPIL (PNS)",
        "TENTARA NASIONAL INDONESIA (TNI)",
        "KEPOLISIAN RI (POLRI)",
        "KEPALA DESA",
        "PERANGKAT DESA",
        "ANGGOTA DPRD PROVINSI",
        "ANGGOTA DPRD KABUPATEN/KOTA",
        "ANGGOTA DPR-RI",
        "ANGGOTA DPD",
        "ANGGOTA BPK",
        "MENTERI",
        "GUBERNUR",
        "WAKIL GUBERNUR",
        "BUPATI",
        "WAKIL BUPATI",
        "WALIKOTA",
        "WAKIL WALIKOTA",
        "DIREKSI/KOMISARIS BUMN",  # not on the KTP list; how the generator marks a BUMN executive
        "DIREKSI/KOMISARIS BUMD",
    }
)

ELIGIBILITY_ORDER: tuple[Reason, ...] = (
    Reason.UNDERAGE,
    Reason.STILL_STUDENT,
    Reason.EXCLUDED_OCCUPATION,
    Reason.ALREADY_RECIPIENT,
    Reason.RECEIVES_OTHER_AID,
    Reason.KK_RECIPIENT_LIMIT,
)
"""When several rules fail, the first in this order is the reason given."""


def age_on(birth_date: dt.date, on: dt.date = REFERENCE_DATE) -> int:
    """Completed years of age on ``on``."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def eligibility_reason(
    *,
    birth_date: dt.date | str,
    occupation: str,
    is_recipient: bool = False,
    receives_other_aid: bool = False,
    kk_recipients: int = 0,
    on: dt.date = REFERENCE_DATE,
) -> Reason | None:
    """The first rule this person breaks, or ``None`` if they are eligible.

    ``kk_recipients`` counts the *other* members of the person's KK who are already recipients.
    """
    if age_on(_as_date(birth_date), on) < MIN_AGE:
        return Reason.UNDERAGE
    occupation = (occupation or "").strip().upper()
    if occupation in STUDENT_OCCUPATIONS:
        return Reason.STILL_STUDENT
    if occupation in EXCLUDED_OCCUPATIONS:
        return Reason.EXCLUDED_OCCUPATION
    if is_recipient:
        return Reason.ALREADY_RECIPIENT
    if receives_other_aid:
        return Reason.RECEIVES_OTHER_AID
    if kk_recipients >= MAX_KK_RECIPIENTS:
        return Reason.KK_RECIPIENT_LIMIT
    return None


def resident_eligibility(
    resident: Mapping[str, object], *, kk_recipients: int = 0, on: dt.date = REFERENCE_DATE
) -> Reason | None:
    """:func:`eligibility_reason` for a ``residents`` row (a dict with the population's columns)."""
    return eligibility_reason(
        birth_date=resident["birth_date"],  # type: ignore[arg-type]
        occupation=str(resident.get("occupation") or ""),
        is_recipient=bool(resident.get("is_recipient", False)),
        receives_other_aid=bool(resident.get("receives_other_aid", False)),
        kk_recipients=kk_recipients,
        on=on,
    )


_AGE_TABLE_YEARS = 150


@functools.cache
def _last_birth_days(on: dt.date) -> np.ndarray:
    """Ascending day numbers: entry ``i`` is the last birth date aged ``_AGE_TABLE_YEARS - i`` on ``on``."""
    last = []
    for age in range(_AGE_TABLE_YEARS, -1, -1):
        try:
            day = on.replace(year=on.year - age)
        except ValueError:  # 29 February in a common year: born by 28 February
            day = on.replace(year=on.year - age, day=28)
        last.append((day - dt.date(1970, 1, 1)).days)
    return np.array(last, dtype=np.int64)


@functools.cache
def _age_by_day(on: dt.date) -> np.ndarray:
    # The number of birthdays (ages 0..150) on or before ``on``, for each day after the first.
    last = _last_birth_days(on)
    days = np.arange(int(last[0]) + 1, int(last[-1]) + 1, dtype=np.int64)
    return (len(last) - 1 - np.searchsorted(last, days, side="left")).astype(np.int64)


def ages_on(birth_dates: np.ndarray, on: dt.date = REFERENCE_DATE) -> np.ndarray:
    """Vectorised :func:`age_on` for ``datetime64[D]`` birth dates."""
    days = np.asarray(birth_dates).astype("datetime64[D]")
    numbers = days.astype(np.int64)
    last = _last_birth_days(on)
    if len(numbers) and last[0] < numbers.min() and numbers.max() <= last[-1]:
        # One table lookup per person instead of calendar arithmetic: the age of every birth day
        # in the 150 years before ``on``.
        return _age_by_day(on)[numbers - (int(last[0]) + 1)]
    years = days.astype("datetime64[Y]")
    month_day = (
        (days.astype("datetime64[M]") - years).astype(np.int64) * 100
        + (days - days.astype("datetime64[M]")).astype(np.int64)
        + 101
    )
    before_birthday = (on.month * 100 + on.day) < month_day
    return on.year - (years.astype(np.int64) + 1970) - before_birthday


def eligibility_reasons(
    birth_dates: np.ndarray,
    occupations: np.ndarray | object,
    is_recipient: np.ndarray,
    receives_other_aid: np.ndarray,
    kk_recipients: np.ndarray,
    on: dt.date = REFERENCE_DATE,
) -> np.ndarray:
    """Vectorised :func:`eligibility_reason`: an object array of reason codes, "" where eligible."""
    n = len(birth_dates)
    out = np.full(n, "", dtype=object)
    checks = (
        (Reason.UNDERAGE, ages_on(birth_dates, on) < MIN_AGE),
        (Reason.STILL_STUDENT, _occupation_in(occupations, STUDENT_OCCUPATIONS)),
        (Reason.EXCLUDED_OCCUPATION, _occupation_in(occupations, EXCLUDED_OCCUPATIONS)),
        (Reason.ALREADY_RECIPIENT, np.asarray(is_recipient, dtype=bool)),
        (Reason.RECEIVES_OTHER_AID, np.asarray(receives_other_aid, dtype=bool)),
        (Reason.KK_RECIPIENT_LIMIT, np.asarray(kk_recipients) >= MAX_KK_RECIPIENTS),
    )
    undecided = np.ones(n, dtype=bool)
    for reason, failed in checks:
        hit = undecided & failed
        out[hit] = reason.value
        undecided &= ~failed
    return out


def _occupation_in(occupations, values: frozenset[str]) -> np.ndarray:
    # Arrow's hash lookup: much faster than numpy's isin on object arrays of strings.
    import pyarrow as pa
    import pyarrow.compute as pc

    value_set = pa.array(sorted(values), type=pa.string())
    if isinstance(occupations, pa.ChunkedArray) and occupations.num_chunks == 1:
        occupations = occupations.chunk(0)
    if isinstance(occupations, pa.DictionaryArray):
        # Look up the few labels of the dictionary, then index: no per-row hashing.
        in_labels = pc.is_in(occupations.dictionary, value_set=value_set).to_numpy(zero_copy_only=False)
        return np.asarray(in_labels, dtype=bool)[occupations.indices.to_numpy(zero_copy_only=False)]
    column = (
        occupations
        if isinstance(occupations, pa.Array | pa.ChunkedArray)
        else pa.array(np.asarray(occupations, dtype=object), type=pa.string())
    )
    found = pc.is_in(column, value_set=value_set)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def kk_recipient_counts(kk: np.ndarray, is_recipient: np.ndarray) -> np.ndarray:
    """For each person, how many *other* members of their KK are already recipients."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rec = np.asarray(is_recipient, dtype=np.int64)
    # Each KK's code by hashing (first seen, first code): a third of the cost of sorting them.
    codes = pc.dictionary_encode(pa.array(np.asarray(kk))).indices.to_numpy(zero_copy_only=False)
    per_kk = np.bincount(codes, weights=rec).astype(np.int64)
    return per_kk[codes] - rec
