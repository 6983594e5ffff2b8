"""Charts for reports: a matplotlib Figure without pyplot state, and the figure as inline SVG whose
bytes depend only on what it draws (no dates, ids derived from the content).
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported lazily
    from matplotlib.figure import Figure


# A fixed salt makes matplotlib's SVG element ids the same on every run: same data, same file.
_SVG_HASH_SALT = "prakerja-sim"
_SVG_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SVG_ID = re.compile(r'\bid="([^"]+)"')


def new_figure(figsize: tuple[float, float] = (7.5, 3.2)) -> Figure:
    """A matplotlib Figure detached from pyplot (no global state, thread-safe, no GUI backend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig


def figure_svg(fig: Any) -> str:
    """Render a matplotlib figure to an ``<svg>`` element ready to inline in HTML, and close it.

    The XML prologue and metadata are dropped, ids are prefixed with a digest of the drawing so
    several charts can live in one page without id clashes, and ids are stable across runs.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": _SVG_HASH_SALT, "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    _close(fig)
    svg = _SVG_METADATA.sub("", _SVG_PROLOGUE.sub("", buf.getvalue(), count=1), count=1)
    prefix = "f" + hashlib.sha1(svg.encode("utf-8")).hexdigest()[:8] + "-"
    for element_id in sorted(set(_SVG_ID.findall(svg)), key=len, reverse=True):
        svg = svg.replace(f'id="{element_id}"', f'id="{prefix}{element_id}"')
        svg = svg.replace(f'href="#{element_id}"', f'href="#{prefix}{element_id}"')
        svg = svg.replace(f"url(#{element_id})", f"url(#{prefix}{element_id})")
    return svg.strip()


def _close(fig: Any) -> None:
    # Figures made with pyplot stay in pyplot's registry until closed; ours (new_figure) never are.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
