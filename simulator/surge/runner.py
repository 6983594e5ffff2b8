"""Run a surge end to end: check the target, open the wave, drive Locust headless, reconcile, report.

Owns the library behind ``prakerja-sim surge``: tests and the demo call :func:`run_surge` directly.

Locust runs in its own process (``python -m locust -f loadtests/locustfile.py``): it monkey-patches
everything for gevent, which must not leak into this process (the demo also hosts the API's
supervisor here). Locust's own ``--processes N`` and ``--master`` / ``--worker`` modes do the
distribution; the locustfile's master writes ``surge-raw.json``, read back here.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.api.admin_auth import admin_headers
from simulator.errors import InvalidInputFile, InvalidOption, SimulatorError, TargetUnavailable, UnsafeTarget
from simulator.net import is_loopback
from simulator.progress import progress_bar
from simulator.surge.metrics import RAW_RESULTS, SurgeMetrics
from simulator.surge.reconcile import Reconciliation, reconcile
from simulator.surge.scenario import Faults, Scenario, load_scenario
from simulator.surge.schedule import build_schedule
from simulator.surge.thresholds import evaluate, exit_code

LOCAL_WORKERS_ENV = "PRAKERJA_SURGE_LOCAL_WORKERS"  # same name as in harness.py (which imports Locust)


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
    extra_locust_args: list[str] = field(default_factory=list)


@dataclass
class SurgeResult:
    exit_code: int
    report_json: Path
    report_html: Path
    summary: str
    data: dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Safety and plumbing


def check_target(host: str, allow_remote: bool) -> str:
    """The base URL without a trailing slash; raises UnsafeTarget for a non-loopback host."""
    parsed = urllib.parse.urlparse(host)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidOption(f"--host: expected a URL like http://127.0.0.1:8000, got {host!r}")
    if not allow_remote and not is_loopback(parsed.hostname):
        raise UnsafeTarget(
            f"--host {host} is not a loopback address; a surge there is real load on a real system. "
            "Pass --allow-remote if you mean it (and have the owner's permission)."
        )
    return host.rstrip("/")


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One JSON request with the standard library (this process stays free of gevent).

    Admin routes get the admin token from PRAKERJA_ADMIN_TOKEN (simulator.api.admin_auth).
    """
    data = None if body is None else json.dumps(body, default=str).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if "/v1/admin/" in url:
        headers.update(admin_headers())
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json_or_none(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _json_or_none(err.read())
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise TargetUnavailable(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from err


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def fetch_stats(host: str) -> dict[str, Any] | None:
    status, body = http_json("GET", f"{host}/v1/admin/stats?max_age_s=0", timeout=30.0)
    return body if status == 200 and isinstance(body, dict) else None


def open_wave(host: str, scenario: Scenario) -> str:
    """Open the scenario's wave on the target; a wave that is already open is used as it is."""
    wave = scenario.wave
    body = {
        "number": wave.number,
        "quota": scenario.scaled_quota,
        "mode": wave.selection,
        "duration_s": max(scenario.replay.harness_length_s + scenario.replay.drain_s + 3600.0, 60.0),
        "selection_seed": scenario.seed % (2**31),
    }
    status, answer = http_json("POST", f"{host}/v1/admin/waves", body)
    if status == 201:
        return f"opened wave {wave.number} ({wave.selection}, quota {scenario.scaled_quota:,})"
    code = ((answer or {}).get("error") or {}).get("code") if isinstance(answer, dict) else None
    if status == 409 and code == "WAVE_EXISTS":
        status, current = http_json("GET", f"{host}/v1/waves/{wave.number}")
        if status == 200 and isinstance(current, dict) and current.get("state") == "open":
            return f"wave {wave.number} was already open ({current.get('joined')} joined): joining it"
        raise InvalidOption(
            f"wave {wave.number} exists on {host} and is not open (state "
            f"{(current or {}).get('state')}); use another wave number or a fresh database"
        )
    if status == 404:
        return f"the target has no /v1/admin/waves: wave {wave.number} must already be open"
    raise TargetUnavailable(f"{host}/v1/admin/waves answered {status} {code or ''}".strip())


def fault_serve_options(faults: Faults) -> list[str]:
    """The ``prakerja-sim serve`` options that inject these faults into the reference API."""
    options = []
    for name, value in fault_settings(faults).items():
        options += ["--" + name.replace("_", "-"), f"{value:g}" if isinstance(value, float) else value]
    return options


def fault_settings(faults: Faults) -> dict[str, Any]:
    """The same faults as ``running_server(**settings)`` keywords (reference API ``Settings`` names)."""
    settings: dict[str, Any] = {}
    if faults.dukcapil_latency_ms or faults.dukcapil_latency_p99_ms:
        settings["registry_latency"] = registry_latency(faults)
    if faults.dukcapil_error_rate:
        settings["registry_error_rate"] = float(faults.dukcapil_error_rate)
    if faults.sms_delay_s:
        settings["sms_delay"] = f"lognormal:{faults.sms_delay_s * 1000:g},0.5"
    if faults.sms_loss_rate:
        settings["sms_loss_rate"] = float(faults.sms_loss_rate)
    if faults.email_delay_s:
        settings["email_delay"] = f"lognormal:{faults.email_delay_s * 1000:g},0.5"
    return settings


def registry_latency(faults: Faults) -> str:
    """Median and p99 -> a log-normal: sigma = ln(p99 / median) / z(0.99)."""
    median = faults.dukcapil_latency_ms
    p99 = faults.dukcapil_latency_p99_ms
    if p99 is None or median <= 0:
        return f"fixed:{max(median, p99 or 0):g}"
    sigma = 0.0 if p99 <= median else math.log(p99 / median) / 2.3263  # z of the 99th percentile
    return f"lognormal:{median:g},{sigma:.4f}"


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
    options: SurgeOptions, host: str, population: str | None, out: Path, scenario_arg: str
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
        "--surge-skip",
        str(options.skip_applicants),
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


def _run_locust(cmd: list[str], local_workers: bool = False) -> int:
    """Run Locust in the foreground; Ctrl-C reaches it too, and it gets time to write its results."""
    env = dict(os.environ)
    if local_workers:
        env[LOCAL_WORKERS_ENV] = "1"  # its forked workers leave Ctrl-C to their master
    process = subprocess.Popen(cmd, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return process.wait(timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait()
        raise


# ------------------------------------------------------------------------------------------------
# The run


def prepare_population(scenario: Scenario, options: SurgeOptions, out: Path) -> tuple[str, bool]:
    """The population directory to use; generates one in ``out/population`` when none is given."""
    if options.population:
        path = Path(options.population)
        if not (path / "manifest.json").is_file():
            raise InvalidInputFile(
                f"{path}: not a population directory (no manifest.json); "
                "make one with `prakerja-sim population`"
            )
        return str(path.resolve()), False
    from simulator.io.population import write_population

    size = len(build_schedule(scenario)) + options.skip_applicants
    target = out / "population"
    with progress_bar(size, "population") as advance:
        write_population(target, size, scenario.seed, fmt="parquet", progress=advance)
    return str(target.resolve()), True


def run_surge(options: SurgeOptions, *, say: Callable[[str], None] = print) -> SurgeResult:
    """Run the scenario against the host and write ``report.json`` / ``report.html`` into ``out``.

    Returns the result with the exit code the thresholds decide (0 pass, 1 breached). User errors
    raise :class:`SimulatorError` subclasses.
    """
    scenario = load_scenario(options.scenario)
    host = options.host or scenario.target.host
    if not host:
        raise InvalidOption("--host is required (the scenario file names no [target] host)")
    host = check_target(host, options.allow_remote)
    if options.processes < 0:
        raise InvalidOption(f"--processes must be >= 1, got {options.processes}")
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    raw_path = out / RAW_RESULTS
    with contextlib.suppress(FileNotFoundError):
        raw_path.unlink()  # never report an older run's numbers

    http_json("GET", f"{host}/", timeout=10.0)  # TargetUnavailable now rather than mid-run
    population, generated = prepare_population(scenario, options, out)
    if generated:
        say(
            f"generated a population of {len(build_schedule(scenario)):,} applicants in {population}; "
            "the target's registry must hold its residents (prakerja-sim serve --registry DIR)"
        )
    if scenario.faults.any and scenario.target.apply_faults:
        say(
            "this scenario injects upstream faults; the reference API takes them at start: "
            "prakerja-sim serve " + " ".join(fault_serve_options(scenario.faults))
        )
    before = fetch_stats(host)
    if scenario.target.open_wave:
        say(open_wave(host, scenario))

    scenario_arg = (
        str(Path(options.scenario).resolve()) if Path(options.scenario).is_file() else str(options.scenario)
    )
    cmd = locust_command(options, host, population, out, scenario_arg)
    started = time.time()
    interrupted = False
    try:
        code = _run_locust(cmd, local_workers=bool(options.processes))
    except KeyboardInterrupt:
        interrupted, code = True, 130
    if not raw_path.is_file():
        if interrupted:
            raise KeyboardInterrupt
        raise SimulatorError(
            f"Locust stopped (exit code {code}) without writing {raw_path}; see its output above"
        )
    raw = json.loads(raw_path.read_text(encoding="utf-8"))
    if raw["status"] == "failed":
        raise SimulatorError(f"the surge could not run: {raw['error']}")
    try:
        after = fetch_stats(host)
    except TargetUnavailable as err:  # the surge may have brought it down: still report the run
        say(f"after the run: {err}")
        after = None
    result = assemble(
        scenario,
        raw,
        before,
        after,
        out,
        params={
            "host": host,
            "population": population,
            "population_generated": generated,
            "skip_applicants": options.skip_applicants,
            "processes": options.processes,
            "master": options.master,
            "locust_exit_code": code,
            "wall_time_s": round(time.time() - started, 1),
            "interrupted": interrupted,
        },
    )
    if interrupted:
        say(result.summary)
        raise KeyboardInterrupt
    return result


def assemble(
    scenario: Scenario,
    raw: dict[str, Any],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    out: Path,
    params: dict[str, Any],
) -> SurgeResult:
    """Reconcile, check thresholds and write the report from Locust's raw results."""
    from simulator import report as report_lib
    from simulator.surge import report

    metrics = SurgeMetrics.from_wire(raw["metrics"])
    reconciliation = reconcile(
        dict(metrics.acknowledged),
        dict(metrics.unknown),
        before,
        after,
        wave=scenario.wave.number,
        quota=scenario.scaled_quota,
        selection=scenario.wave.selection,
    )
    reported, workers = len(raw.get("workers_reported") or []), raw.get("workers") or 0
    if reported < workers:
        # Without every load generator's counts, server rows cannot be matched to client answers.
        reconciliation = Reconciliation(
            False, f"only {reported} of {workers} load generators reported their measurements"
        )
    run_length = raw["schedule"]["length_s"] if raw.get("schedule") else scenario.replay.harness_length_s
    thresholds = evaluate(scenario.slo, metrics, reconciliation, run_length, raw.get("not_started", 0))
    code = exit_code(thresholds)
    if raw["status"] != "complete" and code == 0:
        code = 1  # a partial run cannot pass its thresholds
    data = report.build_data(scenario, raw, metrics, reconciliation, thresholds, code, params)
    json_path, html_path = report_lib.write_report(out, data, report.render(data))
    return SurgeResult(code, json_path, html_path, report.summary_text(data, html_path), data)
