"""The few Pillow internals the KTP renderer uses for speed, behind one small adapter.

A card makes about 20 crops and pastes and 200 glyph pastes; a photo warps the card in about a hundred
affine tiles. Pillow's ``Image`` wrappers check every call (mode, size, load state) and cost more than
such small operations themselves, so the renderer works on Pillow's *core* images. Those are not
public API. Everything the renderer touches of them is named here and nowhere else:

- ``core(image)``: the core image of a loaded ``Image`` (its ``.im``), with the methods ``crop(box)``,
  ``paste(source_core_or_colour, box, mask_core)`` and
  ``transform(box, source_core, method, data, resample, fill)``;
- ``blank(mode, size, colour)``: a new core image (``Image.core.fill``);
- ``polygon_mask(size, points)``: an ``L`` core mask with a filled polygon (``Image.core.draw``);
- ``rows_view(memory, size, stride)``: a core image over existing RGBX memory, rows ``stride`` bytes
  apart, as ``Image.frombuffer`` makes it without the wrapper (``Image.core.map_buffer``).

``tests/test_pillow_core.py`` checks each one against its public equivalent, so a Pillow that changes
them fails there, loudly, by name. The supported range is pinned in ``pyproject.toml``
(:data:`SUPPORTED`); an import on a Pillow without these names stops with one line saying so.
"""

from __future__ import annotations

from typing import Any

import PIL
from PIL import Image, ImageFile

SUPPORTED = "pillow>=10.3,<14"
"""The Pillow versions whose internals this adapter is known to match (as pinned in pyproject.toml)."""

_NEEDED = ("fill", "draw", "map_buffer")


def _require() -> None:
    missing = [name for name in _NEEDED if not hasattr(Image.core, name)]
    if missing:
        raise ImportError(
            f"Pillow {PIL.__version__} has no Image.core.{', Image.core.'.join(missing)}: the KTP renderer "
            f"supports {SUPPORTED} (simulator/generators/ktp/pillow_core.py)"
        )


_require()


def core(image: Image.Image) -> Any:
    """The core image of ``image`` (loaded first if it is a lazily opened file that has none yet)."""
    if isinstance(image, ImageFile.ImageFile):  # opened from a file: decoded on first load()
        image.load()
    return image.im


def blank(mode: str, size: tuple[int, int], colour: int | tuple[int, ...] = 0) -> Any:
    """A new core image of ``mode`` and ``size`` filled with ``colour``."""
    return Image.core.fill(mode, size, colour)


def polygon_mask(size: tuple[int, int], points: list[float], ink: int = 255) -> Any:
    """An ``L`` core mask of ``size``: 0 outside, ``ink`` inside the polygon of ``points`` (x, y, ...)."""
    mask = Image.core.fill("L", size, 0)
    Image.core.draw(mask, 0).draw_polygon(points, ink, 1)
    return mask


def rows_view(memory: memoryview, size: tuple[int, int], stride: int) -> Any:
    """A core RGBX image of ``size`` over ``memory`` (not a copy): its rows start ``stride`` bytes apart."""
    return Image.core.map_buffer(memory, size, "raw", 0, ("RGBX", stride, 1))


__all__ = ["SUPPORTED", "blank", "core", "polygon_mask", "rows_view"]
