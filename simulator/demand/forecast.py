"""From the runs of one wave to what a planner reads: percentiles of every count and peak, the
selection odds, the budget by month, the terminal table, ``forecast.json`` and ``forecast.html``.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulator import report
from simulator.demand.model import ENDPOINTS, UPSTREAMS, WaveRuns, lag_cdf_days, oversize_share
from simulator.demand.params import Params, flat, opening_time, per_person_budget_idr

PERCENTILES = (5, 50, 95)

# Stages of the funnel shown in order, with the words a planner uses for them.
FUNNEL_ROWS = (
    ("accounts", "new accounts in the window"),
    ("email_verified", "email verified"),
    ("identity_valid", "NIK + KK valid (Dukcapil)"),
    ("phone_verified", "profile, KTP and phone done"),
    ("joined_new", "new people who joined"),
    ("returning", "rolled-over people who joined"),
    ("joined", "joined the wave"),
    ("accepted", "accepted"),
    ("not_selected", "not selected: roll into the next wave"),
    ("revoked", "revoked (no training bought in 30 days)"),
    ("bought", "bought a training"),
    ("finished_training", "finished a training"),
    ("incentive_paid", "incentive paid"),
)


STEP_LABELS = {
    "accounts": "account created",
    "email_verified": "email verified",
    "identity_valid": "identity (NIK + KK) valid",
    "phone_verified": "phone verified",
    "joined": "joined the wave",
}


def spread(values: np.ndarray) -> dict[str, float]:
    """P5, P50, P95 and mean of one quantity across runs."""
    values = np.asarray(values, dtype=float)
    p5, p50, p95 = np.percentile(values, PERCENTILES)
    return {"p5": float(p5), "p50": float(p50), "p95": float(p95), "mean": float(values.mean())}


def budget_schedule(params: Params, runs: WaveRuns) -> list[dict[str, Any]]:
    """Expected spend by calendar month (P50 counts x lag shares): training when bought, the
    incentive monthly from the first payment, surveys at their offsets after it."""
    budget = params["budget"]
    cdf = lag_cdf_days(params)
    day_share = {stage: np.diff(np.concatenate([[0.0], c])) for stage, c in cdf.items()}
    bought = float(np.median(runs.counts["bought"]))
    paid = float(np.median(runs.counts["incentive_paid"]))
    start = runs.results_at
    months: dict[str, dict[str, float]] = {}

    def add(kind: str, amount: float, shares: np.ndarray, offset_days: int) -> None:
        for day in np.nonzero(shares > 1e-9)[0]:
            month = (start + dt.timedelta(days=int(day) + offset_days)).strftime("%Y-%m")
            row = months.setdefault(month, {"training_idr": 0.0, "incentive_idr": 0.0, "survey_idr": 0.0})
            row[kind] += amount * shares[day]

    add("training_idr", bought * budget["training_idr"], day_share["bought"], 0)
    for month_index in range(budget["incentive_months"]):
        add("incentive_idr", paid * budget["incentive_idr"], day_share["incentive_paid"], 30 * month_index)
    for offset in budget["survey_month_offsets"][: budget["surveys"]]:
        add("survey_idr", paid * budget["survey_idr"], day_share["incentive_paid"], 30 * offset)
    rows = []
    for month in sorted(months):
        row = {k: round(v) for k, v in months[month].items()}
        row["total_idr"] = sum(row.values())
        rows.append({"month": month, **row})
    return rows


def as_of(runs: WaveRuns, when: dt.datetime, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Counts after acceptance that have happened by ``when`` (per run), using the lag model."""
    days = (when - runs.results_at).total_seconds() / 86400
    zero = np.zeros(runs.runs, dtype=np.int64)
    if days < 0:
        return {
            "accepted": zero,
            "revoked": zero,
            "bought": zero,
            "finished_training": zero,
            "incentive_paid": zero,
        }
    cdf = lag_cdf_days(runs.params)
    index = min(int(days), cdf["bought"].size - 1)
    counts = runs.counts
    window_over = days >= runs.params["lags"]["buy_window_days"]
    return {
        "accepted": counts["accepted"],
        "revoked": counts["revoked"] if window_over else zero,
        "bought": rng.binomial(counts["bought"], cdf["bought"][index]),
        "finished_training": rng.binomial(counts["finished_training"], cdf["finished_training"][index]),
        "incentive_paid": rng.binomial(counts["incentive_paid"], cdf["incentive_paid"][index]),
    }


