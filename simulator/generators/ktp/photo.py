"""Photographs a flat card the way a phone would: surface, perspective, light, glare, blur, noise, encode.

Every step works on whole images in Pillow's C code or on small numpy arrays resized up, so a photo
costs a few milliseconds beyond its JPEG encode.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image, ImageChops

from simulator.generators.ktp.card import render_card, warm_layers
from simulator.generators.ktp.layout import CARD_H, CARD_W, CORNER_RADIUS

PHONE_RESOLUTIONS = (
    ((960, 720), 0.18),
    ((1024, 768), 0.22),
    ((1280, 720), 0.18),
    ((720, 960), 0.10),
    ((1280, 960), 0.14),
    ((960, 1280), 0.06),
    ((1600, 1200), 0.06),
    ((1920, 1080), 0.04),
    ((2048, 1536), 0.02),
)
"""(width, height) of the upload as the phone sends it, with how often. A 12-50 MP original is 3-8 MB,
over the 2 MB limit, so what gets through is what the browser, the camera picker or the applicant
scaled down - web and app uploads are usually resized to about 1280 px on the long side, so mostly
around one megapixel. The 12% above that are phones whose own camera file is small enough to go as is
(older or budget models, or a camera app set to a lower resolution)."""

SURFACES = ("wood", "cloth", "paper", "desk")
# Surface colours stay clear of the card's sky blue, as a light-blue table would hide the card edge.
WOOD_TONES = ((150, 96, 52), (118, 72, 38), (176, 128, 80), (96, 58, 34), (196, 150, 100))
CLOTH_TONES = (
    (150, 30, 40),
    (40, 110, 60),
    (90, 90, 90),
    (30, 30, 34),
    (200, 180, 140),
    (200, 110, 40),
    (100, 70, 120),
    (120, 120, 60),
)
PAPER_TONES = ((236, 232, 222), (244, 240, 230), (225, 220, 205))
DESK_TONES = ((70, 70, 72), (160, 156, 150), (210, 205, 196), (52, 44, 40))


@dataclass(frozen=True)
class Shot:
    """How one photo is taken: frame size, where the card lands, light and lens faults."""

    size: tuple[int, int]
    quad: np.ndarray  # 4x2 card corners in the frame: top-left, top-right, bottom-right, bottom-left
    surface: str
    light: float  # strength of the lighting gradient, 0 = flat
    glare: float  # peak brightness added by a reflection, 0 = none
    noise: float  # sensor noise sigma in grey levels
    card_blur: float  # 1 = the card is slightly out of focus (about one card pixel of blur), 0 = sharp


def pick_resolution(rng: np.random.Generator) -> tuple[int, int]:
    sizes, weights = zip(*PHONE_RESOLUTIONS, strict=True)
    return sizes[int(rng.choice(len(sizes), p=np.array(weights) / sum(weights)))]


def plan_shot(rng: np.random.Generator, size: tuple[int, int], *, cut_off: bool = False) -> Shot:
    """Choose a card placement; with ``cut_off`` the card runs past one or two frame edges."""
    w, h = size
    landscape = w >= h
    fill = rng.uniform(0.55, 0.85) if landscape else rng.uniform(0.72, 0.9)
    card_w = fill * w
    card_w = min(card_w, 0.86 * h / (CARD_H / CARD_W))
    card_h = card_w * CARD_H / CARD_W
    angle = np.deg2rad(rng.uniform(-9, 9) if rng.random() < 0.85 else rng.uniform(-16, 16))
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * [card_w / 2, card_h / 2]
    # Keystone: the phone is tilted, so the far edge of the card looks shorter.
    keystone = rng.uniform(0, 0.07)
    side = int(rng.integers(4))
    if side == 0:
        corners[:2, 0] *= 1 - keystone
    elif side == 1:
        corners[2:, 0] *= 1 - keystone
    elif side == 2:
        corners[[0, 3], 1] *= 1 - keystone
    else:
        corners[[1, 2], 1] *= 1 - keystone
    corners += rng.normal(0, 0.012 * card_w, corners.shape)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rot.T
    half_span = corners.max(axis=0) - corners.min(axis=0)
    margin = 0.035 * np.array([w, h])
    room = np.array([w, h]) - 2 * margin
    shrink = min(1.0, float(np.min(room / half_span)))
    corners *= shrink
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    # Centre anywhere that keeps the whole card (plus margin) inside the frame.
    cx = _between(rng, margin[0] - lo[0], w - margin[0] - hi[0])
    cy = _between(rng, margin[1] - lo[1], h - margin[1] - hi[1])
    if cut_off:
        # Push the card 12-35% of its size past one edge (sometimes two).
        span = hi - lo
        edges = rng.choice(4, size=1 + int(rng.random() < 0.3), replace=False)
        for edge in edges:
            over = rng.uniform(0.12, 0.35)
            if edge == 0:
                cx = -lo[0] - over * span[0]
            elif edge == 1:
                cx = w - hi[0] + over * span[0]
            elif edge == 2:
                cy = -lo[1] - over * span[1]
            else:
                cy = h - hi[1] + over * span[1]
    quad = corners + [cx, cy]
    return Shot(
        size=size,
        quad=quad,
        surface=SURFACES[int(rng.integers(len(SURFACES)))],
        light=float(rng.uniform(0.0, 0.28)),
        glare=float(rng.uniform(25, 70)) if rng.random() < 0.45 else 0.0,
        noise=float(rng.uniform(1.5, 5.0)),
        card_blur=1.0 if rng.random() < 0.3 else 0.0,
    )


def _between(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high)) if high > low else (low + high) / 2


def photograph(
    person: Mapping[str, Any],
    shot: Shot,
    rng: np.random.Generator,
    *,
    card_filter: Callable[[Image.Image], Image.Image] | None = None,
    surface_reduce: int = 1,
) -> Image.Image:
    """Lay the person's card on a surface and take the photo described by ``shot``.

    The card is drawn at about the size it has in the frame, and blur, light, glare and noise are
    applied to it there (the surface has its own baked in), in numpy on 8-bit pixels; then it is
    warped straight into the frame. The photo is an RGBX image (Pillow's layout of RGB, padding byte
    and all) over a numpy array (read-only to Pillow's API): JPEG takes it as is; ``.convert("RGB")``
    for anything else.
    """
    light_dir = int(rng.integers(len(_LIGHT_DIRECTIONS)))
    backing = surface_pixels(
        shot.surface, shot.size, rng, light_dir=light_dir, light=shot.light, reduce=surface_reduce
    )
    frame = Image.frombuffer("RGBX", shot.size, backing, "raw", "RGBX", 0, 1)
    card = render_card(person, card_width_in(shot.quad) / CARD_W)
    if card_filter is not None:
        card = card_filter(card)
    pixels = card_pixels(card)
    if card_filter is None and shot.card_blur > 0:
        pixels = _soften(pixels)
    _light_card(pixels, shot, light_dir, rng)
    # The pixels as an RGBX image without a copy (RGBX is Pillow's own layout of RGB, so it maps them).
    source = Image.frombuffer("RGBX", card.size, pixels, "raw", "RGBX", 0, 1)
    paste_card(frame, source, shot.quad, backing=backing)
    return frame


def card_pixels(card: Image.Image) -> np.ndarray:
    """The card's pixels as a writable (h, w, 4) uint8 array in Pillow's own RGBX layout (the 4th byte is
    padding), held inside [NOISE_CLIP, 255 - NOISE_CLIP] so that sensor noise can be added with
    wrap-around arithmetic that never wraps (the print's white and black barely move).

    Read through Pillow's Arrow export, a view of the image's memory: the clip is the only copy.
    """
    return np.clip(card_pixels_view(card), np.uint8(NOISE_CLIP), np.uint8(255 - NOISE_CLIP))


def card_pixels_view(image: Image.Image) -> np.ndarray:
    """A read-only (h, w, 4) uint8 view of an RGB or RGBX image's memory, through Pillow's Arrow export
    (a copy where that export is not available)."""
    w, h = image.size
    try:
        return pa.array(image).flatten().to_numpy(zero_copy_only=True).reshape(h, w, 4)
    except (TypeError, ValueError, AttributeError, pa.ArrowException):
        return np.asarray(image.convert("RGBX"))


def warm_caches() -> None:
    """Build every per-process cache now: card layers at each ladder scale, surfaces, noise, fonts.

    Called in the parent before it forks workers, so they share one copy (copy-on-write) instead of
    each drawing its own; every cache is seeded from its key, so warming changes no output.
    """
    warm_layers()
    for kind in SURFACES:
        for index in range(MASTERS_PER_KIND):
            _master_pixels(kind, index)
    _noise_frame()
    for level in range(len(NOISE_SIGMAS)):
        _card_noise(level)
    _light_grid()


def card_width_in(quad: np.ndarray) -> float:
    """The card's width in frame pixels (its longer horizontal edge)."""
    return float(max(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3])))


