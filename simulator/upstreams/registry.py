"""The registry stand-in's data: the residents of a population, indexed by NIK for NIK + KK +
birth-date checks, and the verdict a check gets (the reference API's reason codes).

Loaded once through the population reader (which checks the manifest); held as columns, not rows.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.errors import InvalidInputFile
from simulator.rules.reasons import Reason

# The resident's record a match returns: what a Dukcapil-style answer carries about the person,
# and the flags the program's eligibility rules read (simulator.rules.eligibility).
RECORD_COLUMNS: tuple[str, ...] = (
    "full_name",
    "gender",
    "birth_place",
    "birth_date",
    "occupation",
    "province_code",
    "regency_code",
    "district_code",
    "village_code",
    "is_recipient",
    "receives_other_aid",
    "is_priority",
)
MATCH = "MATCH"
"""The verdict of a check whose NIK, KK and birth date all agree with the registry."""
VERDICTS: tuple[str, ...] = (
    MATCH,
    str(Reason.NIK_NOT_FOUND),
    str(Reason.NIK_KK_MISMATCH),
    str(Reason.NIK_BIRTHDATE_MISMATCH),
)
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Check:
    """A check's outcome: the verdict and, when the NIK is known, the resident's record."""

    verdict: str
    record: dict[str, Any] | None = None

    @property
    def nik_found(self) -> bool:
        return self.verdict != Reason.NIK_NOT_FOUND


class Registry:
    """Residents by NIK: sorted 64-bit NIKs (16 digits fit) and their columns, looked up by bisection."""

    def __init__(self, residents: pa.Table):
        nik = _digits_as_u64(residents.column("nik"))
        order = np.argsort(nik, kind="stable")
        self._nik = nik[order]
        if len(self._nik) > 1 and bool((self._nik[1:] == self._nik[:-1]).any()):
            duplicate = int(self._nik[1:][self._nik[1:] == self._nik[:-1]][0])
            raise InvalidInputFile(
                f"residents: NIK {duplicate:016d} appears twice; a registry has one row per NIK"
            )
        take = pa.array(order)
        self._kk = _digits_as_u64(residents.column("kk"))[order]
        birth = residents.column("birth_date").combine_chunks().cast(pa.int32())
        self._birth_days = birth.to_numpy(zero_copy_only=False).astype(np.int32)[order]
        self._records = residents.select(list(RECORD_COLUMNS)).take(take).combine_chunks()
        self._columns = {name: self._records.column(name) for name in RECORD_COLUMNS}
        # Recipients per KK (registry truth), for the "at most 2 recipients per family card" rule.
        recipient = self._columns["is_recipient"].to_numpy(zero_copy_only=False).astype(bool)
        kks, counts = np.unique(self._kk[recipient], return_counts=True)
        self._recipient_kk, self._recipient_count = kks, counts
        self._recipient = recipient

    def __len__(self) -> int:
        return len(self._nik)

    def _row(self, nik: str) -> int | None:
        if len(nik) != 16 or not nik.isdigit():
            return None
        key = np.uint64(int(nik))
        i = int(np.searchsorted(self._nik, key))
        return i if i < len(self._nik) and self._nik[i] == key else None

    def record(self, row: int) -> dict[str, Any]:
        out = {name: column[row].as_py() for name, column in self._columns.items()}
        out["birth_date"] = out["birth_date"].isoformat()
        kk = self._kk[row]
        j = int(np.searchsorted(self._recipient_kk, kk))
        same_kk = (
            int(self._recipient_count[j])
            if j < len(self._recipient_kk) and self._recipient_kk[j] == kk
            else 0
        )
        # Other members of the family card who already receive the card.
        out["kk_recipients"] = same_kk - int(self._recipient[row])
        return out

    def check(self, nik: str, kk: str, birth_date: dt.date) -> Check:
        """The verdict for what an applicant typed, in the order the reference API checks it."""
        row = self._row(nik)
        if row is None:
            return Check(str(Reason.NIK_NOT_FOUND))
        record = self.record(row)
        if not (len(kk) == 16 and kk.isdigit() and np.uint64(int(kk)) == self._kk[row]):
            return Check(str(Reason.NIK_KK_MISMATCH), record)
        if (birth_date - _EPOCH).days != int(self._birth_days[row]):
            return Check(str(Reason.NIK_BIRTHDATE_MISMATCH), record)
        return Check(MATCH, record)


def _digits_as_u64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(values.to_numpy(zero_copy_only=False).astype("U16"), dtype=np.uint64)


def load_registry(
    population: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> Registry:
    """The residents of a population directory (verified against its manifest), indexed for checks."""
    from simulator.io.population import iter_batches

    columns = ["nik", "kk", "birth_date", *[c for c in RECORD_COLUMNS if c != "birth_date"]]
    batches = []
    for batch in iter_batches(population, "residents", batch_rows=1 << 20, verify=True):
        batches.append(batch.select(columns))
        if progress:
            progress(batch.num_rows)
    if not batches:
        raise InvalidInputFile(f"{population}: the residents table is empty; the registry would know nobody")
    return Registry(pa.Table.from_batches(batches))
