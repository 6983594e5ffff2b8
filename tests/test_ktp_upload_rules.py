"""The KTP upload rules (simulator.rules.upload) on hand-made files: each rule, its order, EXIF."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageDraw

from simulator.generators.ktp.variants import render_variant
from simulator.rules.reasons import ACCEPT, Reason
from simulator.rules.upload import MAX_UPLOAD_BYTES, sniff_format, validate_upload

PERSON = {
    "nik": "3204123108900003",
    "kk": "3204120101090012",
    "full_name": "Siti Nurhaliza",
    "gender": "P",
    "birth_place": "Bandung",
    "birth_date": "1990-08-31",
    "religion": "ISLAM",
    "marital_status": "KAWIN",
    "occupation": "KARYAWAN SWASTA",
    "blood_type": "O",
    "province": "JAWA BARAT",
    "regency": "KABUPATEN BANDUNG",
    "district": "CILEUNYI",
    "village": "CINUNUK",
    "address": "JL. RAYA CINUNUK NO. 12",
    "rt_rw": "003/019",
    "postal_code": "40624",
}


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def good_jpeg() -> bytes:
    data = render_variant(PERSON, 7, "valid").data
    verdict = validate_upload(data, "ktp.jpg")
    assert verdict.format in ("jpeg", "png")
    return data if verdict.format == "jpeg" else _encode(Image.open(io.BytesIO(data)).convert("RGB"), "JPEG")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "png"),
        (b"GIF89a\x01\x00", "gif"),
        (b"BM" + b"\x00" * 20, "bmp"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"II*\x00\x08\x00", "tiff"),
        (b"MM\x00*\x00\x00", "tiff"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "heic"),
        (b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00", "avif"),
        (b"%PDF-1.7\n", "pdf"),
        (b"PK\x03\x04", "zip"),
        (b"<svg xmlns=", "svg"),
        (b"hello world", None),
    ],
)
def test_sniff_format_reads_magic_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def test_a_phone_photo_of_the_whole_card_is_accepted(good_jpeg: bytes) -> None:
    verdict = validate_upload(good_jpeg, "IMG_20201111.jpg")
    assert verdict.accepted, verdict
    assert verdict.verdict == ACCEPT
    assert verdict.width and verdict.height


def test_empty_file() -> None:
    assert validate_upload(b"", "ktp.jpg").reason is Reason.FILE_EMPTY


def test_size_limit_is_checked_before_anything_else() -> None:
    just_over = b"\xff\xd8\xff" + b"\x00" * (MAX_UPLOAD_BYTES - 2)
    assert len(just_over) == MAX_UPLOAD_BYTES + 1
    assert validate_upload(just_over, "ktp.gif").reason is Reason.FILE_TOO_LARGE


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "WEBP", "TIFF", "PDF"])
def test_formats_other_than_jpeg_and_png_are_refused_by_their_bytes(fmt: str) -> None:
    data = _encode(Image.new("RGB", (640, 480), (200, 220, 240)), fmt)
    # Named .jpg on purpose: the bytes decide, not the name.
    verdict = validate_upload(data, "ktp.jpg")
    assert verdict.reason is Reason.UNSUPPORTED_FORMAT
    assert verdict.format == sniff_format(data[:64])


def test_extension_mismatch_both_ways(good_jpeg: bytes) -> None:
    png = _encode(Image.open(io.BytesIO(good_jpeg)), "PNG", compress_level=1)
    assert validate_upload(png, "ktp.jpg").reason is Reason.EXTENSION_MISMATCH
    assert validate_upload(good_jpeg, "ktp.png").reason is Reason.EXTENSION_MISMATCH
    assert validate_upload(good_jpeg, "KTP.JPEG").accepted
    assert validate_upload(good_jpeg, None).accepted  # no name: nothing to compare


def _png_declaring(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in ((b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", b""))
    )


@pytest.mark.parametrize(("width", "height"), [(40_000, 40_000), (12_001, 400), (9_000, 6_000)])
def test_huge_declared_dimensions_are_refused_from_the_header(width: int, height: int) -> None:
    data = _png_declaring(width, height)
    assert len(data) < 2000  # the decompression-bomb shape: tiny file, enormous picture
    verdict = validate_upload(data, "ktp.png")
    assert verdict.reason is Reason.IMAGE_DIMENSIONS


def test_jpeg_with_patched_huge_size_is_refused(good_jpeg: bytes) -> None:
    patched = bytearray(good_jpeg)
    sof = patched.find(b"\xff\xc0")
    patched[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    assert validate_upload(bytes(patched), "ktp.jpg").reason is Reason.IMAGE_DIMENSIONS


def test_thumbnail_is_too_small() -> None:
    data = _encode(Image.new("RGB", (300, 200), (200, 220, 240)), "JPEG")
    assert validate_upload(data, "ktp.jpg").reason is Reason.IMAGE_DIMENSIONS


@pytest.mark.parametrize("share", [0.3, 0.6, 0.95])
def test_truncated_jpeg_is_corrupt(good_jpeg: bytes, share: float) -> None:
    verdict = validate_upload(good_jpeg[: int(len(good_jpeg) * share)], "ktp.jpg")
    assert verdict.reason is Reason.CORRUPT_IMAGE


def test_jpeg_with_broken_header_is_corrupt(good_jpeg: bytes) -> None:
    broken = good_jpeg[:2] + b"\xff\xc4\x00\x02" + b"\x00" * 64
    assert validate_upload(broken, "ktp.jpg").reason is Reason.CORRUPT_IMAGE


def test_greyscale_copy_is_a_photocopy(good_jpeg: bytes) -> None:
    grey = Image.open(io.BytesIO(good_jpeg)).convert("L")
    assert validate_upload(_encode(grey, "JPEG"), "ktp.jpg").reason is Reason.PHOTOCOPY
    assert validate_upload(_encode(grey.convert("RGB"), "PNG"), "ktp.png").reason is Reason.PHOTOCOPY


def test_a_picture_without_a_card_is_not_a_ktp() -> None:
    image = Image.new("RGB", (1080, 1920), (250, 250, 246))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 1080, 220), fill=(24, 110, 60))
    for y in range(300, 1800, 60):
        draw.text((40, y), "KARTU KELUARGA 3204120101090012", fill=(20, 20, 20), font_size=36)
    assert validate_upload(_encode(image, "PNG"), "screenshot.png").reason is Reason.NOT_A_KTP


def test_card_cut_off_at_the_frame(good_jpeg: bytes) -> None:
    image = Image.open(io.BytesIO(good_jpeg)).convert("RGB")
    measures = validate_upload(good_jpeg).measures
    assert measures["edge_card_fraction"] == 0
    # Keep the left 55% of the frame: the card now runs off the right edge.
    cut = image.crop((0, 0, int(image.width * 0.55), image.height))
    cut = cut.resize((max(cut.width, 400), max(cut.height, 400)))
    assert validate_upload(_encode(cut, "JPEG"), "ktp.jpg").reason is Reason.CARD_NOT_WHOLE


def test_blurred_photo_is_too_blurry(good_jpeg: bytes) -> None:
    image = Image.open(io.BytesIO(good_jpeg)).convert("RGB")
    w, h = image.size
    soft = image.resize((w // 12, h // 12), Image.Resampling.BOX).resize((w, h), Image.Resampling.BICUBIC)
    assert validate_upload(_encode(soft, "JPEG"), "ktp.jpg").reason is Reason.TOO_BLURRY


def test_exif_orientation_is_honoured(good_jpeg: bytes) -> None:
    upright = Image.open(io.BytesIO(good_jpeg)).convert("RGB")
    # Stored turned a quarter, with the tag that turns it back: the viewer (and the server) sees it upright.
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = _encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())
    verdict = validate_upload(stored, "ktp.jpg")
    assert verdict.accepted, verdict
    assert (verdict.width, verdict.height) == upright.size


def test_every_verdict_carries_a_message_and_an_http_status() -> None:
    cases = ((b"", "a.jpg"), (b"GIF89a" + b"\x00" * 100, "a.gif"), (_png_declaring(50_000, 9), "a.png"))
    for data, name in cases:
        verdict = validate_upload(data, name)
        assert verdict.message
        assert verdict.reason is not None and 400 <= verdict.reason.http_status < 500


def test_a_second_file_behind_the_photo_is_refused_and_a_small_trailer_is_not(good_jpeg: bytes) -> None:
    from simulator.rules.upload import MAX_TRAILING_BYTES

    behind = MAX_UPLOAD_BYTES - len(good_jpeg) - 1024  # a polyglot that still fits the size limit
    assert behind > MAX_TRAILING_BYTES
    verdict = validate_upload(good_jpeg + b"PK\x03\x04" + b"\x00" * behind, "ktp.jpg")
    assert verdict.reason == Reason.CORRUPT_IMAGE
    assert "follow the end of the JPEG" in verdict.message
    # A camera's few bytes after the end marker are not a second file.
    assert validate_upload(good_jpeg + b"\x00" * 512, "ktp.jpg").accepted
    png = _encode(Image.open(io.BytesIO(good_jpeg)).convert("RGB"), "PNG")
    if len(png) + MAX_TRAILING_BYTES + 2 < MAX_UPLOAD_BYTES:
        refused = validate_upload(png + b"\x01" * (MAX_TRAILING_BYTES + 1), "ktp.png")
        assert refused.reason == Reason.CORRUPT_IMAGE and "PNG" in refused.message
