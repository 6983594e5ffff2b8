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
import orjson
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
    """A check's outcome: the verdict and, when the NIK is known, the resident's row."""

    verdict: str
    row: int | None = None

    @property
    def nik_found(self) -> bool:
        return self.row is not None


class Registry:
    """Residents by NIK: sorted 64-bit NIKs (16 digits fit) looked up by bisection, and each record
    column dictionary-encoded as JSON fragments, so an answer is joined from bytes, not built from
    Python objects (the hot path of a check; memory holds each distinct value once).
    """

    def __init__(self, residents: pa.Table):
        nik = _digits_as_u64(residents.column("nik"))
        order = np.argsort(nik, kind="stable")
        self._nik = nik[order]
        repeated = self._nik[1:] == self._nik[:-1]
        if repeated.any():
            duplicate = int(self._nik[1:][repeated][0])
            raise InvalidInputFile(
                f"residents: NIK {duplicate:016d} appears twice; a registry has one per NIK"
            )
        self._kk = _digits_as_u64(residents.column("kk"))[order]
        birth = residents.column("birth_date").combine_chunks().cast(pa.int32())
        self._birth_days = birth.to_numpy(zero_copy_only=False).astype(np.int32)[order]
        # Per column: the JSON text of each distinct value, and each row's index into it.
        take = pa.array(order)
        self._fragments: list[list[bytes]] = []
        codes = []
        for name in RECORD_COLUMNS:
            column = residents.column(name).combine_chunks().take(take)
            if pa.types.is_date(column.type):
                column = column.cast(pa.string())
            encoded = column.dictionary_encode()
            key = orjson.dumps(name) + b":"
            self._fragments.append([key + orjson.dumps(v) for v in encoded.dictionary.to_pylist()])
            codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32))
        self._codes = np.stack(codes, axis=1) if codes else np.zeros((len(order), 0), np.int32)
        # Recipients per KK (registry truth), for the "at most 2 recipients per family card" rule.
        recipient = residents.column("is_recipient").combine_chunks().take(take)
        self._recipient = recipient.to_numpy(zero_copy_only=False).astype(bool)
        kks, counts = np.unique(self._kk[self._recipient], return_counts=True)
        at = np.minimum(np.searchsorted(kks, self._kk), max(len(kks) - 1, 0))
        same = np.where(kks[at] == self._kk, counts[at], 0) if len(kks) else np.zeros(len(order), np.int64)
        # Other members of each resident's family card who already receive the card.
        self._kk_recipients = (same - self._recipient).astype(np.int32)

    def __len__(self) -> int:
        return len(self._nik)

    def row_of(self, nik: str) -> int | None:
        """The row of a 16-digit NIK, or None when the registry does not know it."""
        if len(nik) != 16 or not nik.isdigit():
            return None
        key = np.uint64(int(nik))
        i = int(self._nik.searchsorted(key))
        return i if i < len(self._nik) and self._nik[i] == key else None

    def kk_recipients(self, row: int) -> int:
        """Other members of this resident's family card who already receive the card."""
        return int(self._kk_recipients[row])

    def record_json(self, row: int) -> bytes:
        """The resident's record as a JSON object (keys: :data:`RECORD_COLUMNS` and ``kk_recipients``)."""
        parts = [
            fragments[code]
            for fragments, code in zip(self._fragments, self._codes[row].tolist(), strict=True)
        ]
        parts.append(b'"kk_recipients":%d' % self.kk_recipients(row))
        return b"{" + b",".join(parts) + b"}"

    def record(self, row: int) -> dict[str, Any]:
        return orjson.loads(self.record_json(row))

    def check(self, nik: str, kk: str, birth_date: dt.date) -> Check:
        """The verdict for what an applicant typed, in the order the reference API checks it."""
        row = self.row_of(nik)
        if row is None:
            return Check(str(Reason.NIK_NOT_FOUND))
        if not (len(kk) == 16 and kk.isdigit() and np.uint64(int(kk)) == self._kk[row]):
            return Check(str(Reason.NIK_KK_MISMATCH), row)
        if (birth_date - _EPOCH).days != int(self._birth_days[row]):
            return Check(str(Reason.NIK_BIRTHDATE_MISMATCH), row)
        return Check(MATCH, row)


def _digits_as_u64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(values.to_numpy(zero_copy_only=False).astype("U16"), dtype=np.uint64)


def load_registry(
    population: str | os.PathLike[str], progress: Callable[[int], None] | None = None
) -> Registry:
    """The residents of a population directory (verified against its manifest), indexed for checks."""
    from simulator.io.reader import iter_batches

    columns = ["nik", "kk", "birth_date", *[c for c in RECORD_COLUMNS if c != "birth_date"]]
    batches = []
    for batch in iter_batches(population, "residents", batch_rows=1 << 20, verify=True):
        batches.append(batch.select(columns))
        if progress:
            progress(batch.num_rows)
    if not batches:
        raise InvalidInputFile(f"{population}: the residents table is empty; the registry would know nobody")
    return Registry(pa.Table.from_batches(batches))
