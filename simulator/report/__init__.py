"""Reports shared by ``surge`` and ``demand``: ``report.json`` with stable keys, and one
self-contained ``report.html`` (inline CSS, inline SVG charts, no external URL) that opens offline.

How to use it::

    from simulator import report

    fig = report.new_figure(figsize=(7.5, 3.2))        # a matplotlib Figure, no pyplot state
    ax = fig.add_subplot()
    ax.plot(minutes, arrivals_p50)
    svg = report.figure_svg(fig)                       # inline <svg>...</svg>; closes the figure

    table = report.html_table(
        rows=[{"stage": "joined", "people": 5_800_000, "share": 0.145}],
        columns=[("stage", "Stage"), ("people", "People"), ("share", "Share")],
        formats={"share": "{:.1%}"},
        caption="Funnel, P50 of 1,000 runs",
    )
    sections = [report.Section("Funnel", html="<p>Why it matters.</p>", figures=[svg], tables=[table])]

    meta = report.report_meta(seed=7, scenario=scenario_dict, params=params_dict)   # adds versions
    html = report.render_html("Wave 9 forecast", meta, sections)
    json_path, html_path = report.write_report("out/", {"meta": meta, "peaks": peaks}, html,
                                               json_name="forecast.json", html_name="forecast.html")

Everything in ``meta`` is shown in the HTML ("Run" block: scenario or parameters, seed, versions),
so the file on its own says how to reproduce it (docs/reports.md). Matplotlib is imported only
inside the functions that draw, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import io
import math
import os
import platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator import __version__
from simulator.errors import SimulatorError
from simulator.io.atomic import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # pragma: no cover - typing only; matplotlib is imported lazily
    from matplotlib.figure import Figure

__all__ = [
    "Section",
    "figure_svg",
    "html_table",
    "json_bytes",
    "new_figure",
    "number",
    "percent",
    "render_html",
    "report_meta",
    "rupiah",
    "short_number",
    "versions",
    "write_report",
]

# Packages whose versions a report records, when installed.
_VERSIONED_PACKAGES = ("numpy", "matplotlib", "locust", "pyarrow", "pillow", "fastapi", "sqlalchemy")

# A fixed salt makes matplotlib's SVG element ids the same on every run: same data, same file.
_SVG_HASH_SALT = "prakerja-sim"

_SVG_PROLOGUE = re.compile(r"\A.*?(?=<svg\b)", re.S)
_SVG_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SVG_ID = re.compile(r'\bid="([^"]+)"')


@dataclass
class Section:
    """One titled part of a report: free HTML first, then figures (inline SVG), then tables.

    ``figures`` holds SVG strings from :func:`figure_svg` (a matplotlib Figure is converted on
    render); ``tables`` holds HTML from :func:`html_table`. ``html`` is trusted markup: escape any
    user text with ``html.escape`` before putting it there.
    """

    title: str
    html: str = ""
    figures: list[Any] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


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
        out.append(f"<caption>{_esc(caption)}</caption>")
    head = "".join(
        f"<th{_NUM if key in right else ''}>{_esc(label)}</th>"
        for key, label in zip(keys, labels, strict=True)
    )
    out.append(f"<thead><tr>{head}</tr></thead>")
    out.append("<tbody>")
    groups = [row.get(group_by) if isinstance(row, Mapping) else None for row in rows] if group_by else []
    current: Any = object()
    for index, values in enumerate(table):
        if group_by and groups[index] != current:
            current = groups[index]
            out.append(f'<tr class="group"><th colspan="{len(keys)}">{_esc(current)}</th></tr>')
        cells = []
        for key, value in zip(keys, values, strict=True):
            css = _NUM if key in right or _is_number(value) else ""
            cells.append(f"<td{css}>{_esc(_format_cell(value, formats.get(key)))}</td>")
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
    if _is_numpy_number(value):
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
    return (isinstance(value, int | float) and not isinstance(value, bool)) or _is_numpy_number(value)


def _is_numpy_number(value: Any) -> bool:
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


def _esc(text: Any) -> str:
    return html_lib.escape(str(text), quote=True)


def versions() -> dict[str, str]:
    """Versions of Python, prakerja-sim and the installed libraries that shape a result."""
    from importlib import metadata as importlib_metadata

    found = {"python": platform.python_version(), "prakerja-sim": __version__}
    for name in _VERSIONED_PACKAGES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def report_meta(
    *, seed: int | None, scenario: Any = None, params: Any = None, **extra: Any
) -> dict[str, Any]:
    """The block every report carries: seed, scenario and/or parameters, versions, and ``extra``."""
    meta: dict[str, Any] = {"seed": seed, "versions": versions()}
    if scenario is not None:
        meta["scenario"] = scenario
    if params is not None:
        meta["params"] = params
    meta.update(extra)
    return meta


def json_bytes(data: Any) -> bytes:
    """JSON with sorted keys and 2-space indent; numpy scalars/arrays and Paths are converted."""
    import orjson

    options = (
        orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    )
    return orjson.dumps(data, option=options, default=_json_default) + b"\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if _is_numpy_number(value):
        return value.item()
    raise TypeError(f"cannot put a {type(value).__name__} into a JSON report")


def render_html(title: str, meta: Mapping[str, Any], sections: Sequence[Section]) -> str:
    """One self-contained HTML page: inline CSS, inline SVG, no scripts, fonts or external URLs.

    ``meta`` (see :func:`report_meta`) is shown at the end as the "Run" block: scalars as a
    table, nested values (scenario, parameters, versions) as key/value tables.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body><main>",
        f"<h1>{_esc(title)}</h1>",
    ]
    if sections:
        parts.append("<nav><ol>")
        for index, section in enumerate(sections, start=1):
            parts.append(f'<li><a href="#s{index}">{_esc(section.title)}</a></li>')
        parts.append('<li><a href="#run">Run</a></li></ol></nav>')
    for index, section in enumerate(sections, start=1):
        parts.append(f'<section id="s{index}"><h2>{_esc(section.title)}</h2>')
        if section.html:
            parts.append(section.html)
        for figure in section.figures:
            svg = figure if isinstance(figure, str) else figure_svg(figure)
            parts.append(f'<figure class="chart">{svg}</figure>')
        parts.extend(f'<div class="table-wrap">{table}</div>' for table in section.tables)
        parts.append("</section>")
    parts.append('<section id="run"><h2>Run</h2>')
    parts.append(_meta_html(meta))
    parts.append("</section></main></body></html>")
    return "\n".join(parts) + "\n"