def summarise(runs: WaveRuns) -> dict[str, Any]:
    """Everything ``forecast.json`` holds (stable keys), computed from the runs."""
    params = runs.params
    wave = params["wave"]
    counts = runs.counts
    joined = counts["joined"].astype(float)
    priority = wave["priority_list"]
    odds_open = (counts["accepted"] - np.minimum(priority, counts["accepted"])) / np.maximum(
        joined - priority, 1
    )
    selection = {
        "mode": wave["mode"],
        "quota": wave["quota"],
        "priority_list": priority,
        "joined": spread(joined),
        "accepted": spread(counts["accepted"]),
        "oversubscription": spread(joined / max(wave["quota"], 1)),
        "odds": spread(counts["accepted"] / np.maximum(joined, 1)),
        "odds_not_on_priority_list": spread(odds_open),
        "odds_rolled_over": spread(counts["accepted_returning"] / np.maximum(counts["returning"], 1)),
        "odds_new": spread(counts["accepted_new"] / np.maximum(counts["joined_new"], 1)),
        "not_selected_roll_over": spread(counts["not_selected"]),
        "pool_for_next_wave": spread(counts["pool_after"]),
        "oversubscription_histogram": _histogram(joined / max(wave["quota"], 1)),
    }
    if wave["mode"] == "fcfs":
        filled = ~np.isnan(runs.fill_minute)
        selection["filled_share_of_runs"] = float(filled.mean())
        selection["fill_minute"] = spread(runs.fill_minute[filled]) if filled.any() else None
    peaks = {
        name: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}
        for name, v in runs.peaks_per_second.items()
        if name in ENDPOINTS or name == "all endpoints"
    }
    upstreams = {
        name: {
            "calls_per_second": {
                "p50": float(np.percentile(runs.peaks_per_second[name], 50)),
                "p95": float(np.percentile(runs.peaks_per_second[name], 95)),
            },
            "calls_total": spread(runs.requests_total[name]),
            "via": UPSTREAMS[name],
        }
        for name in UPSTREAMS
    }
    # Results of the draw reach every joiner by SMS 3-4 days after the close: a second SMS peak.
    results_seconds = params["upstreams"]["results_sms_hours"] * 3600
    upstreams["sms_results"] = {
        "calls_per_second": {
            "p50": float(np.percentile(joined, 50) / results_seconds),
            "p95": float(np.percentile(joined, 95) / results_seconds),
        },
        "calls_total": spread(joined),
        "via": f"result notices after the close, sent over {params['upstreams']['results_sms_hours']:g} h",
    }
    bandwidth = runs.peaks_per_second["photo_upload_bytes"] * 8 / 1e6
    photo = {
        "upload_mbit_per_second": {
            "p50": float(np.percentile(bandwidth, 50)),
            "p95": float(np.percentile(bandwidth, 95)),
        },
        "bytes_transferred": spread(counts["photo_bytes_transferred"]),
        "bytes_stored": spread(counts["photo_bytes_stored"]),
        "oversize_share": oversize_share(params),
    }
    provinces = []
    for index, name in enumerate(runs.province_names):
        p_joined = runs.province_joined[:, index]
        p_accepted = runs.province_accepted[:, index]
        provinces.append(
            {
                "province": name,
                "quota": int(runs.province_quota[index]),
                "joined_p50": float(np.median(p_joined)),
                "accepted_p50": float(np.median(p_accepted)),
                "odds_p50": float(np.median(p_accepted / np.maximum(p_joined, 1))),
            }
        )
    per_person = per_person_budget_idr(params)
    budget = params["budget"]
    spend = counts["bought"] * budget["training_idr"] + counts["incentive_paid"] * (
        budget["incentive_idr"] * budget["incentive_months"] + budget["survey_idr"] * budget["surveys"]
    )
    curve = _curve(runs)
    opens = opening_time(params)
    return {
        "wave": {
            "number": wave["number"],
            "opens_at": opens.isoformat(),
            "closes_at": runs.closes_at.isoformat(),
            "results_at": runs.results_at.isoformat(),
            "duration_hours": wave["duration_hours"],
            "decay_hours_solved": runs.decay_minutes / 60,
            "first_24h_share": spread(counts["first_24h_share"]),
        },
        "funnel": {stage: spread(counts[stage]) for stage, _ in FUNNEL_ROWS},
        "conservation": conservation_checks(runs),
        "completions_per_step": {
            step: {
                "total": spread(counts[step]),
                "peak_per_minute": {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))},
            }
            for step, v in runs.completions_peak_per_minute.items()
        },
        "selection": selection,
        "peaks_per_second": peaks,
        "requests_total_p50": {name: float(np.median(runs.requests_total[name])) for name in ENDPOINTS},
        "upstreams": upstreams,
        "photo": photo,
        "provinces": provinces,
        "budget": {
            "per_person_idr": per_person,
            "committed_idr": spread(counts["accepted"] * per_person),
            "expected_spend_idr": spread(spend),
            "schedule_p50": budget_schedule(params, runs),
        },
        "arrival_curve": curve,
        "runs": runs.runs,
        "seed": runs.seed,
    }


def _histogram(values: np.ndarray, bins: int = 30) -> dict[str, list[float]]:
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": np.round(edges, 4).tolist(), "runs": counts.tolist()}


