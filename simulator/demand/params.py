"""The demand model's parameters: the calibrated defaults in ``params.toml`` (shipped with the
package), a planner's own file on top of them, and ``key=value`` overrides, all validated.

The defaults file is the schema: a key it does not have is a typo, a value must have the type its
default has, and ``_RULES`` adds the ranges. Errors name the file (or option), the key and what
was expected.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from simulator.errors import InvalidInputFile, InvalidOption

Params = dict[str, dict[str, Any]]

DEFAULTS_RESOURCE = "params.toml"
SEASON_2020_RESOURCE = "season_2020.toml"

# Tables whose keys are free (province names); their values must be non-negative numbers.
_FREE_TABLES = {"allocation.quota_thousands", "allocation.applicant_thousands"}

# key -> (check, what was expected). Keys not listed only need the default's type and >= 0.
_SHARE = (lambda v: 0.0 <= v <= 1.0, "a share between 0 and 1")
_POSITIVE = (lambda v: v > 0, "a number > 0")
_RULES: dict[str, tuple[Any, str]] = {
    "wave.number": (lambda v: v >= 1, "a wave number >= 1"),
    "wave.mode": (lambda v: v in ("lottery", "fcfs"), "'lottery' or 'fcfs'"),
    "wave.opens_at": (
        lambda v: _parse_time(v) is not None,
        "an ISO date-time with offset, e.g. 2020-09-17T12:00:00+07:00",
    ),
    "wave.duration_hours": (lambda v: 0 < v <= 24 * 60, "a duration in hours, > 0 and <= 1440"),
    "demand.join_rate": _SHARE,
    "funnel.email_verified": _SHARE,
    "funnel.identity_valid": _SHARE,
    "funnel.phone_verified": _SHARE,
    "funnel.revoked": _SHARE,
    "funnel.finished_training": _SHARE,
    "funnel.incentive_paid": _SHARE,
    "lags.buy_days": _POSITIVE,
    "lags.buy_window_days": _POSITIVE,
    "lags.training_days": _POSITIVE,
    "lags.payment_days": _POSITIVE,
    "arrivals.first_24h_share": _SHARE,
    "arrivals.crowd_share": _SHARE,
    "arrivals.baseline_share": _SHARE,
    "arrivals.crowd_release_minutes": _POSITIVE,
    "uncertainty.join_rate_sd": (lambda v: 0 <= v <= 0.5, "a standard deviation between 0 and 0.5"),
    "uncertainty.demand_cv": (lambda v: 0 <= v <= 2, "a coefficient of variation between 0 and 2"),
    "uncertainty.decay_cv": (lambda v: 0 <= v <= 2, "a coefficient of variation between 0 and 2"),
    "grid.fine_minutes": (lambda v: v >= 1, "a whole number of minutes >= 1"),
    "grid.coarse_bin_minutes": (lambda v: 1 <= v <= 240, "a whole number of minutes between 1 and 240"),
    "upstreams.results_sms_hours": _POSITIVE,
    "photo.mean_bytes": _POSITIVE,
    "photo.max_bytes": _POSITIVE,
    "budget.incentive_months": (lambda v: 1 <= v <= 24, "a number of months between 1 and 24"),
    "budget.survey_month_offsets": (
        lambda v: all(isinstance(x, int) and 0 <= x <= 24 for x in v),
        "a list of whole months between 0 and 24",
    ),
}


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def opening_time(params: Params) -> dt.datetime:
    """The wave's opening as an aware datetime (validated when the parameters were loaded)."""
    parsed = _parse_time(params["wave"]["opens_at"])
    assert parsed is not None
    return parsed


def defaults() -> Params:
    """The shipped, calibrated defaults (a fresh copy each call)."""
    text = resources.files("simulator.demand").joinpath(DEFAULTS_RESOURCE).read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_params(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
) -> Params:
    """Defaults, then the TOML file at ``path`` (only the keys it sets), then ``overrides``.

    ``overrides`` is a mapping ``{"wave.quota": 600000}`` or strings ``"wave.quota=600000"``
    (values parsed as TOML, bare words as strings). A wave other than the defaults' takes its
    opening, duration and quota from :func:`published_wave` when they are not given (see
    :func:`load_wave_params`). Raises :class:`InvalidInputFile` for a bad file and
    :class:`InvalidOption` for a bad override or a wave whose dates and quota are unknown.
    """
    return load_wave_params(path, overrides)[0]


