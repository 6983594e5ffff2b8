"""Renders the flat e-KTP card (before it is photographed): ground, header, NIK, fields, portrait, mark.

The guilloche ground and the SPECIMEN mark are drawn once per process and reused for every card.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from simulator.generators.ktp import layout, pillow_core
from simulator.generators.ktp.layout import CARD_H, CARD_W, font
from simulator.generators.ktp.portrait import draw_portrait

INK = (22, 22, 30)
SPECIMEN_TEXT = "SPECIMEN • DATA SINTETIS"
SPECIMEN_RED = (205, 30, 40)
SIGNATURE_INK = (20, 24, 60)
ROW_Y0 = 172
ROW_STEP = 29
INDENTED = {"RT/RW", "Kel/Desa", "Kecamatan"}
ROW_LABELS = layout.ROW_LABELS


@functools.lru_cache(maxsize=1)
def card_ground() -> Image.Image:
    """The pale-blue security ground: a soft gradient with guilloche waves and a rosette."""
    y, x = np.mgrid[0:CARD_H, 0:CARD_W].astype(np.float32)
    u, v = x / CARD_W, y / CARD_H
    # Gradient from a greener sky blue at the left to a deeper one at the right, lighter centre.
    base = np.stack(
        [
            206 - 22 * u + 8 * np.sin(np.pi * v),
            230 - 14 * u + 4 * np.sin(np.pi * v),
            246 - 6 * u,
        ],
        axis=-1,
    )
    waves = np.zeros_like(u)
    for k, (fx, amp, fy) in enumerate(((0.045, 9.0, 0.018), (0.038, 12.0, 0.024), (0.052, 7.0, 0.031))):
        phase = x * fx + amp * np.sin(y * fy + k)
        waves = np.maximum(waves, np.clip(1 - np.abs(np.sin(phase)) / 0.09, 0, 1))
    cx, cy = CARD_W * 0.47, CARD_H * 0.55
    r = np.hypot(x - cx, y - cy)
    theta = np.arctan2(y - cy, x - cx)
    rosette = np.clip(1 - np.abs(np.sin(r * 0.11 + 2.2 * np.sin(theta * 14))) / 0.12, 0, 1) * (r < 260)
    lines = np.maximum(waves * 0.55, rosette * 0.45)[..., None]
    tint = np.array([150, 188, 224], dtype=np.float32)
    ground = base * (1 - lines * 0.55) + tint * (lines * 0.55)
    return Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8), "RGB")


@functools.lru_cache(maxsize=1)
def specimen_mask() -> Image.Image:
    """An 8-bit mask of the SPECIMEN / DATA SINTETIS mark: a diagonal repeat over the whole card, plus a band.

    The repeat is dense enough that any crop holding one field also holds part of the mark.
    """
    big = Image.new("L", (CARD_W * 2, CARD_H * 2), 0)
    draw = ImageDraw.Draw(big)
    mark_font = font("bold", 30)
    step_x, step_y = 470, 88
    for row, y in enumerate(range(0, big.height, step_y)):
        offset = (row % 2) * step_x // 2
        for x in range(-step_x, big.width, step_x):
            draw.text((x + offset, y), SPECIMEN_TEXT, font=mark_font, fill=62)
    tilted = big.rotate(22, resample=Image.Resampling.BILINEAR, center=(big.width / 2, big.height / 2))
    left, top = (tilted.width - CARD_W) // 2, (tilted.height - CARD_H) // 2
    mask = tilted.crop((left, top, left + CARD_W, top + CARD_H))
    band = ImageDraw.Draw(mask)
    band.rectangle((0, CARD_H - 52, CARD_W, CARD_H - 14), fill=150)
    return mask


@functools.lru_cache(maxsize=1)
def band_text_mask() -> Image.Image:
    mask = Image.new("L", (CARD_W, CARD_H), 0)
    draw = ImageDraw.Draw(mask)
    text = "SPECIMEN  —  DATA SINTETIS  —  BUKAN DOKUMEN RESMI"
    draw.text((CARD_W / 2, CARD_H - 33), text, font=font("bold", 24), fill=255, anchor="mm")
    return mask


@functools.lru_cache(maxsize=1)
def card_alpha() -> Image.Image:
    """The card's outline with its rounded ID-1 corners, as an alpha mask."""
    mask = Image.new("L", (CARD_W, CARD_H), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, CARD_W - 1, CARD_H - 1), layout.CORNER_RADIUS, fill=255)
    return mask


