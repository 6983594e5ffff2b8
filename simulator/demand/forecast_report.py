"""A forecast as a report: ``forecast.json`` and the self-contained ``forecast.html`` (the odds, the
funnel, arrivals, peaks per endpoint, oversubscription by province and the budget by month, charted).
``simulator.demand.forecast`` makes the summary it reads.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulator import report
from simulator.demand.forecast import FUNNEL_ROWS, STEP_LABELS
from simulator.demand.params import Params, flat


def render_forecast_html(summary: dict[str, Any], params: Params, notes: Sequence[str] = ()) -> str:
    """The self-contained ``forecast.html``: arrival curve with bands, funnel, peak load per
    endpoint and upstream, oversubscription and odds by province, budget by month.

    ``notes`` (where the wave's dates and quota came from) are shown at the top."""
    number, percent, rupiah = report.number, report.percent, report.rupiah
    wave = summary["wave"]
    photo = summary["photo"]
    budget = summary["budget"]
    heading = _p(
        f"Opens {wave['opens_at']}, {number(wave['duration_hours'])} h, {summary['selection']['mode']}, "
        f"quota {number(summary['selection']['quota'])}; {number(summary['runs'])} Monte Carlo runs, "
        f"seed {summary['seed']}. P5-P95 is the range of 90% of the runs."
    ) + "".join(f'<p class="note">Note: {html_lib.escape(note)}.</p>' for note in notes)
    sections = [
        report.Section(
            "Arrival curve",
            html=heading
            + _p(
                "People joining per minute after the opening (P50 line, P5-P95 band across runs). "
                f"Decay time constant {number(wave['decay_hours_solved'])} h, solved so that "
                f"{percent(params['arrivals']['first_24h_share'])} join in the first 24 h "
                "(wave 9: 3.5M of 5.8M)."
            ),
            figures=[_arrival_figure(summary), _arrival_figure(summary, hours=6)],
        ),
        report.Section(
            "Funnel",
            figures=[_funnel_figure(summary)],
            tables=[
                report.html_table(
                    [{"stage": label, **summary["funnel"][stage]} for stage, label in FUNNEL_ROWS],
                    [("stage", "Stage"), ("p5", "P5"), ("p50", "P50"), ("p95", "P95")],
                    caption="People at each stage",
                ),
                report.html_table(
                    [
                        {
                            "step": STEP_LABELS.get(step, step),
                            "total": s["total"]["p50"],
                            **s["peak_per_minute"],
                        }
                        for step, s in summary["completions_per_step"].items()
                    ],
                    [
                        ("step", "Step"),
                        ("total", "Completions P50"),
                        ("p50", "Peak per minute P50"),
                        ("p95", "Peak per minute P95"),
                    ],
                    caption="Completions per step",
                ),
                report.html_table(
                    [{"check": k, "holds": v} for k, v in summary["conservation"].items()],
                    [("check", "Conservation check (every run)"), ("holds", "Holds")],
                ),
            ],
        ),
        report.Section(
            "Peak load per endpoint and upstream",
            html=_p("Requests per second in the busiest minute of each run; bars are P50, whiskers P95."),
            figures=[_peak_figure(summary)],
            tables=[
                report.html_table(
                    [{"name": k, **v} for k, v in summary["peaks_per_second"].items()]
                    + [
                        {"name": f"upstream: {k}", **v["calls_per_second"]}
                        for k, v in summary["upstreams"].items()
                    ],
                    [("name", "Endpoint / upstream"), ("p50", "P50 /s"), ("p95", "P95 /s")],
                ),
                report.html_table(
                    [
                        {"what": "upload bandwidth, Mbit/s", **_p50_p95(photo["upload_mbit_per_second"])},
                        {"what": "bytes transferred, GB", **_p50_p95(photo["bytes_transferred"], 1e9)},
                        {"what": "storage added, GB", **_p50_p95(photo["bytes_stored"], 1e9)},
                    ],
                    [("what", "Photo uploads"), ("p50", "P50"), ("p95", "P95")],
                    caption=f"{percent(photo['oversize_share'], 2)} of photos would exceed the 2 MB limit",
                ),
            ],
        ),
        report.Section(
            "Oversubscription and odds",
            html=_p(_odds_text(summary)) + _p(_province_text(summary, params)),
            figures=[_oversubscription_figure(summary), _province_figure(summary)],
            tables=[
                report.html_table(
                    summary["provinces"],
                    [
                        ("province", "Province"),
                        ("quota", "Quota"),
                        ("joined_p50", "Joined P50"),
                        ("accepted_p50", "Accepted P50"),
                        ("odds_p50", "Odds P50"),
                    ],
                    formats={"odds_p50": lambda v: percent(v, 2)},
                )
            ],
        ),
        report.Section(
            "Budget",
            html=_p(
                f"{rupiah(budget['per_person_idr'])} per recipient in full. Committed at acceptance "
                f"(P50): {rupiah(budget['committed_idr']['p50'])}; expected spend after revocations "
                f"and drop-outs: {rupiah(budget['expected_spend_idr']['p50'])}. "
                "Rp amounts: T = trillion (10^12), B = billion (10^9), M = million (10^6)."
            ),
            figures=[_budget_figure(summary)],
            tables=[
                report.html_table(
                    budget["schedule_p50"],
                    [
                        ("month", "Month"),
                        ("training_idr", "Training"),
                        ("incentive_idr", "Incentive"),
                        ("survey_idr", "Surveys"),
                        ("total_idr", "Total"),
                    ],
                    formats={
                        key: rupiah for key in ("training_idr", "incentive_idr", "survey_idr", "total_idr")
                    },
                    caption="Expected spend by month (P50)",
                )
            ],
        ),
    ]
    meta = report.report_meta(seed=summary["seed"], params=flat(params), runs=summary["runs"])
    return report.render_html(f"Demand forecast: wave {wave['number']}", meta, sections)


def write_forecast(
    out_dir: str | Path, summary: dict[str, Any], params: Params, *, notes: Sequence[str] = ()
) -> tuple[Path, Path]:
    """Write ``forecast.json`` and ``forecast.html`` into ``out_dir`` (atomically)."""
    meta = report.report_meta(seed=summary["seed"], params=flat(params))
    if notes:
        meta["notes"] = list(notes)
    data = {"forecast": summary, "meta": meta}
    html = render_forecast_html(summary, params, notes)
    return report.write_report(out_dir, data, html, json_name="forecast.json", html_name="forecast.html")


def _p(text: str) -> str:
    return f"<p>{html_lib.escape(text)}</p>"


def _p50_p95(spread_: dict[str, float], unit: float = 1.0) -> dict[str, float]:
    return {"p50": spread_["p50"] / unit, "p95": spread_["p95"] / unit}


def _odds_text(summary: dict[str, Any]) -> str:
    number, percent = report.number, report.percent
    s = summary["selection"]
    text = (
        f"{number(s['joined']['p50'])} joiners (P50) for a quota of {number(s['quota'])}: "
        f"{number(s['oversubscription']['p50'])}x oversubscribed; a joiner's odds "
        f"{percent(s['odds']['p50'], 2)} (P5-P95 {percent(s['odds']['p5'], 2)}-"
        f"{percent(s['odds']['p95'], 2)}). {number(s['not_selected_roll_over']['p50'])} roll into "
        "the next wave."
    )
    if s.get("fill_minute"):
        text += (
            " First come, first served: the quota is full "
            f"{number(s['fill_minute']['p50'])} minutes after the opening (P50)."
        )
    return text


def _province_text(summary: dict[str, Any], params: Params) -> str:
    odds = [row["odds_p50"] for row in summary["provinces"]]
    text = "By province: how many join and how many are accepted, against each province's quota."
    if max(odds) - min(odds) < 0.005:
        text += (
            f" The odds are the same everywhere ({report.percent(min(odds))}-{report.percent(max(odds))})"
            " because joiners are assumed to spread like the quota"
        )
        if not params["allocation"]["applicant_thousands"]:
            text += "; set allocation.applicant_thousands to give each province its own demand."
        else:
            text += "."
    return text


def _arrival_figure(summary: dict[str, Any], hours: float | None = None) -> str:
    curve = summary["arrival_curve"]
    minutes = np.array(curve["minute"], dtype=float) + np.array(curve["bin_minutes"]) / 2
    keep = minutes <= hours * 60 if hours else np.ones(minutes.size, bool)
    x = minutes[keep] / 60
    fig = report.new_figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot()
    ax.fill_between(
        x,
        np.array(curve["joins_per_minute_p5"])[keep],
        np.array(curve["joins_per_minute_p95"])[keep],
        color="#9cc0e8",
        alpha=0.6,
        label="P5-P95",
    )
    ax.plot(x, np.array(curve["joins_per_minute_p50"])[keep], color="#1f5fa8", lw=1.5, label="P50")
    ax.set_xlabel("hours after the opening")
    ax.set_ylabel("joins per minute" + ("" if hours else " (log scale)"))
    if not hours and np.nanmax(curve["joins_per_minute_p95"] or [0]) > 0:
        ax.set_yscale("log")
    ax.set_title(f"first {hours:g} hours" if hours else "whole wave")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return report.figure_svg(fig)


def _funnel_figure(summary: dict[str, Any]) -> str:
    stages = [(label, summary["funnel"][stage]) for stage, label in FUNNEL_ROWS]
    fig = report.new_figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    labels = [label for label, _ in stages][::-1]
    p50 = np.array([s["p50"] for _, s in stages][::-1])
    err = np.array([[s["p50"] - s["p5"], s["p95"] - s["p50"]] for _, s in stages][::-1]).T
    ax.barh(labels, p50 / 1e6, xerr=err / 1e6, color="#1f5fa8", ecolor="#333", capsize=2)
    ax.set_xlabel("people (millions), P50 with P5-P95")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return report.figure_svg(fig)


def _peak_figure(summary: dict[str, Any]) -> str:
    items = [(k, v) for k, v in summary["peaks_per_second"].items() if k != "all endpoints"]
    items += [(f"upstream: {k}", v["calls_per_second"]) for k, v in summary["upstreams"].items()]
    fig = report.new_figure(figsize=(7.5, 4.4))
    ax = fig.add_subplot()
    names = [k for k, _ in items][::-1]
    p50 = np.array([v["p50"] for _, v in items][::-1])
    p95 = np.array([v["p95"] for _, v in items][::-1])
    ax.barh(names, p50, xerr=[np.zeros_like(p50), p95 - p50], color="#2f8f5b", ecolor="#333", capsize=2)
    ax.set_xlabel("requests per second in the busiest minute")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return report.figure_svg(fig)


def _oversubscription_figure(summary: dict[str, Any]) -> str:
    selection = summary["selection"]
    histogram = selection["oversubscription_histogram"]
    edges = np.array(histogram["edges"])
    fig = report.new_figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot()
    ax.bar(edges[:-1], histogram["runs"], width=np.diff(edges), align="edge", color="#6b4fa8")
    ax.axvline(1.0, color="#333", lw=1, ls="--")
    ax.set_xlabel("joined / quota (1 = exactly full)")
    ax.set_ylabel("runs")
    odds = selection["odds"]
    ax.set_title(
        f"oversubscription across runs; a joiner's odds P50 {odds['p50']:.1%} "
        f"(P5-P95 {odds['p5']:.1%}-{odds['p95']:.1%})"
    )
    ax.grid(axis="y", alpha=0.3)
    return report.figure_svg(fig)


def _province_figure(summary: dict[str, Any]) -> str:
    rows = sorted(summary["provinces"], key=lambda r: r["joined_p50"])
    fig = report.new_figure(figsize=(7.5, 0.34 * len(rows) + 1.2))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    joined = np.array([r["joined_p50"] for r in rows]) / 1e3
    accepted = np.array([r["accepted_p50"] for r in rows]) / 1e3
    ax.barh(y + 0.2, joined, height=0.4, color="#b5651d", label="joined (P50)")
    ax.barh(y - 0.2, accepted, height=0.4, color="#1f5fa8", label="accepted (P50) = quota filled")
    for index, row in enumerate(rows):
        ax.annotate(
            report.percent(row["odds_p50"]),
            (joined[index], index + 0.2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
            color="#333",
        )
    ax.set_yticks(y, [r["province"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("people (thousands, log scale); label: a joiner's odds")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(frameon=False, loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(right=joined.max() * 2.2 if joined.size else 1)
    return report.figure_svg(fig)


def _budget_figure(summary: dict[str, Any]) -> str:
    rows = summary["budget"]["schedule_p50"]
    fig = report.new_figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot()
    months = [r["month"] for r in rows]
    bottom = np.zeros(len(rows))
    for key, label, color in (
        ("training_idr", "training", "#1f5fa8"),
        ("incentive_idr", "incentive", "#2f8f5b"),
        ("survey_idr", "surveys", "#b5651d"),
    ):
        values = np.array([r[key] for r in rows], dtype=float) / 1e9
        ax.bar(months, values, bottom=bottom, color=color, label=label)
        bottom += values
    ax.set_ylabel("Rp billion (10^9)")
    ax.set_title("expected spend by month (P50)")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return report.figure_svg(fig)
