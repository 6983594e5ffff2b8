"""Population files written: the generator driven chunk by chunk (in worker processes, handed to this
one in shared memory) into streaming, atomic csv / jsonl / parquet files and their manifest.json.

Files of one shard: ``residents.<ext>``, ``applicants.<ext>`` and ``manifest.json``; with
``shard=(i, n)``, n > 1, the names carry ``.shard-i-of-n`` so all shards can share a directory.
Beside it: :mod:`simulator.io.encode` (a chunk as text), :mod:`simulator.io.files` (the files as they
are streamed), :mod:`simulator.io.manifest` (names and schema) and :mod:`simulator.io.reader` (the
one reader).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from simulator import __version__
from simulator.errors import InvalidOption
from simulator.generators.defects import DefectRates
from simulator.generators.population import (
    DEFAULT_CHUNK_ROWS,
    GENERATOR_VERSION,
    PopulationPlan,
    generate_chunk,
    make_plan,
)
from simulator.generators.schema import ENCODED_SCHEMAS, SCHEMAS
from simulator.io import handover
from simulator.io.atomic import atomic_write_text, fsync_directory
from simulator.io.encode import encode_csv, encode_jsonl
from simulator.io.files import ParquetFile, StreamFile
from simulator.io.leftovers import sweep
from simulator.io.manifest import FORMATS, MANIFEST_VERSION, TABLES, file_names


def _encode_chunk(plan: PopulationPlan, k: int, fmt: str, header: bool) -> tuple[int, dict[str, object]]:
    # Parquet takes the dictionary-encoded columns as they are (no string copies, no hashing);
    # the text writers spell every value anyway.
    chunk = generate_chunk(plan, k, dictionary=True) if fmt == "parquet" else generate_chunk(plan, k)
    out: dict[str, object] = {}
    for name in TABLES:
        table = getattr(chunk, name)
        if fmt == "csv":
            out[name] = encode_csv(table, header)
        elif fmt == "jsonl":
            out[name] = encode_jsonl(table)
        else:
            out[name] = table
    return chunk.stop - chunk.start, out


_WORKER_PLAN: PopulationPlan | None = None


def _worker_init(plan: PopulationPlan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan
    from simulator.regions import region_tables

    region_tables()  # load the region lookups once per worker, before the first chunk


# Encoded chunks come back through simulator.io.handover: slots of this many bytes per row.
_SLOT_BYTES_PER_ROW = {"parquet": 1_024, "csv": 1_536, "jsonl": 3_072}  # generous: a page costs
# nothing until it is written


def _worker_encode(args: tuple[int, str, bool, str, str]) -> tuple[int, dict[str, handover.Handle]]:
    """Encode chunk ``k`` and leave each table in shared memory (:func:`simulator.io.handover.put`)."""
    assert _WORKER_PLAN is not None
    k, fmt, header, run, slot = args
    persons, encoded = _encode_chunk(_WORKER_PLAN, k, fmt, header)
    return persons, handover.put(run, slot, k, encoded)


def _encoded_chunks(
    plan: PopulationPlan, chunks: range, fmt: str, workers: int
) -> Iterator[tuple[int, dict]]:
    """Encoded chunks in order; with workers > 1 at most workers + 1 are in flight (bounded memory)."""
    first = chunks.start
    if workers <= 1 or len(chunks) <= 1:
        for k in chunks:
            yield _encode_chunk(plan, k, fmt, k == first)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of pyarrow's thread pools
    run = handover.run_name()  # its pid lets a later run remove what a killed one left
    pending: deque = deque()
    # In flight: workers + 1 chunks, and the one the caller is writing.
    slots = handover.Slots(
        run, min(workers + 2, len(chunks)), plan.options.chunk_rows * _SLOT_BYTES_PER_ROW[fmt]
    )
    shared = handover.SharedTable if fmt == "parquet" else handover.SharedBytes

    def submit(k: int) -> None:
        slot = slots.acquire()
        pending.append((k, slot, pool.apply_async(_worker_encode, ((k, fmt, k == first, run, slot),))))

    try:
        with ctx.Pool(workers, initializer=_worker_init, initargs=(plan,)) as pool:
            todo = iter(chunks)
            for k in todo:
                submit(k)
                if len(pending) > workers:
                    break
            while pending:
                _, slot, result = pending[0]
                persons, handles = result.get()
                pending.popleft()
                k = next(todo, None)
                payloads = {name: shared(slots, handle) for name, handle in handles.items()}
                try:
                    if k is not None:
                        submit(k)
                    yield persons, payloads
                finally:  # written, or abandoned: free the chunk's blocks of their own and its slot
                    for payload in payloads.values():
                        payload.discard()
                    slots.release(slot)
    finally:
        if pending:  # abandoned (an error, or the consumer stopped): free what workers left behind
            slots.abandon([k for k, _, _ in pending], TABLES)
        slots.close()


# --- writing ----------------------------------------------------------------------------------------


def _write_chunk(
    files: dict[str, StreamFile], encoded: dict[str, object], persons: int, rows: dict[str, int]
) -> None:
    for name in TABLES:
        payload = encoded[name]
        if isinstance(payload, pa.Table):
            files[name].write_table(payload)  # type: ignore[attr-defined]
            rows[name] += payload.num_rows
        elif isinstance(payload, handover.SharedTable):
            with payload as table:
                files[name].write_table(table)  # type: ignore[attr-defined]
                rows[name] += table.num_rows
                del table
        elif isinstance(payload, handover.SharedBytes):
            with payload as view:
                files[name].write(view)
            rows[name] += persons
        else:
            files[name].write(payload)  # type: ignore[arg-type]
            rows[name] += persons


def _refuse_other_populations(
    out: Path, own_manifest: str, seed: int, size: int, shard_count: int, fmt: str, chunk_rows: int
) -> None:
    """Shards of one population may share a directory; another population may not (unreadable mix)."""
    for path in sorted(out.glob("manifest*.json")):
        if path.name == own_manifest:
            continue  # this very shard, written again: replaced atomically
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
            same = (
                other["seed"],
                other["size"],
                other["shard"]["count"],
                other["format"],
                other["chunks"]["rows"],
            ) == (seed, size, shard_count, fmt, chunk_rows)
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if not same:
            raise InvalidOption(
                f"--out {out} already holds another population ({path.name}); "
                "use another directory or remove its files first"
            )


def _withdraw(manifest: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        manifest.unlink()
        fsync_directory(manifest.parent)  # gone on disk before any file it lists is replaced


def parse_shard(shard: tuple[int, int] | str) -> tuple[int, int]:
    """``"I/N"`` or ``(I, N)`` as a checked pair; InvalidOption for anything else."""
    if isinstance(shard, str):
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not match:
            raise InvalidOption(f"--shard must look like I/N (e.g. 0/4), got {shard!r}")
        shard = (int(match.group(1)), int(match.group(2)))
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise InvalidOption(f"--shard I/N needs 0 <= I < N, got {index}/{count}")
    return index, count


def write_population(
    out_dir: str | os.PathLike[str],
    size: int,
    seed: int,
    *,
    fmt: str = "csv",
    workers: int = 1,
    shard: tuple[int, int] | str = (0, 1),
    defects: str | dict | DefectRates | None = None,
    province: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
    **options,
) -> dict:
    """Generate a population (or one shard of it) into ``out_dir``; returns the manifest written.

    The output is byte-identical whatever ``workers`` is. Files appear only when complete (temp
    file + rename); the manifest is written last, so a directory with a manifest is whole.
    """
    if fmt not in FORMATS:
        raise InvalidOption(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not isinstance(workers, int) or workers < 1:
        raise InvalidOption(f"--workers must be a positive integer, got {workers!r}")
    shard = parse_shard(shard)
    plan = make_plan(size, seed, defects=defects, province=province, chunk_rows=chunk_rows, **options)
    if shard[1] > plan.chunk_count:
        raise InvalidOption(
            f"--shard {shard[0]}/{shard[1]}: the population has only {plan.chunk_count} chunk(s) of "
            f"{plan.options.chunk_rows} rows; use at most {plan.chunk_count} shards "
            "or a smaller --chunk-rows"
        )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidOption(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidOption(f"--out {out}: cannot create the directory ({err.strerror})") from None
    sweep(out)  # a killed run's temporary files and shared memory
    names = file_names(fmt, shard)
    _refuse_other_populations(out, names["manifest"], seed, size, shard[1], fmt, plan.options.chunk_rows)
    chunks = plan.shard_chunks(*shard)
    files: dict[str, StreamFile] = {}
    rows = dict.fromkeys(TABLES, 0)
    try:
        for name in TABLES:
            target = out / names[name]
            files[name] = (
                ParquetFile(target, ENCODED_SCHEMAS[name]) if fmt == "parquet" else StreamFile(target)
            )
        # Closed on the way out, error or not: the generator frees its slots, pool and blocks then.
        with contextlib.closing(_encoded_chunks(plan, chunks, fmt, workers)) as encoded_chunks:
            for persons, encoded in encoded_chunks:
                _write_chunk(files, encoded, persons, rows)
                if progress is not None:
                    progress(persons)
        # The files of a shard are replaced one by one: withdraw its old manifest first, so a run
        # killed half-way leaves a shard without a manifest (unreadable), never a mix of two.
        _withdraw(out / names["manifest"])
        for name in TABLES:
            files[name].commit()
    except BaseException:
        for handle in files.values():
            handle.abort()
        raise
    start = plan.chunk_bounds(chunks.start)[0] if len(chunks) else 0
    stop = plan.chunk_bounds(chunks.stop - 1)[1] if len(chunks) else 0
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": "prakerja-sim population",
        "generator_version": GENERATOR_VERSION,
        "package_version": __version__,
        "seed": seed,
        "size": size,
        "shard": {"index": shard[0], "count": shard[1]},
        "persons": {"start": start, "stop": stop},
        "chunks": {"start": chunks.start, "stop": chunks.stop, "rows": plan.options.chunk_rows},
        "format": fmt,
        "options": plan.options.as_dict(),
        "files": {
            name: {
                "path": names[name],
                "rows": rows[name],
                "bytes": files[name].bytes,
                "sha256": files[name].sha256.hexdigest(),
                "columns": [{"name": f.name, "type": str(f.type)} for f in SCHEMAS[name]],
            }
            for name in TABLES
        },
    }
    atomic_write_text(out / names["manifest"], json.dumps(manifest, indent=2) + "\n")
    return manifest
