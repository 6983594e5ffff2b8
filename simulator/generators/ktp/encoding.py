"""The photo as the phone's file: JPEG (with an EXIF orientation when the phone was turned) or PNG
written fast (one filter, run-length zlib, rows stored as they are when that is smaller).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

TURNS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
"""How the pixels of an upright photo are stored under each EXIF orientation tag (viewers undo it)."""


def encode(
    image: Image.Image,
    fmt: str,
    *,
    quality: int = 88,
    exif_orientation: int | None = None,
    turned: bool = False,
) -> bytes:
    """Encode as a phone app would upload it; ``exif_orientation`` stores the pixels turned, with the tag
    (``turned``: the image is already stored turned, see turn_shot)."""
    buffer = io.BytesIO()
    if fmt == "png":
        return encode_png(image)
    if exif_orientation in TURNS:
        # The sensor's pixels are stored as shot; the tag tells viewers how to turn them upright.
        stored = image if turned else image.transpose(TURNS[exif_orientation])
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        exif[0x010F] = "SyntheticPhone"
        stored.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def encode_png(image: Image.Image, *, level: int = 1, strategy: int = zlib.Z_RLE) -> bytes:
    """A PNG of an RGB(X) or greyscale image: every row with PNG's Up filter, deflated at a fast setting.

    Up (each byte minus the one above it) is computed in one numpy pass, and on a photo it takes a
    third off the file; trying all five filters per row (libpng's and Pillow's adaptive choice) costs
    several times more for a little less. zlib's run-length strategy at level 1 is how a fast exporter
    deflates; level 0 stores the rows as they are (an export with compression off, rows unfiltered).
    Any PNG decoder reads it.
    """
    if image.mode not in ("RGB", "RGBX", "L"):
        image = image.convert("RGB")
    width, height = image.size
    channels = 1 if image.mode == "L" else 3
    packed = image.tobytes("raw", "L" if channels == 1 else "RGB")
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    if level == 0:
        idat = _stored_rows(memoryview(packed), width * channels)
    else:
        flat = np.frombuffer(packed, np.uint8).reshape(height, width * channels)
        rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
        rows[:, 0] = 2  # filter type 2, Up (the row above the first is taken as zeros)
        rows[0, 1:] = flat[0]
        np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # uint8: modulo 256, as the filter is defined
        deflate = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
        idat = [deflate.compress(rows.data), deflate.flush()]
    # One join at the end: the IDAT data is never copied into an intermediate chunk.
    parts = [b"\x89PNG\r\n\x1a\n"]
    for kind, data in ((b"IHDR", [header]), (b"IDAT", idat), (b"IEND", [])):
        crc = zlib.crc32(kind)
        for piece in data:
            crc = zlib.crc32(piece, crc)
        parts += [struct.pack(">I", sum(len(piece) for piece in data)), kind, *data, struct.pack(">I", crc)]
    return b"".join(parts)


def _stored_rows(packed: memoryview, row_bytes: int) -> list:
    """The zlib stream of PNG rows with filter 0 (None) in stored deflate blocks, as pieces to join: a
    filter byte and a view of each row, a block header before every run of rows that fits in a block.
    What zlib's level 0 writes, without its copies of the data."""
    per_block = max(1, 65535 // (row_bytes + 1))
    height = len(packed) // row_bytes if row_bytes else 0
    pieces: list = [b"\x78\x01"]
    adler = 1
    zero = b"\x00"
    for first in range(0, height, per_block):
        last = min(height, first + per_block)
        size = (last - first) * (row_bytes + 1)
        pieces.append(struct.pack("<BHH", last == height, size, 0xFFFF ^ size))
        for row in range(first, last):
            line = packed[row * row_bytes : (row + 1) * row_bytes]
            adler = zlib.adler32(line, zlib.adler32(zero, adler))
            pieces += [zero, line]
    if height == 0:
        pieces.append(struct.pack("<BHH", 1, 0, 0xFFFF))
    pieces.append(struct.pack(">I", adler))
    return pieces
