"""The KTP photo upload rules as code: accept, or the reason code a registration server gives.

Decides from the bytes alone (never a manifest), cheaply: header checks first, then a reduced decode.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from simulator.rules.reasons import ACCEPT, Reason

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
"""The program's limit: "at most 2 MB (larger files are rejected)" (docs/domain.md, tirto.id 2020)."""

ACCEPTED_FORMATS = ("jpeg", "png")
"""JPG/JPEG or PNG only (docs/domain.md)."""

MIN_SIDE = 320
"""Below this a phone photo of a card cannot be read; also refuses thumbnails and icons."""
MAX_SIDE = 12_000
MAX_PIXELS = 50_000_000
"""A 50 MP phone sensor is the largest honest photo; anything above is a decompression-bomb shape.
A baseline JPEG that large is decoded at 1/8 scale (``draft``), under 1 MP."""
MAX_PNG_PIXELS = 16_000_000
"""PNG cannot be decoded reduced, so each pixel is paid for: 16 MP (64 MB decoded) is far above
what an honest 2 MB PNG holds (a photo compresses to ~1.5 bytes a pixel: about 1.4 MP)."""
MAX_PROGRESSIVE_JPEG_PIXELS = 16_000_000
"""A progressive JPEG keeps every coefficient of the image while it decodes (~3 bytes a pixel),
even reduced: phones save baseline JPEGs, so a lower cap costs honest uploads nothing."""
MAX_BIT_DEPTH = 8
"""Bits per channel: a phone photo has 8; a 16-bit PNG doubles the decode for nothing visible."""
MAX_TRAILING_BYTES = 16 * 1024
"""Bytes allowed after the image's end marker (JPEG EOI, PNG IEND): room for a camera's small
trailer, not for a second file hidden behind the picture (a polyglot); more is refused."""

# Pillow's own guard for any decode in this process: refuse (not just warn) far above MAX_PIXELS.
Image.MAX_IMAGE_PIXELS = min(Image.MAX_IMAGE_PIXELS or MAX_PIXELS, MAX_PIXELS)

ANALYSIS_SIDE = 400
"""Long side of the downscaled copy the content checks look at."""

EXTENSIONS: dict[str, str] = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",
    ".png": "png",
    ".gif": "gif",
    ".bmp": "bmp",
    ".webp": "webp",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".heic": "heic",
    ".heif": "heic",
    ".avif": "avif",
    ".pdf": "pdf",
}

# --- content thresholds (measured on the downscaled copy; see measure_content) ---------------------
GREY_CHROMA_P95 = 16.0
"""95th percentile of per-pixel chroma (max-min of RGB, 0..255): a photocopy has almost none."""
MIN_CARD_FRACTION = 0.04
"""Share of the frame that must show the e-KTP's light-blue ground for it to be a KTP at all."""
MAX_EDGE_CARD_FRACTION = 0.06
"""Share of any frame edge that may touch the card before the card counts as cut off."""
MIN_SHARPNESS = 0.42
"""Edge steepness of the print inside the card, relative to its contrast (steepest 1-px step / p1-p99
range, at ANALYSIS_SIDE). Sharp phone photos measure 0.49-0.9; text smeared past reading, 0.1-0.36."""

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


@dataclass(frozen=True)
class UploadVerdict:
    """What the server answers for one upload. ``reason is None`` means accepted."""

    reason: Reason | None
    message: str
    format: str | None = None
    width: int | None = None
    height: int | None = None
    measures: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def accepted(self) -> bool:
        return self.reason is None

    @property
    def verdict(self) -> str:
        """``"accept"`` or the reason code: the value a KTP manifest's ``expected`` column holds."""
        return ACCEPT if self.reason is None else str(self.reason)


