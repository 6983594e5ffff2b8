"""A KTP fixture set on disk: many applicants' uploads as files, plus a manifest (CSV and JSON lines),
rendered by worker processes; :mod:`simulator.generators.ktp.fixtures` decides what each fixture is.

Each file is written atomically; the manifest, written last, marks a set complete.
"""

from __future__ import annotations

import csv
import hashlib
import io
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from simulator.errors import InvalidInputFile, InvalidOption
from simulator.generators.ktp import photo
from simulator.generators.ktp.fixtures import assign_variants, parse_mix, render_fixture
from simulator.io.atomic import atomic_write_bytes, atomic_write_text
from simulator.io.leftovers import sweep
from simulator.progress import ProgressCallback

MANIFEST_COLUMNS = (
    "file",
    "applicant_id",
    "nik",
    "variant",
    "expected",
    "bytes",
    "sha256",
    "width",
    "height",
)
FILES_DIR = "files"
CHUNK = 16  # fixtures per task handed to a worker: big enough to amortise, small enough to balance


@dataclass(frozen=True)
class ManifestRow:
    """One fixture: where it is, whose card, which variant and what the upload rules should answer."""

    file: str  # relative to the output directory
    applicant_id: str
    nik: str
    variant: str
    expected: str  # "accept" or a Reason code
    bytes: int
    sha256: str
    width: int | None  # as displayed (after EXIF orientation); empty when the file holds no image
    height: int | None


_PEOPLE: Sequence[Mapping[str, Any]] = ()


def _init_worker(people: Sequence[Mapping[str, Any]]) -> None:
    global _PEOPLE
    _PEOPLE = people


Task = tuple[Path, int, list[tuple[int, str]]]
"""One chunk of work: the output directory, the set's seed, and (index, variant) of each fixture."""


def render_chunk(task: Task) -> list[ManifestRow]:
    """Render one chunk of fixtures (in a worker: the people are the worker's, see FixtureWorkers)."""
    out_dir, seed, items = task
    return [_render_one(out_dir, seed, index, variant, _PEOPLE) for index, variant in items]


def plan_tasks(
    out_dir: Path, variants: Sequence[str], seed: int, start: int = 0, chunk: int = CHUNK
) -> list[Task]:
    """Tasks of ``chunk`` fixtures for ``variants`` (the variants of fixtures ``start``, ``start + 1``...)."""
    items = list(enumerate(variants, start))
    return [(out_dir, seed, items[i : i + chunk]) for i in range(0, len(items), chunk)]


def _render_one(
    out_dir: Path, seed: int, index: int, variant: str, people: Sequence[Mapping[str, Any]]
) -> ManifestRow:
    person, upload = render_fixture(people, seed, index, variant)
    ext = upload.filename.rsplit(".", 1)[-1]
    relative = f"{FILES_DIR}/ktp_{index + 1:06d}.{ext}"
    _write_fixture(out_dir / relative, upload.data)
    return ManifestRow(
        file=relative,
        applicant_id=str(person.get("applicant_id", "") or ""),
        nik=str(person.get("nik", "")),
        variant=variant,
        expected=upload.expected,
        bytes=len(upload.data),
        sha256=hashlib.sha256(upload.data).hexdigest(),
        width=upload.width,
        height=upload.height,
    )


def _write_fixture(path: Path, data: bytes) -> None:
    # Atomic, but without an fsync per file: at hundreds of files a second that would dominate.
    # The manifest (fsynced, written last) is what marks a set complete.
    atomic_write_bytes(path, data, fsync=False)


def render_fixtures(
    people: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    count: int,
    seed: int,
    mix: str | Mapping[str, float] | None = None,
    workers: int = 1,
    progress: ProgressCallback | None = None,
) -> list[ManifestRow]:
    """Render ``count`` fixtures for ``people`` (cycled in order) into ``out_dir`` and write the manifest."""
    if count < 1:
        raise InvalidOption(f"--count must be at least 1, got {count}")
    if workers < 1:
        raise InvalidOption(f"--workers must be at least 1, got {workers}")
    if not people:
        raise InvalidOption("no people to render cards for")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / FILES_DIR).mkdir(exist_ok=True)
    for directory in (out, out / FILES_DIR):
        sweep(directory)  # temporary files of a killed run
    tasks = plan_tasks(out, assign_variants(count, parse_mix(mix), seed), seed)
    rows: list[ManifestRow] = []
    with FixtureWorkers(people, workers if len(tasks) > 1 else 1) as pool:
        for chunk_rows in pool.imap(tasks):
            rows.extend(chunk_rows)
            if progress:
                progress(len(chunk_rows))
    write_manifest(out, rows)
    return rows


class FixtureWorkers:
    """The processes fixtures are rendered in: ``workers`` forked processes sharing the parent's warmed
    caches (copy-on-write), or this process when ``workers`` is 1. Kept open, they serve several task
    lists (the benchmark times them warm); ``render_fixtures`` opens one per set.
    """

    def __init__(self, people: Sequence[Mapping[str, Any]], workers: int) -> None:
        self._pool = None
        if workers == 1:
            _init_worker(people)
            return
        fork = "fork" in multiprocessing.get_all_start_methods()
        if fork:
            photo.warm_caches()  # once here, shared by every forked worker
        context = multiprocessing.get_context("fork" if fork else None)
        self._pool = context.Pool(workers, initializer=_init_worker, initargs=(people,))

    def imap(self, tasks: Iterable[Task], render: Callable[[Task], Any] = render_chunk) -> Iterator[Any]:
        """``render`` (render_chunk, or a wrapper of it) of each task, in order: the manifest lists
        fixtures by index."""
        if self._pool is None:
            yield from map(render, tasks)
        else:
            yield from self._pool.imap(render, tasks)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()  # reaped: their CPU shows in the parent's RUSAGE_CHILDREN

    def __enter__(self) -> FixtureWorkers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None and self._pool is not None:
            self._pool.terminate()
        self.close()


def write_manifest(out_dir: Path, rows: Iterable[ManifestRow]) -> None:
    """``manifest.csv`` and ``manifest.jsonl`` beside the files, each written atomically."""
    rows = list(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = asdict(row)
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    atomic_write_text(out_dir / "manifest.csv", buffer.getvalue())
    atomic_write_bytes(out_dir / "manifest.jsonl", b"".join(orjson.dumps(asdict(r)) + b"\n" for r in rows))


def read_manifest(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON-lines manifest of a fixture directory, one dict per fixture."""
    path = Path(out_dir) / "manifest.jsonl"
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise InvalidInputFile(f"{path}: cannot read the fixture manifest ({err.strerror})") from None
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            raise InvalidInputFile(f"{path}: line {number} is not JSON") from None
    return rows
