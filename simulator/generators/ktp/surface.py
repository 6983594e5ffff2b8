"""What the card lies on (wood, cloth, paper, a desk): one cached master per kind, drawn once per
process, cropped, lit and scaled for each photo.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
from PIL import Image, ImageChops

from simulator.generators.ktp.light import card_pixels_view, light_ramp, noise_block

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
_TONE_COUNTS = {
    "wood": len(WOOD_TONES),
    "cloth": len(CLOTH_TONES),
    "paper": len(PAPER_TONES),
    "desk": len(DESK_TONES),
}


@functools.lru_cache(maxsize=1)
def noise_frame() -> Image.Image:
    """Mid-grey RGB sensor noise at NOISE_SIGMAS[1], as big as any surface, made once per process."""
    reps = -(-MASTER_SIDE // 704)
    tiled = np.tile(noise_block(1), (reps, reps, 1))[:MASTER_SIDE, :MASTER_SIDE]
    return Image.fromarray(np.ascontiguousarray(tiled), "RGB")


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
        master = master_pixels(kind, int(rng.integers(MASTERS_PER_KIND)))
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
def master_pixels(kind: str, index: int) -> np.ndarray:
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
    small = small * (1.0 - light * light_ramp(light_dir, x / max(1, sw - 1), y / max(1, sh - 1)))[..., None]
    small_image = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8), "RGB")
    frame = small_image.resize(size, Image.Resampling.BILINEAR)
    if kind == "cloth":  # a weave is finer than 1/8 scale: tile a tiny woven pattern on top
        frame = ImageChops.multiply(frame, _weave_tile(size))
    noise = noise_frame()
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
