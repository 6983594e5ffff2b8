"""Photographs a flat card the way a phone would: surface, perspective, light, glare, blur, noise, encode.

Every step works on whole images in Pillow's C code or on small numpy arrays resized up, so a photo
costs a few milliseconds beyond its JPEG encode. This module plans the shot and runs the steps; the
steps are ``surface`` (what the card lies on), ``light`` (light and noise on the card's pixels),
``warp`` (the card into the frame) and ``encoding`` (the phone's JPEG or PNG).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from simulator.generators.ktp.card import render_card, warm_layers
from simulator.generators.ktp.encoding import TURNS
from simulator.generators.ktp.layout import CARD_H, CARD_W
from simulator.generators.ktp.light import (
    LIGHT_DIRECTIONS,
    NOISE_SIGMAS,
    card_noise,
    card_pixels,
    light_card,
    light_grid,
)
from simulator.generators.ktp.surface import (
    MASTERS_PER_KIND,
    SURFACES,
    master_pixels,
    noise_frame,
    surface_pixels,
)
from simulator.generators.ktp.warp import paste_card

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
    light_dir = int(rng.integers(len(LIGHT_DIRECTIONS)))
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
    light_card(pixels, shot, light_dir, rng)
    # The pixels as an RGBX image without a copy (RGBX is Pillow's own layout of RGB, so it maps them).
    source = Image.frombuffer("RGBX", card.size, pixels, "raw", "RGBX", 0, 1)
    paste_card(frame, source, shot.quad, backing=backing)
    return frame


def warm_caches() -> None:
    """Build every per-process cache now: card layers at each ladder scale, surfaces, noise, fonts.

    Called in the parent before it forks workers, so they share one copy (copy-on-write) instead of
    each drawing its own; every cache is seeded from its key, so warming changes no output.
    """
    warm_layers()
    for kind in SURFACES:
        for index in range(MASTERS_PER_KIND):
            master_pixels(kind, index)
    noise_frame()
    for level in range(len(NOISE_SIGMAS)):
        card_noise(level)
    light_grid()


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
