"""The e-KTP's layout: card geometry, fonts, and the printed text of every field from a resident row.

Positions are in card pixels on a canvas of ID-1 proportions (85.60 x 53.98 mm at ~300 dpi).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from PIL import ImageFont

from simulator.errors import InvalidInputFile

CARD_MM = (85.60, 53.98)
CARD_W = 1012  # 85.60 mm at 300 dpi (11.82 px/mm)
CARD_H = round(CARD_W * CARD_MM[1] / CARD_MM[0])  # 638
CORNER_RADIUS = 38  # ID-1 corner radius 3.18 mm

# Field block on the left, portrait box on the right (as on the real card).
LABEL_X = 34
COLON_X = 262
VALUE_X = 282
VALUE_MAX_X = 730
PORTRAIT_BOX = (770, 140, 978, 400)  # 3:4-ish photo area
ISSUE_TEXT_Y = 414
SIGNATURE_BOX = (786, 488, 962, 560)

FONT_FILES = {
    "regular": "DejaVuSans.ttf",
    "bold": "DejaVuSans-Bold.ttf",
    "mono": "DejaVuSansMono-Bold.ttf",
}
"""DejaVu fonts shipped inside matplotlib (Bitstream Vera / DejaVu licence: free to use and embed)."""

GENDER_TEXT = {"L": "LAKI-LAKI", "P": "PEREMPUAN"}
ROW_LABELS = (
    "Nama",
    "Tempat/Tgl Lahir",
    "Jenis Kelamin",
    "Gol. Darah",
    "Alamat",
    "RT/RW",
    "Kel/Desa",
    "Kecamatan",
    "Agama",
    "Status Perkawinan",
    "Pekerjaan",
    "Kewarganegaraan",
    "Berlaku Hingga",
)
"""The card's field labels in print order (CardText.rows follows it)."""
REQUIRED_FIELDS = ("nik", "full_name", "gender", "birth_place", "birth_date")


def font_path(kind: str) -> Path:
    """Path of one of the DejaVu TTFs that matplotlib ships (no network, no system fonts)."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / FONT_FILES[kind]


# Cards print at ~29 ladder scales, each with a handful of sizes: keep every face once loaded.
@functools.lru_cache(maxsize=1024)
def font(kind: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(kind)), size)


@dataclass(frozen=True)
class CardText:
    """What one card prints, already upper-cased and formatted the way Dukcapil prints it."""

    province: str
    regency: str
    nik: str
    rows: tuple[tuple[str, str], ...]  # (label, value) in print order
    issue_place: str
    issue_date: str
    portrait_background: str  # "red" (odd birth year) or "blue" (even), as on real e-KTP photos


def _text(person: Mapping[str, Any], key: str, default: str = "-") -> str:
    value = person.get(key)
    if value is None:
        return default
    text = str(value).strip()
    return text.upper() if text else default


def _strip_prefix(name: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if name.startswith(prefix):
            return name[len(prefix) :].strip()
    return name


def card_text(person: Mapping[str, Any], issue_date: dt.date) -> CardText:
    """Format a resident row (docs/architecture.md 3.1 columns) into the card's printed fields."""
    missing = [key for key in REQUIRED_FIELDS if not person.get(key)]
    if missing:
        raise InvalidInputFile(f"resident row {person.get('nik', '?')}: missing {', '.join(missing)}")
    nik = str(person["nik"]).strip()
    # A resident's NIK has 16 digits; an applicant row may carry a mistyped one (15 or 17), which the
    # card then shows as given. Anything else cannot be printed as a NIK.
    if not nik.isdigit() or not 12 <= len(nik) <= 20:
        raise InvalidInputFile(f"resident row: nik {nik!r} is not a NIK (16 digits expected)")
    birth = _as_date(person["birth_date"], nik)
    province = _strip_prefix(_text(person, "province"), ("PROVINSI ",))
    regency = _text(person, "regency")
    if not regency.startswith(("KABUPATEN", "KOTA", "KAB.")):
        regency = f"KABUPATEN {regency}"
    gender = GENDER_TEXT.get(_text(person, "gender"), _text(person, "gender"))
    blood = _text(person, "blood_type")
    blood = blood if blood in ("A", "B", "AB", "O") else "-"
    rows = (
        ("Nama", _text(person, "full_name")),
        ("Tempat/Tgl Lahir", f"{_text(person, 'birth_place')}, {birth:%d-%m-%Y}"),
        ("Jenis Kelamin", gender),
        ("Alamat", _text(person, "address")),
        ("RT/RW", _text(person, "rt_rw")),
        ("Kel/Desa", _text(person, "village")),
        ("Kecamatan", _text(person, "district")),
        ("Agama", _text(person, "religion")),
        ("Status Perkawinan", _text(person, "marital_status")),
        ("Pekerjaan", _text(person, "occupation")),
        ("Kewarganegaraan", "WNI"),
        ("Berlaku Hingga", "SEUMUR HIDUP"),
    )
    # Gol. Darah shares the Jenis Kelamin line on the real card; the renderer places it there.
    rows = rows[:3] + (("Gol. Darah", blood),) + rows[3:]
    issue_place = _strip_prefix(regency, ("KABUPATEN ", "KAB. ", "KOTA "))
    return CardText(
        province=f"PROVINSI {province}",
        regency=regency,
        nik=nik,
        rows=rows,
        issue_place=issue_place,
        issue_date=f"{issue_date:%d-%m-%Y}",
        portrait_background="red" if birth.year % 2 else "blue",
    )


def _as_date(value: Any, nik: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidInputFile(f"resident row {nik}: birth_date {value!r} is not an ISO date") from None