def issue_date_for(person: Mapping[str, Any], rng: np.random.Generator) -> dt.date:
    """The registry's ``ktp_issued_on`` when the row has it; else a plausible date after the 17th
    birthday and the e-KTP roll-out (2011), before 2025."""
    issued = person.get("ktp_issued_on")
    if isinstance(issued, dt.date):
        return issued
    if issued:
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(str(issued)[:10])
    birth = dt.date.fromisoformat(str(person["birth_date"])[:10])
    first = max(dt.date(2012, 1, 1), dt.date(min(birth.year + 17, 2024), 1, 1))
    last = dt.date(2024, 12, 31)
    return first + dt.timedelta(days=int(rng.integers(0, max(1, (last - first).days))))


SCALE_STEP = 1.07
"""Cards are drawn at one of a ladder of scales 7% apart, so a photo never resamples the card by more
than ~3.5%: the warp can then sample nearest pixels instead of paying for bilinear filtering."""


def scale_bucket(scale: float) -> float:
    """The ladder scale nearest to ``scale`` (0.3x to 2x of the 300 dpi card)."""
    clamped = min(2.0, max(0.3, scale))
    return round(SCALE_STEP ** round(np.log(clamped) / np.log(SCALE_STEP)), 4)


@functools.lru_cache(maxsize=32)  # the whole ladder, 0.3x to 2x, is 29 scales
def _static_layers(scale: float) -> tuple[Image.Image, Image.Image, Image.Image, Image.Image]:
    """Printed ground with the SPECIMEN mark, the mark's mask, ink under the mark, outline: at one scale."""
    if scale == 1.0:
        ground, mark, band, outline = printed_ground(), specimen_mask(), band_text_mask(), card_alpha()
    else:
        size = (round(CARD_W * scale), round(CARD_H * scale))
        ground = printed_ground().resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        mark = specimen_mask().resize(size, Image.Resampling.BILINEAR)
        band = band_text_mask().resize(size, Image.Resampling.BILINEAR)  # only its band is used
        outline = Image.new("L", size, 0)
        ImageDraw.Draw(outline).rounded_rectangle(
            (0, 0, size[0] - 1, size[1] - 1), layout.CORNER_RADIUS * scale, fill=255
        )
    # The mark and the white band text are the same on every card: printed into the ground once per
    # scale instead of blended over each card (a full-card pass). The person's ink then lies on the
    # mark, and the portrait, pasted over it, gets the mark again (see render_card).
    marked = ground.copy()
    marked.paste(SPECIMEN_RED, (0, 0), mark)
    band_top = int((CARD_H - 52) * scale)
    marked.paste((255, 255, 255), (0, band_top), band.crop((0, band_top, band.width, band.height)))
    marked_ink = Image.new("RGB", mark.size, INK)  # the card's ink where the mark lies over it
    marked_ink.paste(SPECIMEN_RED, (0, 0), mark)
    return marked, mark, marked_ink, outline


def ladder_scales() -> list[float]:
    """Every scale ``scale_bucket`` can return, smallest first."""
    low, high = (round(np.log(s) / np.log(SCALE_STEP)) for s in (0.3, 2.0))
    return sorted({scale_bucket(SCALE_STEP**k) for k in range(low, high + 1)})


def warm_layers() -> None:
    """Draw the static layers of every ladder scale now, and the glyphs cards set their text from
    (see photo.warm_caches)."""
    for scale in ladder_scales():
        _static_layers(scale)
    warm_glyphs()


GLYPH_SET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-/'()"
"""Characters a card prints (its text is upper-cased); any other is rasterised when first met."""


def warm_glyphs() -> None:
    """Rasterise every GLYPH_SET character at every size a card sets text in, at every ladder scale,
    and measure the kerning of every pair: text then costs only pastes."""
    sizes = {"regular": set(), "bold": set()}
    for scale in ladder_scales():
        sizes["regular"].update(max(6, round(size * scale)) for size in range(13, 22))
        sizes["bold"].add(max(6, round(30 * scale)))
    for kind, kind_sizes in sizes.items():
        for size in sorted(kind_sizes):
            _warm_face(kind, size, GLYPH_SET)
        for first in GLYPH_SET:
            for second in GLYPH_SET:
                if second != " ":
                    _pair_kerning(first + second, kind)
    for scale in ladder_scales():
        _warm_face("bold", max(6, round(54 * scale)), "0123456789")  # the NIK


