"""Every kind of upload a real applicant sends, valid and bad, each with the verdict the rules should give.

``render_upload`` makes one applicant's upload body in memory (the load tests post it as is).
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageOps

from simulator.errors import InvalidOption
from simulator.generators.ktp import encoding, light, photo, warp
from simulator.generators.ktp.card import SPECIMEN_TEXT, render_card
from simulator.generators.ktp.layout import CARD_W, font
from simulator.rules.reasons import ACCEPT, Reason
from simulator.rules.upload import MAX_UPLOAD_BYTES


@dataclass(frozen=True)
class Upload:
    """One rendered file: its bytes, the name the applicant's phone gives it, and what it should get."""

    data: bytes
    filename: str
    content_type: str
    variant: str
    expected: str  # "accept" or a Reason code
    width: int | None  # as displayed (after EXIF orientation); None when there is no image
    height: int | None


CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "bmp": "image/bmp",
    "gif": "image/gif",
    "webp": "image/webp",
    "tiff": "image/tiff",
    "heic": "image/heic",
    "pdf": "application/pdf",
}

Person = Mapping[str, Any]
Rendered = tuple[bytes, str, tuple[int, int] | None]
"""A renderer's result: the file's bytes, its extension, its picture's size as displayed (or None)."""
Renderer = Callable[[Person, np.random.Generator], Rendered]


def _stem(person: Person) -> str:
    return f"ktp_{person.get('nik', 'unknown')}"


PNG_SHARE = 0.06
"""Share of valid uploads sent as PNG (an edited or exported photo rather than the camera's JPEG)."""
PNG_PIXELS = 520_000
"""A PNG of a noisy photo runs to ~1.7 bytes a pixel, so a phone app sends one at about half a megapixel."""
TURNED_SHARE = 0.15
"""Share of JPEG uploads whose pixels are stored as the sensor shot them, with an EXIF orientation tag."""


def png_frame(size: tuple[int, int]) -> tuple[int, int]:
    """The frame a PNG upload is sent at: the phone's frame scaled to at most PNG_PIXELS."""
    w, h = size
    if w * h <= PNG_PIXELS:
        return size
    ratio = (PNG_PIXELS / (w * h)) ** 0.5
    return round(w * ratio), round(h * ratio)


def _phone_upload(person: Person, rng: np.random.Generator, fmt: str, *, cut_off: bool = False) -> Rendered:
    """A phone photo of the card, encoded as the phone sends it; never over the 2 MB limit.

    Everything about the file is chosen before the photo is taken: a PNG is drawn at the size it is
    sent at, and a JPEG stored turned (EXIF orientation 3, 6 or 8) is drawn turned, as the sensor
    stored it, rather than drawn upright and then turned (a pass over the whole frame).
    """
    size = photo.pick_resolution(rng)
    if fmt == "png":
        shot = photo.plan_shot(rng, png_frame(size), cut_off=cut_off)
        return _encode_png_under_limit(photo.photograph(person, shot, rng))
    quality, orientation = _jpeg_settings(rng)
    shot = photo.plan_shot(rng, size, cut_off=cut_off)
    image = photo.photograph(person, photo.turn_shot(shot, orientation), rng)
    return _jpeg_under_limit(image, quality, orientation, turned=True), "jpg", size  # size upright


def _encode_png_under_limit(image: Image.Image) -> Rendered:
    data = encoding.encode(image, "png")
    while len(data) > MAX_UPLOAD_BYTES:
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.BILINEAR)
        data = encoding.encode(image, "png")
    return data, "png", image.size


def _encode_under_limit(image: Image.Image, rng: np.random.Generator) -> Rendered:
    """Encode a photo already taken as a phone's JPEG; never over the 2 MB limit (lower quality)."""
    quality, orientation = _jpeg_settings(rng)
    return _jpeg_under_limit(image, quality, orientation), "jpg", image.size


def _jpeg_settings(rng: np.random.Generator) -> tuple[int, int | None]:
    """The phone's JPEG quality and, for TURNED_SHARE of photos, the EXIF orientation it stores them under."""
    quality = int(rng.integers(72, 94))
    orientation = int(rng.choice([3, 6, 8])) if rng.random() < TURNED_SHARE else None
    return quality, orientation


