"""Parameter files and overrides: every figure overridable, bad input named precisely."""

from __future__ import annotations

import pytest

from simulator.demand.params import defaults, flat, load_params
from simulator.errors import InvalidInputFile, InvalidOption


def test_defaults_carry_the_published_figures():
    params = load_params()
    assert params["funnel"]["email_verified"] == pytest.approx(26 / 40)
    assert params["funnel"]["identity_valid"] == pytest.approx(20 / 26, abs=1e-4)
    assert params["funnel"]["phone_verified"] == pytest.approx(18 / 20)
    assert params["arrivals"]["first_24h_share"] == pytest.approx(3.5 / 5.8, abs=1e-3)
    assert params["wave"]["quota"] == 800_000
    assert params["photo"]["max_bytes"] == 2_000_000


def test_every_default_has_its_source_in_the_file():
    from importlib import resources

    text = resources.files("simulator.demand").joinpath("params.toml").read_text()
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")) and not line.lstrip().startswith('"'):
            assert "#" in line, f"no source or assumption note: {line!r}"


def test_a_file_sets_only_its_keys_and_overrides_win(tmp_path):
    path = tmp_path / "wave11.toml"
    path.write_text(
        '[wave]\nnumber = 11\nquota = 400_000\nopens_at = "2020-11-02T12:00:00+07:00"\n'
        "duration_hours = 48\n[allocation.quota_thousands]\nJava = 1\nElsewhere = 1\n"
    )
    params = load_params(path, ["wave.quota=450000", "wave.mode=fcfs", "funnel.email_verified=0.7"])
    assert params["wave"]["number"] == 11 and params["wave"]["quota"] == 450_000
    assert params["wave"]["mode"] == "fcfs" and params["wave"]["duration_hours"] == 48.0
    assert params["funnel"]["email_verified"] == 0.7
    assert params["funnel"]["phone_verified"] == defaults()["funnel"]["phone_verified"]
    assert params["allocation"]["quota_thousands"] == {"Java": 1, "Elsewhere": 1}
    assert flat(params)["wave.quota"] == 450_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[wave]\nquota = "lots"\n', r"p\.toml: key 'wave\.quota': expected a whole number, got 'lots'"),
        ("[wave]\nqouta = 5\n", r"p\.toml: unknown key 'wave\.qouta'"),
        ("[waves]\nquota = 5\n", r"p\.toml: unknown section \[waves\]"),
        (
            "[funnel]\nemail_verified = 1.5\n",
            r"key 'funnel\.email_verified': expected a share between 0 and 1",
        ),
        ('[wave]\nmode = "random"\n', r"key 'wave\.mode': expected 'lottery' or 'fcfs'"),
        ('[wave]\nopens_at = "next monday"\n', r"key 'wave\.opens_at': expected an ISO date-time"),
        ("[wave]\nquota = -1\n", r"key 'wave\.quota': expected a number >= 0"),
        (
            '[allocation.quota_thousands]\nJava = "x"\n',
            r"allocation\.quota_thousands\.Java': expected a number",
        ),
        ("[wave\n", r"p\.toml: not valid TOML"),
    ],
)
def test_bad_parameter_files_name_the_file_the_key_and_what_was_expected(tmp_path, content, message):
    path = tmp_path / "p.toml"
    path.write_text(content)
    with pytest.raises(InvalidInputFile, match=message):
        load_params(path)


def test_a_missing_parameter_file_is_named(tmp_path):
    with pytest.raises(InvalidInputFile, match="no-such.toml: no such parameter file"):
        load_params(tmp_path / "no-such.toml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("wave.quota", r"expected section\.key=value"),
        ("wave.quotaa=5", r"unknown key 'wave\.quotaa'"),
        ("quota=5", r"unknown key 'quota' \(did you mean wave\.quota\?\)"),
        ("demand.join_rate=2", r"--param: key 'demand\.join_rate': expected a share between 0 and 1"),
        ("wave.priority_list=900000", r"wave\.priority_list: expected at most the quota"),
        ("arrivals.crowd_share=0.9", r"crowd_share \+ arrivals\.baseline_share: expected at most 1"),
        ("arrivals.first_24h_share=0.99", r"arrivals\.first_24h_share: expected a share between"),
        ("budget.surveys=4", r"survey_month_offsets: expected one month per survey"),
    ],
)
def test_bad_overrides_are_named(override, message):
    from simulator.demand.model import solve_decay_minutes

    with pytest.raises(InvalidOption, match=message):
        solve_decay_minutes(load_params(overrides=[override]))
