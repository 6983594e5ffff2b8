"""The card warped into the frame: a perspective transform done as affine tiles in Pillow's C code,
with the card's rounded corners cut by small patches instead of a full-frame mask.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from PIL import Image

from simulator.generators.ktp import pillow_core
from simulator.generators.ktp.layout import CARD_W, CORNER_RADIUS

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
    frame_core, source_core = pillow_core.core(frame), pillow_core.core(source)
    width = frame.width
    memory = None if backing is None else memoryview(backing.reshape(-1))
    for box, tiles in _affine_tiles(perspective_coeffs(quad, src), quad, frame.size, source.size):
        left, top, right, bottom = box
        if memory is None:
            column = frame_core.crop(box)
        else:  # rows of the frame's own memory from (left, top), a frame row apart
            start = (top * width + left) * 4
            column = pillow_core.rows_view(memory[start:], (right - left, bottom - top), width * 4)
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
    frame_core = pillow_core.core(frame)
    patches = []
    for outside in _corner_regions(size):
        points = _project(to_frame, outside)
        x0, y0 = (int(v) - 1 for v in np.floor(points.min(axis=0)))
        x1, y1 = (int(v) + 1 for v in np.ceil(points.max(axis=0)))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = pillow_core.polygon_mask((x1 - x0, y1 - y0), (points - [x0, y0]).ravel().tolist())
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
