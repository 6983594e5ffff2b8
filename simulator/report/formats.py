"""How a report spells values: numbers, short numbers, rupiah and percentages, and HTML tables of
rows with numeric columns aligned.
"""

from __future__ import annotations

import html as html_lib
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def html_table(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    columns: Sequence[str | tuple[str, str]],
    *,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    numeric: Sequence[str] = (),
    group_by: str | None = None,
    caption: str | None = None,
) -> str:
    """An HTML ``<table>``: ``rows`` are dicts (keyed by column) or sequences (in column order).

    ``columns`` are keys or ``(key, label)`` pairs. Numbers are right-aligned and written by
    :func:`number` unless ``formats[key]`` (a ``str.format`` pattern, or a function such as
    :func:`rupiah`) says otherwise; ``numeric`` names columns of preformatted text that are
    right-aligned too. ``group_by`` names a key of dict rows that is not a column: each time its
    value changes, a heading row spanning the table says it. Every cell is HTML-escaped.
    """
    formats = dict(formats or {})
    keys = [c[0] if isinstance(c, tuple) else c for c in columns]
    labels = [c[1] if isinstance(c, tuple) else c for c in columns]
    table = [[row.get(k) for k in keys] if isinstance(row, Mapping) else list(row) for row in rows]
    # A column of numbers is right-aligned, its heading too, so digits line up under it.
    right = set(numeric) | {key for index, key in enumerate(keys) if _numeric_column(table, index)}
    out = ['<table class="data">']
    if caption:
        out.append(f"<caption>{escape(caption)}</caption>")
    head = "".join(
        f"<th{_NUM if key in right else ''}>{escape(label)}</th>"
        for key, label in zip(keys, labels, strict=True)
    )
    out.append(f"<thead><tr>{head}</tr></thead>")
    out.append("<tbody>")
    groups = [row.get(group_by) if isinstance(row, Mapping) else None for row in rows] if group_by else []
    current: Any = object()
    for index, values in enumerate(table):
        if group_by and groups[index] != current:
            current = groups[index]
            out.append(f'<tr class="group"><th colspan="{len(keys)}">{escape(current)}</th></tr>')
        cells = []
        for key, value in zip(keys, values, strict=True):
            css = _NUM if key in right or _is_number(value) else ""
            cells.append(f"<td{css}>{escape(_format_cell(value, formats.get(key)))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


_NUM = ' class="num"'


def _numeric_column(table: list[list[Any]], index: int) -> bool:
    cells = [values[index] for values in table if len(values) > index and values[index] is not None]
    return bool(cells) and all(_is_number(cell) for cell in cells)


def number(value: Any) -> str:
    """The one way a report writes a number: whole with thousands separators from 100 up
    (``6,136``, ``10,650``), three significant digits below (``42.5``, ``96``, ``0.0123``);
    ``-`` for none."""
    if value is None:
        return "-"
    if is_numpy_number(value):
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"  # 42.5, 96, 3.14, 0.0123: three significant digits, no trailing zeros


def short_number(value: Any) -> str:
    """A large count in millions or billions with four significant digits (``17.82 M``,
    ``1.235 B``), as :func:`number` below a million; for tables where full digits crowd out the
    comparison. The spaces are non-breaking."""
    if value is None or not math.isfinite(float(value)):
        return "-"
    amount = float(value)
    for scale, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(amount) >= scale * 0.99995:
            scaled = amount / scale
            digits = 1 if abs(scaled) >= 99.995 else 2 if abs(scaled) >= 9.9995 else 3
            return f"{scaled:,.{digits}f}\u00a0{suffix}"
    return number(value)


# Rupiah in the short scale the program's figures are published in (Rp5.7T, Rp840B).
_RUPIAH_SCALES = ((1e12, "T"), (1e9, "B"), (1e6, "M"))


def rupiah(value: Any) -> str:
    """Rupiah for a reader: ``Rp 1.2 T``, ``Rp 340 B``, ``Rp 3.55 M`` (T = 10^12, B = 10^9,
    M = 10^6; three significant digits), ``Rp 600,000`` below a million. The spaces are
    non-breaking, so an amount never wraps across lines."""
    if value is None:
        return "-"
    amount = float(value)
    if not math.isfinite(amount):
        return "-"
    for scale, suffix in _RUPIAH_SCALES:
        if abs(amount) >= scale * 0.9995:
            scaled = amount / scale
            digits = 0 if abs(scaled) >= 99.95 else 1 if abs(scaled) >= 9.995 else 2
            return f"Rp\u00a0{scaled:,.{digits}f}\u00a0{suffix}"
    return f"Rp\u00a0{amount:,.0f}"


def percent(value: Any, digits: int = 1) -> str:
    """A share as a percentage (``0.145`` -> ``14.5%``); ``-`` for none."""
    if value is None or not math.isfinite(float(value)):
        return "-"
    return f"{float(value):.{digits}%}"


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)) or is_numpy_number(value)


def is_numpy_number(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.integer | numpy.floating)


def _format_cell(value: Any, pattern: str | Callable[[Any], str] | None) -> str:
    if value is None:
        return ""
    if callable(pattern):
        return pattern(value)
    if pattern is not None:
        return pattern.format(value)
    return number(value)


def escape(text: Any) -> str:
    return html_lib.escape(str(text), quote=True)
