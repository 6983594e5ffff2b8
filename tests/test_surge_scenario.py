"""Scenario files: every built-in loads, dump/load round-trips, and every bad file names file and key."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from simulator.errors import InvalidInputFile
from simulator.surge.scenario import (
    STEPS,
    Arrivals,
    Replay,
    Scenario,
    Threshold,
    Wave,
    builtin_scenarios,
    dump_scenario,
    load_scenario,
    parse_scenario,
)

MINIMAL = """
[scenario]
name = "tiny"

[wave]
number = 3
quota = 1000
opens_at = 2020-08-15T12:00:00+07:00

[replay]
length_s = 60

[arrivals]
expected_total = 5000
decay_half_life_h = 6
"""


def write(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_builtin_scenario_loads_and_round_trips():
    names = builtin_scenarios()
    for expected in ("smoke", "wave-11", "wave-1-opening", "dukcapil-slow", "ktp-upload-storm", "soak"):
        assert expected in names
    for name in names:
        scenario = load_scenario(name)
        assert scenario.source == f"builtin:{name}"
        assert scenario.description, f"{name} has no description"
        assert parse_scenario(dump_scenario(scenario)) == scenario


def test_minimal_file_gets_documented_defaults(tmp_path):
    scenario = load_scenario(write(tmp_path, MINIMAL, "tiny.toml"))
    assert scenario.wave.selection == "lottery"
    assert scenario.wave.opens_at.utcoffset() == dt.timedelta(hours=7)
    assert scenario.replay.time_scale == 1.0 and scenario.replay.population_scale == 1.0
    assert set(scenario.funnel.think_s) == set(STEPS)
    assert scenario.slo == ()
    assert scenario.source == str(tmp_path / "tiny.toml")


def test_scenario_built_in_code_dumps_to_a_loadable_file(tmp_path):
    # What the demand planner does: build the dataclasses, write TOML, load it back.
    scenario = Scenario(
        name="planned",
        wave=Wave(number=12, quota=600_000, opens_at=dt.datetime(2021, 2, 23, 12, tzinfo=dt.UTC)),
        replay=Replay(length_s=3600, time_scale=60, population_scale=0.001),
        arrivals=Arrivals(expected_total=3e6, pre_open_crowd=2e5, first_24h_share=0.6),
        slo=(Threshold(metric="latency_ms", step="join", stat="p99.9", max=1500),),
    )
    path = write(tmp_path, dump_scenario(scenario), "planned.toml")
    assert load_scenario(path) == scenario


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (lambda t: t.replace("quota = 1000", "quota = -5"), "wave.quota", "integer >= 1"),
        (lambda t: t.replace("quota = 1000", 'quota = "many"'), "wave.quota", "integer"),
        (lambda t: t.replace("number = 3", 'number = 3\nselection = "fifo"'), "wave.selection", '"fcfs"'),
        (lambda t: t.replace("+07:00", ""), "wave.opens_at", "offset date-time"),
        (lambda t: t.replace("length_s = 60", "length_s = 0"), "replay.length_s", "> 0"),
        (
            lambda t: t.replace("length_s = 60", "length_s = 60\npopulation_scale = 2"),
            "replay.population_scale",
            "<= 1",
        ),
        (lambda t: t.replace("length_s = 60", "length_s = 60\nspeed = 3"), "replay.speed", "unknown key"),
        (lambda t: t + "first_24h_share = 0.6\n", "arrivals.first_24h_share", "exactly one"),
        (lambda t: t.replace("decay_half_life_h = 6", ""), "arrivals.first_24h_share", "exactly one"),
        (
            lambda t: t.replace("decay_half_life_h = 6", "first_24h_share = 0.1"),
            "arrivals.first_24h_share",
            "between",
        ),
        (lambda t: t + "pre_open_crowd = 9000\n", "arrivals.expected_total", "at least"),
        (lambda t: t + "daily_rhythm = [1, 2, 3]\n", "arrivals.daily_rhythm", "24 numbers"),
        (lambda t: t + "\n[funnel]\nemail_verify = 1.5\n", "funnel.email_verify", "<= 1"),
        (lambda t: t + "\n[funnel.think_s]\nlunch = 3\n", "funnel.think_s.lunch", "unknown key"),
        (
            lambda t: t + "\n[defects.ktp]\nTOO_BLURRY = 0.7\nFILE_TOO_LARGE = 0.6\n",
            "defects.ktp",
            "at most 1",
        ),
        (lambda t: t + "\n[defects.ktp]\nblurry = 0.1\n", "defects.ktp.blurry", "TOO_BLURRY"),
        (
            lambda t: t + "\n[faults]\ndukcapil_latency_ms = 100\ndukcapil_latency_p99_ms = 50\n",
            "faults.dukcapil_latency_p99_ms",
            ">= dukcapil_latency_ms",
        ),
        (lambda t: t + '\n[[slo]]\nmetric = "latency"\nmax = 1\n', "slo[0].metric", '"latency_ms"'),
        (lambda t: t + '\n[[slo]]\nmetric = "error_rate"\n', "slo[0]", "'max' or a 'min'"),
        (
            lambda t: t + '\n[[slo]]\nmetric = "latency_ms"\nstep = "lunch"\nmax = 1\n',
            "slo[0].step",
            '"join"',
        ),
        (lambda t: t + '\n[[slo]]\nmetric = "error_rate"\nstat = "p99"\nmax = 1\n', "slo[0].stat", "only"),
        (lambda t: t.replace('name = "tiny"', ""), "scenario.name", "required"),
        (lambda t: t.replace("[replay]\nlength_s = 60", ""), "replay", "table"),
        (lambda t: t + "\n[mystery]\nx = 1\n", "mystery", "unknown key"),
    ],
)
def test_bad_scenario_error_names_file_key_and_expectation(tmp_path, edit, key, expected):
    path = write(tmp_path, edit(MINIMAL))
    with pytest.raises(InvalidInputFile) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ":"), message
    assert f"'{key}" in message, message
    assert expected in message, message


def test_broken_toml_and_missing_names_are_clear(tmp_path):
    path = write(tmp_path, "[scenario\nname = 1")
    with pytest.raises(InvalidInputFile, match=r"bad\.toml: not valid TOML"):
        load_scenario(path)
    with pytest.raises(InvalidInputFile, match="no built-in scenario.*smoke"):
        load_scenario("no-such-wave")
    with pytest.raises(InvalidInputFile, match="no such scenario file"):
        load_scenario(tmp_path / "missing.toml")


def test_scaled_quota_follows_population_scale():
    scenario = load_scenario("smoke")
    replay = dataclasses.replace(scenario.replay, population_scale=0.001)
    shrunk = dataclasses.replace(scenario, replay=replay)
    assert shrunk.scaled_quota == max(1, round(scenario.wave.quota * 0.001))


def test_the_planner_and_a_scenario_solve_the_same_wave_to_the_same_decay():
    # One rule (simulator/rules/arrivals.py): demand's shares and a scenario's counts of the same
    # wave (96 h, 60.3% in the first day, 8% waiting crowd, 15% baseline) give one time constant.
    from simulator.demand.model import solve_decay_minutes
    from simulator.demand.params import load_params
    from simulator.rules.arrivals import first_day_share

    params = load_params()
    total = 1e6
    arrivals = Arrivals(
        expected_total=total,
        pre_open_crowd=0.08 * total,
        crowd_release_s=600.0,
        baseline_per_s=0.15 * total / (96 * 3600),
        first_24h_share=0.603,
    )
    tau_s = arrivals.tail_time_constant_s(96 * 3600)
    assert solve_decay_minutes(params) * 60 == pytest.approx(tau_s, rel=1e-9)
    share = first_day_share(tau_s, 96 * 3600, crowd_share=0.08, crowd_release_s=600.0, baseline_share=0.15)
    assert share == pytest.approx(0.603, abs=1e-9)
