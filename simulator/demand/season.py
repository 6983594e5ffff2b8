"""A season of waves: the season file (by default the published 2020 waves, ``season_2020.toml``),
the waves forecast in order with the verified people who were not accepted carried from wave to wave,
and the season's table and report. Each wave's new sign-ups come from the published cumulative
account totals, interpolated in time. ``simulator.demand.backtest`` sets the result beside what
was published.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from simulator import report
from simulator.demand.forecast import spread
from simulator.demand.model import WaveRuns, simulate_wave
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
            f"{r['revoked_p50']:>10,.0f}{r['peak_rps_p95']:>12,.0f}{short_number(r['committed_idr_p50']):>11}"
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
    data = {"waves": rows, "meta": meta, "detail": [wave_digest(w) for w in waves]}
    return report.write_report(out_dir, data, html, json_name="season.json", html_name="season.html")


def short_number(value: float) -> str:
    if abs(value) >= 1e12:
        return f"{value / 1e12:,.2f}T"
    if abs(value) >= 1e9:
        return f"{value / 1e9:,.1f}B"
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.3f}M"
    return f"{value:,.0f}"


def _short_date(iso: str) -> str:
    # "2020-04-11T19:00" -> "11 Apr 2020 19:00": read at a glance, and never broken across lines.
    return f"{dt.datetime.fromisoformat(iso):%d %b %Y %H:%M}".replace(" ", "\u00a0")


def wave_digest(wave: WaveRuns) -> dict[str, Any]:
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
