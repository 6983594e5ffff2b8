"""The Pillow internals behind simulator/generators/ktp/pillow_core.py match their public equivalents.

If a Pillow release changes one of them, the test of that one fails here, by name: the renderer's
output would otherwise change silently (or crash deep inside a card).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image, ImageDraw

from simulator.generators.ktp import pillow_core

ROOT = Path(__file__).resolve().parent.parent


def _noise(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    bands = len(Image.new(mode, (1, 1)).getbands())
    values = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(values.squeeze(-1) if bands == 1 else values, mode)


def test_the_pinned_range_is_the_one_the_adapter_names_and_holds_the_installed_pillow():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert pillow_core.SUPPORTED in deps
    low, high = re.fullmatch(r"pillow>=([\d.]+),<(\d+)", pillow_core.SUPPORTED).groups()
    installed = tuple(int(p) for p in PIL.__version__.split(".")[:2])
    assert tuple(int(p) for p in low.split(".")[:2]) <= installed < (int(high), 0)


def test_core_crop_and_masked_paste_match_the_image_methods():
    card, ink, mask = _noise("RGB", (64, 40), 1), _noise("RGB", (64, 40), 2), _noise("L", (20, 10), 3)
    box = (7, 5, 27, 15)
    public = card.copy()
    public.paste(ink.crop(box), box, mask)
    internal = card.copy()
    pillow_core.core(internal).paste(pillow_core.core(ink).crop(box), box, pillow_core.core(mask))
    assert internal.tobytes() == public.tobytes()
    assert internal.tobytes() != card.tobytes()  # the paste did something


def test_core_paste_of_a_colour_through_a_mask_matches_the_image_method():
    canvas, mask = _noise("L", (30, 20), 4), _noise("L", (10, 8), 5)
    public = canvas.copy()
    public.paste(255, (3, 4, 13, 12), mask)
    internal = canvas.copy()
    pillow_core.core(internal).paste(255, (3, 4, 13, 12), pillow_core.core(mask))
    assert internal.tobytes() == public.tobytes()


@pytest.mark.parametrize("resample", [Image.Resampling.NEAREST, Image.Resampling.BILINEAR])
def test_core_affine_transform_matches_image_transform(resample):
    source = _noise("RGBX", (50, 30), 6)
    coeffs = (0.9, 0.12, 1.5, -0.08, 1.05, 2.25)
    public = source.transform((40, 24), Image.Transform.AFFINE, coeffs, resample)
    internal = Image.new("RGBX", (40, 24))
    pillow_core.core(internal).transform(
        (0, 0, 40, 24), pillow_core.core(source), Image.Transform.AFFINE, coeffs, resample, 0
    )
    assert internal.tobytes() == public.tobytes()


def test_blank_is_image_new():
    internal = Image.new("L", (9, 7), 0)
    pillow_core.core(internal).paste(pillow_core.blank("L", (9, 7), 200), (0, 0, 9, 7))
    assert internal.tobytes() == Image.new("L", (9, 7), 200).tobytes()


def test_polygon_mask_is_imagedraw_polygon():
    points = [2.0, 1.0, 17.5, 4.0, 12.0, 13.0, 1.0, 9.5]
    public = Image.new("L", (20, 15), 0)
    ImageDraw.Draw(public).polygon(points, fill=255)
    internal = Image.new("L", (20, 15), 0)
    pillow_core.core(internal).paste(pillow_core.polygon_mask((20, 15), points), (0, 0, 20, 15))
    assert internal.tobytes() == public.tobytes()
    assert 0 < np.asarray(internal).astype(bool).mean() < 1


def test_rows_view_is_frombuffer_over_the_same_memory_and_writes_through():
    width, height = 16, 10
    backing = np.arange(width * height * 4, dtype=np.uint32).astype(np.uint8).reshape(height, width, 4)
    memory = memoryview(backing.reshape(-1))
    left, top, w, h = 3, 2, 8, 5
    start = (top * width + left) * 4
    public = Image.frombuffer("RGBX", (w, h), memory[start:], "raw", "RGBX", width * 4, 1)
    view = pillow_core.rows_view(memory[start:], (w, h), width * 4)
    copy = Image.new("RGBX", (w, h))
    pillow_core.core(copy).paste(view, (0, 0, w, h))
    assert copy.tobytes() == public.tobytes()
    view.paste((9, 8, 7, 0), (0, 0, 2, 1))  # writes land in the backing array, in place
    assert backing[top, left, :3].tolist() == [9, 8, 7]
    assert backing[top, left + 2, :3].tolist() != [9, 8, 7]


def test_core_of_a_lazily_opened_file_loads_it(tmp_path):
    source = _noise("RGB", (12, 9), 7)
    source.save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as lazy:
        target = Image.new("RGB", (12, 9))
        pillow_core.core(target).paste(pillow_core.core(lazy), (0, 0, 12, 9))
    assert target.tobytes() == source.tobytes()
