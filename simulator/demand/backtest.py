"""Replay a season of waves (by default the published 2020 ones, ``season_2020.toml``) and set
the model's outputs beside what was published, stage by stage, with the error of each.

The season carries the verified people who were not accepted from wave to wave; each wave's
new sign-ups come from the published cumulative account totals, interpolated in time.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from simulator import DEFAULT_SEED, report
from simulator.demand.forecast import as_of, spread
from simulator.demand.model import WaveRuns, lag_cdf_days, simulate_wave
from simulator.demand.params import Params, flat, load_params
from simulator.errors import InvalidInputFile
from simulator.progress import ProgressCallback

CHECKPOINT_STAGES = (
    "accounts",
    "email_verified",
    "identity_valid",
    "phone_verified",
    "accepted",
    "bought",
    "finished_training",
    "incentive_paid",
)


@dataclass
class Season:
    """A season file, validated."""

    source: str
    name: str
    params: dict[str, Any]
    accounts: list[tuple[dt.datetime, int, str]]
    waves: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    prior_pool: int = 0


def load_season(path: str | Path | None = None) -> Season:
    """Read a season TOML (the shipped 2020 one when ``path`` is None); errors name file and key."""
    if path is None:
        source = "season_2020.toml (shipped)"
        text = resources.files("simulator.demand").joinpath("season_2020.toml").read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInputFile(f"{source}: no such season file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInputFile(f"{source}: cannot read the season file ({err})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInputFile(f"{source}: not valid TOML ({err})") from None

    def need(
        table: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...], expected: str
    ) -> Any:
        value = table.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidInputFile(f"{source}: key '{where}{key}': expected {expected}, got {value!r}")
        return value

    def when(value: Any, where: str) -> dt.datetime:
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                value = None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise InvalidInputFile(
                f"{source}: key '{where}': expected a date-time with offset, got {value!r}"
            )
        return value

    season = doc.get("season", {})
    prior_pool = season.get("prior_pool", 0)
    if isinstance(prior_pool, bool) or not isinstance(prior_pool, int) or prior_pool < 0:
        raise InvalidInputFile(
            f"{source}: key 'season.prior_pool': expected a whole number >= 0, got {prior_pool!r}"
        )
    accounts = []
    for i, point in enumerate(doc.get("accounts", [])):
        total = need(point, "total", f"accounts[{i}].", int, "a whole number of accounts >= 0")
        accounts.append((when(point.get("at"), f"accounts[{i}].at"), total, str(point.get("source", ""))))
    if accounts and (
        len(accounts) < 2
        or any(b[0] <= a[0] or b[1] < a[1] for a, b in zip(accounts, accounts[1:], strict=False))
    ):
        raise InvalidInputFile(
            f"{source}: key 'accounts': expected at least two [[accounts]] points, "
            "increasing in time and total"
        )
    waves = []
    for i, wave in enumerate(doc.get("waves", [])):
        where = f"waves[{i}]."
        need(wave, "number", where, int, "a wave number >= 1")
        need(wave, "quota", where, int, "a whole number of places")
        need(wave, "duration_hours", where, (int, float), "a duration in hours")
        entry = dict(wave)
        entry["opens_at_dt"] = when(wave.get("opens_at"), f"{where}opens_at")
        if "new_signups" in wave:
            need(wave, "new_signups", where, int, "a whole number of new accounts")
        elif not accounts:
            raise InvalidInputFile(
                f"{source}: key '{where}new_signups': expected new sign-ups for the wave, "
                "or [[accounts]] totals to derive them from"
            )
        if not isinstance(wave.get("params", {}), dict):
            raise InvalidInputFile(f"{source}: key '{where}params': expected a table of parameter overrides")
        if "published_joined_at" in wave:
            entry["published_joined_at_dt"] = when(wave["published_joined_at"], f"{where}published_joined_at")
        waves.append(entry)
    if not waves:
        raise InvalidInputFile(f"{source}: key 'waves': expected at least one [[waves]] table")
    checkpoints = []
    for i, point in enumerate(doc.get("checkpoints", [])):
        entry = {"at": when(point.get("at"), f"checkpoints[{i}].at"), "source": str(point.get("source", ""))}
        for stage in CHECKPOINT_STAGES:
            if stage in point:
                entry[stage] = need(point, stage, f"checkpoints[{i}].", int, "a whole number of people")
        if "incentive_paid_idr" in point:
            entry["incentive_paid_idr"] = need(
                point, "incentive_paid_idr", f"checkpoints[{i}].", int, "rupiah"
            )
        checkpoints.append(entry)
    extra = {k: v for k, v in doc.items() if k not in ("season", "accounts", "waves", "checkpoints")}
    return Season(
        source=source,
        name=str(season.get("name", source)),
        params=dict(season.get("params", {})),
        accounts=accounts,
        waves=waves,
        checkpoints=checkpoints,
        extra=extra,
        prior_pool=prior_pool,
    )


def accounts_at(season: Season, when: dt.datetime) -> float:
    """Cumulative accounts at ``when``: linear between published points, extrapolated after."""
    times = np.array([p[0].timestamp() for p in season.accounts])
    totals = np.array([p[1] for p in season.accounts], dtype=float)
    t = when.timestamp()
    if t <= times[0]:
        return float(totals[0])
    if t >= times[-1]:
        slope = (totals[-1] - totals[-2]) / (times[-1] - times[-2])
        return float(totals[-1] + slope * (t - times[-1]))
    return float(np.interp(t, times, totals))


@dataclass
class SeasonResult:
    season: Season
    params: Params
    waves: list[WaveRuns]
    extra_signups: list[tuple[dt.datetime, np.ndarray]]
    rows: list[dict[str, Any]]
    runs: int
    seed: int


def run_season(
    season: Season,
    *,
    runs: int,
    seed: int,
    workers: int = 1,
    params_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[Params, list[WaveRuns]]:
    """Simulate the season's waves in order, each starting from the pool the last one left."""
    base = load_params(params_path, season.params)
    seeds = np.random.SeedSequence(seed).spawn(len(season.waves))
    wave_runs: list[WaveRuns] = []
    # The pool at the start is as uncertain as any demand figure: same spread as demand.prior_pool.
    cv = base["uncertainty"]["demand_cv"]
    level = np.ones(runs)
    if cv > 0 and season.prior_pool > 0:
        sigma = np.sqrt(np.log1p(cv * cv))
        level = np.random.default_rng(np.random.SeedSequence([seed, 1])).lognormal(
            -sigma * sigma / 2, sigma, runs
        )
    pool = np.rint(season.prior_pool * level).astype(np.int64)
    previous_close = season.accounts[0][0] if season.accounts else None
    for index, wave in enumerate(season.waves):
        closes = wave["opens_at_dt"] + dt.timedelta(hours=float(wave["duration_hours"]))
        if "new_signups" in wave:
            signups = wave["new_signups"]
        else:
            signups = max(0, round(accounts_at(season, closes) - accounts_at(season, previous_close)))
        overrides = {
            "wave.number": wave["number"],
            "wave.quota": wave["quota"],
            "wave.opens_at": wave["opens_at_dt"].isoformat(),
            "wave.duration_hours": float(wave["duration_hours"]),
            "demand.new_signups": signups,
            "demand.prior_pool": 0,
            **season.params,
            **wave.get("params", {}),
        }
        params = load_params(params_path, overrides)
        wave_seed = int(seeds[index].generate_state(1)[0])
        result = simulate_wave(params, runs=runs, seed=wave_seed, prior_pool=pool, workers=workers)
        wave_runs.append(result)
        pool = result.counts["pool_after"]
        previous_close = closes
        if progress is not None:
            progress(1)
    return base, wave_runs


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