def _warm_face(kind: str, size: int, chars: str) -> None:
    table = _glyph_table(kind, size)
    for char in chars:
        table[char] = _glyph(char, kind, size)
    _middle(kind, size)


def person_rng(person: Mapping[str, Any]) -> np.random.Generator:
    """The card's own randomness (portrait, signature, issue date) comes from the person, not the photo:
    every upload of one person shows the same card."""
    key = f"{person.get('nik', '')}|{person.get('full_name', '')}|{person.get('birth_date', '')}"
    return np.random.default_rng(zlib.crc32(key.encode()))


def render_card(person: Mapping[str, Any], scale: float = 1.0) -> Image.Image:
    """Draw one resident's e-KTP as a flat RGB image at the ladder scale nearest ``scale`` (1.0 = 300 dpi)."""
    scale = scale_bucket(scale)
    rng = person_rng(person)
    text = layout.card_text(person, issue_date_for(person, rng))
    ground, mark, marked_ink, _ = _static_layers(scale)
    card = ground.copy()

    def at(x: float, y: float) -> tuple[float, float]:
        return x * scale, y * scale

    # Pillow's core calls directly: a card makes ~20 crops and pastes and ~200 glyph pastes, and the
    # Image wrappers' checks cost more than the small pastes themselves.
    card_core, ink_core = pillow_core.core(card), pillow_core.core(marked_ink)

    def ink(mask: Any, left: int, top: int, colour: tuple[int, int, int] = INK) -> None:
        # ``mask`` is a core image. The ground already carries the SPECIMEN mark; ink laid on it is tinted
        # by the mark where they overlap, exactly as blending the mark over the printed card would, at
        # the cost of the glyphs only.
        width, height = mask.size
        box = (left, top, left + width, top + height)
        if colour == INK:
            tinted = ink_core.crop(box)
        else:
            tinted = Image.new("RGB", (width, height), colour)
            tinted.paste(SPECIMEN_RED, (0, 0), mark.crop(box))
            tinted = pillow_core.core(tinted)
        card_core.paste(tinted, box, mask)

    def print_text(xy: tuple[float, float], value: str, kind: str, size: float, anchor: str, shared: bool):
        size = max(6, round(size * scale))
        if shared:  # values shared by many cards (religion, status, ...) are rasterised once
            mask, (left, top) = _text_mask(value, kind, size, anchor)
            mask = pillow_core.core(mask)
        else:
            mask, (left, top) = _typeset(value, kind, size, anchor)
        ink(mask, round(xy[0] + left), round(xy[1] + top))

    print_text(at(CARD_W / 2 - 60, 40), text.province, "bold", 30, "mm", False)
    print_text(at(CARD_W / 2 - 60, 80), text.regency, "bold", 30, "mm", False)
    print_text(at(layout.COLON_X - 96, 136), text.nik, "bold", 54, "lm", False)

    for (label, value), (_, y) in zip(text.rows, _row_positions(), strict=True):
        if label == "Gol. Darah":  # printed at the right end of the Jenis Kelamin line
            print_text(at(652, y), value, "regular", 21, "lm", True)
        else:
            size = _fitting_size(value, 21, VALUE_WIDTH)
            print_text(at(layout.VALUE_X, y), value, "regular", size, "lm", label in SHARED_VALUES)

    box = layout.PORTRAIT_BOX
    box_px = (round(box[0] * scale), round(box[1] * scale), round(box[2] * scale), round(box[3] * scale))
    portrait = draw_portrait(
        (box_px[2] - box_px[0], box_px[3] - box_px[1]),
        str(person.get("gender", "L")),
        text.portrait_background,
        rng,
    )
    card.paste(portrait, box_px[:2])
    card.paste(SPECIMEN_RED, box_px, mark.crop(box_px))  # the portrait covers the ground: mark it again
    box_mid = (box[0] + box[2]) / 2
    place_size = _fitting_size(text.issue_place, 19, box[2] - box[0] + 20)
    print_text(at(box_mid, layout.ISSUE_TEXT_Y + 12), text.issue_place, "regular", place_size, "mm", False)
    print_text(at(box_mid, layout.ISSUE_TEXT_Y + 40), text.issue_date, "regular", 19, "mm", False)
    signature, (left, top) = _signature(rng, scale)
    ink(pillow_core.core(signature), left, top, SIGNATURE_INK)
    return card


