"""A TOML table being validated: typed values out, one line naming file and key for anything wrong.

Scenario files (simulator.surge.scenario) and target profiles (simulator.surge.profile.format) are read
through it, so both refuse an unknown key, a wrong type or a value out of range the same way:
``FILE: key 'wave.quota': expected an integer >= 1, got 0``.
"""

from __future__ import annotations

import importlib.resources
import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from simulator.errors import InvalidInputFile


class TomlTable:
    """A TOML table being validated: hands out typed values and remembers which keys were read."""

    def __init__(self, source: str, prefix: str, data: Mapping[str, Any]):
        self.source, self.prefix, self.data = source, prefix, data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, expected: str, got: Any = None, *, show: bool = True) -> InvalidInputFile:
        shown = f", got {got!r}" if show else ""
        return InvalidInputFile(f"{self.source}: key '{self.key(name)}': expected {expected}{shown}")

    def table(self, name: str, required: bool = False) -> TomlTable:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "a table [" + self.key(name) + "]", show=False)
            return TomlTable(self.source, self.key(name) + ".", {})
        value = self.data[name]
        if not isinstance(value, dict):
            raise self.fail(name, "a table", value)
        return TomlTable(self.source, self.key(name) + ".", value)

    def get(self, name: str, default: Any = ..., *, kind: str, check: Callable[[Any], Any]) -> Any:
        """Return ``check(value)``; ``check`` raises ValueError when the value is not a ``kind``."""
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                raise InvalidInputFile(f"{self.source}: key '{self.key(name)}' is required ({kind})")
            return default
        value = self.data[name]
        try:
            return check(value)
        except (TypeError, ValueError) as err:
            raise self.fail(name, kind, value) from err

    def number(
        self,
        name: str,
        default: Any = ...,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        kind = "a number" + range_text(low, high, low_open, high_open)

        def check(value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise TypeError
            if low is not None and (value < low or (low_open and value == low)):
                raise ValueError
            if high is not None and (value > high or (high_open and value == high)):
                raise ValueError
            return float(value)

        return self.get(name, default, kind=kind, check=check)

    def integer(self, name: str, default: Any = ..., *, low: int | None = None) -> int:
        kind = "an integer" + ("" if low is None else f" >= {low}")

        def check(value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            if low is not None and value < low:
                raise ValueError
            return value

        return self.get(name, default, kind=kind, check=check)

    def string(self, name: str, default: Any = ..., *, choices: tuple[str, ...] | None = None) -> str:
        kind = "a string" if choices is None else "one of " + ", ".join(f'"{c}"' for c in choices)

        def check(value: Any) -> str:
            if not isinstance(value, str):
                raise TypeError
            if choices is not None and value not in choices:
                raise ValueError
            return value

        return self.get(name, default, kind=kind, check=check)

    def boolean(self, name: str, default: Any = ...) -> bool:
        def check(value: Any) -> bool:
            if not isinstance(value, bool):
                raise TypeError
            return value

        return self.get(name, default, kind="true or false", check=check)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise InvalidInputFile(
                f"{self.source}: unknown key '{self.key(unknown[0])}' (expected one of: {known})"
            )


def range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return (" " + " and ".join(parts)) if parts else ""


def read_toml_source(
    path_or_name: str | Path, package: str, *, file_noun: str, builtin_noun: str, builtins: list[str]
) -> tuple[str, str]:
    """(text, source) of a TOML file, or of the built-in ``NAME.toml`` shipped in ``package``.

    ``file_noun`` ("scenario file") and ``builtin_noun`` ("built-in scenario") word the one-line
    errors; ``builtins`` lists the names a user could have meant.
    """
    path = Path(path_or_name)
    if path.is_file():
        source = str(path)
        try:
            return path.read_text(encoding="utf-8"), source
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInputFile(f"{source}: cannot read the {file_noun} ({err})") from err
    name = str(path_or_name)
    resource = importlib.resources.files(package) / f"{name}.toml"
    if path.suffix or "/" in name or not resource.is_file():
        raise InvalidInputFile(
            f"{path_or_name}: no such {file_noun}, and no {builtin_noun} of that name "
            f"(built-ins: {', '.join(builtins)})"
        )
    return resource.read_text(encoding="utf-8"), f"builtin:{name}"


def parse_toml(text: str, source: str) -> TomlTable:
    """The document's root table, ready to be read; ``source`` names it in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInputFile(f"{source}: not valid TOML ({err})") from err
    return TomlTable(source, "", document)


__all__ = ["TomlTable", "parse_toml", "range_text", "read_toml_source"]
