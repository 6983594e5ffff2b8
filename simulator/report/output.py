"""What a report records and how it lands: the run's metadata (seed, inputs, versions), JSON with
stable keys, and the JSON and HTML pair written atomically.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from simulator import __version__
from simulator.errors import SimulatorError
from simulator.io.atomic import atomic_write_bytes, atomic_write_text
from simulator.report.formats import is_numpy_number

# Packages whose versions a report records, when installed.
_VERSIONED_PACKAGES = ("numpy", "matplotlib", "locust", "pyarrow", "pillow", "fastapi", "sqlalchemy")


def versions() -> dict[str, str]:
    """Versions of Python, prakerja-sim and the installed libraries that shape a result."""
    from importlib import metadata as importlib_metadata

    found = {"python": platform.python_version(), "prakerja-sim": __version__}
    for name in _VERSIONED_PACKAGES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def report_meta(
    *, seed: int | None, scenario: Any = None, params: Any = None, **extra: Any
) -> dict[str, Any]:
    """The block every report carries: seed, scenario and/or parameters, versions, and ``extra``."""
    meta: dict[str, Any] = {"seed": seed, "versions": versions()}
    if scenario is not None:
        meta["scenario"] = scenario
    if params is not None:
        meta["params"] = params
    meta.update(extra)
    return meta


def json_bytes(data: Any) -> bytes:
    """JSON with sorted keys and 2-space indent; numpy scalars/arrays and Paths are converted."""
    import orjson

    options = (
        orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    )
    return orjson.dumps(data, option=options, default=_json_default) + b"\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    if is_numpy_number(value):
        return value.item()
    raise TypeError(f"cannot put a {type(value).__name__} into a JSON report")


def write_report(
    out_dir: str | os.PathLike[str],
    data: Mapping[str, Any],
    html: str,
    *,
    json_name: str = "report.json",
    html_name: str = "report.html",
) -> tuple[Path, Path]:
    """Write ``data`` as JSON (sorted keys) and ``html`` into ``out_dir``, each atomically.

    Returns ``(json_path, html_path)``. The directory is created if needed. A directory that
    cannot be written (a file in the way, no permission, a full disk) raises
    :class:`~simulator.errors.SimulatorError` naming the path; nothing half-written is left.
    """
    directory = Path(out_dir)
    json_path = directory / json_name
    html_path = directory / html_name
    payload = json_bytes(dict(data))  # fails before anything is written if data cannot be JSON
    for path, write, content in (
        (json_path, atomic_write_bytes, payload),
        (html_path, atomic_write_text, html),
    ):
        try:
            write(path, content)
        except OSError as err:
            raise SimulatorError(f"cannot write {path}: {err.strerror or err}") from err
    return json_path, html_path