SHARED_VALUES = frozenset(
    {
        "Jenis Kelamin",
        "Agama",
        "Status Perkawinan",
        "Pekerjaan",
        "Kewarganegaraan",
        "Berlaku Hingga",
    }
)
"""Fields whose printed values come from a short list: drawn from a cache of rasterised text. Place
names (province, regency, village, district) run to thousands at each ladder scale, too many to cache
whole: they are set from cached glyphs like the person's own fields."""
VALUE_WIDTH = layout.VALUE_MAX_X - layout.VALUE_X


def _rasterise(value: str, kind: str, size: int, anchor: str) -> tuple[Image.Image, tuple[int, int]]:
    """``value`` as an 8-bit mask, with its offset from the anchor point."""
    face = font(kind, size)
    # Drawn on a canvas surely big enough (no glyph is wider than 1.2 em), then trimmed: measuring the
    # text first would lay it out twice.
    width, height = round(len(value) * size * 1.2) + 2 * size, 3 * size
    x, y = (size if anchor[0] == "l" else width // 2), height // 2
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).text((x, y), value, font=face, fill=255, anchor=anchor)
    box = canvas.getbbox() or (x, y, x + 1, y + 1)
    return canvas.crop(box), (box[0] - x, box[1] - y)


_text_mask = functools.lru_cache(maxsize=8192)(_rasterise)
"""``_rasterise`` once per shared value, kind, size and anchor."""


@functools.lru_cache(maxsize=65536)
def _glyph(char: str, kind: str, size: int) -> tuple[Any, int, int, float, int, int]:
    """One character: its mask (Pillow's core image), offset from the pen on the baseline, advance, and
    the mask's width and height (0 x 0 for a blank such as a space)."""
    mask, (left, top) = _rasterise(char, kind, size, "ls")
    if not mask.getbbox():
        return None, left, top, font(kind, size).getlength(char), 0, 0
    return pillow_core.core(mask), left, top, font(kind, size).getlength(char), mask.width, mask.height


KERNING_SIZE = 200
"""Kerning is measured once per letter pair at this size and scaled: a font's kerning is linear in size."""


_KERNING: dict[str, dict[str, float]] = {"regular": {}, "bold": {}}
"""Kerning per em of each letter pair met so far, per face (filled by _pair_kerning)."""


def _pair_kerning(pair: str, kind: str) -> float:
    table = _KERNING.setdefault(kind, {})
    if pair not in table:
        face = font(kind, KERNING_SIZE)
        kerned = face.getlength(pair) - face.getlength(pair[0]) - face.getlength(pair[1])
        table[pair] = kerned / KERNING_SIZE
    return table[pair]


@functools.lru_cache(maxsize=4096)
def _glyph_table(kind: str, size: int) -> dict[str, tuple[Any, int, int, float, int, int]]:
    """The glyphs of one face and size met so far, by character (filled from _glyph as text is set)."""
    return {}


@functools.lru_cache(maxsize=1024)
def _middle(kind: str, size: int) -> int:
    """How far the "m" (middle) anchor sits below the baseline's "s" anchor, in Pillow's own terms."""
    face = font(kind, size)
    return face.getbbox("x", anchor="lm")[1] - face.getbbox("x", anchor="ls")[1]


def _typeset(value: str, kind: str, size: int, anchor: str) -> tuple[Any, tuple[int, int]]:
    """Like ``_rasterise`` for text unique to one card (name, NIK, address, dates), as a core image: set
    from cached glyph masks with the font's advances and kerning, as FreeType lays them out, at a
    fraction of the cost of rendering the outlines again."""
    if not value.strip():
        mask, offset = _rasterise(value, kind, size, anchor)
        return pillow_core.core(mask), offset
    glyphs, kerning = _glyph_table(kind, size), _KERNING[kind]
    placed, pen = [], 0.0
    x0 = y0 = 1 << 30
    x1 = y1 = -(1 << 30)
    for char, following in zip(value, value[1:] + " ", strict=True):
        glyph = glyphs.get(char) or glyphs.setdefault(char, _glyph(char, kind, size))
        mask, left, top, advance, width, height = glyph
        if mask is not None:
            x, y = round(pen) + left, top
            placed.append((mask, x, y, x + width, y + height))
            # The ink's bounding box, as it grows.
            x0, y0 = min(x0, x), min(y0, y)
            x1, y1 = max(x1, x + width), max(y1, y + height)
        pen += advance
        if following != " ":  # (a space, or the end: no pair to kern)
            pair = char + following
            pen += (kerning[pair] if pair in kerning else _pair_kerning(pair, kind)) * size
    canvas = pillow_core.blank("L", (x1 - x0, y1 - y0), 0)
    for mask, left, top, right, bottom in placed:
        canvas.paste(255, (left - x0, top - y0, right - x0, bottom - y0), mask)
    shift_x = -round(pen / 2) if anchor[0] == "m" else 0
    shift_y = _middle(kind, size) if anchor[1] == "m" else 0
    return canvas, (x0 + shift_x, y0 + shift_y)