def _average_into(a: np.ndarray, b: np.ndarray) -> None:
    """a = (a + b + 1) // 2 for uint8 arrays, without widening: (a | b) - ((a ^ b) >> 1)."""
    either = np.bitwise_or(a, b)
    half = np.right_shift(np.bitwise_xor(a, b), 1)
    np.subtract(either, half, out=a)


def _soften(pixels: np.ndarray) -> np.ndarray:
    """Slightly out of focus, in place: each pixel the mean of the 2x2 block it starts (the card's finest
    detail, one card pixel, is smeared over two)."""
    _average_into(pixels[:, :-1], pixels[:, 1:])
    _average_into(pixels[:-1], pixels[1:])
    return pixels


def _light_card(pixels: np.ndarray, shot: Shot, light_dir: int, rng: np.random.Generator) -> None:
    """Sensor noise, the frame's light falloff over the card and a glare spot, in place on uint8 pixels.

    Noise is added with wrap-around (the card is held clear of 0 and 255, see photograph); the
    light's darkening and the glare saturate, as a sensor does: x - min(x, d) and x + min(255 - x, g).
    """
    h, w = pixels.shape[:2]
    noise = _card_noise(max(0, min(2, int(shot.noise // 2))))
    ox, oy = int(rng.integers(0, 64)), int(rng.integers(0, 64))
    np.add(pixels, noise[oy : oy + h, ox : ox + w], out=pixels)

    gx, gy = LIGHT_GRID
    u, v = _light_grid()
    # Where each layer cell sits in the frame (bilinear between the card's corners), then the light there.
    q = (shot.quad / np.array(shot.size, dtype=np.float64)).astype(np.float32)
    top_x, top_y = q[0, 0] + (q[1, 0] - q[0, 0]) * u, q[0, 1] + (q[1, 1] - q[0, 1]) * u
    bottom_x, bottom_y = q[3, 0] + (q[2, 0] - q[3, 0]) * u, q[3, 1] + (q[2, 1] - q[3, 1]) * u
    rel_x = top_x + (bottom_x - top_x) * v
    rel_y = top_y + (bottom_y - top_y) * v
    layer = 128 - (255 * 0.8 * shot.light) * _light_ramp(light_dir, rel_x, rel_y)
    if shot.glare > 0:
        cx, cy = rng.uniform(0.15, 0.85) * (gx - 1), rng.uniform(0.15, 0.85) * (gy - 1)
        radius = rng.uniform(9, 20)
        x, y = u * (gx - 1), v * (gy - 1)
        layer = layer + shot.glare * np.exp(-(((x - cx) ** 2 + ((y - cy) * 1.3) ** 2) / (2 * radius**2)))
    # Darkening and glare split apart on the grid, then each enlarged (nearest: steps of under one grey
    # level) straight to RGBX: numpy then works on contiguous arrays of one shape, not broadcasting
    # along a 4-long last axis (many times slower).
    grey = np.clip(layer, 0, 255).astype(np.uint8)
    cols, rows = np.arange(w) * gx // w, np.arange(h) * gy // h
    dark = _enlarge(128 - np.minimum(grey, 128), rows, cols)
    np.subtract(pixels, np.minimum(pixels, dark, out=dark), out=pixels)
    bright = np.maximum(grey, 128) - 128
    lit_rows, lit_cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    if lit_rows.size:  # the glare, only over the cells it reaches
        top, bottom = np.searchsorted(rows, [lit_rows[0], lit_rows[-1] + 1])
        left, right = np.searchsorted(cols, [lit_cols[0], lit_cols[-1] + 1])
        spot = pixels[top:bottom, left:right]
        glow = _enlarge(bright, rows[top:bottom], cols[left:right])
        room = np.subtract(np.uint8(255), spot)
        np.add(spot, np.minimum(room, glow, out=room), out=spot)


def _enlarge(cells: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A uint8 grid enlarged (nearest: cell ``rows[i]``, ``cols[j]`` at pixel i, j) to RGBX pixels: the
    grey value in all four bytes of a uint32, so numpy gathers whole pixels."""
    packed = cells.astype(np.uint32) * np.uint32(0x01010101)
    pixels = np.take(np.take(packed, cols, axis=1), rows, axis=0)
    return pixels.view(np.uint8).reshape(len(rows), len(cols), 4)


LIGHT_GRID = (120, 76)
"""Cells of the light layer across and down the card (about 6 card pixels each on a 1 MP photo)."""


@functools.lru_cache(maxsize=1)
def _light_grid() -> tuple[np.ndarray, np.ndarray]:
    gx, gy = LIGHT_GRID
    y, x = np.mgrid[0:gy, 0:gx].astype(np.float32)
    return x / (gx - 1), y / (gy - 1)


_LIGHT_DIRECTIONS = (0.0, 0.8, 1.6, 2.4, 3.1, 3.9, 4.7, 5.5)
_TONE_COUNTS = {
    "wood": len(WOOD_TONES),
    "cloth": len(CLOTH_TONES),
    "paper": len(PAPER_TONES),
    "desk": len(DESK_TONES),
}
NOISE_SIGMAS = (2.0, 3.0, 4.5)
NOISE_CLIP = 12
"""Sensor noise is cut at +-12 grey levels (2.7 sigma at the strongest level)."""


def _light_ramp(direction: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    angle = _LIGHT_DIRECTIONS[direction]
    return np.clip(np.cos(angle) * (u - 0.5) + np.sin(angle) * (v - 0.5) + 0.5, 0, 1)


def _noise_block(level: int) -> np.ndarray:
    """A 704-px block of normal RGB noise around mid-grey (a repeat that far apart is invisible in grain)."""
    rng = np.random.default_rng(1000 + level)
    block = 128 + rng.standard_normal((704, 704, 3), dtype=np.float32) * NOISE_SIGMAS[level]
    return np.clip(np.rint(block), 128 - NOISE_CLIP, 128 + NOISE_CLIP).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _noise_frame() -> Image.Image:
    """Mid-grey RGB sensor noise at NOISE_SIGMAS[1], as big as any surface, made once per process."""
    reps = -(-MASTER_SIDE // 704)
    tiled = np.tile(_noise_block(1), (reps, reps, 1))[:MASTER_SIDE, :MASTER_SIDE]
    return Image.fromarray(np.ascontiguousarray(tiled), "RGB")


CARD_NOISE_SHAPE = (1344, 2112)
"""Rows and columns of the card noise: the largest card (2x ladder scale, 2024x1276) plus a 64-px shift."""


@functools.lru_cache(maxsize=3)
def _card_noise(level: int) -> np.ndarray:
    """The noise block tiled to CARD_NOISE_SHAPE as signed uint8 RGBX (-3 stored as 253), for wrap-around
    adds."""
    rows, cols = CARD_NOISE_SHAPE
    block = _noise_block(level) - np.uint8(128)  # wraps: 125 - 128 = 253 = -3
    block = np.concatenate([block, block[..., :1]], axis=2)  # RGBX, as card_pixels
    return np.ascontiguousarray(np.tile(block, (-(-rows // 704), -(-cols // 704), 1))[:rows, :cols])


AFFINE = Image.Transform.AFFINE
TILE_SIDES = (64, 48, 32, 24, 16)
"""Tile sides tried for the piecewise-affine warp, largest first (see _affine_tiles)."""
TILE_ERROR = 0.2
"""Largest distance, in card pixels, between a tile's affine map and the true perspective map."""


def paste_card(
    frame: Image.Image, card: Image.Image, quad: np.ndarray, *, backing: np.ndarray | None = None
) -> None:
    """Warp the card straight into ``frame`` onto ``quad`` (its four corners in the frame).

    The perspective map is applied piecewise: small tiles of the frame, each with the affine map that
    matches the perspective one there to within TILE_ERROR of a card pixel. Pillow runs an affine
    nearest-neighbour warp in fixed point, several times faster than its perspective warp, and writes
    into the frame, leaving every pixel that maps outside the card untouched: the surface shows around
    it without a mask. The four rounded corners then get their bit of surface back.

    Pillow's fixed-point affine warp ignores the left edge of the box it is given (it writes from
    column 0), so the tiles are warped a column at a time into an image whose column 0 is the tile
    column's: with ``backing`` (the (h + 1, w, 4) array ``frame`` is mapped over, see surface_pixels),
    an image mapped over that column of the array itself, written in place; otherwise a copy of the
    column, copied back.
    """
    source = card if card.mode == frame.mode else card.convert(frame.mode)
    src = np.array(
        [[0, 0], [source.width, 0], [source.width, source.height], [0, source.height]], dtype=float
    )
    # At ~1:1 nearest sampling is sharp enough; enlarging needs bilinear to avoid blocks.
    enlarge = float(np.linalg.norm(quad[1] - quad[0])) / source.width > 1.1
    resample = Image.Resampling.BILINEAR if enlarge else Image.Resampling.NEAREST
    corners = _corner_patches(frame, quad, perspective_coeffs(src, quad), source.size)
    source.load()
    frame_core, source_core = frame.im, source.im
    width = frame.width
    memory = None if backing is None else memoryview(backing.reshape(-1))
    map_buffer, raw_args = Image.core.map_buffer, ("RGBX", width * 4, 1)
    for box, tiles in _affine_tiles(perspective_coeffs(quad, src), quad, frame.size, source.size):
        left, top, right, bottom = box
        if memory is None:
            column = frame_core.crop(box)
        else:  # rows of the frame's own memory from (left, top), a frame row apart
            start = (top * width + left) * 4
            # Pillow's core mapping, as Image.frombuffer makes it without the wrapper's checks.
            column = map_buffer(memory[start:], (right - left, bottom - top), "raw", 0, raw_args)
        for y0, y1, coeffs in tiles:
            column.transform((0, y0 - top, right - left, y1 - top), source_core, AFFINE, coeffs, resample, 0)
        if memory is None:
            frame_core.paste(column, box)
    for patch, mask, box in corners:
        frame_core.paste(patch, box, mask)


def _affine_tiles(
    to_card: tuple[float, ...], quad: np.ndarray, frame_size: tuple[int, int], card_size: tuple[int, int]
) -> list[tuple[tuple[int, int, int, int], list[tuple[int, int, tuple[float, ...]]]]]:
    """The tiles that meet the card, by column: (the column's box in the frame, [(top, bottom, affine
    coefficients from the tile's top-left corner) for each of its tiles]).

    Each tile's affine map is the plane through the perspective map at the tile's four corners, moved
    half-way to its value at the centre: off by at most a quarter of the corners' twist plus half the
    centre's bow. The largest tile side in TILE_SIDES that keeps that under TILE_ERROR is used.
    """
    w, h = frame_size
    x0, y0 = (max(0, int(v)) for v in np.floor(quad.min(axis=0)))
    x1, y1 = min(w, int(np.ceil(quad[:, 0].max()))), min(h, int(np.ceil(quad[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return []
    for side in TILE_SIDES:
        xe = np.append(np.arange(x0, x1, side), x1).astype(np.float64)
        ye = np.append(np.arange(y0, y1, side), y1).astype(np.float64)
        tw, th = np.diff(xe)[None, :], np.diff(ye)[:, None]
        u, v = _map(to_card, *np.meshgrid(xe, ye))
        uc, vc = _map(to_card, *np.meshgrid((xe[:-1] + xe[1:]) / 2, (ye[:-1] + ye[1:]) / 2))
        fits, error = [], 0.0
        for grid, centre in ((u, uc), (v, vc)):
            c00, c10, c01, c11 = grid[:-1, :-1], grid[:-1, 1:], grid[1:, :-1], grid[1:, 1:]
            mean = (c00 + c10 + c01 + c11) / 4
            slope_x = (c10 - c00 + c11 - c01) / (2 * tw)
            slope_y = (c01 - c00 + c11 - c10) / (2 * th)
            middle = (mean + centre) / 2
            fits.append((slope_x, slope_y, middle - slope_x * tw / 2 - slope_y * th / 2))
            error = max(error, float(np.max(np.abs(c00 - c10 - c01 + c11) / 4 + np.abs(mean - centre) / 2)))
        if error <= TILE_ERROR:
            break
    cw, ch = card_size
    # A tile whose four corners all map past one side of the card holds none of it.
    corner_u = np.stack([u[:-1, :-1], u[:-1, 1:], u[1:, :-1], u[1:, 1:]])
    corner_v = np.stack([v[:-1, :-1], v[:-1, 1:], v[1:, :-1], v[1:, 1:]])
    misses = (
        (corner_u < 0).all(axis=0)
        | (corner_u > cw).all(axis=0)
        | (corner_v < 0).all(axis=0)
        | (corner_v > ch).all(axis=0)
    )
    (ax, ay, ac), (dx, dy, dc) = fits
    coeffs = np.stack([ax, ay, ac, dx, dy, dc], axis=-1).tolist()
    xs, ys = xe.astype(int).tolist(), ye.astype(int).tolist()
    columns = []
    for col, rows in enumerate((~misses).T.tolist()):
        tiles = [(ys[row], ys[row + 1], tuple(coeffs[row][col])) for row, hit in enumerate(rows) if hit]
        if tiles:
            columns.append(((xs[col], tiles[0][0], xs[col + 1], tiles[-1][1]), tiles))
    return columns


def _map(coeffs: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pillow-style PERSPECTIVE coefficients applied to coordinate arrays."""
    a, b, c, d, e, f, g, k = coeffs
    den = g * x + k * y + 1
    return (a * x + b * y + c) / den, (d * x + e * y + f) / den


def _corner_patches(
    frame: Image.Image, quad: np.ndarray, to_frame: tuple[float, ...], size: tuple[int, int]
) -> list[tuple[Any, Any, tuple[int, int, int, int]]]:
    """The surface under each of the card's rounded corners (outside the arc), with its mask and box in
    the frame, before the card is warped over it: the warp fills the card's whole rectangle, the card
    has round corners. Pillow's core images (a photo's four small crops and polygons, without the
    Image wrappers' checks)."""
    w, h = frame.size
    frame_core = frame.im
    patches = []
    for outside in _corner_regions(size):
        points = _project(to_frame, outside)
        x0, y0 = (int(v) - 1 for v in np.floor(points.min(axis=0)))
        x1, y1 = (int(v) + 1 for v in np.ceil(points.max(axis=0)))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = Image.core.fill("L", (x1 - x0, y1 - y0), 0)
        Image.core.draw(mask, 0).draw_polygon((points - [x0, y0]).ravel().tolist(), 255, 1)
        patches.append((frame_core.crop((x0, y0, x1, y1)), mask, (x0, y0, x1, y1)))
    return patches


@functools.lru_cache(maxsize=64)
def _corner_regions(size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """For an ID-1 card of ``size``: each corner's square minus its quarter disc, as a polygon (8-pt arc)."""
    w, h = size
    r = CORNER_RADIUS * w / CARD_W
    arc = np.linspace(0, np.pi / 2, 8)
    regions = []
    for (px, py), (cx, cy), start in (
        ((0, 0), (r, r), np.pi),
        ((w, 0), (w - r, r), 1.5 * np.pi),
        ((w, h), (w - r, h - r), 0.0),
        ((0, h), (r, h - r), 0.5 * np.pi),
    ):
        t = start + arc
        ring = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
        regions.append(np.concatenate([[[px, py]], ring]))
    return tuple(regions)


def _project(coeffs: tuple[float, ...], points: np.ndarray) -> np.ndarray:
    """Apply Pillow-style PERSPECTIVE coefficients to points (x, y) -> (x', y')."""
    return np.stack(_map(coeffs, points[:, 0], points[:, 1]), axis=1)


def perspective_coeffs(dst: np.ndarray, src: np.ndarray) -> tuple[float, ...]:
    """Pillow's 8 PERSPECTIVE coefficients mapping output points ``dst`` back to input points ``src``."""
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return tuple(np.linalg.solve(np.array(rows, dtype=float), np.array(rhs, dtype=float)).tolist())


MASTER_SIDE = 2112
MASTERS_PER_KIND = 1


def surface_pixels(
    kind: str,
    size: tuple[int, int],
    rng: np.random.Generator,
    *,
    light_dir: int = 0,
    light: float = 0.0,
    reduce: int = 1,
) -> np.ndarray:
    """A table, cloth, paper or desk surface with light falloff and sensor noise, as a fresh (h + 1, w, 4)
    uint8 array: a frame's RGBX pixels plus one spare row, so that an image mapped over any column of
    it, rows a frame row apart, stays inside the array (see paste_card).

    Frames up to MASTER_SIDE are a random window of one of a few large surfaces drawn once per process
    (a copy of the window); bigger frames are drawn on the spot. With ``reduce``, the surface as a
    frame ``reduce`` times larger would show it, averaged down (its weave and grain as a photo taken
    larger and reduced has them, not enlarged).
    """
    w, h = size
    big_w, big_h = w * reduce, h * reduce
    backing = np.empty((h + 1, w, 4), dtype=np.uint8)
    if big_w <= MASTER_SIDE and big_h <= MASTER_SIDE:
        master = _master_pixels(kind, int(rng.integers(MASTERS_PER_KIND)))
        ox, oy = int(rng.integers(0, MASTER_SIDE - big_w + 1)), int(rng.integers(0, MASTER_SIDE - big_h + 1))
        window = master[oy : oy + big_h, ox : ox + big_w]
        if reduce == 1:
            np.copyto(backing[:h], window)
            backing[h] = 0
            return backing
        surface = Image.frombuffer("RGBX", (big_w, big_h), np.ascontiguousarray(window), "raw", "RGBX", 0, 1)
    else:
        surface = draw_surface(kind, (big_w, big_h), rng, light_dir=light_dir, light=light).convert("RGBX")
    np.copyto(backing[:h], card_pixels_view(surface.reduce(reduce) if reduce > 1 else surface))
    backing[h] = 0
    return backing


@functools.lru_cache(maxsize=len(SURFACES) * MASTERS_PER_KIND)
def _master_pixels(kind: str, index: int) -> np.ndarray:
    """A read-only (side, side, 4) view of a surface master's memory (the view keeps the master alive)."""
    return card_pixels_view(_surface_master(kind, index))


@functools.lru_cache(maxsize=len(SURFACES) * MASTERS_PER_KIND)
def _surface_master(kind: str, index: int) -> Image.Image:
    # Seeded from its key, so every worker process draws the same master.
    rng = np.random.default_rng(zlib.crc32(f"{kind}|{index}".encode()))
    master = draw_surface(kind, (MASTER_SIDE, MASTER_SIDE), rng, light_dir=int(rng.integers(8)), light=0.25)
    return master.convert("RGBX")  # the mode photographs are taken in (see photograph)


def draw_surface(
    kind: str, size: tuple[int, int], rng: np.random.Generator, *, light_dir: int = 0, light: float = 0.0
) -> Image.Image:
    """Draw a surface: texture and light at 1/8 scale enlarged in one pass, then sensor noise."""
    w, h = size
    tone = int(rng.integers(_TONE_COUNTS[kind]))
    sw, sh = max(8, w // 8), max(8, h // 8)
    y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
    smooth = _smooth_noise(rng, (sh, sw), 6)
    if kind == "wood":
        tone = np.array(WOOD_TONES[tone % len(WOOD_TONES)], dtype=np.float32)
        along = x if rng.random() < 0.5 else y
        grain = np.sin(along * rng.uniform(0.25, 0.6) + smooth * 9) * 0.5 + 0.5
        pattern = 0.78 + 0.3 * grain[..., None]
        small = tone * pattern
    elif kind == "cloth":
        tone = np.array(CLOTH_TONES[tone % len(CLOTH_TONES)], dtype=np.float32)
        folds = 0.85 + 0.2 * smooth[..., None]
        small = tone * folds
    elif kind == "paper":
        tone = np.array(PAPER_TONES[tone % len(PAPER_TONES)], dtype=np.float32)
        small = tone * (0.93 + 0.07 * smooth[..., None])
    else:
        tone = np.array(DESK_TONES[tone % len(DESK_TONES)], dtype=np.float32)
        small = tone * (0.9 + 0.12 * smooth[..., None])
    small = small * (1.0 - light * _light_ramp(light_dir, x / max(1, sw - 1), y / max(1, sh - 1)))[..., None]
    small_image = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8), "RGB")
    frame = small_image.resize(size, Image.Resampling.BILINEAR)
    if kind == "cloth":  # a weave is finer than 1/8 scale: tile a tiny woven pattern on top
        frame = ImageChops.multiply(frame, _weave_tile(size))
    noise = _noise_frame()
    if w <= noise.width and h <= noise.height:
        ox, oy = int(rng.integers(0, noise.width - w + 1)), int(rng.integers(0, noise.height - h + 1))
        frame = ImageChops.add(frame, noise.crop((ox, oy, ox + w, oy + h)), scale=1.0, offset=-128)
    return frame


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    coarse = rng.random((cells, cells)).astype(np.float32)
    image = Image.fromarray((coarse * 255).astype(np.uint8), "L").resize(
        (shape[1], shape[0]), Image.Resampling.BICUBIC
    )
    return np.asarray(image, dtype=np.float32) / 255.0


@functools.lru_cache(maxsize=4)
def _weave_tile(size: tuple[int, int]) -> Image.Image:
    cell = np.array(
        [[255, 235, 255, 225], [225, 255, 235, 255], [255, 225, 255, 235], [235, 255, 225, 255]],
        dtype=np.uint8,
    )
    tiled = np.tile(cell, (size[1] // 4 + 1, size[0] // 4 + 1))[: size[1], : size[0]]
    layer = Image.fromarray(tiled, "L")
    return Image.merge("RGB", (layer, layer, layer))


def add_sensor_noise(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Sensor noise of about ``sigma`` grey levels (the nearest of NOISE_SIGMAS), in place on (h, w, 4)
    uint8 RGBX pixels held inside [NOISE_CLIP, 255 - NOISE_CLIP]: the card's noise field at a random
    offset, added with wrap-around as on the card (see _light_card), repeated over frames larger than it."""
    level = int(np.argmin([abs(s - sigma) for s in NOISE_SIGMAS]))
    noise = _card_noise(level)
    rows, cols = (side - 64 for side in CARD_NOISE_SHAPE)
    oy, ox = int(rng.integers(0, 64)), int(rng.integers(0, 64))
    h, w = pixels.shape[:2]
    for top in range(0, h, rows):
        for left in range(0, w, cols):
            part = pixels[top : top + rows, left : left + cols]
            np.add(part, noise[oy : oy + part.shape[0], ox : ox + part.shape[1]], out=part)


TURNS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
"""How the pixels of an upright photo are stored under each EXIF orientation tag (viewers undo it)."""


def turn_shot(shot: Shot, orientation: int | None) -> Shot:
    """The same shot as the sensor stores it under EXIF ``orientation``: the frame and the card's corners
    turned as TURNS turns the pixels, so the photo can be drawn turned instead of turned afterwards."""
    if orientation not in TURNS:
        return shot
    w, h = shot.size
    x, y = shot.quad[:, 0], shot.quad[:, 1]
    if orientation == 3:
        return replace(shot, quad=np.stack([w - x, h - y], axis=1))
    if orientation == 6:
        return replace(shot, size=(h, w), quad=np.stack([y, w - x], axis=1))
    return replace(shot, size=(h, w), quad=np.stack([h - y, x], axis=1))


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
