"""``surge`` checks what it was given before it sends anything: the population as every reader
checks it, and scenario values the schema bounds (a schedule is sized before it is built)."""

from __future__ import annotations

import importlib.resources

import pytest

from simulator.errors import InvalidInputFile
from simulator.io.population import write_population
from simulator.surge import runner
from simulator.surge.runner import SurgeOptions, run_surge
from simulator.surge.scenario import load_scenario
from simulator.surge.schedule import MAX_ARRIVALS, build_schedule

SMOKE = load_scenario("smoke")


@pytest.fixture
def no_requests(monkeypatch):
    def refuse(method, url, *args, **kwargs):
        raise AssertionError(f"the target was contacted: {method} {url}")

    monkeypatch.setattr(runner, "http_json", refuse)


def _scenario(tmp_path, old: str, new: str):
    source = (importlib.resources.files("scenarios") / "smoke.toml").read_text(encoding="utf-8")
    assert old in source
    path = tmp_path / "scenario.toml"
    path.write_text(source.replace(old, new), encoding="utf-8")
    return path


def test_a_changed_applicants_file_is_refused_before_any_request(tmp_path, no_requests):
    population = tmp_path / "pop"
    write_population(population, 1500, 1, chunk_rows=1000)
    applicants = population / "applicants.csv"
    applicants.write_bytes(applicants.read_bytes()[:-1] + b" ")  # same size, one byte changed
    options = SurgeOptions(
        scenario="smoke", out=tmp_path / "out", host="http://127.0.0.1:9", population=population
    )
    with pytest.raises(InvalidInputFile, match="sha256 differs"):
        run_surge(options)


def test_a_population_too_small_for_the_schedule_is_refused_before_any_request(tmp_path, no_requests):
    population = tmp_path / "pop"
    write_population(population, 1000, 1, chunk_rows=1000)
    options = SurgeOptions(
        scenario="smoke",
        out=tmp_path / "out",
        host="http://127.0.0.1:9",
        population=population,
        skip_applicants=990,
    )
    with pytest.raises(InvalidInputFile, match="make a bigger population"):
        run_surge(options)


def test_expected_total_is_bounded_by_the_schema(tmp_path):
    with pytest.raises(InvalidInputFile, match=r"arrivals.expected_total.*<= 3e\+08"):
        load_scenario(_scenario(tmp_path, "expected_total = 200.0", "expected_total = 1e15"))


def test_a_schedule_is_sized_before_it_is_built(tmp_path):
    # Within the schema's bound, but more arrivals than a run can hold: refused before the draw.
    scenario = load_scenario(_scenario(tmp_path, "expected_total = 200.0", "expected_total = 2.9e8"))
    assert scenario.arrivals.expected_total == 2.9e8
    with pytest.raises(InvalidInputFile, match=f"at most {MAX_ARRIVALS:,}"):
        build_schedule(scenario)
    assert len(build_schedule(SMOKE)) < MAX_ARRIVALS


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("max = 0.01\nname", "max = -1\nname", "slo[0].max"),
        ("max = 0.01\nname", "max = 1.5\nname", "slo[0].max"),
        ('stat = "p99"\nmax = 5000.0', 'stat = "p99"\nmax = -5.0', "slo[1].max"),
        ("max = 0\nname", "max = -1\nname", "slo[3].max"),
        ("max = 0.01\nname", "max = 0.01\nmin = 0.5\nname", "no run could pass"),
    ],
)
def test_slo_bounds_are_checked(tmp_path, old, new, fragment):
    with pytest.raises(InvalidInputFile, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        load_scenario(_scenario(tmp_path, old, new))
