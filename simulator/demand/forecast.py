"""From the runs of one wave to what a planner reads: percentiles of every count and peak, the
selection odds, the budget by month and the terminal table. ``forecast.json`` and ``forecast.html``
are :mod:`simulator.demand.forecast_report`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from simulator import report
from simulator.demand.model import ENDPOINTS, UPSTREAMS, WaveRuns, lag_cdf_days, oversize_share
from simulator.demand.params import Params, opening_time, per_person_budget_idr

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
