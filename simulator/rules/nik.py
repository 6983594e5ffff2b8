"""NIK and KK structure: the one source of truth for what a well-formed number is.

``parse_nik`` / ``parse_kk`` serve the API and ``prakerja-sim nik parse``; the ``encode_*`` helpers
build whole columns of numbers for the population generator with the same layout.

Layout (Dukcapil; python-stdnum ``id.nik``): NIK = PP RR DD DDMMYY SSSS: the Kemendagri province,
regency/city and district codes, the birth date with 40 added to the day for women, and a serial
from 0001 that tells apart people of the same district and birth date. KK = the same 6-digit
region code, the date the family card was recorded (DDMMYY, no +40) and a serial.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import asdict, dataclass

import numpy as np

from simulator.rules.reasons import Reason

NIK_LENGTH = 16
FEMALE_DAY_OFFSET = 40


class NikError(ValueError):
    """A number that is not a well-formed NIK/KK. ``reason`` is always ``Reason.NIK_MALFORMED``."""

    reason = Reason.NIK_MALFORMED

    def __init__(self, number: str, message: str):
        super().__init__(f"{number!r}: {message}")
        self.number = number
        self.message = message


@dataclass(frozen=True)
class NikInfo:
    """What a NIK says about its holder."""

    nik: str
    province_code: str  # "32"
    province: str  # "JAWA BARAT"
    regency_code: str  # "32.73"
    regency: str
    district_code: str  # "32.73.02"
    district: str
    birth_date: dt.date
    gender: str  # "L" or "P"
    serial: int

    def as_dict(self) -> dict[str, object]:
        row = asdict(self)
        row["birth_date"] = self.birth_date.isoformat()
        return row


@dataclass(frozen=True)
class KkInfo:
    """What a KK (family card) number says: where and when the card was recorded."""

    kk: str
    province_code: str
    regency_code: str
    district_code: str
    district: str
    recorded_on: dt.date
    serial: int


def _digits(number: str, what: str) -> str:
    if not isinstance(number, str):
        kind = type(number).__name__
        raise NikError(str(number), f"a {what} is a string of {NIK_LENGTH} digits, got {kind}")
    text = number.strip()
    if len(text) != NIK_LENGTH:
        raise NikError(number, f"a {what} has {NIK_LENGTH} digits, this one has {len(text)} characters")
    if not text.isascii() or not text.isdigit():
        bad = next(ch for ch in text if not ("0" <= ch <= "9"))
        raise NikError(number, f"a {what} has only digits, this one contains {bad!r}")
    return text


def _district(text: str, what: str):
    from simulator.regions import region_tables  # the rules only need the code list

    regions = region_tables()
    index = regions.district_by_prefix.get(int(text[:6]))
    if index is None:
        province = text[:2]
        if province not in regions.province_by_code:
            raise NikError(text, f"unknown province code {province} in the {what}'s first 2 digits")
        dotted = f"{text[0:2]}.{text[2:4]}.{text[4:6]}"
        raise NikError(text, f"unknown district code {dotted} in the {what}'s first 6 digits")
    return regions, index


def _century(yy: int, month: int, day: int, today: dt.date) -> int:
    # Two-digit years: take the most recent year that does not lie in the future.
    year = 2000 + yy
    try:
        if dt.date(year, month, day) > today:
            year -= 100
    except ValueError:
        year -= 100  # 29 Feb in a non-leap 20xx year may still exist in 19xx
    return year


def parse_nik(nik: str, *, today: dt.date | None = None) -> NikInfo:
    """Decode a NIK, or raise :class:`NikError` saying why it is not a well-formed one.

    Checks the length, the digits, the district code (against the Kemendagri list) and the birth
    date (day 01-31 or 41-71, a real calendar date, not in the future).
    """
    text = _digits(nik, "NIK")
    regions, d = _district(text, "NIK")
    day, month, yy = int(text[6:8]), int(text[8:10]), int(text[10:12])
    gender = "P" if day > FEMALE_DAY_OFFSET else "L"
    real_day = day - FEMALE_DAY_OFFSET if day > FEMALE_DAY_OFFSET else day
    if not 1 <= month <= 12:
        raise NikError(text, f"impossible birth month {month:02d} in digits 9-10")
    if not 1 <= real_day <= 31 or day in (32, 33, 34, 35, 36, 37, 38, 39, 40):
        raise NikError(text, f"impossible birth day {day:02d} in digits 7-8 (01-31 for men, 41-71 for women)")
    today = today or dt.date.today()
    year = _century(yy, month, real_day, today)
    try:
        birth = dt.date(year, month, real_day)
    except ValueError:
        raise NikError(text, f"impossible birth date {real_day:02d}-{month:02d}-{yy:02d}") from None
    serial = int(text[12:])
    if serial == 0:
        raise NikError(text, "the serial (last 4 digits) starts at 0001, this one is 0000")
    r = int(regions.district_regency[d])
    p = int(regions.district_province[d])
    return NikInfo(
        nik=text,
        province_code=str(regions.province_codes[p]),
        province=str(regions.province_names[p]),
        regency_code=str(regions.regency_codes[r]),
        regency=str(regions.regency_names[r]),
        district_code=str(regions.district_codes[d]),
        district=str(regions.district_names[d]),
        birth_date=birth,
        gender=gender,
        serial=serial,
    )


def nik_problem(nik: str, *, today: dt.date | None = None) -> str | None:
    """``None`` for a well-formed NIK, else the human reason (for API messages)."""
    try:
        parse_nik(nik, today=today)
    except NikError as err:
        return err.message
    return None


def parse_kk(kk: str, *, today: dt.date | None = None) -> KkInfo:
    """Decode a KK (family card) number, or raise :class:`NikError` saying what is wrong."""
    text = _digits(kk, "KK number")
    regions, d = _district(text, "KK number")
    day, month, yy = int(text[6:8]), int(text[8:10]), int(text[10:12])
    try:
        recorded = dt.date(_century(yy, month, day, today or dt.date.today()), month, day)
    except ValueError:
        when = f"{day:02d}-{month:02d}-{yy:02d}"
        raise NikError(text, f"impossible recording date {when} in digits 7-12") from None
    serial = int(text[12:])
    if serial == 0:
        raise NikError(text, "the serial (last 4 digits) starts at 0001, this one is 0000")
    r = int(regions.district_regency[d])
    return KkInfo(
        kk=text,
        province_code=str(regions.province_codes[regions.district_province[d]]),
        regency_code=str(regions.regency_codes[r]),
        district_code=str(regions.district_codes[d]),
        district=str(regions.district_names[d]),
        recorded_on=recorded,
        serial=serial,
    )


# --- vectorised: whole columns, for the generator ------------------------------------------------


_DDMMYY_FIRST = np.datetime64("1900-01-01", "D")
_DDMMYY_DAYS = 73_049  # 1900-01-01 .. 2099-12-31


@functools.cache
def _ddmmyy_table() -> np.ndarray:
    return _ddmmyy(_DDMMYY_FIRST + np.arange(_DDMMYY_DAYS))


def date_digits(dates: np.ndarray, female: np.ndarray | None = None) -> np.ndarray:
    """DDMMYY as int64 for ``datetime64[D]`` dates; with ``female``, 40 is added to women's day."""
    offset = (np.asarray(dates).astype("datetime64[D]") - _DDMMYY_FIRST).astype(np.int64)
    if len(offset) and 0 <= offset.min() and offset.max() < _DDMMYY_DAYS:
        ddmmyy = _ddmmyy_table()[offset]  # one lookup per date instead of calendar arithmetic
    else:
        ddmmyy = _ddmmyy(dates)
    if female is not None:
        ddmmyy = ddmmyy + FEMALE_DAY_OFFSET * 10_000 * np.asarray(female, dtype=np.int64)
    return ddmmyy


