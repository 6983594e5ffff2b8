"""Templates over an applicant and earlier answers, and what is kept from an answer.

Owns the two small languages of a target profile (docs/target-profile.md): ``{...}`` templates
(compiled once when the profile is read) and ``json:`` / ``header:`` / ``cookie:`` / ``regex:``
extractors (also compiled once). Both are cheap at run time: no parsing per request.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

TEMPLATE_NAMES = (
    "password",
    "otp.email",
    "otp.sms",
    "wave",
    "quota",
    "selection",
    "answers",
    "arrival",
    "upload",
)
"""Names a template may use besides ``applicant.COLUMN`` and ``kept.NAME``."""
EXTRACT_KINDS = ("json", "header", "cookie", "regex")
_FIELD = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^(applicant\.[A-Za-z_][A-Za-z0-9_]*|kept\.[A-Za-z_][A-Za-z0-9_]*|[a-z]+(\.[a-z]+)?)$")


class TemplateError(ValueError):
    """A template or extractor that cannot be compiled; the message says what was expected."""


@dataclass(frozen=True)
class Ref:
    """One ``{a|b|"literal"}`` field: the first alternative with a value wins."""

    names: tuple[str, ...]
    literal: str | None = None  # a quoted last alternative, used when no name has a value


@dataclass(frozen=True)
class Template:
    """A compiled template: literal text and references. ``whole``: the string is exactly one
    ``{...}``, and the value keeps its type (a list of answers, a number, null)."""

    parts: tuple[str | Ref, ...]
    source: str
    # Worked out once: most templates are plain text (paths) or one field (body values).
    whole: bool = field(init=False, compare=False, repr=False)
    _literal: str | None = field(init=False, compare=False, repr=False)
    _single: str | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts = self.parts
        whole = len(parts) == 1 and isinstance(parts[0], Ref)
        object.__setattr__(self, "whole", whole)
        literal = None if any(isinstance(p, Ref) for p in parts) else "".join(parts)
        object.__setattr__(self, "_literal", literal)
        plain_ref = whole and len(parts[0].names) == 1 and parts[0].literal is None
        single = parts[0].names[0] if plain_ref else None
        object.__setattr__(self, "_single", single)

    def names(self) -> set[str]:
        return {n for p in self.parts if isinstance(p, Ref) for n in p.names}

    def render(self, values: Callable[[str], Any]) -> Any:
        if self._literal is not None:
            return self._literal
        if self._single is not None:
            value = values(self._single)
            return None if value is None or value == "" else _plain(value)
        if self.whole:
            return _plain(_resolve(self.parts[0], values))
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = _resolve(part, values)
                out.append("" if value is None else _text(value))
        return "".join(out)


def _resolve(ref: Ref, values: Callable[[str], Any]) -> Any:
    for name in ref.names:
        value = values(name)
        if value is not None and value != "":
            return value
    return ref.literal


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _text(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def compile_template(text: str) -> Template:
    """``"Bearer {kept.token}"`` -> a Template; raises TemplateError naming the bad field."""
    parts: list[str | Ref] = []
    at = 0
    for match in _FIELD.finditer(text):
        if match.start() > at:
            parts.append(text[at : match.start()])
        parts.append(_compile_ref(match.group(1)))
        at = match.end()
    if at < len(text):
        parts.append(text[at:])
    leftover = "".join(p for p in parts if isinstance(p, str))
    if "{" in leftover or "}" in leftover:
        raise TemplateError("balanced {name} fields (an unmatched brace)")
    return Template(tuple(parts), text)


def _compile_ref(inner: str) -> Ref:
    alternatives = [a.strip() for a in inner.split("|")]
    literal = None
    if len(alternatives) > 1 and alternatives[-1][:1] == alternatives[-1][-1:] == '"':
        literal = alternatives.pop()[1:-1]
    for name in alternatives:
        if not _NAME.match(name) or (
            not name.startswith(("applicant.", "kept.")) and name not in TEMPLATE_NAMES
        ):
            raise TemplateError(
                f"{{{inner}}}: fields applicant.COLUMN, kept.NAME, "
                + ", ".join(TEMPLATE_NAMES)
                + ' (alternatives a|b|"default")'
            )
    return Ref(tuple(alternatives), literal)


def compile_value(value: Any) -> Any:
    """Compile every string inside a TOML value (tables and arrays are walked)."""
    if isinstance(value, str):
        return compile_template(value)
    if isinstance(value, Mapping):
        return {k: compile_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_value(v) for v in value]
    return value


def render_value(value: Any, values: Callable[[str], Any]) -> Any:
    if isinstance(value, Template):
        return value.render(values)
    if isinstance(value, dict):
        return {k: render_value(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    return value


def value_names(value: Any) -> set[str]:
    """Every field name a compiled value uses."""
    if isinstance(value, Template):
        return value.names()
    if isinstance(value, dict):
        return set().union(*(value_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(value_names(v) for v in value)) if value else set()
    return set()


# ------------------------------------------------------------------------------------------------
# Extractors: what is read from an answer


@dataclass(frozen=True)
class Extractor:
    """``json:/a/0/b`` (RFC 6901 pointer), ``header:Location``, ``cookie:sid`` or ``regex:...``
    (the first group, or the whole match)."""

    kind: str
    arg: str
    pointer: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.arg}"

    def read(
        self, content: bytes | None, body: Callable[[], Any], headers: Any, cookies: Callable[[str], Any]
    ) -> Any:
        """The value, or None when the answer does not have it. ``body`` parses JSON lazily."""
        if self.kind == "json":
            value = body()
            for token in self.pointer:
                if isinstance(value, dict):
                    value = value.get(token)
                elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
                    value = value[int(token)]
                else:
                    return None
            return value
        if self.kind == "header":
            return headers.get(self.arg) if headers is not None else None
        if self.kind == "cookie":
            return cookies(self.arg)
        text = content.decode("utf-8", "replace") if content else ""
        match = self.pattern.search(text)
        if match is None:
            return None
        return match.group(1) if match.groups() else match.group(0)


def compile_extractor(text: str) -> Extractor:
    kind, sep, arg = text.partition(":")
    if not sep or kind not in EXTRACT_KINDS or not arg:
        raise TemplateError("json:/POINTER, header:NAME, cookie:NAME or regex:PATTERN")
    if kind == "json":
        if arg != "/" and not arg.startswith("/"):
            raise TemplateError("a JSON pointer starting with / (json:/token, json:/data/0/id)")
        tokens = (
            tuple(t.replace("~1", "/").replace("~0", "~") for t in arg.split("/")[1:]) if arg != "/" else ()
        )
        return Extractor(kind, arg, pointer=tokens)
    if kind == "regex":
        try:
            pattern = re.compile(arg)
        except re.error as err:
            raise TemplateError(f"a regular expression ({err})") from err
        return Extractor(kind, arg, pattern=pattern)
    return Extractor(kind, arg)


__all__ = [
    "Extractor",
    "Template",
    "TemplateError",
    "compile_extractor",
    "compile_template",
    "compile_value",
    "render_value",
    "value_names",
]
