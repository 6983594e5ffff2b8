"""``prakerja-sim surge`` and ``prakerja-sim demo``: thin click shells over the surge library.

The work is in simulator.surge.runner.run_surge and simulator.surge.demo.run_demo.
"""

from __future__ import annotations

from pathlib import Path

import click

from simulator.errors import InvalidOption


@click.command(
    epilog="""\b
Examples:
  prakerja-sim surge --plan                     (what each built-in scenario costs on this machine)
  prakerja-sim surge --scenario smoke --host http://127.0.0.1:8000 --population pop --out report
  prakerja-sim surge --scenario smoke --host URL --target-profile my-api.toml --check-profile
  prakerja-sim surge --scenario wave-11 --host http://127.0.0.1:8000 --population pop --processes 2
  prakerja-sim surge --scenario wave-11 --host URL --master --expect-workers 4 --out wave11
  prakerja-sim surge --worker --master-host 10.0.0.5          (on each load-generator machine)
\b
Exit code: 0 all SLO thresholds held, 1 a threshold failed, 2 bad input, 3 target unreachable,
128+N stopped by signal N (Ctrl-C 130, SIGTERM 143, SIGHUP 129: the report of what was measured
is written, and every process the run started is stopped)."""
)
@click.option(
    "--scenario",
    "scenario",
    metavar="FILE|NAME",
    help="Scenario file, or a built-in: smoke, wave-11, wave-1-opening, dukcapil-slow, "
    "ktp-upload-storm, soak.",
)
@click.option("--host", metavar="URL", help="Base URL of the registration API (default: the scenario's).")
@click.option(
    "--population",
    type=click.Path(file_okay=False, path_type=Path),
    help="Population directory whose applicants arrive; the target's registry must hold its "
    "residents. Default: generate one into OUT/population.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("surge-report"),
    show_default=True,
    help="Directory for report.json, report.html and Locust's raw files.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    default=0,
    help="Load-generator processes on this machine (Locust --processes): a master and N workers.",
)
@click.option("--master", is_flag=True, help="Be the Locust master for workers on other machines.")
@click.option(
    "--expect-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --master: start when this many workers are connected.",
)
@click.option("--master-bind-port", type=click.IntRange(1, 65535), help="With --master: port to listen on.")
@click.option(
    "--worker", is_flag=True, help="Be a Locust worker of a --master (which sends everything else)."
)
@click.option("--master-host", help="With --worker: the master's address.")
@click.option("--master-port", type=click.IntRange(1, 65535), help="With --worker: the master's port.")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host. A surge is real load: only on systems you may test.",
)
@click.option(
    "--skip-applicants",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Leave out the first N applicants. A run finds those an earlier run registered on this "
    "server by itself (it tries their log-in) and moves past them, saying how many.",
)
@click.option(
    "--plan",
    is_flag=True,
    help="Only say what the scenario costs (run length, arrivals, requests, cores at its peak) and "
    "whether this machine carries it; without --scenario, for every built-in. Sends nothing.",
)
@click.option(
    "--upstreams",
    metavar="URL",
    help="Base URL of `prakerja-sim upstreams` (http://127.0.0.1:8100): OTPs are read there, and the "
    "report shows the upstream load beside the planner's forecast.",
)
@click.option(
    "--target-profile",
    "target_profile",
    metavar="FILE|NAME",
    help="Target profile (TOML) saying how to drive the API: paths, bodies, sessions, refusal codes, "
    "OTP and count sources (docs/target-profile.md). Default: the scenario's target_profile, else "
    "`reference` (the reference API).",
)
@click.option(
    "--check-profile",
    is_flag=True,
    help="Walk ONE applicant through the whole journey once (no load), print each request and "
    "answer, and exit non-zero with one line on the first step that does not do what the profile says.",
)
@click.option(
    "--progress",
    "progress_s",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds between live progress lines (0: none).",
)
def surge(
    scenario,
    host,
    population,
    out,
    processes,
    master,
    expect_workers,
    master_bind_port,
    worker,
    master_host,
    master_port,
    allow_remote,
    skip_applicants,
    plan,
    progress_s,
    upstreams=None,
    target_profile=None,
    check_profile=False,
) -> int:
    """Replay a wave opening against a registration API (open model, headless) and report it."""
    from simulator.surge.runner import SurgeOptions, run_profile_check, run_surge, run_worker

    say = lambda line: click.echo(line, err=True)  # noqa: E731
    if plan:
        from simulator.surge.cost import plan_text

        click.echo(plan_text(scenario))
        return 0
    if worker:
        if not master_host:
            raise InvalidOption("--worker needs --master-host (the machine running `surge --master`)")
        return run_worker(master_host, master_port, max(processes, 0), say)
    if not scenario:
        raise InvalidOption("--scenario is required (a file, or a built-in such as smoke or wave-11)")
    if master and processes:
        raise InvalidOption(
            "--master and --processes cannot be combined (--processes already makes a master)"
        )
    options = SurgeOptions(
        scenario=scenario,
        out=out,
        host=host,
        population=population,
        skip_applicants=skip_applicants,
        processes=processes,
        master=master,
        expect_workers=expect_workers,
        master_bind_port=master_bind_port,
        allow_remote=allow_remote,
        progress_s=progress_s,
        upstreams=upstreams,
        target_profile=target_profile,
    )
    if check_profile:
        return run_profile_check(options, say=say)
    result = run_surge(options, say=say)
    click.echo(result.summary)
    return result.exit_code


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the report and KTP samples. Default: a new directory in the system's "
    "temporary directory, printed at the start and the end (the rest is temporary and removed).",
)
@click.option(
    "--scenario",
    default="smoke",
    show_default=True,
    metavar="FILE|NAME",
    help="Scenario to run against the embedded API.",
)
@click.option("--processes", type=click.IntRange(min=0), default=0, help="Locust worker processes (0: one).")
@click.option(
    "--keep", is_flag=True, help="Keep the temporary population and database (their path is printed)."
)
@click.option(
    "--builtin-upstreams",
    is_flag=True,
    help="Let the API simulate Dukcapil, SMS and email itself instead of starting the stand-ins.",
)
def demo(out, scenario, processes, keep, builtin_upstreams=False) -> int:
    """The main job on embedded defaults: start the reference API, seed it, run `smoke`, report."""
    from simulator.surge.demo import run_demo

    result = run_demo(
        out,
        scenario=scenario,
        processes=processes,
        keep=keep,
        say=lambda line: click.echo(line, err=True),
        upstreams=not builtin_upstreams,
    )
    click.echo(result.summary)
    return result.exit_code
