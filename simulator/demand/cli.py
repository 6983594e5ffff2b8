"""``prakerja-sim demand``: forecast a wave (table, forecast.json, forecast.html, optional
scenario file) and ``demand backtest``: replay the published 2020 waves against the model.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import click

from simulator import DEFAULT_SEED
from simulator.progress import progress_bar

# Named options -> the parameter each one sets (everything else: --param section.key=value).
_NAMED = {
    "wave": "wave.number",
    "quota": "wave.quota",
    "mode": "wave.mode",
    "opens_at": "wave.opens_at",
    "duration_hours": "wave.duration_hours",
    "priority_list": "wave.priority_list",
    "prior_pool": "demand.prior_pool",
    "new_signups": "demand.new_signups",
    "join_rate": "demand.join_rate",
}


@click.group(invoke_without_command=True)
@click.option(
    "--params",
    "params_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file of parameters to change (only the keys it sets; see params.toml).",
)
@click.option(
    "--param",
    "param_overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any parameter, e.g. --param funnel.email_verified=0.7 (repeatable).",
)
@click.option("--wave", type=int, help="Wave number (wave.number).")
@click.option("--quota", type=int, help="Places in the wave (wave.quota).")
@click.option("--mode", type=click.Choice(["lottery", "fcfs"]), help="Selection (wave.mode).")
@click.option("--opens-at", help="Opening, ISO with offset, e.g. 2020-11-02T12:00:00+07:00.")
@click.option("--duration-hours", type=float, help="How long the wave is open (wave.duration_hours).")
@click.option("--priority-list", type=int, help="NIKs proposed by ministries, selected first.")
@click.option("--prior-pool", type=int, help="Verified people not yet accepted (demand.prior_pool).")
@click.option("--new-signups", type=int, help="New accounts during the wave (demand.new_signups).")
@click.option("--join-rate", type=float, help="Share of verified people who join (demand.join_rate).")
@click.option(
    "--runs", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="Monte Carlo runs."
)
@click.option("--seed", type=click.IntRange(0), default=DEFAULT_SEED, show_default=True, help="Random seed.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Threads (results do not depend on it).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("forecast"),
    show_default=True,
    help="Directory for forecast.json and forecast.html.",
)
@click.option(
    "--emit-scenario",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a surge scenario TOML built from the forecast.",
)
@click.option(
    "--scale",
    default="1/100",
    show_default=True,
    help="Share of the crowd the emitted scenario replays (1/100 or 0.01).",
)
@click.option(
    "--replay-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Minutes after the opening the emitted scenario replays.",
)
@click.option(
    "--fit-trace",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fit the arrival curve (crowd, release, decay, trickle) to recorded traffic, print the fit and "
    "forecast with it: CSV/JSONL with a timestamp column or an access log (docs/traces.md).",
)
@click.option("--trace-path", metavar="PATH", help="With --fit-trace on an access log: only this path.")
@click.option(
    "--trace-format",
    type=click.Choice(["auto", "csv", "jsonl", "access_log"]),
    default="auto",
    show_default=True,
    help="With --fit-trace: the trace's format (auto: by extension).",
)
@click.pass_context
def demand(
    ctx: click.Context,
    params_file: Path | None,
    param_overrides: tuple[str, ...],
    runs: int,
    seed: int,
    workers: int,
    out_dir: Path,
    emit_scenario: Path | None,
    scale: str,
    replay_minutes: float,
    fit_trace: Path | None = None,
    trace_path: str | None = None,
    trace_format: str = "auto",
    **named: object,
) -> None:
    """Forecast a wave: arrivals, funnel, odds, peak load per endpoint and upstream, budget."""
    if ctx.invoked_subcommand is not None:
        return
    from simulator.demand.forecast import summarise, terminal_table
    from simulator.demand.forecast_report import write_forecast
    from simulator.demand.model import simulate_wave
    from simulator.demand.params import load_wave_params
    from simulator.demand.scenario import parse_scale, scenario_from_forecast, write_scenario

    scale_value = parse_scale(scale) if emit_scenario else None
    overrides = [f"{_NAMED[name]}={_toml(value)}" for name, value in named.items() if value is not None]
    if fit_trace is not None:  # the last opening's curve, for the next one (simulator/demand/trace_fit.py)
        from simulator.demand.trace_fit import fit_trace as fit
        from simulator.surge.trace import TraceSpec

        fitted = fit(TraceSpec(str(fit_trace), trace_format, path_filter=trace_path))
        click.echo(fitted.table() + "\n")
        overrides = [*fitted.overrides(), *overrides]
    params, notes = load_wave_params(params_file, [*param_overrides, *overrides])
    for note in notes:
        click.echo(f"note: {note}", err=True)
    _writable_directory(out_dir, "--out")
    if emit_scenario is not None:
        _writable_directory(emit_scenario.parent, "--emit-scenario")
    with progress_bar(runs, "Monte Carlo runs") as advance:
        runs_result = simulate_wave(params, runs=runs, seed=seed, workers=workers, progress=advance)
    summary = summarise(runs_result)
    click.echo(terminal_table(summary))
    json_path, html_path = write_forecast(out_dir, summary, params, notes=notes)
    click.echo(f"\nwrote {json_path} and {html_path}")
    if emit_scenario is not None:
        scenario = scenario_from_forecast(summary, params, scale=scale_value, replay_minutes=replay_minutes)
        header = (
            f"Emitted by `prakerja-sim demand` (seed {seed}, {runs} runs) from the wave "
            f"{params['wave']['number']} forecast; arrival curve and funnel are the forecast's P50."
        )
        header = "\n".join(textwrap.wrap(" ".join([header, *notes]), 100))
        write_scenario(emit_scenario, scenario, header=header)
        click.echo(f"wrote scenario {emit_scenario} (population_scale {scale_value:g})")


def _writable_directory(directory: Path, option: str) -> None:
    # Fail before minutes of simulation, not after: the directory must exist or be creatable.
    from simulator.errors import InvalidOption

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidOption(
            f"{option} {directory}: cannot create the directory ({err.strerror or err})"
        ) from None


def _toml(value: object) -> str:
    # Named options reach load_params as key=value text, parsed the same way as --param.
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


@demand.command()
@click.option(
    "--runs", type=click.IntRange(1, 10_000), default=200, show_default=True, help="Monte Carlo runs."
)
@click.option("--seed", type=click.IntRange(0), default=DEFAULT_SEED, show_default=True, help="Random seed.")
@click.option(
    "--season",
    "season_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Season TOML to replay instead of the published 2020 waves.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write backtest.json and backtest.html here.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Threads.")
def backtest(runs: int, seed: int, season_file: Path | None, out_dir: Path | None, workers: int) -> None:
    """Replay the published 2020 waves and print model vs published, stage by stage."""
    from simulator.demand.backtest import backtest_table, run_backtest, write_backtest
    from simulator.demand.season import load_season

    if out_dir is not None:
        _writable_directory(out_dir, "--out")
    spec = load_season(season_file)
    with progress_bar(len(spec.waves), "waves") as advance:
        result = run_backtest(spec, runs=runs, seed=seed, workers=workers, progress=advance)
    click.echo(backtest_table(result))
    if out_dir is not None:
        json_path, html_path = write_backtest(out_dir, result)
        click.echo(f"\nwrote {json_path} and {html_path}")


@demand.command()
@click.argument("season_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--params",
    "params_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file of parameters to change for every wave.",
)
@click.option(
    "--runs", type=click.IntRange(1, 10_000), default=500, show_default=True, help="Monte Carlo runs."
)
@click.option("--seed", type=click.IntRange(0), default=DEFAULT_SEED, show_default=True, help="Random seed.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("season"),
    show_default=True,
    help="Directory for season.json and season.html.",
)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Threads.")
def season(
    season_file: Path | None, params_file: Path | None, runs: int, seed: int, out_dir: Path, workers: int
) -> None:
    """Forecast a season of waves in order (default: the 2020 season), carrying the people not
    accepted from each wave into the next. Each [[waves]] table gives number, opens_at,
    duration_hours, quota and new_signups (or [[accounts]] totals to derive them from)."""
    from simulator.demand.season import load_season, run_season, season_table, write_season

    spec = load_season(season_file)
    _writable_directory(out_dir, "--out")
    with progress_bar(len(spec.waves), "waves") as advance:
        params, waves = run_season(
            spec, runs=runs, seed=seed, workers=workers, params_path=params_file, progress=advance
        )
    click.echo(f"Season: {spec.name} ({spec.source}), {runs} runs, seed {seed}\n")
    click.echo(season_table(waves))
    json_path, html_path = write_season(out_dir, spec, params, waves, runs=runs, seed=seed)
    click.echo(f"\nwrote {json_path} and {html_path}")
