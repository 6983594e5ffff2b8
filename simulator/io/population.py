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
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing import shared_memory
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
from simulator.io.atomic import atomic_write_text, fsync_directory
from simulator.io.encode import encode_csv, encode_jsonl
from simulator.io.files import ParquetFile, StreamFile
from simulator.io.leftovers import SEGMENT_PREFIX, sweep
from simulator.io.manifest import FORMATS, MANIFEST_VERSION, TABLES, file_names
from simulator.io.segments import create_for_owner


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
_WORKER_SLOTS: dict[str, shared_memory.SharedMemory] = {}


def _worker_init(plan: PopulationPlan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan
    from simulator.regions import region_tables

    region_tables()  # load the region lookups once per worker, before the first chunk


# Shared-memory hand-over. A chunk's encoded tables travel from a worker to the main process in a
# *slot*: a block the main process creates once and both sides keep mapped for the whole write,
# so its pages are faulted in and zeroed once, not once per chunk (a fresh 50 MB block per chunk
# cost the workers ~0.5 CPU-s per million people in page faults). A payload that does not fit
# its slot travels in a block of its own, which the main process unlinks once read.
_SLOT_BYTES_PER_ROW = {"parquet": 1_024, "csv": 1_536, "jsonl": 3_072}  # generous: a page costs
# nothing until it is written
_ALIGN = 64


def _shared_name(run: str, k: int, table: str) -> str:
    return f"{SEGMENT_PREFIX}{run}-{k}-{table}"


def _slot_block(name: str) -> shared_memory.SharedMemory:
    block = _WORKER_SLOTS.get(name)
    if block is None:
        # Attached, not created: the main process owns the slot and unlinks it.
        block = _WORKER_SLOTS[name] = shared_memory.SharedMemory(name=name)
    return block


def _ipc_size(table: pa.Table) -> int:
    measure = pa.MockOutputStream()
    _write_ipc(measure, table)
    return measure.size()


def _fill(target: memoryview, payload: object) -> None:
    if isinstance(payload, pa.Table):
        # Written straight into shared memory (one copy); the main process reads it in place.
        buffer = pa.py_buffer(target)
        sink = pa.FixedSizeBufferWriter(buffer)
        _write_ipc(sink, payload)
        sink.close()
        del sink, buffer  # release the exported view
    else:
        view = memoryview(payload).cast("B")  # Arrow buffers export signed bytes
        target[:len(view)] = view


def _worker_encode(args: tuple[int, str, bool, str, str]) -> tuple[int, dict[str, tuple[str, int, int]]]:
    """Encode chunk ``k`` and leave each table in shared memory: ``{table: (block, offset, size)}``.

    Sending ~50 MB through the pool's pipe costs the main process more CPU than making the chunk;
    shared memory costs it one read.
    """
    assert _WORKER_PLAN is not None
    k, fmt, header, run, slot = args
    persons, encoded = _encode_chunk(_WORKER_PLAN, k, fmt, header)
    block = _slot_block(slot)
    offset = 0
    handles = {}
    for name, payload in encoded.items():
        size = _ipc_size(payload) if isinstance(payload, pa.Table) else len(memoryview(payload).cast("B"))
        if offset + size <= block.size:
            target = block.buf[offset:offset + size]
            _fill(target, payload)
            target.release()
            handles[name] = (slot, offset, size)
            offset += -(-size // _ALIGN) * _ALIGN
        else:  # bigger than the slot's room: a block of its own
            own = create_for_owner(_shared_name(run, k, name), max(size, 1))  # the main process unlinks it
            target = own.buf[:size]
            _fill(target, payload)
            target.release()
            own.close()
            handles[name] = (own.name, 0, size)
    return persons, handles


def _write_ipc(sink: pa.NativeFile, table: pa.Table) -> None:
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)


class _Slots:
    """The main process's slots: created at the start of a parallel write, unlinked at its end."""

    def __init__(self, run: str, count: int, capacity: int):
        self.blocks: dict[str, shared_memory.SharedMemory] = {}
        self.free: list[str] = []
        try:
            for i in range(count):
                block = shared_memory.SharedMemory(name=f"{SEGMENT_PREFIX}{run}-slot{i}", create=True,
                                                   size=capacity)
                self.blocks[block.name] = block
                self.free.append(block.name)
        except BaseException:
            self.close()
            raise

    def acquire(self) -> str:
        return self.free.pop()

    def release(self, name: str) -> None:
        self.free.append(name)

    def close(self) -> None:
        for block in self.blocks.values():
            with contextlib.suppress(BufferError):
                block.close()
            with contextlib.suppress(FileNotFoundError, OSError):
                block.unlink()
        self.blocks.clear()


class _SharedBytes:
    """An encoded table a worker left in shared memory: ``with`` it to get a view of its bytes.

    In a slot, the view is released on exit (the slot is reused); in a block of its own, the block
    is unlinked too.
    """

    def __init__(self, slots: _Slots, handle: tuple[str, int, int]):
        self.name, self.offset, self.size = handle
        self.in_slot = self.name in slots.blocks
        self._slots = slots
        self._block: shared_memory.SharedMemory | None = None
        self._view: memoryview | None = None

    def __enter__(self) -> memoryview:
        if self.in_slot:
            self._block = self._slots.blocks[self.name]
        else:
            self._block = shared_memory.SharedMemory(name=self.name)
        self._view = self._block.buf[self.offset:self.offset + self.size]
        return self._view

    def __exit__(self, *exc: object) -> None:
        assert self._block is not None and self._view is not None
        self._view.release()  # BufferError if anything still points into the slot
        if not self.in_slot:
            self._block.close()
            self.discard()

    def discard(self) -> None:
        """Free a block of its own if it was never read (a write abandoned half-way)."""
        if not self.in_slot and self.name:
            with contextlib.suppress(FileNotFoundError, OSError):
                block = shared_memory.SharedMemory(name=self.name)
                block.close()
                block.unlink()
            self.name = ""


class _SharedTable(_SharedBytes):
    """A table a worker left in shared memory as an Arrow IPC stream: ``with`` it to read it in place."""

    def __enter__(self) -> pa.Table:  # type: ignore[override]
        view = super().__enter__()
        with pa.ipc.open_stream(pa.py_buffer(view)) as reader:
            return reader.read_all()  # zero-copy: its buffers point into shared memory

    def __exit__(self, *exc: object) -> None:
        # The caller has dropped the table; collect any reference cycle still exporting the view.
        try:
            super().__exit__(*exc)
        except BufferError:
            import gc

            gc.collect()
            super().__exit__(*exc)


def _free_shared(run: str, chunks: list[int]) -> None:
    """Unlink the blocks of their own of chunks still in flight when a write is abandoned."""
    for k in chunks:
        for name in TABLES:
            with contextlib.suppress(FileNotFoundError, OSError):
                block = shared_memory.SharedMemory(name=_shared_name(run, k, name))
                block.close()
                block.unlink()


def _encoded_chunks(plan: PopulationPlan, chunks: range, fmt: str,
                    workers: int) -> Iterator[tuple[int, dict]]:
    """Encoded chunks in order; with workers > 1 at most workers + 1 are in flight (bounded memory)."""
    first = chunks.start
    if workers <= 1 or len(chunks) <= 1:
        for k in chunks:
            yield _encode_chunk(plan, k, fmt, k == first)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of pyarrow's thread pools
    run = f"{os.getpid()}-{secrets.token_hex(4)}"  # the pid lets a later run remove a killed one's
    pending: deque = deque()
    # In flight: workers + 1 chunks, and the one the caller is writing.
    slots = _Slots(run, min(workers + 2, len(chunks)), plan.options.chunk_rows * _SLOT_BYTES_PER_ROW[fmt])
    shared = _SharedTable if fmt == "parquet" else _SharedBytes

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
            _free_shared(run, [k for k, _, _ in pending])
        slots.close()


# --- writing ----------------------------------------------------------------------------------------


def _write_chunk(files: dict[str, StreamFile], encoded: dict[str, object], persons: int,
                 rows: dict[str, int]) -> None:
    for name in TABLES:
        payload = encoded[name]
        if isinstance(payload, pa.Table):
            files[name].write_table(payload)  # type: ignore[attr-defined]
            rows[name] += payload.num_rows
        elif isinstance(payload, _SharedTable):
            with payload as table:
                files[name].write_table(table)  # type: ignore[attr-defined]
                rows[name] += table.num_rows
                del table
        elif isinstance(payload, _SharedBytes):
            with payload as view:
                files[name].write(view)
            rows[name] += persons
        else:
            files[name].write(payload)  # type: ignore[arg-type]
            rows[name] += persons


def _refuse_other_populations(out: Path, own_manifest: str, seed: int, size: int, shard_count: int,
                              fmt: str, chunk_rows: int) -> None:
    """Shards of one population may share a directory; another population may not (unreadable mix)."""
    for path in sorted(out.glob("manifest*.json")):
        if path.name == own_manifest:
            continue  # this very shard, written again: replaced atomically
        try:
            other = json.loads(path.read_text(encoding="utf-8"))
            same = (other["seed"], other["size"], other["shard"]["count"], other["format"],
                    other["chunks"]["rows"]) == (seed, size, shard_count, fmt, chunk_rows)
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if not same:
            raise InvalidOption(f"--out {out} already holds another population ({path.name}); "
                                "use another directory or remove its files first")


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
            "or a smaller --chunk-rows")
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
            files[name] = (ParquetFile(target, ENCODED_SCHEMAS[name]) if fmt == "parquet"
                           else StreamFile(target))
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


