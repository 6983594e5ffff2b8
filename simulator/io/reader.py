"""Reading a population directory: every file checked against its manifest (size, sha256) before its
first row is read, then streamed as batches of the contract's schema, with errors naming file, row
and column. The one reader every command goes through.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from simulator.errors import InvalidInputFile, InvalidOption
from simulator.generators.schema import SCHEMAS
from simulator.io.manifest import FORMATS, TABLES, load_manifests

_DIGITS16 = r"^[0-9]{16}$"


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
        raise InvalidInputFile(
            f"{path}: {size} bytes, the manifest says {entry['bytes']}: truncated or changed"
        )
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
                f"{path}: unknown file type {path.suffix!r} (expected .csv, .jsonl or .parquet)"
            )
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
        raise InvalidInputFile(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(expected the {len(schema)} columns of the population contract)"
        )


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
                column_types={f.name: f.type for f in read_schema},
                include_columns=schema.names,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            )
            reader = pacsv.open_csv(
                path, read_options=pacsv.ReadOptions(block_size=block_size), convert_options=convert
            )
        elif fmt == "jsonl":
            _check_columns(path, _jsonl_keys(path), schema)
            reader = pajson.open_json(
                path,
                read_options=pajson.ReadOptions(block_size=block_size),
                parse_options=pajson.ParseOptions(
                    explicit_schema=read_schema, unexpected_field_behavior="ignore"
                ),
            )
        else:
            parquet = pq.ParquetFile(path)
            _check_columns(path, parquet.schema_arrow.names, schema)
            reader = parquet.iter_batches(batch_size=max(1, block_size // 512), columns=schema.names)
        for batch in reader:
            yield batch.select(schema.names) if fmt == "parquet" else batch
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        raise _arrow_error(path, err) from None


def _conform(
    batch: pa.RecordBatch, schema: pa.Schema, path: Path, name: str, first_row: int
) -> pa.RecordBatch:
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
                raise InvalidInputFile(
                    f"{path}: row {first_row + bad}, column {field.name}: "
                    f"{column[bad].as_py()!r} is not a {field.type}"
                ) from None
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
            raise InvalidInputFile(
                f"{path}: row {first_row + bad}, column {column_name}: "
                f"{values[bad].as_py()!r} is not 16 digits"
            )
    return out


def _first_bad_cast(column: pa.Array, type_: pa.DataType) -> int:
    for i, value in enumerate(column.to_pylist()):  # only on the error path
        try:
            pa.array([value]).cast(type_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return i
    return 0


def iter_batches(
    pop_dir: str | os.PathLike[str], name: str, *, batch_rows: int = 65_536, verify: bool = True
) -> Iterator[pa.RecordBatch]:
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


def _hash_file(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest
