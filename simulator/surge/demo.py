"""``prakerja-sim demo``: everything on embedded defaults, on a fresh machine, then clean up.

Owns the demo's sequence: population, reference API on a temporary SQLite file, KTP samples, surge, report.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from simulator.surge.runner import SurgeOptions, SurgeResult, fault_serve_options, fault_settings, run_surge
from simulator.surge.scenario import load_scenario
from simulator.surge.schedule import build_schedule

KTP_SAMPLES = ("valid", "blurry", "cropped", "photocopy")


def run_demo(
    out: str | Path | None = None,
    *,
    scenario: str = "smoke",
    processes: int = 0,
    keep: bool = False,
    say: Callable[[str], None] = print,
    upstreams: bool = True,
) -> SurgeResult:
    """Generate a population, start the API seeded with it, run the scenario, write the report in ``out``.

    Without ``out`` the report goes to a new directory under the system's temporary directory
    (said at the start and in the summary), so a demo leaves nothing where it is run.
    """
    from simulator.api.testing import running_server
    from simulator.io.population import write_population
    from simulator.io.reader import read_table

    chosen = load_scenario(scenario)
    out = Path(out).resolve() if out is not None else Path(tempfile.mkdtemp(prefix="prakerja-demo-report-"))
    say(f"demo: the report goes to {out}")
    work = Path(tempfile.mkdtemp(prefix="prakerja-demo-"))
    try:
        size = len(build_schedule(chosen)) + 10
        population = work / "population"
        say(f"demo: generating {size:,} applicants and their registry rows ...")
        write_population(population, size, chosen.seed, fmt="parquet")
        try:
            person = read_table(population, "residents").slice(0, 1).to_pylist()[0]
            samples = render_ktp_samples(person, out / "ktp-samples", chosen.seed)
        except Exception as err:  # samples are a bonus: the demo goes on without them
            say(f"demo: no KTP samples ({type(err).__name__}: {err})")
            samples = []
        if samples:
            say(f"demo: rendered {len(samples)} KTP upload samples (SPECIMEN) in {out / 'ktp-samples'}")
        with contextlib.ExitStack() as stack:
            # The registry, SMS gateway and SMTP stand-ins carry the scenario's upstream faults;
            # the reference API uses them as a staging system would (docs/upstreams.md).
            up = stack.enter_context(stand_ins(population, chosen, work, say)) if upstreams else None
            say("demo: starting the reference API (temporary SQLite database) ...")
            settings = (
                fault_settings(chosen.faults)
                if up is None
                else {"registry_url": up.registry_url, "sms_url": up.sms_url, "smtp": up.smtp}
            )
            host = stack.enter_context(
                running_server(
                    str(work / "api.db"),
                    population if up is None else None,
                    log_path=work / "api.log",
                    **settings,
                )
            )
            say(f"demo: API at {host}; running scenario {chosen.name!r} ...")
            result = run_surge(
                SurgeOptions(
                    scenario=scenario,
                    out=out,
                    host=host,
                    population=population,
                    processes=processes,
                    upstreams=up.url if up is not None else None,
                ),
                say=say,
            )
        return result
    finally:
        if keep:
            say(f"demo: kept the population and database in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def stand_ins(population: Path, chosen, work: Path, say: Callable[[str], None]):
    """``prakerja-sim upstreams`` for the demo's population, with the scenario's upstream faults."""
    from simulator.upstreams.testing import running_upstreams

    options = fault_serve_options(chosen.faults)  # the stand-ins' fault options are serve's
    say("demo: starting the upstream stand-ins (registry, SMS gateway, SMTP) ...")
    return running_upstreams(
        population, *options, "--seed", str(chosen.seed), log_path=work / "upstreams.log"
    )


def render_ktp_samples(person: dict, directory: Path, seed: int) -> list[Path]:
    """A few KTP uploads (valid and bad) to look at, when the KTP generator is installed."""
    try:
        from simulator.generators.ktp.variants import render_variant
    except ImportError:
        return []
    from simulator.io.atomic import atomic_write_bytes

    paths = []
    for variant in KTP_SAMPLES:
        upload = render_variant(person, seed, variant)
        path = directory / f"{variant}-{upload.filename}"
        atomic_write_bytes(path, upload.data)
        paths.append(path)
    return paths
