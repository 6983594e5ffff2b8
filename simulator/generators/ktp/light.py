"""Light and sensor noise on the card's pixels: falloff from a light direction, a glare spot and noise
from small cached blocks, in place on uint8 arrays viewed straight from Pillow's memory.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from PIL import Image

if TYPE_CHECKING:
    from simulator.generators.ktp.photo import Shot


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


def light_card(pixels: np.ndarray, shot: Shot, light_dir: int, rng: np.random.Generator) -> None:
    """Sensor noise, the frame's light falloff over the card and a glare spot, in place on uint8 pixels.

    Noise is added with wrap-around (the card is held clear of 0 and 255, see photograph); the
    light's darkening and the glare saturate, as a sensor does: x - min(x, d) and x + min(255 - x, g).
    """
    h, w = pixels.shape[:2]
    noise = card_noise(max(0, min(2, int(shot.noise // 2))))
    ox, oy = int(rng.integers(0, 64)), int(rng.integers(0, 64))
    np.add(pixels, noise[oy : oy + h, ox : ox + w], out=pixels)

    gx, gy = LIGHT_GRID
    u, v = light_grid()
    # Where each layer cell sits in the frame (bilinear between the card's corners), then the light there.
    q = (shot.quad / np.array(shot.size, dtype=np.float64)).astype(np.float32)
    top_x, top_y = q[0, 0] + (q[1, 0] - q[0, 0]) * u, q[0, 1] + (q[1, 1] - q[0, 1]) * u
    bottom_x, bottom_y = q[3, 0] + (q[2, 0] - q[3, 0]) * u, q[3, 1] + (q[2, 1] - q[3, 1]) * u
    rel_x = top_x + (bottom_x - top_x) * v
    rel_y = top_y + (bottom_y - top_y) * v
    layer = 128 - (255 * 0.8 * shot.light) * light_ramp(light_dir, rel_x, rel_y)
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
def light_grid() -> tuple[np.ndarray, np.ndarray]:
    gx, gy = LIGHT_GRID
    y, x = np.mgrid[0:gy, 0:gx].astype(np.float32)
    return x / (gx - 1), y / (gy - 1)


LIGHT_DIRECTIONS = (0.0, 0.8, 1.6, 2.4, 3.1, 3.9, 4.7, 5.5)
NOISE_SIGMAS = (2.0, 3.0, 4.5)
NOISE_CLIP = 12
"""Sensor noise is cut at +-12 grey levels (2.7 sigma at the strongest level)."""


def light_ramp(direction: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    angle = LIGHT_DIRECTIONS[direction]
    return np.clip(np.cos(angle) * (u - 0.5) + np.sin(angle) * (v - 0.5) + 0.5, 0, 1)


def noise_block(level: int) -> np.ndarray:
    """A 704-px block of normal RGB noise around mid-grey (a repeat that far apart is invisible in grain)."""
    rng = np.random.default_rng(1000 + level)
    block = 128 + rng.standard_normal((704, 704, 3), dtype=np.float32) * NOISE_SIGMAS[level]
    return np.clip(np.rint(block), 128 - NOISE_CLIP, 128 + NOISE_CLIP).astype(np.uint8)


CARD_NOISE_SHAPE = (1344, 2112)
"""Rows and columns of the card noise: the largest card (2x ladder scale, 2024x1276) plus a 64-px shift."""


@functools.lru_cache(maxsize=3)
def card_noise(level: int) -> np.ndarray:
    """The noise block tiled to CARD_NOISE_SHAPE as signed uint8 RGBX (-3 stored as 253), for wrap-around
    adds."""
    rows, cols = CARD_NOISE_SHAPE
    block = noise_block(level) - np.uint8(128)  # wraps: 125 - 128 = 253 = -3
    block = np.concatenate([block, block[..., :1]], axis=2)  # RGBX, as card_pixels
    return np.ascontiguousarray(np.tile(block, (-(-rows // 704), -(-cols // 704), 1))[:rows, :cols])


def add_sensor_noise(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Sensor noise of about ``sigma`` grey levels (the nearest of NOISE_SIGMAS), in place on (h, w, 4)
    uint8 RGBX pixels held inside [NOISE_CLIP, 255 - NOISE_CLIP]: the card's noise field at a random
    offset, added with wrap-around as on the card (see light_card), repeated over frames larger than it."""
    level = int(np.argmin([abs(s - sigma) for s in NOISE_SIGMAS]))
    noise = card_noise(level)
    rows, cols = (side - 64 for side in CARD_NOISE_SHAPE)
    oy, ox = int(rng.integers(0, 64)), int(rng.integers(0, 64))
    h, w = pixels.shape[:2]
    for top in range(0, h, rows):
        for left in range(0, w, cols):
            part = pixels[top : top + rows, left : left + cols]
            np.add(part, noise[oy : oy + part.shape[0], ox : ox + part.shape[1]], out=part)
