"""Replay a season of waves (by default the published 2020 ones, ``season_2020.toml``) and set
the model's outputs beside what was published, stage by stage, with the error of each; the
comparison's table and report. The season itself (its file, the waves run in order) is
:mod:`simulator.demand.season`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator import DEFAULT_SEED, report
from simulator.demand.forecast import as_of, spread
from simulator.demand.model import WaveRuns, lag_cdf_days
from simulator.demand.params import Params, flat
from simulator.demand.season import (
    CHECKPOINT_STAGES,
    Season,
    accounts_at,
    load_season,
    run_season,
    short_number,
    wave_digest,
)
from simulator.progress import ProgressCallback


@dataclass
class SeasonResult:
    season: Season
    params: Params
    waves: list[WaveRuns]
    extra_signups: list[tuple[dt.datetime, np.ndarray]]
    rows: list[dict[str, Any]]
    runs: int
    seed: int


def run_backtest(
    season_path: Season | str | Path | None = None,
    *,
    runs: int = 200,
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    params_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> SeasonResult:
    """Simulate the season wave by wave and compare with every published figure it holds.

    ``season_path`` is a season file, None for the shipped 2020 one, or a :class:`Season` already loaded.
    """
    season = season_path if isinstance(season_path, Season) else load_season(season_path)
    base, wave_runs = run_season(
        season, runs=runs, seed=seed, workers=workers, params_path=params_path, progress=progress
    )
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(len(season.waves) + 1)[-1])
    rows = _compare(season, base, wave_runs, rng)
    return SeasonResult(season, base, wave_runs, [], rows, runs, seed)


def _row(
    group: str,
    item: str,
    published: float,
    model: np.ndarray,
    *,
    kind: str,
    note: str = "",
    unit: str = "people",
) -> dict[str, Any]:
    s = spread(model)
    error = (s["p50"] - published) / published if published else float("nan")
    return {
        "group": group,
        "item": item,
        "published": float(published),
        "model_p50": s["p50"],
        "model_p5": s["p5"],
        "model_p95": s["p95"],
        "error": error,
        "kind": kind,
        "note": note,
        "unit": unit,
    }


def _funnel_as_of(
    season: Season, params: Params, waves: list[WaveRuns], when: dt.datetime, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    runs = waves[0].runs
    totals = {stage: np.zeros(runs, dtype=np.int64) for stage in CHECKPOINT_STAGES}
    last_close = season.accounts[0][0]
    for wave in waves:
        if wave.closes_at > when:
            continue
        last_close = max(last_close, wave.closes_at)
        for stage in ("accounts", "email_verified", "identity_valid", "phone_verified"):
            totals[stage] += wave.counts[stage]
        later = as_of(wave, when, rng)
        for stage in ("accepted", "bought", "finished_training", "incentive_paid"):
            if wave.results_at <= when:
                totals[stage] += later[stage]
    # Accounts created after the last closed wave still go through the first checks.
    extra = max(0, round(accounts_at(season, when) - accounts_at(season, last_close)))
    # They would join the next wave, so they pass its checks (a season may vary rates by wave).
    upcoming = [wave for wave in waves if wave.closes_at > when]
    funnel = upcoming[0].params["funnel"] if upcoming else params["funnel"]
    email = rng.binomial(np.full(runs, extra), funnel["email_verified"])
    identity = rng.binomial(email, funnel["identity_valid"])
    phone = rng.binomial(identity, funnel["phone_verified"])
    totals["accounts"] += extra
    totals["email_verified"] += email
    totals["identity_valid"] += identity
    totals["phone_verified"] += phone
    return totals


def _incentive_paid_idr(waves: list[WaveRuns], when: dt.datetime) -> np.ndarray:
    """Incentive money paid by ``when``: each paid recipient gets a month's incentive every 30 days
    from the first payment, up to ``budget.incentive_months`` (expected value per run)."""
    total = np.zeros(waves[0].runs)
    for wave in waves:
        days = int((when - wave.results_at).total_seconds() // 86400)
        if days < 0:
            continue
        budget = wave.params["budget"]
        cdf = lag_cdf_days(wave.params)["incentive_paid"]
        months_paid = sum(
            cdf[min(days - 30 * k, cdf.size - 1)]
            for k in range(budget["incentive_months"])
            if days - 30 * k >= 0
        )
        total += wave.counts["incentive_paid"] * budget["incentive_idr"] * months_paid
    return total


def _joined_by(wave: WaveRuns, when: dt.datetime) -> np.ndarray:
    minutes = (
        when - (wave.closes_at - dt.timedelta(hours=wave.params["wave"]["duration_hours"]))
    ).total_seconds() / 60
    grid = wave.grid
    ends = grid.starts + grid.widths
    full = ends <= minutes
    partial = (grid.starts < minutes) & ~full
    joins = wave.joins_per_bin.astype(np.float64)
    share = np.where(partial, (minutes - grid.starts) / grid.widths, 0.0)
    return joins[:, full].sum(axis=1) + (joins * share[None, :]).sum(axis=1)


# How each funnel stage of a checkpoint relates to the replay: the verification rates come from
# both published funnels (params.toml and the season's per-wave rates), what follows acceptance
# from the 30 Oct one.
_VERIFICATION = ("email_verified", "identity_valid", "phone_verified")
_AFTER_ACCEPTANCE = ("bought", "finished_training", "incentive_paid")


def _basis(stage: str, last_checkpoint: bool) -> str:
    if stage == "accounts":
        return "input"
    if stage == "accepted":
        return "input (quotas)"
    if stage in _VERIFICATION or (stage in _AFTER_ACCEPTANCE and last_checkpoint):
        return "calibrated"
    return "held out"


def _compare(
    season: Season, params: Params, waves: list[WaveRuns], rng: np.random.Generator
) -> list[dict[str, Any]]:
    rows = []
    for checkpoint in season.checkpoints:
        funnel = _funnel_as_of(season, params, waves, checkpoint["at"], rng)
        label = f"funnel to {checkpoint['at']:%d %b %Y}"
        late = checkpoint["at"].date() >= dt.date(2020, 10, 30)
        for stage in CHECKPOINT_STAGES:
            if stage not in checkpoint:
                continue
            kind = _basis(stage, late)
            rows.append(_row(label, stage, checkpoint[stage], funnel[stage], kind=kind))
        if "incentive_paid_idr" in checkpoint:
            model = _incentive_paid_idr(waves, checkpoint["at"])
            rows.append(
                _row(
                    label,
                    "incentive paid (Rp)",
                    checkpoint["incentive_paid_idr"],
                    model,
                    kind="held out",
                    unit="idr",
                )
            )
    for wave, spec in zip(waves, season.waves, strict=True):
        number = spec["number"]
        if "published_joined" in spec:
            if "published_joined_at_dt" in spec:
                model = _joined_by(wave, spec["published_joined_at_dt"])
                item = f"wave {number} joined by {spec['published_joined_at_dt']:%d %b %H:%M}"
            else:
                model = wave.counts["joined"]
                item = f"wave {number} joined"
            note = spec.get("published_joined_note", "")
            if number == 9:
                note = "the single-wave defaults in params.toml are fitted to it; the season replay is not"
            rows.append(
                _row("joined per wave", item, spec["published_joined"], model, kind="held out", note=note)
            )
    for wave, spec in zip(waves, season.waves, strict=True):
        if "published_first_24h" in spec:
            opened = wave.closes_at - dt.timedelta(hours=wave.params["wave"]["duration_hours"])
            model = _joined_by(wave, opened + dt.timedelta(hours=24))
            rows.append(
                _row(
                    "arrival curve",
                    f"wave {spec['number']} joined in the first 24 h",
                    spec["published_first_24h"],
                    model,
                    kind="held out",
                )
            )
            if "published_joined" in spec:
                rows.append(
                    _row(
                        "arrival curve",
                        f"wave {spec['number']} share joined in the first 24 h",
                        spec["published_first_24h"] / spec["published_joined"],
                        model / np.maximum(wave.counts["joined"], 1),
                        kind="calibrated",
                        unit="share",
                    )
                )
    revocations = season.extra.get("revocations", {})
    by_number = {spec["number"]: wave for spec, wave in zip(season.waves, waves, strict=True)}
    for key, last in (("waves_1_9", 9), ("waves_1_10", 10)):
        if key in revocations and all(n in by_number for n in range(1, last + 1)):
            model = sum(by_number[n].counts["revoked"] for n in range(1, last + 1))
            kind = "calibrated" if last == 10 else "held out"
            note = "counted earlier than the 30 Oct funnel" if last == 9 else ""
            rows.append(
                _row("revocations", f"revoked, waves 1-{last}", revocations[key], model, kind=kind, note=note)
            )
    budget = season.extra.get("budget_2020", {})
    if budget:
        accepted = sum(
            w.counts["accepted"]
            for w in waves
            if w.closes_at.year == 2020 and w.params["wave"]["number"] <= 10
        )
        b = params["budget"]
        for key, per_person in (
            ("training_idr", b["training_idr"]),
            ("incentive_idr", b["incentive_idr"] * b["incentive_months"]),
            ("survey_idr", b["survey_idr"] * b["surveys"]),
        ):
            if key in budget:
                rows.append(
                    _row(
                        "2020 budget (waves 1-10 accepted x per person)",
                        key,
                        budget[key],
                        accepted * per_person,
                        kind="held out",
                        unit="idr",
                    )
                )
    load = season.extra.get("load", {})
    if "peak_visits_per_second" in load:
        model = np.max([w.peaks_per_second["all endpoints"] for w in waves], axis=0)
        rows.append(
            _row(
                "load",
                "peak requests/s, busiest minute of the season",
                load["peak_visits_per_second"],
                model,
                kind="held out",
                note="published as visits/s: not the same unit as API requests",
                unit="per_second",
            )
        )
    return rows


def backtest_table(result: SeasonResult) -> str:
    """Model vs published, one line per figure, grouped, with the error of each."""
    lines = [
        f"Backtest: {result.season.name} ({result.season.source}), {result.runs} runs, seed {result.seed}",
        "",
        f"{'figure':<46}{'published':>14}{'model P50':>14}{'P5-P95':>25}{'error':>9}  basis",
    ]
    group = None
    for row in result.rows:
        if row["group"] != group:
            group = row["group"]
            lines.append(f"-- {group}")
        short = _percent if row["unit"] == "share" else short_number
        band = f"{short(row['model_p5'])}-{short(row['model_p95'])}"
        error = "" if np.isnan(row["error"]) else f"{row['error']:+.1%}"
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(
            f"{row['item']:<46}{short(row['published']):>14}{short(row['model_p50']):>14}{band:>25}"
            f"{error:>9}  {row['kind']}{note}"
        )
    return "\n".join(lines)


def _percent(value: float) -> str:
    return f"{value:.1%}"


# How the HTML writes a figure of each unit (one formatter per unit, the same in every column).
_UNIT_FORMAT = {
    "people": report.short_number,
    "idr": report.rupiah,
    "share": report.percent,
    "per_second": report.number,
}

# The colour of each basis in the chart, and the words its legend gives it.
_BASIS_STYLE = {
    "calibrated": ("#1f5fa8", "calibrated: sets a default, should be near 0"),
    "held out": ("#b5651d", "held out: not used to fit anything"),
    "input": ("#9aa3b2", "input: drives the replay"),
    "input (quotas)": ("#9aa3b2", "input: drives the replay"),
}


def write_backtest(out_dir: str | Path, result: SeasonResult) -> tuple[Path, Path]:
    """``backtest.json`` and a self-contained ``backtest.html`` with the table and an error chart."""
    rows = result.rows
    shown = []
    for row in rows:
        fmt = _UNIT_FORMAT.get(row["unit"], report.number)
        shown.append(
            {
                "group": row["group"],
                "item": _item_label(row["item"]),
                "published": fmt(row["published"]),
                "model_p50": fmt(row["model_p50"]),
                "band": _band(fmt(row["model_p5"]), fmt(row["model_p95"])),
                "error": "" if np.isnan(row["error"]) else f"{row['error']:+.1%}",
                "kind": row["kind"].removesuffix(" (quotas)"),
                "note": row["note"] or ("the quotas summed" if row["kind"] == "input (quotas)" else ""),
            }
        )
    table = report.html_table(
        shown,
        [
            ("item", "Figure"),
            ("published", "Published"),
            ("model_p50", "Model P50"),
            ("band", "Model P5 - P95"),
            ("error", "Error"),
            ("kind", "Basis"),
            ("note", "Note"),
        ],
        numeric=("published", "model_p50", "band", "error"),
        group_by="group",
        caption="People in millions (M), money in Rupiah (T = 10^12, B = 10^9), error = model P50 "
        "against published",
    )
    sections = [
        report.Section(
            "Model vs published",
            html="<p>Basis: <b>input</b> figures drive the replay, <b>calibrated</b> ones set the defaults "
            "in params.toml, <b>held out</b> ones were not used to fit anything: they are the test.</p>",
            figures=[_error_figure(rows)],
            tables=[table],
        )
    ]
    meta = report.report_meta(
        seed=result.seed, params=flat(result.params), runs=result.runs, season=result.season.source
    )
    html = report.render_html(f"Backtest: {result.season.name}", meta, sections)
    data = {"rows": rows, "meta": meta, "waves": [wave_digest(w) for w in result.waves]}
    return report.write_report(out_dir, data, html, json_name="backtest.json", html_name="backtest.html")


def _band(low: str, high: str) -> str:
    # "17.81 - 17.82 M", "Rp 5.97 - 5.98 T": the unit once, so the column stays narrow.
    low_unit, high_unit = low.rpartition("\u00a0"), high.rpartition("\u00a0")
    if low_unit[0] and low_unit[2] == high_unit[2] and not low_unit[2][:1].isdigit():
        low = low_unit[0]
    if low.startswith("Rp\u00a0") and high.startswith("Rp\u00a0"):
        high = high.removeprefix("Rp\u00a0")
    return f"{low} - {high}"


def _item_label(item: str) -> str:
    # Keys as words: "identity_valid" -> "identity valid", "training_idr" -> "training (Rp)".
    return item.replace("_idr", " (Rp)").replace("_", " ")


def _error_figure(rows: list[dict[str, Any]]) -> str:
    """Error of each figure as a bar, grouped under bold group headings, coloured by basis."""
    from matplotlib.patches import Patch

    labels: list[str] = []
    errors: list[float] = []
    colors: list[str] = []
    headings: list[int] = []
    group = None
    for row in rows:
        if row["group"] != group:
            group = row["group"]
            headings.append(len(labels))
            labels.append(group)
            errors.append(0.0)
            colors.append("none")
        labels.append(_item_label(row["item"]))
        errors.append(0.0 if np.isnan(row["error"]) else row["error"] * 100)
        colors.append(_BASIS_STYLE.get(row["kind"], ("#666", ""))[0])
    fig = report.new_figure(figsize=(9.5, 0.2 * len(labels) + 1.4))
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    ax.axvspan(-10, 10, color="#e8f2e8", zorder=0)
    ax.barh(y, errors, color=colors, height=0.7, zorder=2)
    ax.axvline(0, color="#333", lw=1, zorder=3)
    ax.set_yticks(y, labels)
    ax.tick_params(axis="y", labelsize=8, length=0)
    for index in headings:
        tick = ax.get_yticklabels()[index]
        tick.set_fontweight("bold")
        tick.set_color("#1f5fa8")
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_xlabel("model P50 against published, %")
    ax.grid(axis="x", alpha=0.3, zorder=1)
    handles = [Patch(color=color, label=label) for color, label in dict(_BASIS_STYLE.values()).items()]
    handles.append(Patch(color="#e8f2e8", label="within +/-10%"))
    ax.legend(handles=handles, loc="lower right", fontsize=8, frameon=True, framealpha=0.9)
    return report.figure_svg(fig)
