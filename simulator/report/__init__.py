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

The names above are the package's interface; they live in ``figures`` (charts as inline SVG),
``formats`` (numbers, rupiah, tables), ``page`` (the HTML page) and ``output`` (metadata, JSON,
the files written).
"""

from __future__ import annotations

from simulator.report.figures import figure_svg, new_figure
from simulator.report.formats import html_table, number, percent, rupiah, short_number
from simulator.report.output import json_bytes, report_meta, versions, write_report
from simulator.report.page import Section, render_html

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
