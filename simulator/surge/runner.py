"""Run a surge end to end: check the target, open the wave, drive Locust headless, reconcile, report.

Owns the library behind ``prakerja-sim surge``: tests and the demo call :func:`run_surge` directly.

Locust runs in its own process (``python -m locust -f loadtests/locustfile.py``, see
locust_process.py): it monkey-patches everything for gevent, which must not leak into this process
(the demo also hosts the API's supervisor here). Locust's own ``--processes N`` and ``--master`` /
``--worker`` modes do the distribution; the locustfile's master writes ``surge-raw.json``, read
back here. A plain ``locust -f`` run does the same before and after steps itself (harness.py).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import InvalidInputFile, InvalidOption, SimulatorError, TargetUnavailable
from simulator.progress import progress_bar
from simulator.surge.locust_process import RunInterrupted, StopSignals, run_locust, signal_name
from simulator.surge.metrics import RAW_RESULTS, SurgeMetrics
from simulator.surge.profile.format import Profile, build_otp_sources, load_profile
from simulator.surge.reconcile import Reconciliation, reconcile
from simulator.surge.scenario import STEPS, Scenario, load_scenario
from simulator.surge.schedule import build_schedule
from simulator.surge.target import (
    check_target,
    fault_serve_options,
    fault_settings,
    http_json,
    prepare_target,
    server_counts,
    truth_of,
)
from simulator.surge.thresholds import evaluate, exit_code

__all__ = [  # what the demo, the tests and the CLI use from here (target.py owns the HTTP side)
    "SurgeOptions",
    "SurgeResult",
    "check_target",
    "fault_serve_options",
    "fault_settings",
    "finish_run",
    "locustfile_path",
    "run_surge",
    "run_worker",
]


@dataclass
class SurgeOptions:
    """What ``prakerja-sim surge`` was asked to do (see the command's help for each option)."""

    scenario: str | os.PathLike[str]
    out: str | os.PathLike[str]
    host: str | None = None
    population: str | os.PathLike[str] | None = None
    skip_applicants: int = 0
    processes: int = 0  # 0: one process; N: Locust --processes N (master + N local workers)
    master: bool = False
    expect_workers: int = 1
    master_bind_port: int | None = None
    allow_remote: bool = False
    progress_s: float = 2.0
    upstreams: str | None = None  # the stand-ins' base URL (OTP source, upstream load in the report)
    target_profile: str | os.PathLike[str] | None = None  # default: the scenario's, else "reference"
    extra_locust_args: list[str] = field(default_factory=list)


@dataclass
class SurgeResult:
    exit_code: int
    report_json: Path
    report_html: Path
    summary: str
    data: dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Locust's command line


def locustfile_path() -> Path:
    """``loadtests/locustfile.py`` of the installed package (works after a non-editable install)."""
    path = Path(str(importlib.resources.files("loadtests") / "locustfile.py"))
    if not path.is_file():
        raise SimulatorError(f"the Locust file is missing from the installation ({path})")
    return path


def _locust() -> list[str]:
    """Locust run by this interpreter on the installed locustfile."""
    return [sys.executable, "-m", "locust", "-f", str(locustfile_path())]


def locust_command(
    options: SurgeOptions,
    host: str,
    population: str | None,
    out: Path,
    scenario_arg: str,
    skip: int,
    profile_arg: str | None = None,
) -> list[str]:
    cmd = [
        *_locust(),
        "--headless",
        "--host",
        host,
        "--surge-scenario",
        scenario_arg,
        "--surge-out",
        str(out),
        "--surge-managed",  # the wave, the target's counts and the report are done here
        "--surge-skip",
        str(skip),
        "--surge-progress",
        f"{options.progress_s:g}",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--json-file",
        str(out / "locust-stats"),  # Locust adds ".json"
        "--stop-timeout",
        "5",
    ]
    if population:
        cmd += ["--surge-population", population]
    if options.upstreams:
        cmd += ["--surge-upstreams", options.upstreams]
    if options.allow_remote:
        cmd += ["--surge-allow-remote"]  # the OTP sources' own URLs are guarded in the workers too
    if profile_arg:
        cmd += ["--surge-target-profile", profile_arg]
    if options.processes:
        cmd += ["--processes", str(options.processes)]
    elif options.master:
        cmd += ["--master", "--expect-workers", str(options.expect_workers)]
        if options.master_bind_port:
            cmd += ["--master-bind-port", str(options.master_bind_port)]
    return cmd + list(options.extra_locust_args)


def worker_command(master_host: str, master_port: int | None = None, processes: int = 0) -> list[str]:
    """A Locust worker for a master started by ``surge --master`` (it receives everything else)."""
    cmd = [
        *_locust(),
        "--worker",
        "--master-host",
        master_host,
        "--loglevel",
        "WARNING",
    ]
    if master_port:
        cmd += ["--master-port", str(master_port)]
    if processes:
        cmd += ["--processes", str(processes)]
    return cmd


# ------------------------------------------------------------------------------------------------
# The run


def prepare_population(
    scenario: Scenario,
    options: SurgeOptions,
    out: Path,
    host: str,
    say: Callable[[str], None],
    profile: Profile | None = None,
) -> tuple[str, bool, int]:
    """(population directory, whether it was generated, applicants to skip) for this run.

    A given directory is checked; without one, ``count + skip`` applicants are generated into
    ``out/population``. Either way the skip is moved past applicants the target already holds
    (on a target with the reference admin API: other targets take ``--skip-applicants``).
    """
    if profile is not None and not profile.reference_admin:

        def fresh_skip(_host, _scenario, _population, skip, _say):
            return skip
    else:
        from simulator.surge.target import fresh_skip
    if options.population:
        from simulator.io.reader import check_population

        path = Path(options.population)
        if not path.is_dir():
            raise InvalidInputFile(
                f"{path}: no such population directory (make one with `prakerja-sim population`)"
            )
        # As the Locust workers will read it (manifest, size, sha256), before the target is contacted.
        manifests = check_population(path, ("applicants",))
        have = sum(m["files"]["applicants"]["rows"] for m in manifests)
        need, skip = len(build_schedule(scenario)), options.skip_applicants
        if scenario.defects.applicant_share is None and have - skip < need:
            raise InvalidInputFile(
                f"{path}: {have:,} applicants (skipping {skip:,}) but the scenario schedules "
                f"{need:,} arrivals; make a bigger population"
            )
        population = str(path.resolve())
        return population, False, fresh_skip(host, scenario, population, options.skip_applicants, say)
    from simulator.io.population import write_population

    skip = fresh_skip(host, scenario, None, options.skip_applicants, say)
    size = len(build_schedule(scenario)) + skip
    target = out / "population"
    with progress_bar(size, "population") as advance:
        write_population(target, size, scenario.seed, fmt="parquet", progress=advance)
    return str(target.resolve()), True, skip


def run_surge(options: SurgeOptions, *, say: Callable[[str], None] = print) -> SurgeResult:
    """Run the scenario against the host and write ``report.json`` / ``report.html`` into ``out``.

    Returns the result with the exit code the thresholds decide (0 pass, 1 breached), or 128 + the
    signal's number when Ctrl-C, SIGTERM or SIGHUP stopped the run (the report of what was
    measured is written all the same). User errors raise :class:`SimulatorError` subclasses.
    """
    with StopSignals(say) as stops:
        return _run_surge(options, stops, say)


def _run_surge(options: SurgeOptions, stops: StopSignals, say: Callable[[str], None]) -> SurgeResult:
    scenario = load_scenario(options.scenario)
    profile_arg = resolve_profile_arg(options.target_profile, scenario)
    profile = load_profile(profile_arg)
    host = options.host or scenario.target.host
    if not host:
        raise InvalidOption("--host is required (the scenario file names no [target] host)")
    host = check_target(host, options.allow_remote)
    say_cost(scenario, host, options, say)
    upstreams = options.upstreams or scenario.target.upstreams
    if upstreams:
        from simulator.upstreams import report as upstream_report

        upstreams = options.upstreams = check_target(upstreams, options.allow_remote, option="--upstreams")
    if options.processes < 0:
        raise InvalidOption(f"--processes must be >= 1, got {options.processes}")
    # A bad [otp.*] or [reconcile] table (or a wrong count query) fails here, in one line.
    build_otp_sources(profile, host, upstreams or None, allow_remote=options.allow_remote)
    truth = truth_of(host, profile, options.allow_remote)
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / RAW_RESULTS
    with contextlib.suppress(FileNotFoundError):
        raw_path.unlink()  # never report an older run's numbers

    # The population is checked (manifest, sizes, sha256) before the target is contacted.
    population, generated, skip = prepare_population(scenario, options, out, host, say, profile)
    http_json("GET", f"{host}/", timeout=10.0)  # TargetUnavailable now rather than mid-run
    if generated:
        say(
            f"generated a population of {len(build_schedule(scenario)) + skip:,} applicants in "
            f"{population}; the target's registry must hold its residents (prakerja-sim serve --registry DIR)"
        )
    upstreams_before = None
    if upstreams:
        upstreams_before = upstream_report.fetch(upstreams, "/v1/stats")
        if upstreams_before is None:
            raise TargetUnavailable(f"--upstreams {upstreams}: the stand-ins' read API does not answer")
    before = prepare_target(host, scenario, say, profile, truth)

    scenario_arg = (
        str(Path(options.scenario).resolve()) if Path(options.scenario).is_file() else str(options.scenario)
    )
    cmd = locust_command(options, host, population, out, scenario_arg, skip, profile_arg)
    started = time.time()
    code = run_locust(cmd, stops)
    stops.after_load = f"while writing the report (the raw measurements are in {raw_path})"
    if not raw_path.is_file():
        if stops.received is not None:
            raise RunInterrupted(stops.received, "before Locust had measured anything")
        raise SimulatorError(
            f"Locust stopped (exit code {code}) without writing {raw_path}; see its output above"
        )
    raw = json.loads(raw_path.read_text(encoding="utf-8"))
    if raw["status"] == "failed":
        raise SimulatorError(f"the surge could not run: {raw['error']}")
    params = {
        "host": host,
        "population": population,
        "population_generated": generated,
        "skip_applicants": skip,
        "processes": options.processes,
        "master": options.master,
        "locust_exit_code": code,
        "wall_time_s": round(time.time() - started, 1),
        "interrupted_by": None if stops.received is None else signal_name(stops.received),
        "upstreams": upstreams,
    }
    if upstreams:
        raw["upstream_stats"] = upstream_report.measure(
            upstreams, upstreams_before, raw.get("t0_epoch") or started, raw.get("ended_epoch") or time.time()
        )
    params["target_profile"] = profile.source
    return finish_run(
        scenario, raw, before, out, params, say, signum=stops.received, profile=profile, truth=truth
    )


def resolve_profile_arg(given: str | os.PathLike[str] | None, scenario: Scenario) -> str | None:
    """What to hand Locust as --surge-target-profile: an absolute path, a built-in's name, or None
    (the scenario's ``target_profile``, else the reference API's)."""
    value = given or scenario.target.target_profile
    if value is None:
        return None
    path = Path(value)
    return str(path.resolve()) if path.is_file() else str(value)


def say_cost(scenario: Scenario, host: str, options: SurgeOptions, say: Callable[[str], None]) -> None:
    """One line on what the run costs, and a warning when this machine cannot carry it."""
    import urllib.parse

    from simulator.net import is_loopback
    from simulator.surge.cost import scenario_cost

    cost = scenario_cost(scenario)
    say(f"surge: {cost.line()}")
    if options.master:
        return  # the load runs on other machines
    if is_loopback(urllib.parse.urlparse(host).hostname or ""):
        why = cost.fits()
    else:
        cpus = os.cpu_count() or 1
        why = (
            None
            if cost.cores_load_generator <= cpus
            else f"the load generator alone needs more than {cpus} CPU(s)"
        )
    if why:
        say(f"surge: warning: {why}")


def run_worker(master_host: str, master_port: int | None, processes: int, say: Callable[[str], None]) -> int:
    """Be a Locust worker of a ``surge --master`` until it ends (stopped like a run: nothing left)."""
    with StopSignals(say, whole_group=True) as stops:
        code = run_locust(worker_command(master_host, master_port, processes), stops)
    return stops.exit_code or code


def finish_run(
    scenario: Scenario,
    raw: dict[str, Any],
    before: dict[str, Any] | None,
    out: Path,
    params: dict[str, Any],
    say: Callable[[str], None],
    signum: int | None = None,
    profile: Profile | None = None,
    truth: Any = None,
) -> SurgeResult:
    """After the load: read the target's counts again, reconcile, judge, write the report.

    ``truth``: the profile's ``[reconcile]`` source (target.truth_of; None: /v1/admin/stats).
    """
    try:
        after = server_counts(params["host"], truth, scenario.wave.number)
    except (TargetUnavailable, SimulatorError) as err:  # the surge may have brought it down: still report
        say(f"after the run: {err}")
        after = None
    return assemble(scenario, raw, before, after, out, params, signum=signum, profile=profile, truth=truth)


def assemble(
    scenario: Scenario,
    raw: dict[str, Any],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    out: Path,
    params: dict[str, Any],
    signum: int | None = None,
    profile: Profile | None = None,
    truth: Any = None,
) -> SurgeResult:
    """Reconcile, check thresholds and write the report from Locust's raw results.

    ``signum``: the signal that stopped the run; the exit code is then 128 + its number.
    ``profile``: the target profile, whose ``[reconcile]`` says where the server's counts came from.
    """
    from simulator import report as report_lib
    from simulator.surge import report

    metrics = SurgeMetrics.from_wire(raw["metrics"])
    judged = dict(wave=scenario.wave.number, quota=scenario.scaled_quota, selection=scenario.wave.selection)
    if truth is None:  # the reference API's /v1/admin/stats
        reconciliation = reconcile(dict(metrics.acknowledged), dict(metrics.unknown), before, after, **judged)
    elif getattr(truth, "kind", None) == "off":
        reconciliation = Reconciliation(
            False, f'not reconciled: {profile.where("reconcile")} source is "off" (nothing compared)'
        )
    else:
        from simulator.surge.sources.truth import reconcile_truth

        acknowledged = {step: n for step, n in metrics.acknowledged.items() if step in STEPS}
        reconciliation = reconcile_truth(truth, acknowledged, dict(metrics.unknown), before, after, **judged)
    reported, workers = len(raw.get("workers_reported") or []), raw.get("workers") or 0
    if reported < workers:
        # Without every load generator's counts, server rows cannot be matched to client answers.
        reconciliation = Reconciliation(
            False, f"only {reported} of {workers} load generators reported their measurements"
        )
    run_length = raw["schedule"]["length_s"] if raw.get("schedule") else scenario.replay.harness_length_s
    thresholds = evaluate(
        scenario.slo,
        metrics,
        reconciliation,
        run_length,
        raw.get("not_started", 0),
        raw.get("interrupted", 0),
    )
    code = exit_code(thresholds)
    if raw["status"] != "complete" and code == 0:
        code = 1  # a partial run cannot pass its thresholds
    if signum is not None:
        code = 128 + signum
    data = report.build_data(scenario, raw, metrics, reconciliation, thresholds, code, params)
    json_path, html_path = report_lib.write_report(out, data, report.render(data))
    return SurgeResult(code, json_path, html_path, report.summary_text(data, html_path), data)


def run_profile_check(options: SurgeOptions, *, say: Callable[[str], None] = print) -> int:
    """``surge --check-profile``: walk one applicant through the profile (simulator/surge/profile/check.py).

    Returns its exit code: 0 every step did what the profile says, 1 one did not (one line says
    which), 2 bad input, 3 the target does not answer.
    """
    import subprocess

    scenario = load_scenario(options.scenario)
    profile_arg = resolve_profile_arg(options.target_profile, scenario)
    load_profile(profile_arg)  # bad input is reported here, in one line
    host = options.host or scenario.target.host
    if not host:
        raise InvalidOption("--host is required (the scenario file names no [target] host)")
    host = check_target(host, options.allow_remote)
    upstreams = options.upstreams or scenario.target.upstreams
    if upstreams:
        upstreams = check_target(upstreams, options.allow_remote, option="--upstreams")
    http_json("GET", f"{host}/", timeout=10.0)  # TargetUnavailable now, in one line
    scenario_arg = (
        str(Path(options.scenario).resolve()) if Path(options.scenario).is_file() else str(options.scenario)
    )
    cmd = [
        sys.executable,
        "-m",
        "simulator.surge.profile.check",
        "--host",
        host,
        "--scenario",
        scenario_arg,
        "--skip",
        str(options.skip_applicants),
    ]
    if profile_arg:
        cmd += ["--profile", profile_arg]
    if options.population:
        cmd += ["--population", str(Path(options.population).resolve())]
    if upstreams:
        cmd += ["--upstreams", upstreams]
    if options.allow_remote:
        cmd += ["--allow-remote"]
    return subprocess.run(cmd, check=False).returncode