# What a wave needs besides its number: never silently borrowed from another wave.
WAVE_SHAPE = ("wave.opens_at", "wave.duration_hours", "wave.quota")


def load_wave_params(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
) -> tuple[Params, list[str]]:
    """:func:`load_params`, and the lines that say where the wave's opening, duration and quota
    came from when the file and overrides did not all give them.

    The defaults describe wave 9. For another wave number, each of ``wave.opens_at``,
    ``wave.duration_hours`` and ``wave.quota`` not given is taken from the published 2020 wave
    of that number (``season_2020.toml``); a wave that was not published must give all three.
    """
    params = defaults()
    default_number = params["wave"]["number"]
    given: set[str] = set()
    if path is not None:
        source = Path(path)
        try:
            user = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInputFile(f"{source}: no such parameter file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInputFile(f"{source}: cannot read the parameter file ({err})") from None
        except tomllib.TOMLDecodeError as err:
            raise InvalidInputFile(f"{source}: not valid TOML ({err})") from None
        given |= _merge(params, user, where=str(source), error=InvalidInputFile)
    if overrides:
        items = overrides.items() if isinstance(overrides, Mapping) else (_split(o) for o in overrides)
        for key, value in items:
            _set(params, key, value, where="--param", error=InvalidOption)
            given.add(key)
    notes = _fill_wave_shape(params, given, default_number)
    _check_whole(params)
    return params, notes


def published_wave(number: int) -> dict[str, Any] | None:
    """The published 2020 wave ``number`` as ``{"wave.opens_at": ..., "wave.duration_hours": ...,
    "wave.quota": ...}`` (from the shipped ``season_2020.toml``), or None if it has no such wave."""
    text = resources.files("simulator.demand").joinpath(SEASON_2020_RESOURCE).read_text(encoding="utf-8")
    for wave in tomllib.loads(text)["waves"]:
        if wave["number"] == number:
            return {
                "wave.opens_at": wave["opens_at"],
                "wave.duration_hours": float(wave["duration_hours"]),
                "wave.quota": wave["quota"],
            }
    return None


def _fill_wave_shape(params: Params, given: set[str], default_number: int) -> list[str]:
    number = params["wave"]["number"]
    missing = [key for key in WAVE_SHAPE if key not in given]
    if number == default_number or not missing:
        return []
    published = published_wave(number)
    if published is None:
        options = ", ".join(_OPTION_OF[key] for key in missing)
        raise InvalidOption(
            f"--wave {number}: not a published 2020 wave, so its opening, duration and quota are "
            f"unknown: give {options} (or set {', '.join(missing)} in --params)"
        )
    for key in missing:
        _set(params, key, published[key], where=SEASON_2020_RESOURCE, error=InvalidOption)
    shown = {
        "wave.opens_at": f"opens {params['wave']['opens_at']}",
        "wave.duration_hours": f"{params['wave']['duration_hours']:g} h",
        "wave.quota": f"quota {params['wave']['quota']:,}",
    }
    return [
        f"wave {number}: {', '.join(shown[key] for key in missing)} from the published 2020 wave "
        f"({SEASON_2020_RESOURCE}); the demand figures (demand.prior_pool, demand.new_signups, "
        f"demand.join_rate) stay the defaults' wave-{default_number} calibration unless you set them"
    ]


# The command-line option of each wave key, for errors a planner at the terminal can act on.
_OPTION_OF = {
    "wave.opens_at": "--opens-at",
    "wave.duration_hours": "--duration-hours",
    "wave.quota": "--quota",
}


def _split(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidOption(f"--param {text!r}: expected section.key=value, e.g. wave.quota=600000")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word such as fcfs
    return key.strip(), value


def _merge(params: Params, user: Mapping[str, Any], *, where: str, error: type[Exception]) -> set[str]:
    given: set[str] = set()
    for section, table in user.items():
        if section not in params:
            raise error(f"{where}: unknown section [{section}]; expected one of: {', '.join(params)}")
        if not isinstance(table, Mapping):
            raise error(f"{where}: key '{section}': expected a table [{section}]")
        for key, value in _flatten(table, section):
            _set(params, key, value, where=where, error=error)
            given.add(key)
    return given


def _flatten(table: Mapping[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for key, value in table.items():
        full = f"{prefix}.{key}"
        if isinstance(value, Mapping) and full in _FREE_TABLES:
            yield full, dict(value)
        elif isinstance(value, Mapping):
            yield from _flatten(value, full)
        else:
            yield full, value


def _set(params: Params, key: str, value: Any, *, where: str, error: type[Exception]) -> None:
    parts = key.split(".")
    table_key = ".".join(parts[:2])
    if table_key in _FREE_TABLES and len(parts) == 2:
        _check_free_table(key, value, where, error)
        params[parts[0]][parts[1]] = dict(value)
        return
    if table_key in _FREE_TABLES and len(parts) == 3:
        _check_free_table(key, {parts[2]: value}, where, error)
        params[parts[0]][parts[1]][parts[2]] = value
        return
    if len(parts) != 2 or parts[0] not in params or parts[1] not in params[parts[0]]:
        known = sorted(f"{s}.{k}" for s, table in params.items() for k in table)
        hint = [k for k in known if k.split(".")[-1] == parts[-1]]
        suggestion = f" (did you mean {hint[0]}?)" if hint else ""
        raise error(f"{where}: unknown key '{key}'{suggestion}")
    default = params[parts[0]][parts[1]]
    params[parts[0]][parts[1]] = _coerce(key, value, default, where, error)


def _check_free_table(key: str, value: Any, where: str, error: type[Exception]) -> None:
    if not isinstance(value, Mapping):
        raise error(f"{where}: key '{key}': expected a table of province = thousands")
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float) or not number >= 0:
            raise error(f"{where}: key '{key}.{name}': expected a number of thousands >= 0, got {number!r}")


def _coerce(key: str, value: Any, default: Any, where: str, error: type[Exception]) -> Any:
    if isinstance(default, bool):
        expected_type = "true or false"
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        expected_type = "a whole number"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        expected_type = "a number"
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif isinstance(default, str):
        expected_type = "a string"
        ok = isinstance(value, str)
    elif isinstance(default, list):
        expected_type = "a list"
        ok = isinstance(value, list)
    else:  # pragma: no cover - the defaults file only holds the types above
        expected_type, ok = type(default).__name__, isinstance(value, type(default))
    if not ok:
        raise error(f"{where}: key '{key}': expected {expected_type}, got {value!r}")
    check, expected = _RULES.get(key, (None, None))
    if check is None and isinstance(value, int | float) and not value >= 0:
        raise error(f"{where}: key '{key}': expected a number >= 0, got {value!r}")
    if check is not None and not check(value):
        raise error(f"{where}: key '{key}': expected {expected}, got {value!r}")
    return value


def _check_whole(params: Params) -> None:
    """Rules that involve more than one key."""
    arrivals = params["arrivals"]
    if arrivals["crowd_share"] + arrivals["baseline_share"] > 1.0:
        raise InvalidOption(
            "arrivals.crowd_share + arrivals.baseline_share: expected at most 1 together, got "
            f"{arrivals['crowd_share'] + arrivals['baseline_share']:.3f}"
        )
    if params["wave"]["priority_list"] > params["wave"]["quota"]:
        raise InvalidOption(
            f"wave.priority_list: expected at most the quota ({params['wave']['quota']}), "
            f"got {params['wave']['priority_list']}"
        )
    if sum(params["allocation"]["quota_thousands"].values()) <= 0:
        raise InvalidOption("allocation.quota_thousands: expected at least one province with a share > 0")
    applicants = params["allocation"]["applicant_thousands"]
    if applicants and set(applicants) != set(params["allocation"]["quota_thousands"]):
        raise InvalidOption(
            "allocation.applicant_thousands: expected the same provinces as allocation.quota_thousands"
        )
    budget = params["budget"]
    if len(budget["survey_month_offsets"]) != budget["surveys"]:
        raise InvalidOption(
            f"budget.survey_month_offsets: expected one month per survey ({budget['surveys']}), "
            f"got {len(budget['survey_month_offsets'])}"
        )
    if params["photo"]["mean_bytes"] > params["photo"]["max_bytes"] * 4:
        raise InvalidOption("photo.mean_bytes: expected a mean photo size near or under photo.max_bytes")


def flat(params: Params) -> dict[str, Any]:
    """``{"wave.quota": 800000, ...}``: the form reports and scenario files show."""
    out: dict[str, Any] = {}
    for section, table in params.items():
        for key, value in table.items():
            out[f"{section}.{key}"] = copy.deepcopy(value)
    return out


def per_person_budget_idr(params: Params) -> int:
    """What one recipient can receive in full: training + incentive months + surveys."""
    budget = params["budget"]
    return (
        budget["training_idr"]
        + budget["incentive_idr"] * budget["incentive_months"]
        + budget["survey_idr"] * budget["surveys"]
    )