def conservation_checks(runs: WaveRuns) -> dict[str, bool]:
    """Every person of a stage is in exactly one of the next stage's parts, in every run."""
    c = runs.counts
    checks = {
        "new registrants: joined + dropped at each step = accounts": np.array_equal(
            c["accounts"],
            c["joined_new"]
            + c["verified_not_joining"]
            + (c["identity_valid"] - c["phone_verified"])
            + (c["email_verified"] - c["identity_valid"])
            + (c["accounts"] - c["email_verified"]),
        ),
        "pool: joined + stayed away = pool": np.array_equal(
            c["prior_pool"], c["returning"] + c["pool_not_joining"]
        ),
        "joined: accepted + not selected = joined": np.array_equal(
            c["joined"], c["accepted"] + c["not_selected"]
        ),
        "joined = new + rolled over": np.array_equal(c["joined"], c["joined_new"] + c["returning"]),
        "accepted: bought + revoked = accepted": np.array_equal(c["accepted"], c["bought"] + c["revoked"]),
        "arrivals over time add up to the joined": bool(
            np.allclose(runs.joins_per_bin.sum(axis=1, dtype=np.float64), c["joined"])
        ),
        "provinces add up": np.array_equal(runs.province_accepted.sum(axis=1), c["accepted"])
        and np.array_equal(runs.province_joined.sum(axis=1), c["joined"]),
    }
    return {k: bool(v) for k, v in checks.items()}


def _curve(runs: WaveRuns) -> dict[str, list[float]]:
    per_minute = runs.joins_per_bin / runs.grid.widths[None, :]
    p5, p50, p95 = np.percentile(per_minute, PERCENTILES, axis=0)
    return {
        "minute": runs.grid.starts.tolist(),
        "bin_minutes": runs.grid.widths.tolist(),
        "joins_per_minute_p5": np.round(p5, 2).tolist(),
        "joins_per_minute_p50": np.round(p50, 2).tolist(),
        "joins_per_minute_p95": np.round(p95, 2).tolist(),
    }


def terminal_table(summary: dict[str, Any]) -> str:
    """The table printed after a forecast: funnel, selection, peaks, upstreams, budget."""
    lines = []
    wave = summary["wave"]
    selection = summary["selection"]
    lines.append(
        f"Wave {wave['number']}: opens {wave['opens_at']}, {wave['duration_hours']:g} h, "
        f"{selection['mode']}, quota {selection['quota']:,}  "
        f"({summary['runs']:,} runs, seed {summary['seed']})"
    )
    lines.append("")
    lines.append(f"{'stage':<42}{'P5':>13}{'P50':>13}{'P95':>13}")
    for stage, label in FUNNEL_ROWS:
        s = summary["funnel"][stage]
        lines.append(f"{label:<42}{s['p5']:>13,.0f}{s['p50']:>13,.0f}{s['p95']:>13,.0f}")
    lines.append("")
    for key, label, fmt in (
        ("oversubscription", "joined / quota", "{:>13.2f}"),
        ("odds", "odds of a joiner", "{:>13.2%}"),
        ("odds_rolled_over", "odds, rolled-over joiner", "{:>13.2%}"),
        ("odds_new", "odds, new joiner", "{:>13.2%}"),
    ):
        s = selection[key]
        lines.append(f"{label:<42}" + "".join(fmt.format(s[p]) for p in ("p5", "p50", "p95")))
    if selection.get("fill_minute"):
        s = selection["fill_minute"]
        lines.append(
            f"{'fcfs: quota full after (minutes)':<42}{s['p5']:>13,.0f}{s['p50']:>13,.0f}{s['p95']:>13,.0f}"
        )
    s = wave["first_24h_share"]
    lines.append(f"{'share joined in the first 24 h':<42}{s['p5']:>13.1%}{s['p50']:>13.1%}{s['p95']:>13.1%}")
    lines.append("")
    lines.append(f"{'step completions (people/minute, peak)':<42}{'P50':>13}{'P95':>13}")
    for step, s in summary["completions_per_step"].items():
        peak = s["peak_per_minute"]
        lines.append(f"{STEP_LABELS.get(step, step):<42}{peak['p50']:>13,.0f}{peak['p95']:>13,.0f}")
    lines.append("")
    lines.append(f"{'peak load (requests/s, busiest minute)':<42}{'P50':>13}{'P95':>13}")
    for name, s in summary["peaks_per_second"].items():
        lines.append(f"{name:<42}{s['p50']:>13,.1f}{s['p95']:>13,.1f}")
    for name, s in summary["upstreams"].items():
        lines.append(
            f"{'upstream ' + name + ' (calls/s)':<42}{s['calls_per_second']['p50']:>13,.1f}"
            f"{s['calls_per_second']['p95']:>13,.1f}"
        )
    photo = summary["photo"]
    lines.append(
        f"{'photo upload bandwidth (Mbit/s)':<42}{photo['upload_mbit_per_second']['p50']:>13,.0f}"
        f"{photo['upload_mbit_per_second']['p95']:>13,.0f}"
    )
    lines.append(
        f"{'photo storage added (GB)':<42}{photo['bytes_stored']['p50'] / 1e9:>13,.0f}"
        f"{photo['bytes_stored']['p95'] / 1e9:>13,.0f}"
    )
    lines.append("")
    budget = summary["budget"]
    lines.append(
        f"budget: {report.rupiah(budget['per_person_idr'])} per person; committed "
        f"{report.rupiah(budget['committed_idr']['p50'])}, expected spend "
        f"{report.rupiah(budget['expected_spend_idr']['p50'])} (P50)"
    )
    return "\n".join(lines)


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
