"""``prakerja-sim ktp``: render KTP photo fixtures with a manifest; ``ktp check`` applies the upload rules.

Thin shells over :mod:`simulator.io.ktp_fixtures` (the set on disk), :mod:`simulator.generators.ktp.fixtures`
(who and which variant) and :mod:`simulator.rules.upload`. A click shell is in the CLI layer (see
``simulator/__init__.py``): it wires the generators and ``simulator.io``; the imports inside the
commands only keep ``prakerja-sim ktp --help`` from loading Pillow and pyarrow.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Any

import click

from simulator.errors import InvalidInputFile
from simulator.progress import progress_bar


@click.group("ktp", invoke_without_command=True)
@click.option(
    "--population",
    "population",
    type=click.Path(path_type=Path),
    help="Population directory from `prakerja-sim population`; default: generate --count people.",
)
@click.option("--count", type=int, default=100, show_default=True, help="Number of files to render.")
@click.option(
    "--mix",
    default=None,
    help="Share per variant, e.g. valid=0.8,cropped=0.05; unnamed variants share the rest "
    "(default valid=0.8, the rest equally).",
)
@click.option("--seed", type=int, default=20201111, show_default=True, help="Same seed, same files.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("ktp-fixtures"),
    show_default=True,
    help="Output directory (files/ and manifest.csv/.jsonl).",
)
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option(
    "--list-variants", is_flag=True, help="List the variants and their expected verdicts, then stop."
)
@click.pass_context
def ktp(
    ctx: click.Context,
    population: Path | None,
    count: int,
    mix: str | None,
    seed: int,
    out_dir: Path,
    workers: int,
    list_variants: bool,
) -> None:
    """Render e-KTP photo fixtures (valid and deliberately bad) for applicants, with a manifest."""
    if ctx.invoked_subcommand is not None:
        return
    from simulator.generators.ktp import fixtures
    from simulator.generators.ktp.variants import VARIANTS
    from simulator.io import ktp_fixtures

    if list_variants:
        for variant in VARIANTS.values():
            click.echo(f"{variant.name:20s} {variant.expected:20s} {variant.description}")
        return
    weights = fixtures.parse_mix(mix)  # fail on a bad --mix before reading anything
    if population is not None:
        people = load_people(population, limit=count)
    else:
        people = fixtures.generated_people(count, seed)
    with progress_bar(count, "KTP fixtures") as advance:
        rows = ktp_fixtures.render_fixtures(
            people, out_dir, count=count, seed=seed, mix=weights, workers=workers, progress=advance
        )
    tally = collections.Counter(row.expected for row in rows)
    click.echo(
        f"wrote {len(rows)} files to {out_dir / ktp_fixtures.FILES_DIR} and {out_dir}/manifest.csv, .jsonl"
    )
    for verdict, n in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])):
        click.echo(f"  {verdict:20s} {n}")


@ktp.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file instead of a table.")
@click.pass_context
def check(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Apply the upload rules to FILES; exit 1 if any is refused."""
    import orjson

    from simulator.rules.upload import validate_upload

    refused = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise InvalidInputFile(f"{path}: cannot read ({err.strerror})") from None
        verdict = validate_upload(data, path.name)
        refused += not verdict.accepted
        if as_json:
            record = {
                "file": str(path),
                "verdict": verdict.verdict,
                "message": verdict.message,
                "format": verdict.format,
                "width": verdict.width,
                "height": verdict.height,
                "bytes": len(data),
            }
            click.echo(orjson.dumps(record).decode())
        else:
            size = f"{verdict.width}x{verdict.height}" if verdict.width else "-"
            fmt = verdict.format or "-"
            click.echo(f"{verdict.verdict:20s} {fmt:6s} {size:>11s}  {path}  ({verdict.message})")
    if refused:
        if not as_json:
            click.echo(f"{refused} of {len(files)} refused", err=True)
        ctx.exit(1)


def load_people(pop_dir: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Read a population directory (``prakerja-sim population`` output) into printable card rows."""
    from simulator.generators.ktp.fixtures import people_from_tables
    from simulator.io.reader import read_table

    path = Path(pop_dir)
    if not path.is_dir():
        raise InvalidInputFile(f"{path}: not a population directory (expected residents/applicants files)")
    residents = read_table(path, "residents")
    # A registry-only directory renders every resident; a broken applicants file is an error, not a fallback.
    has_applicants = any(path.glob("applicants.*")) or any(path.glob("applicants.shard-*"))
    applicants = read_table(path, "applicants") if has_applicants else None
    people = people_from_tables(residents, applicants)
    if not people:
        raise InvalidInputFile(
            f"{path}: no applicant matches a resident by NIK, so there is no card to print"
        )
    return people[:limit] if limit else people