def _row_positions() -> list[tuple[str, int]]:
    """(label, y) of every field row; Gol. Darah shares the Jenis Kelamin line."""
    positions = []
    y = ROW_Y0
    for label in ROW_LABELS:
        if label == "Gol. Darah":
            positions.append((label, y - ROW_STEP))
            continue
        positions.append((label, y))
        y += ROW_STEP
    return positions


@functools.lru_cache(maxsize=1)
def printed_ground() -> Image.Image:
    """The ground with everything every card prints alike: the labels, colons and the NIK caption."""
    ground = card_ground().copy()
    draw = ImageDraw.Draw(ground)
    label_font = font("regular", 21)
    for label, y in _row_positions():
        if label == "Gol. Darah":
            draw.text((520, y), "Gol. Darah", font=label_font, fill=INK, anchor="lm")
            draw.text((640, y), ":", font=label_font, fill=INK, anchor="lm")
            continue
        x = layout.LABEL_X + (30 if label in INDENTED else 0)
        draw.text((x, y), label, font=label_font, fill=INK, anchor="lm")
        draw.text((layout.COLON_X, y), ":", font=label_font, fill=INK, anchor="lm")
    draw.text((layout.LABEL_X, 134), "NIK", font=font("bold", 38), fill=INK, anchor="lm")
    draw.text((layout.COLON_X - 120, 134), ":", font=font("bold", 38), fill=INK, anchor="lm")
    return ground


@functools.lru_cache(maxsize=8192)
def _fitting_size(value: str, start: int, limit: float) -> int:
    # Long names and addresses shrink (as the printer does) rather than run into the photo box;
    # measured at full scale so every ladder scale prints the same layout.
    size = start
    while size > 13 and _text_width(value, "regular", size) > limit:
        size -= 1
    return size


def _text_width(value: str, kind: str, size: int) -> float:
    """The advance of ``value`` as _typeset sets it (glyph advances plus kerning), from cached glyphs."""
    width = sum(_glyph(char, kind, size)[3] for char in value)
    pairs = (value[i : i + 2] for i in range(len(value) - 1))
    return width + sum(_pair_kerning(pair, kind) for pair in pairs if pair[1] != " ") * size


def _signature(rng: np.random.Generator, scale: float) -> tuple[Image.Image, tuple[int, int]]:
    """A handwritten-looking scribble (a smoothed random walk with loops): an 8-bit mask and its place."""
    x0, y0, x1, y1 = (v * scale for v in layout.SIGNATURE_BOX)
    n = 40
    t = np.linspace(0, 1, n)
    loops = rng.uniform(2.5, 5.5)
    xs = x0 + (x1 - x0) * (t + 0.06 * np.sin(t * loops * 2 * np.pi + rng.uniform(0, 6)))
    wave = np.sin(t * loops * 2 * np.pi * rng.uniform(0.8, 1.3))
    ys = (y0 + y1) / 2 + (y1 - y0) * 0.38 * wave * (1 - 0.5 * t)
    ys += np.cumsum(rng.normal(0, 1.2 * scale, n))
    width = max(1, round(3 * scale))
    # Drawn on a canvas just around the stroke (the walk may stray outside the signature box).
    left, top = int(xs.min()) - 2 * width, int(ys.min()) - 2 * width
    size = (int(xs.max()) + 2 * width - left + 1, int(ys.max()) + 2 * width - top + 1)
    points = list(zip((xs - left).tolist(), (ys - top).tolist(), strict=True))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).line(points, fill=255, width=width, joint="curve")
    return mask, (left, top)
