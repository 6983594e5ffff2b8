"""`prakerja-sim demand`: terminal table, forecast.json/html, emitted scenario, backtest."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from simulator.cli import main


def _run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_forecast_writes_table_json_html_and_a_scenario(tmp_path, capsys):
    scenario = tmp_path / "wave-12.toml"
    code, out, err = _run(
        [
            "demand",
            "--runs",
            "40",
            "--seed",
            "5",
            "--wave",
            "12",
            "--quota",
            "600000",
            "--mode",
            "fcfs",
            "--opens-at",
            "2021-02-23T12:00:00+07:00",
            "--duration-hours",
            "72",
            "--param",
            "funnel.email_verified=0.7",
            "--out",
            str(tmp_path / "out"),
            "--emit-scenario",
            str(scenario),
            "--scale",
            "1/100",
        ],
        capsys,
    )
    assert code == 0, err
    assert "Wave 12" in out and "fcfs, quota 600,000" in out and "joined the wave" in out
    assert "fcfs: quota full after (minutes)" in out and "upstream identity_registry" in out
    data = json.loads((tmp_path / "out" / "forecast.json").read_text())
    forecast = data["forecast"]
    assert forecast["selection"]["quota"] == 600_000 and forecast["seed"] == 5
    assert data["meta"]["params"]["funnel.email_verified"] == 0.7
    assert all(forecast["conservation"].values())
    html = (tmp_path / "out" / "forecast.html").read_text()
    assert html.count("<svg") >= 5 and "<script" not in html
    assert not re.search(r'(src|href)="https?://', html)
    text = scenario.read_text()
    assert "population_scale = 0.01" in text and "quota = 600000" in text and 'selection = "fcfs"' in text


def test_emitted_scenario_loads_with_the_surge_schema(tmp_path, capsys):
    surge_scenario = pytest.importorskip(
        "simulator.surge.scenario", reason="the surge scenario schema is absent"
    )
    path = tmp_path / "s.toml"
    code, _, err = _run(
        [
            "demand",
            "--runs",
            "20",
            "--out",
            str(tmp_path),
            "--emit-scenario",
            str(path),
            "--scale",
            "0.002",
            "--replay-minutes",
            "10",
        ],
        capsys,
    )
    assert code == 0, err
    scenario = surge_scenario.load_scenario(path)
    forecast = json.loads((tmp_path / "forecast.json").read_text())["forecast"]
    assert scenario.wave.quota == 800_000 and scenario.wave.selection == "lottery"
    assert scenario.replay.population_scale == 0.002 and scenario.replay.length_s == 600
    arrivals = forecast["funnel"]["accounts"]["p50"] + forecast["funnel"]["returning"]["p50"]
    assert scenario.arrivals.expected_total == pytest.approx(arrivals, abs=1)
    # The effective funnel keeps the forecast's joiners: arrivals x rates = joined.
    f = scenario.funnel
    joined = arrivals * f.email_verify * f.identity_submit * f.phone_verify * f.test_finish * f.join
    assert joined == pytest.approx(forecast["funnel"]["joined"]["p50"], rel=0.002)


def test_a_published_wave_takes_its_own_opening_duration_and_quota(tmp_path, capsys):
    # Wave 11 opened 2 Nov 2020 12:00 for 48 h with ~400k places; it used to get wave 9's
    # 17 Sep, 96 h and 800k silently, in the table and in the emitted scenario.
    scenario = tmp_path / "wave-11.toml"
    code, out, err = _run(
        ["demand", "--wave", "11", "--runs", "10", "--out", str(tmp_path), "--emit-scenario", str(scenario)],
        capsys,
    )
    assert code == 0, err
    assert "Wave 11: opens 2020-11-02T12:00:00+07:00, 48 h, lottery, quota 400,000" in out
    assert "note: wave 11: opens 2020-11-02T12:00:00+07:00, 48 h, quota 400,000 from the published" in err
    assert "demand.prior_pool" in err  # says which figures are still the wave-9 calibration
    forecast = json.loads((tmp_path / "forecast.json").read_text())["forecast"]
    assert forecast["wave"]["opens_at"] == "2020-11-02T12:00:00+07:00"
    assert forecast["wave"]["duration_hours"] == 48.0 and forecast["selection"]["quota"] == 400_000
    text = scenario.read_text()
    emitted = tomllib.loads(text)["wave"]
    assert emitted["number"] == 11 and emitted["quota"] == 400_000 and emitted["duration_h"] == 48.0
    assert emitted["opens_at"].isoformat() == "2020-11-02T12:00:00+07:00"
    header = " ".join(line.removeprefix("#").strip() for line in text.split("[scenario]")[0].splitlines())
    assert "quota 400,000 from the published 2020 wave (season_2020.toml)" in header


def test_a_published_wave_keeps_what_the_planner_gives(tmp_path, capsys):
    code, out, err = _run(
        ["demand", "--wave", "11", "--quota", "450000", "--runs", "5", "--out", str(tmp_path)], capsys
    )
    assert code == 0, err
    assert "Wave 11: opens 2020-11-02T12:00:00+07:00, 48 h, lottery, quota 450,000" in out
    assert "opens 2020-11-02T12:00:00+07:00, 48 h from the published" in err and "quota 400,000" not in err


def test_the_default_wave_prints_no_note(tmp_path, capsys):
    code, out, err = _run(["demand", "--runs", "5", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "Wave 9: opens 2020-09-17T12:00:00+07:00, 96 h" in out and "note:" not in err


def test_an_unpublished_wave_must_give_its_opening_duration_and_quota(tmp_path, capsys):
    code, _, err = _run(
        ["demand", "--wave", "12", "--quota", "600000", "--runs", "5", "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "error: --wave 12: not a published 2020 wave, so its opening, duration and quota are unknown: "
        "give --opens-at, --duration-hours (or set wave.opens_at, wave.duration_hours in --params)"
    )
    assert not (tmp_path / "out" / "forecast.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["demand", "--param", "wave.quota=many"],
            "error: --param: key 'wave.quota': expected a whole number",
        ),
        (["demand", "--params", "/nonexistent/p.toml"], "error: /nonexistent/p.toml: no such parameter file"),
        (["demand", "--emit-scenario", "x.toml", "--scale", "1/0"], "error: --scale: expected a fraction"),
        (["demand", "--emit-scenario", "x.toml", "--scale", "2"], "error: --scale: expected a share above 0"),
        (["demand", "--join-rate", "1.5"], "error: --param: key 'demand.join_rate': expected a share"),
        (["demand", "--out", "blocker/out"], "error: --out blocker/out: cannot create the directory"),
    ],
)
def test_bad_options_end_in_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a directory should be")
    code, _, err = _run([*argv, "--runs", "5"] if argv[-1] != "--runs" else argv, capsys)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(message), err
    assert "Traceback" not in err
    assert not (tmp_path / "forecast").exists() and not (tmp_path / "x.toml").exists()


def test_backtest_prints_model_vs_published(capsys, tmp_path):
    code, out, err = _run(["demand", "backtest", "--runs", "20", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "funnel to 30 Oct 2020" in out and "published" in out and "error" in out
    assert (tmp_path / "backtest.json").exists() and (tmp_path / "backtest.html").exists()


def test_season_forecast_prints_one_line_per_wave(capsys, tmp_path):
    code, out, err = _run(["demand", "season", "--runs", "10", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert len(lines) == 11  # the eleven 2020 waves of season_2020.toml
    assert json.loads((tmp_path / "season.json").read_text())["waves"][0]["quota"] == 168_111


def test_same_seed_writes_the_same_files_whatever_the_workers(tmp_path, capsys):
    for workers in ("1", "2"):
        code, _, err = _run(
            ["demand", "--runs", "60", "--seed", "4", "--workers", workers, "--out", str(tmp_path / workers)],
            capsys,
        )
        assert code == 0, err
    for name in ("forecast.json", "forecast.html"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "2" / name).read_bytes()


def test_every_command_that_draws_people_defaults_to_the_same_seed():
    # population said 2020 and seed-db and demand 0: "the same people" was not the default.
    from simulator import DEFAULT_SEED
    from simulator.cli import cli

    ctx = cli.make_context("prakerja-sim", ["demand"], resilient_parsing=True)
    demand = cli.get_command(ctx, "demand")
    commands = {
        "population": cli.get_command(ctx, "population"),
        "seed-db": cli.get_command(ctx, "seed-db"),
        "demand": demand,
        "demand backtest": demand.get_command(ctx, "backtest"),
        "demand season": demand.get_command(ctx, "season"),
    }
    defaults = {name: next(p.default for p in c.params if p.name == "seed") for name, c in commands.items()}
    assert defaults == dict.fromkeys(commands, DEFAULT_SEED)