def season_rows(waves: list[WaveRuns]) -> list[dict[str, Any]]:
    """One row per wave: joiners, odds, roll-over, pool, load and budget (P50, some P95)."""
    rows = []
    for wave in waves:
        c = wave.counts
        odds = c["accepted"] / np.maximum(c["joined"], 1)
        rows.append(
            {
                "wave": wave.params["wave"]["number"],
                "opens_at": wave.params["wave"]["opens_at"][:16],
                "quota": wave.params["wave"]["quota"],
                "joined_p50": float(np.median(c["joined"])),
                "joined_p95": float(np.percentile(c["joined"], 95)),
                "odds_p50": float(np.median(odds)),
                "rolled_over_p50": float(np.median(c["not_selected"])),
                "pool_after_p50": float(np.median(c["pool_after"])),
                "revoked_p50": float(np.median(c["revoked"])),
                "peak_rps_p95": float(np.percentile(wave.peaks_per_second["all endpoints"], 95)),
                "committed_idr_p50": float(np.median(c["budget_committed_idr"])),
            }
        )
    return rows


def season_table(waves: list[WaveRuns]) -> str:
    """The season, one line per wave."""
    lines = [
        f"{'wave':>4} {'opens':<17}{'quota':>10}{'joined P50':>13}{'P95':>13}{'odds':>8}"
        f"{'rolled over':>13}{'pool after':>13}{'revoked':>10}{'peak/s P95':>12}{'committed':>11}"
    ]
    for r in season_rows(waves):
        lines.append(
            f"{r['wave']:>4} {r['opens_at']:<17}{r['quota']:>10,}"
            f"{r['joined_p50']:>13,.0f}{r['joined_p95']:>13,.0f}"
            f"{r['odds_p50']:>8.1%}{r['rolled_over_p50']:>13,.0f}{r['pool_after_p50']:>13,.0f}"
            f"{r['revoked_p50']:>10,.0f}{r['peak_rps_p95']:>12,.0f}{_short(r['committed_idr_p50']):>11}"
        )
    return "\n".join(lines)