def sniff_format(head: bytes) -> str | None:
    """Name the file format from its first bytes (magic numbers), or ``None`` if unknown."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIC_BRANDS:
            return "heic"
        if brand in _AVIF_BRANDS:
            return "avif"
        return "iso-bmff"  # mp4/mov and friends
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "jpeg2000"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "jxl"
    if head.startswith(b"8BPS"):
        return "psd"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ico"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    stripped = head.lstrip()[:256].lower()
    if stripped.startswith(b"<svg") or (stripped.startswith(b"<?xml") and b"<svg" in stripped):
        return "svg"
    if stripped.startswith(b"<!doctype html") or stripped.startswith(b"<html"):
        return "html"
    return None


def validate_upload(data: bytes, filename: str | None = None) -> UploadVerdict:
    """Apply the KTP upload rules to one file's bytes, cheapest check first."""
    if not data:
        return UploadVerdict(Reason.FILE_EMPTY, "the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        return UploadVerdict(
            Reason.FILE_TOO_LARGE,
            f"the file is {len(data) / 1048576:.2f} MB; the limit is {MAX_UPLOAD_BYTES // 1048576} MB",
        )
    fmt = sniff_format(data[:64])
    if fmt not in ACCEPTED_FORMATS:
        shown = fmt.upper() if fmt else "not a recognised image"
        return UploadVerdict(Reason.UNSUPPORTED_FORMAT, f"the file is {shown}; only JPG/JPEG or PNG", fmt)
    if filename:
        ext = os.path.splitext(filename)[1].lower()
        if ext and EXTENSIONS.get(ext) != fmt:
            return UploadVerdict(
                Reason.EXTENSION_MISMATCH, f"the name ends in {ext} but the content is {fmt.upper()}", fmt
            )

    trailing = len(data) - image_end(data, fmt)
    if trailing > MAX_TRAILING_BYTES:
        return UploadVerdict(
            Reason.CORRUPT_IMAGE,
            f"{trailing:,} bytes follow the end of the {fmt.upper()} image; send the photo alone",
            fmt,
        )
    if fmt == "png" and len(data) >= 26 and data[24] > MAX_BIT_DEPTH:
        return UploadVerdict(
            Reason.IMAGE_DIMENSIONS, f"the PNG has {data[24]} bits per channel; at most {MAX_BIT_DEPTH}", fmt
        )

    # Header only: Image.open parses the size without decoding pixels.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return UploadVerdict(Reason.IMAGE_DIMENSIONS, "the declared image size is absurdly large", fmt)
    except (OSError, SyntaxError, ValueError):
        message = f"the {fmt.upper()} header is damaged and cannot be read"
        return UploadVerdict(Reason.CORRUPT_IMAGE, message, fmt)
    budget = MAX_PIXELS
    if fmt == "png":
        budget = MAX_PNG_PIXELS
    elif image.info.get("progressive") or image.info.get("progression"):
        budget = MAX_PROGRESSIVE_JPEG_PIXELS
    if width * height > budget or max(width, height) > MAX_SIDE:
        return UploadVerdict(
            Reason.IMAGE_DIMENSIONS,
            f"the declared size {width}x{height} is too large (at most {budget / 1e6:g} MP for this kind of "
            f"{fmt.upper()})",
            fmt,
            width,
            height,
        )
    if min(width, height) < MIN_SIDE:
        return UploadVerdict(
            Reason.IMAGE_DIMENSIONS,
            f"the image is {width}x{height}; at least {MIN_SIDE} px on each side is needed",
            fmt,
            width,
            height,
        )

    try:
        small = _decode_reduced(image)
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        detail = str(err).split(" (")[0] if "truncated" in str(err) else "its data cannot be decoded"
        message = f"the image is truncated or corrupt: {detail}"
        return UploadVerdict(Reason.CORRUPT_IMAGE, message, fmt, width, height)
    if small.width != small.height and (small.width > small.height) != (width > height):
        width, height = height, width  # EXIF orientation turned it; report what the viewer sees

    measures = measure_content(small)
    reason, message = _judge_content(measures)
    return UploadVerdict(reason, message, fmt, width, height, measures)


