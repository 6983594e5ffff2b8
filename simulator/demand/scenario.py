"""Turn a wave forecast into a surge scenario file (docs/architecture.md, the schema of
``simulator.surge.scenario``): the forecast's arrival curve and funnel, shrunk by a scale factor.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import tomli_w

from simulator.demand.params import Params, opening_time
from simulator.errors import InvalidOption
from simulator.io.atomic import atomic_write_text


def parse_scale(text: str | float) -> float:
    """``"1/100"``, ``"0.01"`` or ``0.01`` -> 0.01; the share of the real crowd to replay (0 < s <= 1)."""
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise InvalidOption(f"--scale: expected a fraction such as 1/100 or 0.01, got {text!r}") from None
    if not 0 < value <= 1:
        raise InvalidOption(f"--scale: expected a share above 0 and at most 1, got {text!r}")
    return value


def scenario_from_forecast(
    summary: dict[str, Any],
    params: Params,
    *,
    scale: float,
    replay_minutes: float = 15.0,
    time_scale: float = 1.0,
) -> dict[str, Any]:
    """The scenario as TOML-ready data: P50 counts, the calibrated curve, SLOs a planner starts from.

    The harness sends every arrival through the whole journey, so the funnel rates are the
    effective ones over new and rolled-over people together: each stage's P50 count is kept.
    """
    wave = params["wave"]
    funnel = {k: v["p50"] for k, v in summary["funnel"].items()}
    returning = funnel["returning"]
    arrivals_total = funnel["accounts"] + returning
    if arrivals_total <= 0:
        raise InvalidOption("--emit-scenario: the forecast has no arrivals to replay")
    duration_s = wave["duration_hours"] * 3600

    def share(numerator: float, denominator: float) -> float:
        return round(min(1.0, numerator / denominator), 4) if denominator > 0 else 0.0

    email = funnel["email_verified"] + returning
    identity = funnel["identity_valid"] + returning
    phone = funnel["phone_verified"] + returning
    arrivals = params["arrivals"]
    decay_minutes = summary["wave"]["decay_hours_solved"] * 60
    replay_s = min(replay_minutes * 60, duration_s)
    requests = params["requests"]
    return {
        "scenario": {
            "name": f"wave-{wave['number']}-forecast",
            "description": (
                f"Emitted by prakerja-sim demand (seed {summary['seed']}, {summary['runs']} runs): wave "
                f"{wave['number']}, {wave['mode']}, quota {wave['quota']:,}; P50 arrivals "
                f"{arrivals_total:,.0f} ({funnel['accounts']:,.0f} new accounts + "
                f"{returning:,.0f} rolled over), "
                f"P50 joined {funnel['joined']:,.0f}. Replayed at {scale:g} of the crowd."
            ),
            "seed": int(summary["seed"]),
        },
        "wave": {
            "number": wave["number"],
            "quota": wave["quota"],
            "selection": wave["mode"],
            "opens_at": opening_time(params),
            "duration_h": float(wave["duration_hours"]),
        },
        "replay": {
            "start_s": 0.0,
            "length_s": float(replay_s),
            "time_scale": float(time_scale),
            "population_scale": float(scale),
        },
        "arrivals": {
            "expected_total": float(round(arrivals_total)),
            "pre_open_crowd": float(round(arrivals["crowd_share"] * arrivals_total)),
            "crowd_release_s": float(arrivals["crowd_release_minutes"] * 60),
            "decay_half_life_h": round(decay_minutes * math.log(2) / 60, 4),
            "baseline_per_s": round(arrivals["baseline_share"] * arrivals_total / duration_s, 4),
        },
        "funnel": {
            "source": "scenario",
            "email_verify": share(email, arrivals_total),
            "identity_submit": share(identity, email),
            "phone_verify": share(phone, identity),
            "test_finish": 1.0,
            "join": share(funnel["joined"], phone),
            "ktp_uploads_mean": max(1.0, float(requests["ktp"])),
        },
        "slo": [
            {
                "metric": "latency_ms",
                "step": "join",
                "stat": "p99",
                "max": 2000.0,
                "name": "join p99 under 2 s",
            },
            {"metric": "error_rate", "max": 0.01, "name": "under 1% unexpected errors"},
            {"metric": "dropped_arrivals", "max": 0.01, "name": "the load generator kept up"},
        ],
    }


def write_scenario(path: str | Path, scenario: dict[str, Any], *, header: str = "") -> Path:
    """Write the scenario TOML atomically, with a comment header saying where it came from."""
    target = Path(path)
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    atomic_write_text(target, comment + ("\n" if comment else "") + tomli_w.dumps(scenario))
    return target
