"""Request and answer shapes of the stand-ins: the field names (and date format, path, envelope) a
staging system's own clients expect, read from a small TOML profile; the defaults are documented in
``docs/upstreams.md``.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from simulator.errors import InvalidInputFile

SMS_TO_FIELDS: tuple[str, ...] = (
    "to",
    "msisdn",
    "phone",
    "phone_number",
    "destination",
    "recipient",
    "number",
    "mobile",
    "receiver",
)
"""Names common SMS gateway APIs give the recipient (JSON or form), compared case-insensitively."""
SMS_TEXT_FIELDS: tuple[str, ...] = ("text", "message", "body", "content", "msg", "sms", "sms_text")
"""Names they give the message text."""


@dataclass(frozen=True)
class RegistryProfile:
    """Where the registry listens and what its request and answer fields are called."""

    path: str = "/registry/v1/check"
    # request fields (the caller's names for NIK, KK and birth date)
    nik: str = "nik"
    kk: str = "kk"
    birth_date: str = "birth_date"
    birth_date_format: str = "%Y-%m-%d"
    # answer fields
    verdict: str = "verdict"
    nik_found: str = "nik_found"
    kk_match: str = "kk_match"
    birth_date_match: str = "birth_date_match"
    record: str = "resident"
    envelope: str = ""  # non-empty: the answer is {envelope: {...}}

    def parse_date(self, text: str) -> dt.date:
        """The date in ``text`` as ``birth_date_format`` writes it; ValueError when it is not one."""
        if self.birth_date_format == "%Y-%m-%d":
            # The C parser (strptime costs a check more than the rest of it); it also takes
            # other ISO spellings, so the shape is checked too.
            if len(text) != 10 or text[4] != "-" or text[7] != "-":
                raise ValueError(text)
            return dt.date.fromisoformat(text)
        return dt.datetime.strptime(text, self.birth_date_format).date()


@dataclass(frozen=True)
class SmsProfile:
    """Where the SMS gateway listens and which fields name the recipient and the text."""

    path: str = "/sms/v1/send"
    to: tuple[str, ...] = SMS_TO_FIELDS
    text: tuple[str, ...] = SMS_TEXT_FIELDS


@dataclass(frozen=True)
class Profile:
    registry: RegistryProfile = field(default_factory=RegistryProfile)
    sms: SmsProfile = field(default_factory=SmsProfile)


def load_profile(path: str | Path | None) -> Profile:
    """The profile in a TOML file (only the keys it sets change); the defaults without one."""
    if path is None:
        return Profile()
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InvalidInputFile(f"{path}: cannot read the profile ({err.strerror or err})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InvalidInputFile(f"{path}: not valid TOML ({err})") from None
    unknown = set(document) - {"registry", "sms"}
    if unknown:
        raise InvalidInputFile(f"{path}: unknown table [{sorted(unknown)[0]}] (expected [registry], [sms])")
    registry = _registry(path, _table(path, document, "registry"))
    sms = _sms(path, _table(path, document, "sms"))
    return Profile(registry=registry, sms=sms)


def _table(path: Path, data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise InvalidInputFile(f"{path}: key '{name}': expected a table")
    return value


def _name(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise InvalidInputFile(f"{path}: key '{key}': expected a field name (1-64 characters), got {value!r}")
    return value


def _path(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or " " in value or value.startswith("/v1/"):
        raise InvalidInputFile(
            f"{path}: key '{key}': expected a URL path starting with / (not under /v1/, the read API's), "
            f"got {value!r}"
        )
    return value


def _registry(path: Path, data: dict) -> RegistryProfile:
    profile = RegistryProfile()
    known = {"path", "birth_date_format", "envelope", "request", "answer"}
    unknown = set(data) - known
    if unknown:
        raise InvalidInputFile(
            f"{path}: unknown key 'registry.{sorted(unknown)[0]}' "
            f"(expected one of: {', '.join(sorted(known))})"
        )
    changes: dict[str, str] = {}
    if "path" in data:
        changes["path"] = _path(path, "registry.path", data["path"])
    if "birth_date_format" in data:
        fmt = data["birth_date_format"]
        try:
            ok = isinstance(fmt, str) and dt.datetime.strptime(
                dt.date(1990, 7, 31).strftime(fmt), fmt
            ).date() == dt.date(1990, 7, 31)
        except ValueError:
            ok = False
        if not ok:
            raise InvalidInputFile(
                f"{path}: key 'registry.birth_date_format': expected a strftime format "
                f'holding day, month and year such as "%d-%m-%Y", got {fmt!r}'
            )
        changes["birth_date_format"] = fmt
    if "envelope" in data:
        envelope = data["envelope"]
        changes["envelope"] = "" if envelope == "" else _name(path, "registry.envelope", envelope)
    for section, names in (
        ("request", ("nik", "kk", "birth_date")),
        ("answer", ("verdict", "nik_found", "kk_match", "birth_date_match", "record")),
    ):
        table = _table(path, data, section)
        for key, value in table.items():
            if key not in names:
                raise InvalidInputFile(
                    f"{path}: unknown key 'registry.{section}.{key}' (expected one of: {', '.join(names)})"
                )
            changes[key] = _name(path, f"registry.{section}.{key}", value)
    request = [changes.get(n, getattr(profile, n)) for n in ("nik", "kk", "birth_date")]
    if len(set(request)) < 3:
        raise InvalidInputFile(f"{path}: table 'registry.request': the three fields need three names")
    return replace(profile, **changes)


def _sms(path: Path, data: dict) -> SmsProfile:
    profile = SmsProfile()
    known = {f.name for f in fields(SmsProfile)}
    unknown = set(data) - known
    if unknown:
        raise InvalidInputFile(
            f"{path}: unknown key 'sms.{sorted(unknown)[0]}' (expected one of: {', '.join(sorted(known))})"
        )
    changes: dict[str, Any] = {}
    if "path" in data:
        changes["path"] = _path(path, "sms.path", data["path"])
    for key in ("to", "text"):
        if key in data:
            names = data[key]
            if not isinstance(names, list) or not names:
                raise InvalidInputFile(f"{path}: key 'sms.{key}': expected a list of field names")
            extra = tuple(_name(path, f"sms.{key}", n).lower() for n in names)
            # The profile's names come first; the common ones stay accepted.
            changes[key] = extra + tuple(n for n in getattr(profile, key) if n not in extra)
    merged = replace(profile, **changes)
    if set(merged.to) & set(merged.text):
        raise InvalidInputFile(f"{path}: table 'sms': a name cannot be both a recipient and a text field")
    return merged
