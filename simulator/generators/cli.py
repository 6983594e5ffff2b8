"""``prakerja-sim population`` and ``prakerja-sim nik parse``: thin click shells over
:func:`simulator.io.population.write_population` and :func:`simulator.rules.nik.parse_nik`.

A click shell belongs to the CLI layer (``simulator/__init__.py``), above ``simulator.io``: it wires
the generators' plan to the writer, so it imports both (the writer when ``population`` runs, so that
``nik parse`` does not load pyarrow's file formats).
"""

from __future__ import annotations

import json
import os
import sys

import click

from simulator import DEFAULT_SEED
from simulator.generators.defects import DEFECT_NAMES, PROFILES
from simulator.generators.population import DEFAULT_CHUNK_ROWS, make_plan
from simulator.progress import progress_bar
from simulator.rules.nik import NikError, parse_nik


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--size",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Number of people (residents; one applicant each).",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=DEFAULT_SEED,
    show_default=True,
    help="Same seed and size: the same files, byte for byte.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="population",
    show_default=True,
    help="Directory for residents.*, applicants.* and manifest.json.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default="csv", show_default=True
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Processes generating chunks in parallel (output does not depend on it).",
)
@click.option(
    "--shard",
    default="0/1",
    show_default=True,
    metavar="I/N",
    help="Write only shard I of N; shards 0..N-1 together are the whole population.",
)
@click.option(
    "--defects",
    default="realistic",
    show_default=True,
    metavar="PROFILE|RATE-LIST",
    help=f"Profile ({', '.join(PROFILES)}) or NAME=RATE,... optionally after PROFILE+. "
    f"Names: {', '.join(DEFECT_NAMES)}.",
)
@click.option(
    "--province",
    default=None,
    metavar="CODE|NAME",
    help="Only people whose KTP is in this province (e.g. 32 or 'Jawa Barat').",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(1000),
    default=DEFAULT_CHUNK_ROWS,
    show_default=True,
    help="Rows per chunk (memory per worker); part of what the seed reproduces.",
)
@click.option(
    "--domicile-elsewhere",
    "domicile_elsewhere_share",
    type=click.FloatRange(0, 1),
    default=0.15,
    show_default=True,
    help="Share of applicants living away from their KTP address.",
)
@click.option("--female-share", type=click.FloatRange(0, 1), default=0.47, show_default=True)
def population(
    size: int,
    seed: int,
    out_dir: str,
    fmt: str,
    workers: int,
    shard: str,
    defects: str,
    province: str | None,
    chunk_rows: int,
    domicile_elsewhere_share: float,
    female_share: float,
) -> None:
    """Generate residents (the registry) and applicants (the form, with labels) for SIZE people.

    \b
    Example:
      prakerja-sim population --size 100000 --seed 7 --out pop --format parquet --workers 2
    """
    from simulator.io.population import parse_shard, write_population

    index, count = parse_shard(shard)
    plan = make_plan(size, seed, chunk_rows=chunk_rows)
    chunks = plan.shard_chunks(index, count) if count <= plan.chunk_count else range(0)
    total = sum(plan.chunk_bounds(k)[1] - plan.chunk_bounds(k)[0] for k in chunks) or None
    with progress_bar(total, "population") as advance:
        manifest = write_population(
            out_dir,
            size,
            seed,
            fmt=fmt,
            workers=workers,
            shard=(index, count),
            defects=defects,
            province=province,
            chunk_rows=chunk_rows,
            progress=advance,
            domicile_elsewhere_share=domicile_elsewhere_share,
            female_share=female_share,
        )
    files = manifest["files"]
    click.echo(
        f"wrote {files['residents']['rows']:,} residents and {files['applicants']['rows']:,} applicants "
        f"({fmt}, shard {index}/{count}) to {os.path.normpath(out_dir)}"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def nik() -> None:
    """Work with NIK numbers (Nomor Induk Kependudukan)."""


@nik.command("parse")
@click.argument("numbers", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per number.")
def parse(numbers: tuple[str, ...], as_json: bool) -> int:
    """Decode NIKs: region, birth date, gender, serial; or say why a number is not a valid NIK.

    \b
    Example:
      prakerja-sim nik parse 3273024708950001
    Exit code 1 if any number is not a well-formed NIK.
    """
    failures = 0
    for number in numbers:
        try:
            info = parse_nik(number)
        except NikError as err:
            failures += 1
            if as_json:
                click.echo(
                    json.dumps(
                        {"nik": number, "valid": False, "reason": err.reason.value, "message": err.message}
                    )
                )
            else:
                click.echo(f"{number}: invalid ({err.reason.value}): {err.message}", err=False)
            continue
        if as_json:
            click.echo(json.dumps({"valid": True, **info.as_dict()}))
        else:
            gender = "LAKI-LAKI" if info.gender == "L" else "PEREMPUAN"
            click.echo(
                f"{info.nik}: {info.district}, {info.regency}, {info.province} "
                f"({info.district_code}); born {info.birth_date.isoformat()}; {gender}; "
                f"serial {info.serial:04d}"
            )
    sys.stdout.flush()
    return 1 if failures else 0
