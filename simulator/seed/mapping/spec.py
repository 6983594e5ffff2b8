"""A mapping file read into tables and column expressions, each remembering its key for error messages.

Only the file's shape is checked here (known keys, one operation per column, values of the right
type); whether it fits the database is :mod:`simulator.seed.mapping.check`'s job.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import InvalidInputFile
from simulator.seed.mapping.sources import ACCOUNT_SOURCES, SOURCES
from simulator.seed.states import STATES, FunnelState

MAPPING_VERSION = 1

OPERATIONS = ("copy", "template", "const", "sequence", "uuid", "ref", "choice", "password", "default", "todo")
"""Exactly one of these keys makes a column's expression (a bare value is a ``const``)."""

MODIFIERS = ("case", "phone", "format", "null", "max_length", "step", "weights", "by", "match",
             "rounds", "iterations", "cost")  # fmt: skip
CASES = ("upper", "lower", "title")
PHONE_FORMATS = ("08", "+62", "62")
UUID_KINDS = ("v4", "ordered")
PASSWORD_SCHEMES = ("bcrypt", "pbkdf2_sha256", "argon2id", "plain")
_TABLE_KEYS = ("from", "states", "min_state", "where", "columns", "rows")


class MappingError(InvalidInputFile):
    """A mapping that cannot be used; the message is one line naming the mapping key at fault."""


@dataclass(frozen=True)
class Expression:
    """How one column is filled: an operation, its argument, its modifiers, and where it was written."""

    key: str  # e.g. tables.auth_user.columns.email
    op: str
    arg: Any
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass
class TableSpec:
    name: str
    key: str  # tables.<name>
    source: str
    states: tuple[str, ...] | None = None  # accounts in these states only (None: all)
    where: dict[str, list[Any]] = field(default_factory=dict)
    columns: dict[str, Expression] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)  # a lookup table's fixed rows


@dataclass
class Mapping:
    tables: dict[str, TableSpec]
    path: str = "<mapping>"
    empty: tuple[str, ...] = ()  # tables --truncate empties too, without filling them


def load_mapping(path: str | Path) -> Mapping:
    """Read a mapping file; a file that is not TOML or not a mapping raises :class:`MappingError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise MappingError(f"--mapping {path}: cannot read it ({err.strerror or err})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MappingError(f"--mapping {path}: not valid TOML ({err})") from None
    return parse_mapping(document, str(path))


def parse_mapping(document: dict[str, Any], label: str = "<mapping>") -> Mapping:
    version = document.get("version", MAPPING_VERSION)
    if version != MAPPING_VERSION:
        raise MappingError(
            f"{label}: version: this seed-db reads mapping version {MAPPING_VERSION}, got {version!r}"
        )
    unknown = sorted(set(document) - {"version", "tables", "empty"})
    if unknown:
        raise MappingError(f"{label}: {unknown[0]}: unknown key (a mapping has version, empty and tables)")
    empty = document.get("empty", [])
    if not isinstance(empty, list) or not all(isinstance(name, str) for name in empty):
        raise MappingError(f"{label}: empty: a list of table names, got {empty!r}")
    tables = document.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise MappingError(f"{label}: tables: no table is mapped (add [tables.NAME] sections)")
    mapped = {name: _table(name, body) for name, body in tables.items()}
    both = sorted(set(empty) & set(mapped))
    if both:
        raise MappingError(f"{label}: empty: {both[0]} is mapped too; a table is filled or emptied, not both")
    return Mapping(mapped, label, tuple(empty))


def _table(name: str, body: Any) -> TableSpec:
    key = f"tables.{name}"
    if not isinstance(body, dict):
        raise MappingError(f"{key}: must be a table ([{key}])")
    for unknown in sorted(set(body) - set(_TABLE_KEYS)):
        raise MappingError(f"{key}.{unknown}: unknown key (a table has {', '.join(_TABLE_KEYS)})")
    source = body.get("from")
    if source == "todo" or (isinstance(source, dict) and "todo" in source):
        raise MappingError(f"{key}.from: not placed yet: choose one of {', '.join(SOURCES)}")
    if source not in SOURCES:
        raise MappingError(f"{key}.from: must be one of {', '.join(SOURCES)}, got {source!r}")
    spec = TableSpec(name, key, source)
    if "states" in body or "min_state" in body:
        if source not in ACCOUNT_SOURCES:
            raise MappingError(f"{key}.states: only tables from accounts or their events have states")
        spec.states = _states(key, body.get("states"), body.get("min_state"))
    where = body.get("where", {})
    if not isinstance(where, dict):
        raise MappingError(f"{key}.where: must be a table of column = value (or [values])")
    spec.where = {column: value if isinstance(value, list) else [value] for column, value in where.items()}
    if source == "lookup":
        rows = body.get("rows")
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
            raise MappingError(f"{key}.rows: a lookup table needs rows = [{{column = value, ...}}, ...]")
        if "columns" in body:
            raise MappingError(f"{key}.columns: a lookup table's values are its rows; drop columns")
        spec.rows = rows
        return spec
    if "rows" in body:
        raise MappingError(f'{key}.rows: only a lookup table (from = "lookup") has fixed rows')
    columns = body.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise MappingError(f"{key}.columns: no column is mapped (add [{key}.columns])")
    spec.columns = {column: expression(f"{key}.columns.{column}", value) for column, value in columns.items()}
    return spec


def _states(key: str, states: Any, min_state: Any) -> tuple[str, ...]:
    if states is not None and min_state is not None:
        raise MappingError(f"{key}.min_state: give states or min_state, not both")
    if min_state is not None:
        state = _state(f"{key}.min_state", min_state)
        from simulator.seed.states import DEPTH

        floor = DEPTH[STATES.index(state)]
        return tuple(s.value for s, d in zip(STATES, DEPTH, strict=True) if d >= floor)
    if isinstance(states, str):
        states = [states]
    if not isinstance(states, list) or not states:
        raise MappingError(f"{key}.states: a list of funnel states ({', '.join(STATES)})")
    return tuple(_state(f"{key}.states", s).value for s in states)


def _state(key: str, value: Any) -> FunnelState:
    try:
        return FunnelState(str(value))
    except ValueError:
        raise MappingError(f"{key}: unknown state {value!r}; states are {', '.join(STATES)}") from None


def expression(key: str, value: Any) -> Expression:
    """One column's expression: ``{op = arg, modifier = ...}`` or a bare constant."""
    if not isinstance(value, dict):
        if isinstance(value, list):
            raise MappingError(f"{key}: a list is not a value; use {{ choice = [...] }} to pick from several")
        return Expression(key, "const", value)
    ops = [name for name in value if name in OPERATIONS]
    if len(ops) != 1:
        if not ops:
            raise MappingError(f"{key}: say how to fill it with one of {', '.join(OPERATIONS)}")
        raise MappingError(f"{key}: give one of {' / '.join(ops)}, not several")
    op = ops[0]
    options = {name: v for name, v in value.items() if name != op}
    for name in options:
        if name not in MODIFIERS:
            raise MappingError(f"{key}.{name}: unknown key (modifiers are {', '.join(MODIFIERS)})")
    arg = value[op]
    if op == "todo":
        raise MappingError(f"{key}: not placed yet ({arg}); fill it in or remove the column")
    _check_arg(key, op, arg, options)
    return Expression(key, op, arg, options)


