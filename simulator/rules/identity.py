"""The identity check: a claimed NIK, KK and birth date against the registry's (Dukcapil) record.

`identity_refusal` is the whole rule of the identity step once the registry has answered: a NIK
it does not know, a family card that is not this person's, or another birth date, each with its
reason code. The structure of the numbers themselves is `simulator.rules.nik`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from simulator.rules.reasons import Reason


def identity_refusal(resident: Any | None, kk: str, birth_date: dt.date) -> tuple[Reason, str] | None:
    """Why the registry's ``resident`` (with ``.kk`` and ``.birth_date``; None: no such NIK) does not
    match the claimed ``kk`` and ``birth_date``: a (reason, message) pair, or None when it matches."""
    if resident is None:
        return Reason.NIK_NOT_FOUND, "the registry (Dukcapil) has no person with this NIK"
    if resident.kk != kk:
        return Reason.NIK_KK_MISMATCH, "this KK number is not the family card of this NIK"
    if resident.birth_date != birth_date:
        return Reason.NIK_BIRTHDATE_MISMATCH, "the birth date differs from the registry's"
    return None