def _meta_html(meta: Mapping[str, Any]) -> str:
    """The Run block as tables a person reads: scalars first, then each nested value (scenario,
    parameters, versions) as key/value tables grouped by their first key, side by side."""
    scalars = [(k, v) for k, v in sorted(meta.items()) if not isinstance(v, Mapping | list | tuple)]
    nested = [(k, v) for k, v in sorted(meta.items()) if isinstance(v, Mapping | list | tuple)]
    out = []
    if scalars:
        out.append('<table class="meta"><tbody>')
        for key, value in scalars:
            out.append(f"<tr><th>{_esc(key)}</th><td>{_esc(_meta_value(value, key))}</td></tr>")
        out.append("</tbody></table>")
    for key, value in nested:
        out.append(f"<h3>{_esc(key)}</h3>")
        if isinstance(value, list | tuple) and not any(isinstance(v, Mapping) for v in value):
            out.append(f"<p>{_esc(_meta_value(value))}</p>")
            continue
        groups: dict[str, list[tuple[str, Any]]] = {}
        for path, leaf in _leaves(value):
            head, _, rest = path.partition(".")
            groups.setdefault(head if rest else "", []).append((rest or head, leaf))
        out.append('<div class="meta-grid">')
        for head, items in groups.items():
            out.append('<table class="meta">')
            if head:
                out.append(f'<caption>{_esc(head)}</caption>')
            out.append("<tbody>")
            for name, leaf in items:
                out.append(f"<tr><th>{_esc(name)}</th><td>{_esc(_meta_value(leaf, name))}</td></tr>")
            out.append("</tbody></table>")
        out.append("</div>")
    return "\n".join(out)


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    # Dotted paths to every value that is not a table; a list of tables is numbered (slo.1.metric).
    if isinstance(value, Mapping):
        items = [(f"{prefix}{key}", item) for key, item in value.items()]
    elif isinstance(value, list | tuple) and any(isinstance(item, Mapping) for item in value):
        items = [(f"{prefix}{index}", item) for index, item in enumerate(value, start=1)]
    else:
        return [(prefix.rstrip("."), value)]
    leaves = []
    for path, item in items:
        if isinstance(item, Mapping) or (
            isinstance(item, list | tuple) and any(isinstance(v, Mapping) for v in item)
        ):
            leaves.extend(_leaves(item, f"{path}."))
        else:
            leaves.append((path, item))
    return leaves


