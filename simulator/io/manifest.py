"""The population manifest: file names of a shard, the one schema of ``manifest.json`` and the check
that a directory's manifests belong together. Written by :mod:`simulator.io.population`, read by
:mod:`simulator.io.reader`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from simulator.errors import InvalidInputFile

FORMATS: dict[str, str] = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
TABLES = ("residents", "applicants")
MANIFEST_VERSION = 1


def file_names(fmt: str, shard: tuple[int, int]) -> dict[str, str]:
    """File names of one shard: ``{"residents": ..., "applicants": ..., "manifest": ...}``."""
    index, count = shard
    tag = "" if count == 1 else f".shard-{index}-of-{count}"
    return {
        "residents": f"residents{tag}.{fmt}",
        "applicants": f"applicants{tag}.{fmt}",
        "manifest": f"manifest{tag}.json",
    }


_MANIFEST_FIELDS = {
    "manifest_version": int,
    "seed": int,
    "size": int,
    "format": str,
    "shard": dict,
    "chunks": dict,
    "files": dict,
}
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
        raise InvalidInputFile(
            f"{path}: manifest_version {manifest['manifest_version']} is not "
            f"{MANIFEST_VERSION} (written by another version of the generator)"
        )
    if manifest["format"] not in FORMATS:
        raise InvalidInputFile(
            f"{path}: manifest 'format' must be one of {', '.join(FORMATS)}, got {manifest['format']!r}"
        )
    if manifest["size"] < 0:
        raise InvalidInputFile(f"{path}: manifest 'size' must be at least 0, got {manifest['size']}")
    shard = _fields(manifest["shard"], _SHARD_FIELDS, "shard.", path)
    if not 0 <= shard["index"] < shard["count"]:
        raise InvalidInputFile(
            f"{path}: manifest shard {shard['index']}/{shard['count']} needs 0 <= index < count"
        )
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
        if (
            file_name in ("", ".", "..")
            or "/" in file_name
            or "\\" in file_name
            or "\0" in file_name
            or (root / file_name).resolve().parent != root
        ):
            raise InvalidInputFile(
                f"{path}: manifest files.{name}.path {file_name!r} is not a file of "
                f"{path.parent} (paths outside the population are refused)"
            )
    return manifest


def load_manifests(pop_dir: str | os.PathLike[str]) -> list[dict]:
    """The manifests of a population directory, checked and in shard order; checks they belong together."""
    root = Path(pop_dir)
    if not root.is_dir():
        raise InvalidInputFile(f"{root}: not a directory (expected a population written by `population`)")
    paths = sorted(root.glob("manifest*.json"))
    if not paths:
        raise InvalidInputFile(
            f"{root}: no manifest.json (expected a population written by `population`; "
            "a rewrite that was stopped half-way leaves none)"
        )
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
            raise InvalidInputFile(
                f"{m['_path']}: belongs to another population than {first['_path']} "
                "(seed, size, shard count, format or chunk size differ)"
            )
        if m["shard"]["index"] == previous["shard"]["index"]:
            raise InvalidInputFile(
                f"{m['_path']} and {previous['_path']} both claim shard "
                f"{m['shard']['index']}/{m['shard']['count']}"
            )
    return manifests