def _ddmmyy(dates: np.ndarray) -> np.ndarray:
    days = np.asarray(dates).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    year = years.astype(np.int64) + 1970
    month = (months - years).astype(np.int64) + 1
    day = (days - months).astype(np.int64) + 1
    return day * 10_000 + month * 100 + year % 100


def encode_nik(
    district_prefix: np.ndarray, birth_dates: np.ndarray, female: np.ndarray, serial: np.ndarray
) -> np.ndarray:
    """NIKs as int64 (format with 16 digits, leading zeros kept): prefix + DDMMYY(+40) + serial."""
    if (np.asarray(serial) < 1).any() or (np.asarray(serial) > 9999).any():
        raise ValueError("NIK serials run from 0001 to 9999")
    return (
        np.asarray(district_prefix, dtype=np.int64) * 10_000_000_000
        + date_digits(birth_dates, female) * 10_000
        + np.asarray(serial, dtype=np.int64)
    )


def encode_kk(district_prefix: np.ndarray, recorded_on: np.ndarray, serial: np.ndarray) -> np.ndarray:
    """KK numbers as int64: prefix + recording date DDMMYY (no +40) + serial."""
    return (
        np.asarray(district_prefix, dtype=np.int64) * 10_000_000_000
        + date_digits(recorded_on) * 10_000
        + np.asarray(serial, dtype=np.int64)
    )


def decode_nik_columns(nik: np.ndarray) -> dict[str, np.ndarray]:
    """Split int64 NIKs into district prefix, day (with +40), month, yy and serial columns."""
    nik = np.asarray(nik, dtype=np.int64)
    return {
        "district_prefix": nik // 10_000_000_000,
        "day": nik // 100_000_000 % 100,
        "month": nik // 1_000_000 % 100,
        "yy": nik // 10_000 % 100,
        "serial": nik % 10_000,
    }


def nik_of(district_prefix: int, birth_date: dt.date, female: bool, serial: int) -> str:
    """One NIK as its 16-digit string: `encode_nik` for a single person."""
    number = encode_nik(
        np.array([district_prefix]),
        np.array([birth_date], dtype="datetime64[D]"),
        np.array([female]),
        np.array([serial]),
    )[0]
    return f"{int(number):0{NIK_LENGTH}d}"


def kk_of(district_prefix: int, recorded_on: dt.date, serial: int) -> str:
    """One family-card number as its 16-digit string: `encode_kk` for a single card."""
    number = encode_kk(
        np.array([district_prefix]), np.array([recorded_on], dtype="datetime64[D]"), np.array([serial])
    )[0]
    return f"{int(number):0{NIK_LENGTH}d}"
