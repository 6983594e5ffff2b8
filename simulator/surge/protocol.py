"""The open model on Locust: the master/worker protocol of a run and the surge's Locust options.

Owns the messages (prepare, ready, go, progress, finish, final), their timeouts and the run window.

Locust drives a closed model (N users looping). Here Locust's runner only carries the test's life
cycle and messages: its load shape asks for zero looping users, and each worker starts one
journey user per arrival of its share of the schedule at the arrival's time, whatever the server
does. The protocol, the same for a local runner (messages to itself) and master/workers::

    master: test_start -> PREPARE(index, count, scenario, population) to each worker
    worker: loads its applicants and upload pool -> READY(arrivals)
    master: all ready -> GO(t0 = wall clock a moment ahead)
    worker: spawns arrivals at t0 + schedule[i], PROGRESS every second
    master: past the schedule and the drain (or nothing in flight) -> FINISH
    worker: stops what is still in flight (counted unfinished) -> FINAL(encoded metrics)
    master: merges, writes ``surge-raw.json``, the shape returns None and Locust stops.

The master is controller.py, the workers generator.py, each arrival a harness.JourneyUser.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from simulator.surge.scenario import Scenario

MSG_PREPARE = "surge_prepare"
MSG_READY = "surge_ready"
MSG_GO = "surge_go"
MSG_PROGRESS = "surge_progress"
MSG_FINISH = "surge_finish"
MSG_FINAL = "surge_final"

START_MARGIN_S = 1.0  # GO carries a start time this far ahead, so every worker starts together
PREPARE_TIMEOUT_S = 600.0
FINAL_TIMEOUT_S = 60.0
DEFAULT_OUT = "surge-report"  # the same as `prakerja-sim surge --out`


def add_arguments(parser: Any) -> None:
    """Locust command-line options of the surge; the scenario, population and report directory
    also show in the web UI's form (its "Number of users" and "Ramp up" stay 0: see below)."""
    group = parser.add_argument_group(
        "surge",
        "open-model replay of a wave opening (prakerja-sim). The scenario's arrival schedule starts "
        "one user per applicant: Locust's --users / --spawn-rate (the web UI's 'Number of users' "
        "and 'Ramp up', greyed out at 0) are not used.",
    )
    shown = [
        group.add_argument(
            "--surge-scenario",
            default="smoke",
            help="Surge scenario: a file or a built-in (smoke, wave-11, wave-1-opening, dukcapil-slow, "
            "ktp-upload-storm, soak). It decides who arrives when; Number of users / Ramp up stay 0.",
        ),
        group.add_argument(
            "--surge-population",
            default="",
            help="Population directory (prakerja-sim population) whose residents the target's registry "
            "holds; empty: each load generator makes one from the scenario's seed",
        ),
        group.add_argument(
            "--surge-out",
            default=DEFAULT_OUT,
            help=f"Where report.json and report.html go (at the end of the run). Default: {DEFAULT_OUT}",
        ),
    ]
    for action in shown:
        action.include_in_web_ui = True  # Locust's own flag; a group's add_argument does not take it
    group.add_argument(
        "--surge-skip",
        type=int,
        default=0,
        help="leave out the first N applicants (the run also moves past those the target already holds)",
    )
    group.add_argument(
        "--surge-target-profile",
        default="",
        help="target profile (TOML) saying how to drive the API; empty: the scenario's, else the "
        "reference API's (docs/target-profile.md)",
    )
    group.add_argument(
        "--surge-upstreams", default="", help="base URL of the upstream stand-ins' read API (OTP source)"
    )
    group.add_argument(
        "--surge-progress",
        type=float,
        default=2.0,
        help="seconds between progress lines on stderr; 0 for none",
    )
    group.add_argument(
        "--surge-allow-remote",
        action="store_true",
        help="allow a non-loopback --host (a surge is real load: only on systems you may test)",
    )
    group.add_argument(
        "--surge-managed",
        action="store_true",
        help=argparse.SUPPRESS,  # set by `prakerja-sim surge`, which opens the wave and reports itself
    )


def run_window_s(scenario: Scenario) -> tuple[float, float]:
    """(metrics length, over-time window) for a scenario: the same on every process of a run."""
    length = scenario.replay.harness_length_s + scenario.replay.drain_s + 30.0
    return length, float(max(1, math.ceil(length / 120)))


def say(line: str) -> None:
    """A progress line on stderr (Locust's own log is kept to warnings)."""
    print(line, file=sys.stderr, flush=True)