def _meta_value(value: Any, key: str = "") -> str:
    if isinstance(value, int) and not isinstance(value, bool) and "seed" in key:
        return str(value)  # a seed is typed back as it is: 20201102, not 20,201,102
    if isinstance(value, list | tuple):
        return ", ".join(_meta_value(item) for item in value) if value else "(none)"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_meta_value(v)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{value:g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, float):
        return repr(value)  # parameters are shown as given, every digit
    return number(value)


def write_report(
    out_dir: str | os.PathLike[str],
    data: Mapping[str, Any],
    html: str,
    *,
    json_name: str = "report.json",
    html_name: str = "report.html",
) -> tuple[Path, Path]:
    """Write ``data`` as JSON (sorted keys) and ``html`` into ``out_dir``, each atomically.

    Returns ``(json_path, html_path)``. The directory is created if needed. A directory that
    cannot be written (a file in the way, no permission, a full disk) raises
    :class:`~simulator.errors.SimulatorError` naming the path; nothing half-written is left.
    """
    directory = Path(out_dir)
    json_path = directory / json_name
    html_path = directory / html_name
    payload = json_bytes(dict(data))  # fails before anything is written if data cannot be JSON
    for path, write, content in (
        (json_path, atomic_write_bytes, payload),
        (html_path, atomic_write_text, html),
    ):
        try:
            write(path, content)
        except OSError as err:
            raise SimulatorError(f"cannot write {path}: {err.strerror or err}") from err
    return json_path, html_path


_CSS = """
:root{--ink:#1d2433;--muted:#5b6475;--line:#d9dee8;--band:#f4f6fa;--accent:#1f5fa8}
*{box-sizing:border-box}
body{margin:0;color:var(--ink);background:#fff;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 20px 60px}
h1{font-size:1.6rem;margin:0 0 8px}
h2{font-size:1.2rem;margin:32px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
nav ol{margin:8px 0 0;padding-left:20px;color:var(--muted);columns:2}
a{color:var(--accent)}
figure.chart{margin:12px 0}
figure.chart svg{max-width:100%;height:auto}
.table-wrap{overflow-x:auto;margin:12px 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.data th,table.data td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left}
table.data thead th{background:var(--band);font-weight:600}
table.data .num{text-align:right}
table.data td.num{white-space:nowrap}
table.data td:first-child:not(.num){min-width:9em}
table.data td:not(.num){overflow-wrap:anywhere}
table.data tr.group th{text-align:left;padding:12px 10px 4px;border-bottom:1px solid var(--line);
 font-weight:600;color:var(--accent)}
caption{caption-side:top;text-align:left;color:var(--muted);padding:4px 0}
table.meta{font-size:13px;width:100%}
table.meta th{text-align:left;padding:1px 12px 1px 0;color:var(--muted);font-weight:500;vertical-align:top}
table.meta td{padding:1px 0;overflow-wrap:anywhere}
table.meta caption{font-weight:600;color:var(--ink)}
h3{font-size:1rem;margin:18px 0 6px}
.meta-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:6px 24px;
 align-items:start}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;color:var(--muted);font-size:13px;margin:4px 0}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:-1px}
details{margin:8px 0}
summary{cursor:pointer;font-weight:600}
pre{background:var(--band);padding:10px;overflow-x:auto;font-size:12.5px;border-radius:4px}
p.note{color:var(--muted)}
.ok{color:#1b7f3b}.bad{color:#b3261e}
"""
