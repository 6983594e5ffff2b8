"""KTP upload bodies for the journeys: a small pool rendered once per worker, posted as multipart as is.

Owns the choice of KTP renderer (the KTP generator when installed, a plain card-like photo otherwise).
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.errors import InvalidOption
from simulator.rules.reasons import ACCEPT, Reason

# Bad uploads that need no card renderer: the bytes alone decide the verdict.
_PLAIN_DEFECTS = {
    str(Reason.FILE_EMPTY),
    str(Reason.UNSUPPORTED_FORMAT),
    str(Reason.EXTENSION_MISMATCH),
    str(Reason.CORRUPT_IMAGE),
    str(Reason.FILE_TOO_LARGE),
}


@dataclass(frozen=True)
class UploadBody:
    """A ready multipart/form-data body with one ``file`` part, and the verdict it should get."""

    body: bytes
    content_type: str
    expected: str


def multipart(data: bytes, filename: str, content_type: str) -> tuple[bytes, str]:
    boundary = "prakerja-" + secrets.token_hex(12)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def build_pool(
    people: Sequence[Mapping[str, Any]], codes: Sequence[str], seed: int, valid_count: int = 2
) -> dict[str, list[UploadBody]]:
    """Upload bodies keyed by expected verdict (``accept`` or a reason code): a few of each.

    Uses the KTP generator's ``render_variant`` when it is installed (real specimen cards and their
    defects); otherwise a plain card-like photo and byte-level defects, and content defects
    (blur, photocopy, ...) are refused with a clear message.
    """
    renderer = _ktp_renderer()
    pool: dict[str, list[UploadBody]] = {}
    wanted = [(ACCEPT, valid_count)] + [(code, 2) for code in codes if code != ACCEPT]
    for code, count in wanted:
        bodies = []
        for k in range(count):
            person = people[k % len(people)] if people else {}
            data, filename, content_type = renderer(person, seed + k, code)
            body, header = multipart(data, filename, content_type)
            bodies.append(UploadBody(body, header, code))
        pool[code] = bodies
    return pool


def _ktp_renderer():
    try:
        from simulator.generators.ktp.variants import VARIANTS, render_variant
    except ImportError:
        return _plain_renderer
    by_code: dict[str, list[str]] = {}
    for name, spec in VARIANTS.items():
        by_code.setdefault(str(spec.expected), []).append(name)

    def render(person: Mapping[str, Any], seed: int, code: str) -> tuple[bytes, str, str]:
        names = by_code.get(code)
        if not names:
            raise InvalidOption(f"the KTP generator has no upload variant for {code}")
        upload = render_variant(_card_person(person, seed), seed, names[seed % len(names)])
        return upload.data, upload.filename, upload.content_type

    return render


def _card_person(person: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The card needs a few fields; fill what an applicant row lacks so any row renders."""
    filled = dict(person)
    filled.setdefault("nik", f"3273{seed % 10**12:012d}")
    filled.setdefault("full_name", "DATA SINTETIS")
    filled.setdefault("gender", "L")
    filled.setdefault("birth_place", "BANDUNG")
    filled.setdefault("birth_date", "1995-07-05")
    return filled


def _plain_renderer(person: Mapping[str, Any], seed: int, code: str) -> tuple[bytes, str, str]:
    from simulator.api.testing import ktp_like_photo

    if code == ACCEPT:
        return ktp_like_photo(), "ktp.jpg", "image/jpeg"
    if code not in _PLAIN_DEFECTS:
        raise InvalidOption(
            f"a {code} KTP upload needs the KTP generator (simulator.generators.ktp), which is not installed"
        )
    if code == Reason.FILE_EMPTY:
        return b"", "ktp.jpg", "image/jpeg"
    if code == Reason.EXTENSION_MISMATCH:
        return ktp_like_photo(fmt="PNG"), "ktp.jpg", "image/jpeg"
    if code == Reason.CORRUPT_IMAGE:
        good = ktp_like_photo()
        return good[: len(good) // 3], "ktp.jpg", "image/jpeg"
    if code == Reason.FILE_TOO_LARGE:
        import numpy as np
        from PIL import Image

        noise = np.random.default_rng(seed).integers(0, 256, size=(1400, 1400, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, "PNG")
        return buffer.getvalue(), "ktp.png", "image/png"
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (960, 640), (172, 212, 236)).save(buffer, "BMP")
    return buffer.getvalue(), "ktp.bmp", "image/bmp"