def _jpeg_under_limit(
    image: Image.Image, quality: int, orientation: int | None, *, turned: bool = False
) -> bytes:
    """The photo as a JPEG at ``quality``, lowered 10 at a time until it fits under the 2 MB limit."""
    data = encoding.encode(image, "jpeg", quality=quality, exif_orientation=orientation, turned=turned)
    while len(data) > MAX_UPLOAD_BYTES:
        quality -= 10
        data = encoding.encode(image, "jpeg", quality=quality, exif_orientation=orientation, turned=turned)
    return data


def render_valid(person: Person, rng: np.random.Generator) -> Rendered:
    return _phone_upload(person, rng, "png" if rng.random() < PNG_SHARE else "jpeg")


def render_cropped(person: Person, rng: np.random.Generator) -> Rendered:
    return _phone_upload(person, rng, "jpeg", cut_off=True)


def render_blurry(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    shot = photo.plan_shot(rng, photo.pick_resolution(rng))
    factor = float(rng.uniform(BLUR_FACTOR[0], BLUR_FACTOR[1]))

    def defocus(card: Image.Image) -> Image.Image:
        # Out of focus or shaken: detail finer than 1/factor of the card is gone.
        w, h = card.size
        small = card.resize((max(4, int(w / factor)), max(4, int(h / factor))), Image.Resampling.BOX)
        return small.resize((w, h), Image.Resampling.BICUBIC)

    # The whole frame is soft too (the lens, not just the card): nothing finer than BLURRY_LENS frame
    # pixels survives, so the photo is taken at 1/BLURRY_LENS of the frame and enlarged - the same soft
    # picture as a full-size photo reduced and enlarged, without drawing the detail that is then lost.
    # The surface is reduced from a full-size window and the card's noise is a third as strong, as
    # averaging a full-size photo down would leave them.
    w, h = shot.size
    small = (-(-w // BLURRY_LENS), -(-h // BLURRY_LENS))
    small_shot = replace(
        shot,
        size=small,
        quad=shot.quad * (np.array(small) / np.array(shot.size)),
        noise=shot.noise / BLURRY_LENS,
    )
    image = photo.photograph(person, small_shot, rng, card_filter=defocus, surface_reduce=BLURRY_LENS)
    image = image.resize((w, h), Image.Resampling.BILINEAR)
    return _encode_under_limit(image, rng)


BLURRY_LENS = 3
"""The blurry photo's frame is soft over this many pixels (it is drawn at 1/3 size and enlarged)."""


BLUR_FACTOR = (15.0, 22.0)
"""How much an unreadable photo has lost: detail finer than 1/15..1/22 of the card's size (at 1/11..1/18
about 1 in 300 kept a legible NIK and measured just above MIN_SHARPNESS)."""


def render_photocopy(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """A greyscale photocopy on paper, scanned or shot square-on: toner specks, streaks, hard contrast."""
    size = photo.pick_resolution(rng)
    w, h = size
    page = Image.new("L", size, int(rng.integers(226, 246)))
    shot = photo.plan_shot(rng, size)
    card = render_card(person, photo.card_width_in(shot.quad) / CARD_W)
    card = ImageOps.autocontrast(card.convert("L"), cutoff=2)
    card = card.point(lambda v: 0 if v < 90 else min(255, int(v * 1.15)))
    warp.paste_card(page, card, shot.quad)  # grey onto grey: the copy never had colour
    # Toner: specks two pixels square and a few faint streaks down the page, taken off the page at once
    # (a speck is 150 and a streak at most 50 darker, so their sum never passes 255).
    specks = (rng.random((h // 2, w // 2)) < 0.004).astype(np.uint8) * np.uint8(150)
    toner = np.repeat(np.repeat(specks, 2, axis=0), 2, axis=1)
    streak = np.zeros(w // 4, dtype=np.float32)
    streak[rng.integers(0, w // 4, 3)] = rng.uniform(20, 50, 3)
    # The streak row enlarged 4x along the page (linear between the row's pixel centres).
    line = np.interp((np.arange(w) + 0.5) / 4 - 0.5, np.arange(w // 4), streak.astype(np.uint8))
    toner += line.astype(np.uint8)
    grey = ImageChops.subtract(page, Image.fromarray(toner, "L"))
    if rng.random() < 0.5:
        # Photographed in room light: a faint warm cast and sensor noise, far below a colour photo's chroma.
        pixels = _ROOM_LIGHT[np.asarray(grey)].view(np.uint8).reshape(h, w, 4)
        light.add_sensor_noise(pixels, float(rng.uniform(2, 4)), rng)
        image = Image.frombuffer("RGBX", size, pixels, "raw", "RGBX", 0, 1)
    else:  # scanned: a greyscale file
        image = grey
    data = encoding.encode(image, "jpeg", quality=int(rng.integers(70, 90)))
    return data, "jpg", size


def _room_light_table() -> np.ndarray:
    """Grey level -> the RGBX pixel (one little-endian uint32) a photo in warm room light records: the
    grey times (255, 252, 246)/255, held inside the sensor-noise margin (see light.add_sensor_noise)."""
    grey = np.arange(256, dtype=np.float64)[:, None]
    rgb = np.rint(grey * np.array([255, 252, 246]) / 255)
    rgb = np.clip(rgb, light.NOISE_CLIP, 255 - light.NOISE_CLIP).astype(np.uint32)
    return (rgb[:, 0] | rgb[:, 1] << 8 | rgb[:, 2] << 16).astype("<u4")


_ROOM_LIGHT = _room_light_table()


def render_too_large(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """A lossless PNG export of a phone photo with compression off (an editor's level 0): 3-6 MB."""
    size = ((1280, 960), (1600, 1200), (960, 1280))[int(rng.integers(3))]
    shot = photo.plan_shot(rng, size)
    image = photo.photograph(person, shot, rng)
    return encoding.encode_png(image, level=0), "png", image.size


def _small_photo(person: Person, rng: np.random.Generator) -> Image.Image:
    shot = photo.plan_shot(rng, (800, 600))
    return photo.photograph(person, shot, rng).convert("RGB")  # for encoders that take no RGBX


PDF_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
"""PDFs carry a creation date; theirs fall in 2020, the year of the first waves."""


def _other_format(fmt: str, ext: str) -> Renderer:
    def render(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
        image = _small_photo(person, rng)
        buffer = io.BytesIO()
        if fmt == "GIF":
            image.quantize(256, method=Image.Quantize.FASTOCTREE).save(buffer, "GIF")
        elif fmt == "WEBP":
            image.save(buffer, "WEBP", quality=80, method=0)
        elif fmt == "TIFF":
            image.save(buffer, "TIFF", compression="jpeg")
        elif fmt == "PDF":
            # Dated from the seed's draws, not the clock: the same seed gives the same bytes.
            made = (PDF_EPOCH + dt.timedelta(seconds=int(rng.integers(0, 365 * 86400)))).timetuple()
            image.save(buffer, "PDF", resolution=150.0, creationDate=made, modDate=made)
        else:
            image.save(buffer, fmt)
        return buffer.getvalue(), ext, image.size

    return render


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def render_heic(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """An iPhone-style HEIF container (ftyp heic + meta + mdat) around the picture's coded data."""
    image = _small_photo(person, rng)
    coded = encoding.encode(image, "jpeg", quality=80)
    ftyp = _box(b"ftyp", b"heic" + struct.pack(">I", 0) + b"mif1heic")
    hdlr = _box(b"hdlr", b"\x00" * 4 + b"\x00" * 4 + b"pict" + b"\x00" * 12 + b"\x00")
    meta = _box(b"meta", b"\x00" * 4 + hdlr)
    return ftyp + meta + _box(b"mdat", coded), "heic", image.size


def render_truncated(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """The upload broke off: the JPEG ends part-way through its coded data."""
    data, ext, size = render_valid_jpeg(person, rng)
    cut = int(len(data) * rng.uniform(0.25, 0.9))
    return data[:cut], ext, size


def render_corrupt(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """Bytes damaged in storage: the JPEG's quantisation and Huffman tables are overwritten."""
    data, ext, size = render_valid_jpeg(person, rng)
    damaged = bytearray(data)
    for marker in (b"\xff\xdb", b"\xff\xc4"):  # DQT, DHT
        start = damaged.find(marker, 2)
        while start != -1:
            length = struct.unpack(">H", damaged[start + 2 : start + 4])[0]
            damaged[start + 4 : start + 2 + length] = rng.integers(
                0, 256, length - 2, dtype=np.uint8
            ).tobytes()
            damaged[start + 1] = 0xFE if marker == b"\xff\xc4" else 0xDB
            start = damaged.find(marker, start + 2 + length)
    return bytes(damaged), ext, size


def render_valid_jpeg(person: Person, rng: np.random.Generator) -> Rendered:
    return _phone_upload(person, rng, "jpeg")


def render_empty(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple | None]:
    return b"", "jpg", None


def render_extension_mismatch(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """A good photo under the wrong name: PNG bytes called .jpg, or JPEG bytes called .png."""
    if rng.random() < 0.5:
        data, _, size = _phone_upload(person, rng, "png")
        return data, "jpg", size
    data, _, size = _phone_upload(person, rng, "jpeg")
    return data, "png", size


def render_bomb(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """A tiny file declaring an enormous picture (decompression-bomb shape): PNG or JPEG header."""
    side = int(rng.integers(30_000, 65_000))
    if rng.random() < 0.5:
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
        row = b"\x00" + b"\x00" * 3 * 64  # a few rows' worth; the rest would inflate to gigabytes
        idat = zlib.compress(row * 64, 9)
        chunks = b"".join(
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
            for kind, body in ((b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", b""))
        )
        return b"\x89PNG\r\n\x1a\n" + chunks, "png", (side, side)
    data = encoding.encode(Image.new("RGB", (64, 64), (200, 220, 240)), "jpeg", quality=80)
    sof = data.find(b"\xff\xc0")
    patched = bytearray(data)
    patched[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    return bytes(patched), "jpg", (side, side)


def render_too_small(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """A thumbnail the chat app made: far too small to read."""
    image = _small_photo(person, rng)
    image.thumbnail((int(rng.integers(160, 300)), 300))
    return encoding.encode(image, "jpeg", quality=85), "jpg", image.size


OTHER_DOCUMENTS = (
    # (title, header colour, body colour, ink): none in the e-KTP's sky blue
    ("KARTU KELUARGA", (24, 110, 60), (250, 250, 246), (20, 20, 20)),
    ("NOMOR POKOK WAJIB PAJAK", (230, 160, 30), (252, 244, 220), (40, 30, 20)),
    ("BUKTI TRANSFER BERHASIL", (0, 150, 136), (255, 255, 255), (30, 30, 30)),
    ("KARTU BPJS KESEHATAN", (40, 150, 60), (236, 248, 236), (20, 40, 20)),
    ("SURAT IZIN MENGEMUDI", (160, 40, 40), (250, 240, 226), (30, 20, 20)),
)


def render_wrong_document(person: Person, rng: np.random.Generator) -> tuple[bytes, str, tuple]:
    """A phone screenshot of another document (family card, tax card, transfer receipt, ...)."""
    title, head, body, ink = OTHER_DOCUMENTS[int(rng.integers(len(OTHER_DOCUMENTS)))]
    size = ((1080, 2340), (1080, 1920), (720, 1600))[int(rng.integers(3))]
    w, h = size
    image = Image.new("RGB", size, body)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w, int(h * 0.03)), fill=(20, 20, 20))  # status bar
    draw.text(
        (30, int(h * 0.015)), "09:41", font=font("bold", int(h * 0.012)), fill=(255, 255, 255), anchor="lm"
    )
    draw.rectangle((0, int(h * 0.03), w, int(h * 0.12)), fill=head)
    draw.text(
        (w / 2, int(h * 0.075)), title, font=font("bold", int(w * 0.045)), fill=(255, 255, 255), anchor="mm"
    )
    text_font = font("regular", int(w * 0.032))
    fields = (
        ("Nama", str(person.get("full_name", "")).upper()),
        ("NIK", str(person.get("nik", ""))),
        ("No. KK", str(person.get("kk", "") or "")),
        ("Alamat", str(person.get("address", "")).upper()),
        ("Kecamatan", str(person.get("district", "")).upper()),
        ("Tanggal", "12-11-2020"),
    )
    y = int(h * 0.16)
    for label, value in fields:
        draw.text((40, y), label, font=text_font, fill=ink)
        draw.text((int(w * 0.36), y), f": {value}"[:34], font=text_font, fill=ink)
        y += int(h * 0.035)
    # A table of rows, as on a family card or a statement.
    top = y + int(h * 0.03)
    for i in range(int(rng.integers(6, 12))):
        ty = top + i * int(h * 0.04)
        draw.rectangle(
            (30, ty, w - 30, ty + int(h * 0.04)), outline=ink, width=2, fill=head if i == 0 else None
        )
        draw.text((50, ty + 10), f"{i + 1}.  {'—' * int(rng.integers(4, 14))}", font=text_font, fill=ink)
    draw.text(
        (w / 2, h * 0.93), SPECIMEN_TEXT, font=font("bold", int(w * 0.05)), fill=(205, 30, 40), anchor="mm"
    )
    buffer = io.BytesIO()
    if rng.random() < 0.6:
        # A screenshot's flat colours deflate to ~90 KB at zlib's fastest level with string matching
        # (level 6 takes three times as long to save another ~25 KB).
        return encoding.encode_png(image, level=1, strategy=zlib.Z_DEFAULT_STRATEGY), "png", size
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue(), "jpg", size


@dataclass(frozen=True)
class Variant:
    name: str
    expected: str
    render: Renderer
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("valid", ACCEPT, render_valid, "a phone photo of the whole card, JPEG or PNG, under 2 MB"),
        Variant("cropped", Reason.CARD_NOT_WHOLE, render_cropped, "the card runs past the frame edge"),
        Variant("photocopy", Reason.PHOTOCOPY, render_photocopy, "a greyscale photocopy on paper"),
        Variant("blurry", Reason.TOO_BLURRY, render_blurry, "out of focus or shaken, unreadable"),
        Variant("too_large", Reason.FILE_TOO_LARGE, render_too_large, "a full-resolution PNG over 2 MB"),
        Variant("bmp", Reason.UNSUPPORTED_FORMAT, _other_format("BMP", "bmp"), "a BMP file"),
        Variant("gif", Reason.UNSUPPORTED_FORMAT, _other_format("GIF", "gif"), "a GIF file"),
        Variant("webp", Reason.UNSUPPORTED_FORMAT, _other_format("WEBP", "webp"), "a WebP file"),
        Variant("tiff", Reason.UNSUPPORTED_FORMAT, _other_format("TIFF", "tiff"), "a TIFF file"),
        Variant("heic", Reason.UNSUPPORTED_FORMAT, render_heic, "an iPhone HEIC-style container"),
        Variant("pdf", Reason.UNSUPPORTED_FORMAT, _other_format("PDF", "pdf"), "a PDF with the photo"),
        Variant("truncated", Reason.CORRUPT_IMAGE, render_truncated, "a JPEG cut off part-way"),
        Variant("corrupt", Reason.CORRUPT_IMAGE, render_corrupt, "a JPEG with damaged tables"),
        Variant("empty", Reason.FILE_EMPTY, render_empty, "a zero-byte file"),
        Variant(
            "extension_mismatch",
            Reason.EXTENSION_MISMATCH,
            render_extension_mismatch,
            "PNG bytes named .jpg or JPEG bytes named .png",
        ),
        Variant("bomb", Reason.IMAGE_DIMENSIONS, render_bomb, "a tiny file declaring a huge picture"),
        Variant("too_small", Reason.IMAGE_DIMENSIONS, render_too_small, "a thumbnail under 320 px"),
        Variant(
            "wrong_document", Reason.NOT_A_KTP, render_wrong_document, "a screenshot of another document"
        ),
    )
}


def render_variant(person: Person, seed: int, variant: str = "valid") -> Upload:
    """Render one upload of ``variant`` for ``person``: same (person, seed, variant), same bytes."""
    spec = VARIANTS.get(variant)
    if spec is None:
        raise InvalidOption(f"unknown KTP variant {variant!r}; choose from {', '.join(VARIANTS)}")
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, _variant_key(variant)]
    data, ext, size = spec.render(person, np.random.default_rng(np.random.SeedSequence(entropy)))
    width, height = size if size else (None, None)
    filename = f"{_stem(person)}.{ext}"
    return Upload(data, filename, CONTENT_TYPES[ext], variant, str(spec.expected), width, height)


def render_upload(person_row: Person, seed: int, variant: str = "valid") -> tuple[bytes, str, str]:
    """One applicant's KTP upload body in memory: ``(bytes, filename, content_type)``."""
    upload = render_variant(person_row, seed, variant)
    return upload.data, upload.filename, upload.content_type


def _variant_key(variant: str) -> int:
    return zlib.crc32(variant.encode())