def write_season(
    out_dir: str | Path, season: Season, params: Params, waves: list[WaveRuns], *, runs: int, seed: int
) -> tuple[Path, Path]:
    """``season.json`` and ``season.html``: the per-wave table and joiners vs quota by wave."""
    rows = season_rows(waves)
    fig = report.new_figure(figsize=(7.5, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["joined_p50"] / 1e6 for r in rows], width=0.4, label="joined (P50)", color="#1f5fa8")
    ax.bar(x + 0.2, [r["quota"] / 1e6 for r in rows], width=0.4, label="quota", color="#b5651d")
    ax.set_xticks(x, [str(r["wave"]) for r in rows])
    ax.set_xlabel("wave")
    ax.set_ylabel("people (millions)")
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    table = report.html_table(
        rows,
        [
            ("wave", "Wave"),
            ("opens_at", "Opens"),
            ("quota", "Quota"),
            ("joined_p50", "Joined P50"),
            ("joined_p95", "Joined P95"),
            ("odds_p50", "Odds P50"),
            ("rolled_over_p50", "Rolled over P50"),
            ("pool_after_p50", "Pool after P50"),
            ("revoked_p50", "Revoked P50"),
            ("peak_rps_p95", "Peak req/s P95"),
            ("committed_idr_p50", "Committed P50"),
        ],
        formats={
            "opens_at": _short_date,
            "odds_p50": report.percent,
            "committed_idr_p50": report.rupiah,
            **dict.fromkeys(
                ("joined_p50", "joined_p95", "rolled_over_p50", "pool_after_p50"), report.short_number
            ),
        },
        numeric=("opens_at",),
        caption="People in millions (M); Rp: T = 10^12, B = 10^9",
    )
    sections = [report.Section("Waves", figures=[report.figure_svg(fig)], tables=[table])]
    meta = report.report_meta(seed=seed, params=flat(params), runs=runs, season=season.source)
    html = report.render_html(f"Season forecast: {season.name}", meta, sections)
    data = {"waves": rows, "meta": meta, "detail": [_wave_digest(w) for w in waves]}
    return report.write_report(out_dir, data, html, json_name="season.json", html_name="season.html")


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
        short = _percent if row["unit"] == "share" else _short
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


def _short(value: float) -> str:
    if abs(value) >= 1e12:
        return f"{value / 1e12:,.2f}T"
    if abs(value) >= 1e9:
        return f"{value / 1e9:,.1f}B"
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.3f}M"
    return f"{value:,.0f}"


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
    data = {"rows": rows, "meta": meta, "waves": [_wave_digest(w) for w in result.waves]}
    return report.write_report(out_dir, data, html, json_name="backtest.json", html_name="backtest.html")


def _short_date(iso: str) -> str:
    # "2020-04-11T19:00" -> "11 Apr 2020 19:00": read at a glance, and never broken across lines.
    return f"{dt.datetime.fromisoformat(iso):%d %b %Y %H:%M}".replace(" ", "\u00a0")


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


def _wave_digest(wave: WaveRuns) -> dict[str, Any]:
    counts = wave.counts
    return {
        "number": wave.params["wave"]["number"],
        "closes_at": wave.closes_at.isoformat(),
        "results_at": wave.results_at.isoformat(),
        **{
            k: spread(counts[k])
            for k in ("accounts", "prior_pool", "joined", "accepted", "revoked", "pool_after")
        },
    }
