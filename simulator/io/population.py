"""Population files: the streaming, atomic writer (csv / jsonl / parquet + manifest.json) and the
readers that check a population directory against its manifest before anyone loads it.

Files of one shard: ``residents.<ext>``, ``applicants.<ext>`` and ``manifest.json``; with
``shard=(i, n)``, n > 1, the names carry ``.shard-i-of-n`` so all shards can share a directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from simulator import __version__
from simulator.errors import InvalidInputFile, InvalidOption
from simulator.generators.defects import DefectRates
from simulator.generators.population import (
    DEFAULT_CHUNK_ROWS,
    ENCODED_SCHEMAS,
    GENERATOR_VERSION,
    SCHEMAS,
    PopulationPlan,
    generate_chunk,
    make_plan,
)
from simulator.io import handover
from simulator.io.atomic import AtomicFile, atomic_write_text, fsync_directory
from simulator.io.leftovers import sweep

FORMATS: dict[str, str] = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
TABLES = ("residents", "applicants")
MANIFEST_VERSION = 1
_DIGITS16 = r"^[0-9]{16}$"


def file_names(fmt: str, shard: tuple[int, int]) -> dict[str, str]:
    """File names of one shard: ``{"residents": ..., "applicants": ..., "manifest": ...}``."""
    index, count = shard
    tag = "" if count == 1 else f".shard-{index}-of-{count}"
    return {"residents": f"residents{tag}.{fmt}", "applicants": f"applicants{tag}.{fmt}",
            "manifest": f"manifest{tag}.json"}


# --- encoding one chunk (runs in worker processes) ----------------------------------------------


def _needs_escape(text: pa.Array) -> bool:
    # A byte scan of the string data: quotes, backslashes or control characters need escaping.
    if len(text) == 0:
        return False
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return bool(((data < 0x20) | (data == 0x22) | (data == 0x5C)).any())


def _json_values(column: pa.Array) -> tuple[pa.Array, bool]:
    """Each value of ``column`` as JSON text, and whether it goes between quotes."""
    t = column.type
    if pa.types.is_boolean(t):
        return pc.if_else(column, "true", "false"), False
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return column.cast(pa.string()), False
    text = column.cast(pa.string())
    if _needs_escape(text):
        for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
            text = pc.replace_substring(text, raw, escaped)
        if pc.any(pc.match_substring_regex(text, "[\\x00-\\x1f]")).as_py():
            # Rare control characters: let the json module spell them (\u0001 ...).
            raw_values = column.cast(pa.string()).to_pylist()
            text = pa.array([json.dumps(v, ensure_ascii=False)[1:-1] for v in raw_values], type=pa.string())
    return text, True


def encode_jsonl(table: pa.Table) -> bytes:
    """JSON Lines for a table, built column-wise (no Python loop per row); key order = columns.

    Values are never null in population tables (the contract has no optional column).
    """
    if table.num_rows == 0:
        return b""
    parts: list[pa.Array | str] = []
    closing = ""  # the closing quote of the previous value travels with the next key
    for i, name in enumerate(table.column_names):
        values, quoted = _json_values(table.column(i).combine_chunks())
        if values.null_count:
            raise ValueError(f"column {name} has nulls; population tables have none")
        parts.append(closing + ("{" if i == 0 else ",") + json.dumps(name) + ":" + ('"' if quoted else ""))
        parts.append(values)
        closing = '"' if quoted else ""
    parts.append(closing + "}\n")
    lines = pc.binary_join_element_wise(*parts, "")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()


def encode_csv(table: pa.Table, header: bool) -> pa.Buffer:
    """RFC 4180 CSV (strings quoted, so leading zeros survive spreadsheets' guessing)."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=header))
    return sink.getvalue()


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
    from simulator.generators.regions import region_tables

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


def _encoded_chunks(plan: PopulationPlan, chunks: range, fmt: str,
                    workers: int) -> Iterator[tuple[int, dict]]:
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


class _StreamFile(AtomicFile):
    """A population file written through a temporary name and renamed on commit; hashes what it writes."""

    def __init__(self, target: Path):
        super().__init__(target)
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self.sha256.update(data)
        self.bytes += len(data)
        return len(data)


# Columns with many distinct values gain nothing from Parquet's dictionary pages, and statistics
# cost a third of the encoding time: keep them for the columns people filter on.
_HIGH_CARDINALITY = {"nik", "kk", "email", "phone", "password", "full_name", "applicant_id", "address",
                     "birth_date"}
_STATISTICS = ["applicant_id", "province_code", "regency_code", "birth_date", "expected_outcome", "defect"]


class _HashingSink:
    """What Parquet's writer writes to: every byte goes through :meth:`_StreamFile.write` (hashed)."""

    closed = False

    def __init__(self, stream: _StreamFile):
        self.stream = stream

    def write(self, data: bytes) -> int:
        self.stream.write(data)
        return len(data)

    def tell(self) -> int:
        return self.stream.bytes

    def flush(self) -> None:
        self.stream.handle.flush()

    def close(self) -> None:
        self.closed = True


class _ParquetFile(_StreamFile):
    """Parquet from chunks whose small-table columns come dictionary-encoded (``ENCODED_SCHEMAS``).

    The Arrow schema is not stored in the file: readers see plain strings, as in the contract.
    Snappy, Parquet's usual codec: about 28% less CPU than zstd here for ~40% larger files
    (~160 MB per million people against ~115 MB), and the writer is the main process's work.
    """

    def __init__(self, target: Path, schema: pa.Schema):
        super().__init__(target)
        # Population columns are never null: REQUIRED columns spare the writer the definition
        # levels (~15% of its CPU); readers see the same values.
        schema = self.schema = pa.schema([f.with_nullable(False) for f in schema])
        self.writer = pq.ParquetWriter(
            _HashingSink(self), schema, compression="snappy", store_schema=False,
            use_dictionary=[f.name for f in schema if f.name not in _HIGH_CARDINALITY],
            write_statistics=[name for name in _STATISTICS if name in schema.names])

    def write_table(self, table: pa.Table) -> None:
        for name, column in zip(table.column_names, table.columns, strict=True):
            if column.null_count:
                raise ValueError(f"column {name} has nulls; population tables have none")
        self.writer.write_table(pa.Table.from_arrays(table.columns, schema=self.schema))

    def commit(self) -> None:
        self.writer.close()
        super().commit()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        super().abort()


def _hash_file(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def _write_chunk(files: dict[str, _StreamFile], encoded: dict[str, object], persons: int,
                 rows: dict[str, int]) -> None:
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
    files: dict[str, _StreamFile] = {}
    rows = dict.fromkeys(TABLES, 0)
    try:
        for name in TABLES:
            target = out / names[name]
            files[name] = (_ParquetFile(target, ENCODED_SCHEMAS[name]) if fmt == "parquet"
                           else _StreamFile(target))
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


# --- reading ------------------------------------------------------------------------------------------


_MANIFEST_FIELDS = {"manifest_version": int, "seed": int, "size": int, "format": str, "shard": dict,
                    "chunks": dict, "files": dict}
_SHARD_FIELDS = {"index": int, "count": int}
_CHUNK_FIELDS = {"start": int, "stop": int, "rows": int}
_FILE_FIELDS = {"path": str, "rows": int, "bytes": int, "sha256": str}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fields(value: object, spec: dict[str, type], where: str, path: Path) -> dict:
    """``value`` as a dict holding every key of ``spec`` with a value of its type (no bool for int)."""
    if not isinstance(value, dict):
        raise InvalidInputFile(f"{path}: manifest {where or 'root'} must be a JSON object")
    for key, kind in spec.items():
        if key not in value:
            raise InvalidInputFile(f"{path}: manifest has no '{where}{key}' key")
        item = value[key]
        if type(item) is not kind:
            expected = {int: "an integer", str: "a string", dict: "an object"}[kind]
            raise InvalidInputFile(f"{path}: manifest '{where}{key}' must be {expected}, got {item!r}")
    return value


def check_manifest(raw: object, path: Path) -> dict:
    """The one schema of a population manifest; InvalidInputFile naming the key that breaks it.

    File paths must be plain names of files in the manifest's own directory (a symlink leading out
    of it is refused too): a manifest cannot make a reader open anything else.
    """
    manifest = _fields(raw, _MANIFEST_FIELDS, "", path)
    if manifest["manifest_version"] != MANIFEST_VERSION:
        raise InvalidInputFile(f"{path}: manifest_version {manifest['manifest_version']} is not "
                               f"{MANIFEST_VERSION} (written by another version of the generator)")
    if manifest["format"] not in FORMATS:
        raise InvalidInputFile(f"{path}: manifest 'format' must be one of {', '.join(FORMATS)}, "
                               f"got {manifest['format']!r}")
    if manifest["size"] < 0:
        raise InvalidInputFile(f"{path}: manifest 'size' must be at least 0, got {manifest['size']}")
    shard = _fields(manifest["shard"], _SHARD_FIELDS, "shard.", path)
    if not 0 <= shard["index"] < shard["count"]:
        raise InvalidInputFile(f"{path}: manifest shard {shard['index']}/{shard['count']} needs "
                               "0 <= index < count")
    _fields(manifest["chunks"], _CHUNK_FIELDS, "chunks.", path)
    root = path.parent.resolve()
    for name in TABLES:
        if name not in manifest["files"]:
            raise InvalidInputFile(f"{path}: manifest lists no {name!r} file")
        entry = _fields(manifest["files"][name], _FILE_FIELDS, f"files.{name}.", path)
        if entry["rows"] < 0 or entry["bytes"] < 0:
            raise InvalidInputFile(f"{path}: manifest files.{name} has a negative row or byte count")
        if not _SHA256.fullmatch(entry["sha256"]):
            raise InvalidInputFile(f"{path}: manifest files.{name}.sha256 is not 64 hex digits")
        file_name = entry["path"]
        if (file_name in ("", ".", "..") or "/" in file_name or "\\" in file_name or "\0" in file_name
                or (root / file_name).resolve().parent != root):
            raise InvalidInputFile(f"{path}: manifest files.{name}.path {file_name!r} is not a file of "
                                   f"{path.parent} (paths outside the population are refused)")
    return manifest


def load_manifests(pop_dir: str | os.PathLike[str]) -> list[dict]:
    """The manifests of a population directory, checked and in shard order; checks they belong together."""
    root = Path(pop_dir)
    if not root.is_dir():
        raise InvalidInputFile(f"{root}: not a directory (expected a population written by `population`)")
    paths = sorted(root.glob("manifest*.json"))
    if not paths:
        raise InvalidInputFile(f"{root}: no manifest.json (expected a population written by `population`; "
                               "a rewrite that was stopped half-way leaves none)")
    manifests = []
    for path in paths:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InvalidInputFile(f"{path}: not a readable JSON manifest ({err})") from None
        manifest = check_manifest(raw, path)
        manifest["_path"] = str(path)
        manifests.append(manifest)
    manifests.sort(key=lambda m: m["shard"]["index"])
    first = manifests[0]

    def population(m: dict) -> tuple:
        return m["seed"], m["size"], m["shard"]["count"], m["format"], m["chunks"]["rows"]

    for previous, m in zip(manifests, manifests[1:], strict=False):
        if population(m) != population(first):
            raise InvalidInputFile(f"{m['_path']}: belongs to another population than {first['_path']} "
                                   "(seed, size, shard count, format or chunk size differ)")
        if m["shard"]["index"] == previous["shard"]["index"]:
            raise InvalidInputFile(f"{m['_path']} and {previous['_path']} both claim shard "
                                   f"{m['shard']['index']}/{m['shard']['count']}")
    return manifests


def check_population(pop_dir: str | os.PathLike[str], tables: tuple[str, ...] = TABLES) -> list[dict]:
    """Check a population directory as every reader does before loading it (manifests, then each
    file's size and sha256); returns its manifests. Nothing is parsed."""
    for name in tables:
        _files(pop_dir, name, verify=True)
    return load_manifests(pop_dir)


def _verify_file(path: Path, entry: dict, manifest_path: str) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidInputFile(f"{path}: missing (listed in {manifest_path})") from None
    if not path.is_file():
        raise InvalidInputFile(f"{path}: not a file (listed in {manifest_path})")
    if size != entry["bytes"]:
        raise InvalidInputFile(f"{path}: {size} bytes, the manifest says {entry['bytes']}: "
                               "truncated or changed")
    if _hash_file(path).hexdigest() != entry["sha256"]:
        raise InvalidInputFile(f"{path}: sha256 differs from {manifest_path}: the file was changed")


def _files(pop_dir: str | os.PathLike[str], name: str, verify: bool) -> list[tuple[Path, str]]:
    if name not in SCHEMAS:
        raise InvalidOption(f"table must be one of {', '.join(SCHEMAS)}, got {name!r}")
    path = Path(pop_dir)
    if path.is_file():  # a single file given directly (library use): format from its extension
        fmt = path.suffix.lstrip(".")
        if fmt not in FORMATS:
            raise InvalidInputFile(
                f"{path}: unknown file type {path.suffix!r} (expected .csv, .jsonl or .parquet)")
        return [(path, fmt)]
    out = []
    for manifest in load_manifests(path):
        entry = manifest["files"][name]
        file_path = path / entry["path"]
        if verify:
            _verify_file(file_path, entry, manifest["_path"])
        elif not file_path.is_file():
            raise InvalidInputFile(f"{file_path}: missing (listed in {manifest['_path']})")
        out.append((file_path, manifest["format"]))
    return out


def _read_schema(schema: pa.Schema) -> pa.Schema:
    # CSV and JSON carry dates as ISO text: read them as strings, then cast with a clear error.
    return pa.schema([(f.name, pa.string() if pa.types.is_date(f.type) else f.type) for f in schema])


def _csv_header(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        line = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")
    return [c.strip().strip('"') for c in line.split(",")] if line else []


def _jsonl_keys(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        line = handle.readline()
    if not line.strip():
        return []
    try:
        first = json.loads(line)
    except json.JSONDecodeError as err:
        raise InvalidInputFile(f"{path}: row 1: not a JSON object ({err.msg})") from None
    if not isinstance(first, dict):
        raise InvalidInputFile(f"{path}: row 1: not a JSON object")
    return list(first)


def _check_columns(path: Path, present: list[str], schema: pa.Schema) -> None:
    missing = [f.name for f in schema if f.name not in present]
    if missing:
        raise InvalidInputFile(f"{path}: missing column(s) {', '.join(missing)} "
                               f"(expected the {len(schema)} columns of the population contract)")


def _arrow_error(path: Path, err: Exception) -> InvalidInputFile:
    message = str(err).splitlines()[0]
    return InvalidInputFile(f"{path}: {message}")


def _reader(path: Path, fmt: str, schema: pa.Schema, block_size: int) -> Iterator[pa.RecordBatch]:
    read_schema = _read_schema(schema)
    try:
        if fmt == "csv":
            header = _csv_header(path)
            _check_columns(path, header, schema)
            convert = pacsv.ConvertOptions(
                column_types={f.name: f.type for f in read_schema}, include_columns=schema.names,
                strings_can_be_null=False, quoted_strings_can_be_null=False)
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=block_size),
                                    convert_options=convert)
        elif fmt == "jsonl":
            _check_columns(path, _jsonl_keys(path), schema)
            reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=block_size),
                                      parse_options=pajson.ParseOptions(explicit_schema=read_schema,
                                                                        unexpected_field_behavior="ignore"))
        else:
            parquet = pq.ParquetFile(path)
            _check_columns(path, parquet.schema_arrow.names, schema)
            reader = parquet.iter_batches(batch_size=max(1, block_size // 512), columns=schema.names)
        for batch in reader:
            yield batch.select(schema.names) if fmt == "parquet" else batch
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        raise _arrow_error(path, err) from None


def _conform(batch: pa.RecordBatch, schema: pa.Schema, path: Path, name: str,
             first_row: int) -> pa.RecordBatch:
    """Cast to the contract's types and check the identity columns' shape; errors name file/row/column."""
    columns = []
    for field in schema:
        column = batch.column(field.name)
        if column.null_count:
            row = first_row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise InvalidInputFile(f"{path}: row {row}, column {field.name}: empty value")
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad = _first_bad_cast(column, field.type)
                raise InvalidInputFile(f"{path}: row {first_row + bad}, column {field.name}: "
                                       f"{column[bad].as_py()!r} is not a {field.type}") from None
        columns.append(column)
    out = pa.RecordBatch.from_arrays(columns, schema=schema)
    checked = ["nik", "kk"] if name == "residents" else ["kk"]
    for column_name in checked + (["nik"] if name == "applicants" else []):
        values = out.column(column_name)
        ok = pc.match_substring_regex(values, _DIGITS16)
        if name == "applicants":
            # A malformed NIK or a wrong KK is the point of some defects; others must be well-formed.
            allowed = pc.is_in(out.column("defect"), pa.array(["nik_malformed"]))
            ok = pc.or_(ok, allowed)
        if not pc.all(ok).as_py():
            bad = int(np.flatnonzero(~ok.to_numpy(zero_copy_only=False))[0])
            raise InvalidInputFile(f"{path}: row {first_row + bad}, column {column_name}: "
                                   f"{values[bad].as_py()!r} is not 16 digits")
    return out


def _first_bad_cast(column: pa.Array, type_: pa.DataType) -> int:
    for i, value in enumerate(column.to_pylist()):  # only on the error path
        try:
            pa.array([value]).cast(type_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return i
    return 0


def iter_batches(pop_dir: str | os.PathLike[str], name: str, *, batch_rows: int = 65_536,
                 verify: bool = True) -> Iterator[pa.RecordBatch]:
    """Stream ``residents`` or ``applicants`` of a population (all its shards, in order) as batches.

    The one reader every command goes through: each file's size and sha256 are checked against
    the manifest before its first row is read (``verify=False`` is for tests of the row checks).
    Every batch has the contract's schema; rows are numbered from 1 (after the CSV header) in
    error messages.
    """
    schema = SCHEMAS[name] if name in SCHEMAS else None
    files = _files(pop_dir, name, verify)
    assert schema is not None
    for path, fmt in files:
        row = 1
        for batch in _reader(path, fmt, schema, block_size=1 << 22):
            batch = _conform(batch, schema, path, name, row)
            row += batch.num_rows
            for offset in range(0, batch.num_rows, batch_rows):
                yield batch.slice(offset, batch_rows)


def read_table(pop_dir: str | os.PathLike[str], name: str, *, verify: bool = True) -> pa.Table:
    """The whole ``residents`` or ``applicants`` table of a population (checked against its manifest)."""
    schema = SCHEMAS.get(name)
    if schema is None:
        raise InvalidOption(f"table must be one of {', '.join(SCHEMAS)}, got {name!r}")
    batches = list(iter_batches(pop_dir, name, batch_rows=1 << 30, verify=verify))
    return pa.Table.from_batches(batches, schema=schema)