def _check_arg(key: str, op: str, arg: Any, options: dict[str, Any]) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise MappingError(f"{key}.{op}: {what}, got {arg!r}")

    if op in ("copy", "template", "ref"):
        need(isinstance(arg, str) and arg != "", "must be a non-empty string")
    if op == "ref":
        need(arg.count(".") == 1, "must name table.column")
    if op == "sequence":
        need(isinstance(arg, int) and not isinstance(arg, bool), "must be the first number (an integer)")
    if op == "uuid":
        need(arg in UUID_KINDS, f"must be one of {', '.join(UUID_KINDS)}")
    if op == "default":
        need(arg is True, "must be true (let the database fill the column)")
    if op == "password":
        need(arg in PASSWORD_SCHEMES, f"must be one of {', '.join(PASSWORD_SCHEMES)}")
    if op == "choice":
        need(isinstance(arg, list) and len(arg) > 0, "must be a list of values")
        weights = options.get("weights")
        if weights is not None and (
            not isinstance(weights, list)
            or len(weights) != len(arg)
            or not all(isinstance(w, int | float) and w >= 0 for w in weights)
            or sum(weights) <= 0
        ):
            raise MappingError(f"{key}.weights: one weight >= 0 per choice (not all 0), got {weights!r}")
    case = options.get("case")
    if case is not None and case not in CASES:
        raise MappingError(f"{key}.case: must be one of {', '.join(CASES)}, got {case!r}")
    phone = options.get("phone")
    if phone is not None and phone not in PHONE_FORMATS:
        raise MappingError(f"{key}.phone: must be one of {', '.join(PHONE_FORMATS)}, got {phone!r}")
    null = options.get("null")
    if null is not None and not (
        isinstance(null, int | float) and not isinstance(null, bool) and 0 <= null <= 1
    ):
        raise MappingError(f"{key}.null: a probability between 0 and 1, got {null!r}")
    for name in ("max_length", "step", "rounds", "iterations"):
        number = options.get(name)
        if number is not None and not (
            isinstance(number, int) and not isinstance(number, bool) and number >= 1
        ):
            raise MappingError(f"{key}.{name}: a whole number >= 1, got {number!r}")
    rounds = options.get("rounds")
    if rounds is not None and not 4 <= rounds <= 31:
        raise MappingError(f"{key}.rounds: bcrypt's cost is 4..31, got {rounds}")
