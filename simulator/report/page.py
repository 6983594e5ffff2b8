"""The self-contained HTML page: sections of prose, figures and tables under the "Run" block that
says how to reproduce it, with inline CSS and no external URL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.report.figures import figure_svg
from simulator.report.formats import escape, number


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


def render_html(title: str, meta: Mapping[str, Any], sections: Sequence[Section]) -> str:
    """One self-contained HTML page: inline CSS, inline SVG, no scripts, fonts or external URLs.

    ``meta`` (see :func:`report_meta`) is shown at the end as the "Run" block: scalars as a
    table, nested values (scenario, parameters, versions) as key/value tables.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body><main>",
        f"<h1>{escape(title)}</h1>",
    ]
    if sections:
        parts.append("<nav><ol>")
        for index, section in enumerate(sections, start=1):
            parts.append(f'<li><a href="#s{index}">{escape(section.title)}</a></li>')
        parts.append('<li><a href="#run">Run</a></li></ol></nav>')
    for index, section in enumerate(sections, start=1):
        parts.append(f'<section id="s{index}"><h2>{escape(section.title)}</h2>')
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
            out.append(f"<tr><th>{escape(key)}</th><td>{escape(_meta_value(value, key))}</td></tr>")
        out.append("</tbody></table>")
    for key, value in nested:
        out.append(f"<h3>{escape(key)}</h3>")
        if isinstance(value, list | tuple) and not any(isinstance(v, Mapping) for v in value):
            out.append(f"<p>{escape(_meta_value(value))}</p>")
            continue
        groups: dict[str, list[tuple[str, Any]]] = {}
        for path, leaf in _leaves(value):
            head, _, rest = path.partition(".")
            groups.setdefault(head if rest else "", []).append((rest or head, leaf))
        out.append('<div class="meta-grid">')
        for head, items in groups.items():
            out.append('<table class="meta">')
            if head:
                out.append(f"<caption>{escape(head)}</caption>")
            out.append("<tbody>")
            for name, leaf in items:
                out.append(f"<tr><th>{escape(name)}</th><td>{escape(_meta_value(leaf, name))}</td></tr>")
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