def image_end(data: bytes, fmt: str) -> int:
    """Offset just past the image's last byte (JPEG EOI, PNG IEND chunk); ``len(data)`` if not found.

    Walks the file's own structure (JPEG marker segments and entropy-coded scans, PNG chunks), so
    bytes that merely look like an end marker inside the picture do not count.
    """
    if fmt == "png":
        offset = 8
        while offset + 12 <= len(data):
            length = int.from_bytes(data[offset : offset + 4], "big")
            kind = data[offset + 4 : offset + 8]
            offset += 12 + length
            if kind == b"IEND":
                return min(offset, len(data))
        return len(data)
    if fmt != "jpeg":
        return len(data)
    offset = 2  # after SOI
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return len(data)  # not a marker where one must be: the decoder will judge the file
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xD9:  # EOI
            return offset + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers
            offset += 2
            continue
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        offset += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next real marker
            while True:
                found = data.find(b"\xff", offset)
                if found < 0 or found + 1 >= len(data):
                    return len(data)
                following = data[found + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    offset = found + (1 if following == 0xFF else 2)
                    continue
                offset = found
                break
    return len(data)


def _decode_reduced(image: Image.Image) -> Image.Image:
    """Decode at a fraction of full size (JPEG DCT scaling), honour EXIF orientation, shrink to analyse."""
    ratio = max(image.size) / ANALYSIS_SIDE
    if image.format == "JPEG" and ratio >= 2:
        image.draft("RGB", (max(1, int(image.width / ratio)), max(1, int(image.height / ratio))))
    image.load()
    oriented = ImageOps.exif_transpose(image)
    if oriented.mode != "RGB":
        oriented = oriented.convert("RGB")
    ratio = max(oriented.size) / ANALYSIS_SIDE
    if ratio > 1.05:
        size = (max(1, round(oriented.width / ratio)), max(1, round(oriented.height / ratio)))
        oriented = oriented.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return oriented


def measure_content(image: Image.Image) -> dict[str, float]:
    """The numbers the content rules look at, from a small RGB copy of the photo."""
    hsv = np.asarray(image.convert("HSV"))
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    # Chroma (max - min of RGB) is saturation times value, without another pass over RGB.
    chroma = sat.astype(np.uint16) * val // 255
    # The e-KTP ground: a pale sky blue (hue about 190-225 deg), neither grey nor dark.
    card = (hue >= 134) & (hue <= 162) & (sat >= 22) & (sat <= 140) & (val >= 105)
    h, w = card.shape
    strip = max(2, min(h, w) // 120)
    edges = (card[:strip].mean(), card[-strip:].mean(), card[:, :strip].mean(), card[:, -strip:].mean())
    measures = {
        "chroma_p95": float(np.percentile(chroma, 95)),
        "card_fraction": float(card.mean()),
        "edge_card_fraction": float(max(edges)),
        "sharpness": 0.0,
    }
    rows = np.flatnonzero(card.mean(axis=1) > 0.15)
    cols = np.flatnonzero(card.mean(axis=0) > 0.15)
    if rows.size >= 8 and cols.size >= 8:
        # The print inside the card, not its outline: a blurred photo still has a crisp card edge
        # where the card meets a plain table, but its text is smeared.
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        dy, dx = (bottom - top) * 18 // 100, (right - left) * 18 // 100
        luma = np.asarray(image.convert("L"), dtype=np.float32)[
            top + dy : bottom - dy, left + dx : right - dx
        ]
        measures["sharpness"] = _sharpness(luma)
    return measures


def _sharpness(luma: np.ndarray) -> float:
    # Steepest edges (99.5th percentile of the 1-px gradient) over the print's contrast: blur spreads
    # an edge over more pixels, so the step per pixel falls whatever the lighting.
    gx = np.abs(np.diff(luma, axis=1))
    gy = np.abs(np.diff(luma, axis=0))
    steep = max(float(np.percentile(gx, 99.5)), float(np.percentile(gy, 99.5)))
    low, high = np.percentile(luma, [1, 99])
    return steep / max(float(high - low), 24.0)


def _judge_content(m: dict[str, float]) -> tuple[Reason | None, str]:
    if m["chroma_p95"] < GREY_CHROMA_P95:
        return Reason.PHOTOCOPY, "the photo is greyscale: a photocopy, not the card itself"
    if m["card_fraction"] < MIN_CARD_FRACTION:
        return Reason.NOT_A_KTP, "no e-KTP card is visible in the photo"
    if m["edge_card_fraction"] > MAX_EDGE_CARD_FRACTION:
        return Reason.CARD_NOT_WHOLE, "the card is cut off at the edge of the photo; the whole card must show"
    if m["sharpness"] < MIN_SHARPNESS:
        return Reason.TOO_BLURRY, "the photo is too blurry to read the card"
    return None, "accepted"
