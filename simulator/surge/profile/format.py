"""Target profiles: one TOML file says how a registration API is driven, step by step.

Owns the schema (dataclasses), the loader with its one-line errors (like scenario.py), and how the
planned funnel (simulator.surge.scenario.STEPS) maps onto a profile's steps. docs/target-profile.md
describes every key.

Over 500 lines: each key's dataclass sits beside the check that reads it, so the schema, its
one-line errors and docs/target-profile.md can be read side by side; split, each half needs the other.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import InvalidInputFile
from simulator.rules.reasons import Reason
from simulator.surge.applicants import FORM_COLUMNS
from simulator.surge.profile.template import (
    Extractor,
    Template,
    TemplateError,
    compile_extractor,
    compile_template,
    compile_value,
    value_names,
)
from simulator.surge.scenario import STEPS
from simulator.surge.toml_table import TomlTable, parse_toml, read_toml_source

PROFILE_VERSION = 1
SESSION_KINDS = ("bearer", "cookie")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OTP_CHANNELS = ("email", "sms")
OTP_SOURCES = ("outbox", "fixed", "sql", "redis", "upstreams")
TRUTH_SOURCES = ("admin-stats", "sql", "off")
REASON_CODES: tuple[str, ...] = tuple(str(r) for r in Reason)
OTP_ADDRESS = {"email": "applicant.email", "sms": "applicant.phone"}
DEFAULT_PROFILE = "reference"
"""The built-in profile (simulator/surge/profiles/reference.toml): the reference API."""


@dataclass(frozen=True)
class Success:
    """How an answer is recognised as done: its status, and optionally a field in the body."""

    status: tuple[int, ...] = ()  # empty: any 2xx
    field: Extractor | None = None  # json:/status, regex:..., header:...
    equals: Any = None  # the field's value on success; None: the field is present and not empty

    def describe(self) -> str:
        text = ("status " + "/".join(str(s) for s in self.status)) if self.status else "a 2xx status"
        if self.field is not None:
            text += f" and {self.field.text}" + ("" if self.equals is None else f" = {self.equals!r}")
        return text


@dataclass(frozen=True)
class Step:
    name: str
    planned: str  # the step of STEPS this request belongs to (itself, or part_of for an added step)
    method: str
    path: Template
    body_kind: str | None = None  # json, form, multipart or None
    body: Any = None  # compiled values
    headers: Mapping[str, Template] = field(default_factory=dict)
    keep: Mapping[str, Extractor] = field(default_factory=dict)
    success: Success = field(default_factory=Success)
    refusal: Extractor | None = None
    refusals: Mapping[str, str] = field(default_factory=dict)
    upload: str | None = None  # multipart field of the KTP photo: the step sends every planned upload
    otp: str | None = None  # "email" / "sms": the code is read before the request
    resend: str | None = None  # a step sent again, once, when the OTP does not come
    follow_redirects: bool = True

    @property
    def own(self) -> bool:
        """This request is the planned step itself (its success acknowledges the step)."""
        return self.name == self.planned


@dataclass(frozen=True)
class Csrf:
    header: str | None
    field: str | None
    source: str  # "cookie" or "kept"
    name: str


@dataclass(frozen=True)
class Session:
    """``cookie``: only the applicant's cookie jar (always kept, as a browser does); ``bearer``: also
    a token header from ``token`` (a template over kept values)."""

    kind: str = "cookie"
    token: Template | None = None
    header: str = "Authorization"
    scheme: str = "Bearer"
    csrf: Csrf | None = None


@dataclass(frozen=True)
class WaveOpen:
    """``reference``: the reference admin API (POST /v1/admin/waves); else one request."""

    kind: str  # "reference" or "request"
    method: str = "POST"
    path: Template | None = None
    body_kind: str | None = None
    body: Any = None
    success: Success = field(default_factory=lambda: Success((200, 201, 204, 409)))


@dataclass(frozen=True)
class Profile:
    name: str
    steps: tuple[Step, ...]
    session: Session = field(default_factory=Session)
    otp: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # channel -> source spec
    reconcile: Mapping[str, Any] = field(default_factory=lambda: {"source": "off"})
    wave_open: WaveOpen | None = None
    idempotency_header: str | None = "Idempotency-Key"
    description: str = ""
    version: int = PROFILE_VERSION
    source: str = "<string>"

    @property
    def order(self) -> tuple[str, ...]:
        """The planned steps this profile drives, in the order it drives them."""
        seen: list[str] = []
        for step in self.steps:
            if step.planned not in seen:
                seen.append(step.planned)
        return tuple(seen)

    @functools.cached_property
    def groups(self) -> dict[str, tuple[Step, ...]]:
        """Planned step -> the profile's requests for it (added steps included), in order
        (worked out once: the journey asks at every step)."""
        groups: dict[str, list[Step]] = {}
        for step in self.steps:
            groups.setdefault(step.planned, []).append(step)
        return {name: tuple(steps) for name, steps in groups.items()}

    @property
    def reference_admin(self) -> bool:
        """The target offers the reference admin API (counts, wave opening, already-registered probe)."""
        return self.reconcile.get("source") == "admin-stats"

    def where(self, table: str) -> str:
        return f"{self.source} [{table}]"


def build_otp_sources(
    profile: Profile, host: str, upstreams: str | None, allow_remote: bool = False
) -> dict[str, Any]:
    """The profile's OTP sources, one per channel (simulator/surge/sources/otp.py)."""
    from simulator.surge.sources.otp import otp_source

    return {
        channel: otp_source(
            spec,
            target=host,
            upstreams=upstreams,
            where=profile.where(f"otp.{channel}"),
            allow_remote=allow_remote,
        )
        for channel, spec in profile.otp.items()
    }


# ------------------------------------------------------------------------------------------------
# Loading


def builtin_profiles() -> list[str]:
    root = importlib.resources.files("simulator.surge.profiles")
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def load_profile(path_or_name: str | Path | None = None) -> Profile:
    """Read and validate a profile from a path or a built-in's name (default: the reference API's).

    Raises :class:`InvalidInputFile` naming the file, the key and what was expected.
    """
    return parse_profile(*profile_text(path_or_name))


def profile_text(path_or_name: str | Path | None = None) -> tuple[str, str]:
    """(TOML text, source) of a profile file or built-in: what the master sends its workers."""
    path_or_name = path_or_name or DEFAULT_PROFILE
    return read_toml_source(
        path_or_name,
        "simulator.surge.profiles",
        file_noun="target profile file",
        builtin_noun="built-in profile",
        builtins=builtin_profiles(),
    )


def parse_profile(text: str, source: str = "<string>") -> Profile:
    root = parse_toml(text, source)
    profile = _read_profile(root)
    root.finish()
    return profile


def _read_profile(root: TomlTable) -> Profile:
    meta = root.table("profile", required=True)
    name = meta.string("name")
    if not name.strip():
        raise meta.fail("name", "a non-empty string", name)
    version = meta.integer("version", PROFILE_VERSION, low=1)
    if version != PROFILE_VERSION:
        raise meta.fail(
            "version", f"{PROFILE_VERSION} (the only profile version this harness reads)", version
        )
    description = meta.string("description", "")
    meta.finish()

    defaults = root.table("defaults")
    default_success = _read_success(defaults, "success", Success())
    default_refusal = _extractor(defaults, "refusal_code", None)
    default_refusals = _read_refusals(defaults.table("refusals"))
    idempotency = defaults.string("idempotency_header", "Idempotency-Key")
    headers = _templates(defaults, "headers")
    defaults.finish()

    session = _read_session(root.table("session"))
    steps = _read_steps(root, default_success, default_refusal, default_refusals, headers)
    otp_table = root.table("otp")
    otp: dict[str, Mapping[str, Any]] = {}
    for channel in OTP_CHANNELS:
        spec = otp_table.table(channel)
        if spec.data:
            spec.string("source", choices=OTP_SOURCES)
            spec.seen.update(spec.data)  # the source checks its own keys (simulator/surge/sources)
            otp[channel] = dict(spec.data)
    otp_table.finish()
    for step in steps:
        if step.otp is not None and step.otp not in otp:
            raise InvalidInputFile(
                f"{root.source}: step '{step.name}' uses {{otp.{step.otp}}}: "
                f"expected a table [otp.{step.otp}] "
                "saying where its codes come from"
            )
    truth = root.table("reconcile")
    truth.string("source", "off", choices=TRUTH_SOURCES)
    truth.seen.update(truth.data)
    reconcile = dict(truth.data) or {"source": "off"}
    reconcile.setdefault("source", "off")
    wave_open = _read_wave(root.table("wave"))
    _check_session_sources(root.source, session, steps)
    return Profile(
        name=name,
        steps=steps,
        session=session,
        otp=otp,
        reconcile=reconcile,
        wave_open=wave_open,
        idempotency_header=idempotency or None,
        description=description,
        version=version,
        source=root.source,
    )


def _extractor(t: TomlTable, name: str, default: Any) -> Extractor | None:
    text = t.string(name, None)
    if text is None:
        return default
    try:
        return compile_extractor(text)
    except TemplateError as err:
        raise t.fail(name, str(err), text) from err


def _template(t: TomlTable, name: str, default: Any = ...) -> Template | None:
    text = t.string(name, default)
    if text is None:
        return None
    try:
        return compile_template(text)
    except TemplateError as err:
        raise t.fail(name, str(err), text) from err


def _templates(t: TomlTable, name: str) -> dict[str, Template]:
    table = t.table(name)
    out = {key: _template(table, key) for key in list(table.data)}
    table.finish()
    return out


def _body(t: TomlTable, name: str) -> Any:
    t.seen.add(name)
    value = t.data[name]
    if not isinstance(value, dict):
        raise t.fail(name, "a table of fields (values are templates)", value)
    try:
        return compile_value(value)
    except TemplateError as err:
        raise t.fail(name, str(err), value) from err


def _read_success(t: TomlTable, name: str, default: Success) -> Success:
    if name not in t.data:
        t.seen.add(name)
        return default
    s = t.table(name)
    status = s.get(
        "status",
        default.status,
        kind="a list of HTTP status codes (100..599)",
        check=lambda v: tuple(_status(x) for x in _nonempty_list(v)),
    )
    extractor = None
    if "json" in s.data or "regex" in s.data or "header" in s.data:
        kinds = [k for k in ("json", "regex", "header") if k in s.data]
        if len(kinds) > 1:
            raise s.fail(kinds[1], f"only one of json, regex, header (already {kinds[0]})", show=False)
        text = s.string(kinds[0])
        try:
            extractor = compile_extractor(f"{kinds[0]}:{text}")
        except TemplateError as err:
            raise s.fail(kinds[0], str(err), text) from err
    s.seen.add("equals")
    equals = s.data.get("equals")
    if equals is not None and extractor is None:
        raise s.fail("equals", "a json, regex or header key beside it (the field compared)", show=False)
    s.finish()
    return Success(status, extractor, equals)


def _nonempty_list(value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise TypeError
    return value


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError
    return value


def _read_refusals(t: TomlTable) -> dict[str, str]:
    mapping = {}
    for theirs in list(t.data):
        ours = t.string(theirs)
        if ours not in REASON_CODES:
            raise t.fail(
                theirs, "one of our reason codes (simulator/rules/reasons.py, e.g. EMAIL_TAKEN)", ours
            )
        mapping[theirs] = ours
    t.finish()
    return mapping


def _read_session(t: TomlTable) -> Session:
    kind = t.string("kind", "cookie", choices=SESSION_KINDS)
    for name in ("token", "header", "scheme"):
        if kind != "bearer" and name in t.data:
            raise t.fail(
                name, 'kind = "bearer" beside it (a cookie session sends no token header)', show=False
            )
    token = _template(t, "token", "{kept.token}" if kind == "bearer" else None)
    header = t.string("header", "Authorization")
    scheme = t.string("scheme", "Bearer")
    csrf = None
    if "csrf" in t.data:
        c = t.table("csrf")
        where = c.string("from")
        src, sep, name = where.partition(":")
        if not sep or src not in ("cookie", "kept") or not name:
            raise c.fail("from", "cookie:NAME or kept:NAME (where the token is read)", where)
        csrf = Csrf(c.string("header", None), c.string("field", None), src, name)
        if csrf.header is None and csrf.field is None:
            raise InvalidInputFile(
                f"{t.source}: table '{t.key('csrf')}': expected 'header' (sent as a header) or "
                "'field' (added to form and multipart bodies), or both"
            )
        c.finish()
    t.finish()
    return Session(kind, token if kind == "bearer" else None, header, scheme, csrf)


_PLANNED_HINT = ", ".join(STEPS)


def _read_steps(
    root: TomlTable,
    success: Success,
    refusal: Extractor | None,
    refusals: dict[str, str],
    headers: dict[str, Template],
) -> tuple[Step, ...]:
    root.seen.add("step")
    entries = root.data.get("step")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise root.fail("step", "an array of tables [[step]] (one per request of the journey)", show=False)
    raw: list[tuple[TomlTable, str]] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        t = TomlTable(root.source, f"step[{index}].", entry)
        name = t.string("name")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise t.fail("name", "a name of letters, digits and _", name)
        if name in names:
            raise t.fail("name", "a name used by one step only", name)
        names.add(name)
        raw.append((t, name))
    planned_positions = [i for i, (_t, n) in enumerate(raw) if n in STEPS]
    if not planned_positions:
        raise InvalidInputFile(
            f"{root.source}: key 'step': expected at least one step named after a planned step "
            f"({_PLANNED_HINT})"
        )
    kept: set[str] = set()
    steps = []
    for index, (t, name) in enumerate(raw):
        if name in STEPS:
            planned = name
            if "part_of" in t.data:
                raise t.fail("part_of", f"no part_of on a planned step ('{name}' is one)", show=False)
        else:
            following = [raw[i][1] for i in planned_positions if i > index]
            before = [raw[i][1] for i in planned_positions if i < index]
            default = following[0] if following else before[-1]
            planned = t.string("part_of", default, choices=tuple(raw[i][1] for i in planned_positions))
        method = t.string("method", choices=METHODS)
        path = _template(t, "path")
        if not path.source.startswith("/"):
            raise t.fail("path", "a path starting with / (the host comes from --host)", path.source)
        kinds = [k for k in ("json", "form", "multipart") if k in t.data]
        if len(kinds) > 1:
            raise t.fail(kinds[1], f"one body only (already {kinds[0]})", show=False)
        body_kind = kinds[0] if kinds else None
        body = _body(t, body_kind) if body_kind else None
        upload = t.string("upload", None)
        if upload is not None and body_kind not in (None, "multipart"):
            raise t.fail("upload", "a multipart step (the photo goes in a multipart body)", show=False)
        if upload is not None:
            body_kind = "multipart"
            body = body or {}
        step_headers = dict(headers)
        step_headers.update(_templates(t, "headers"))
        keep_table = t.table("keep")
        keep = {}
        for key in list(keep_table.data):
            keep[key] = _extractor(keep_table, key, None)
        keep_table.finish()
        uses = value_names(body) | path.names() | set().union(*(h.names() for h in step_headers.values()))
        for used in sorted(uses):
            if used.startswith("kept.") and used[5:] not in kept:
                raise t.fail(
                    "path" if used in path.names() else (body_kind or "headers"),
                    f"{{{used}}} kept by an earlier step (keep = {{ {used[5:]} = ... }})",
                    show=False,
                )
            if used.startswith("applicant.") and used[10:] not in FORM_COLUMNS:
                raise t.fail(
                    body_kind or "path",
                    f"{{{used}}}: an applicant column (" + ", ".join(FORM_COLUMNS) + ")",
                    show=False,
                )
            if used == "upload":
                raise t.fail(body_kind or "path", 'the photo as upload = "FIELD", not {upload}', show=False)
        channels = [c for c in OTP_CHANNELS if f"otp.{c}" in uses]
        if len(channels) > 1:
            raise t.fail(body_kind or "path", "one OTP per step ({otp.email} or {otp.sms})", show=False)
        resend = t.string("resend", None)
        if resend is not None and resend not in names:
            raise t.fail("resend", "the name of a step of this profile", resend)
        if resend is not None and not channels:
            raise t.fail("resend", "a step that sends an OTP ({otp.email} or {otp.sms})", show=False)
        step_refusals = dict(refusals)
        step_refusals.update(_read_refusals(t.table("refusals")))
        steps.append(
            Step(
                name=name,
                planned=planned,
                method=method,
                path=path,
                body_kind=body_kind,
                body=body,
                headers=step_headers,
                keep=keep,
                success=_read_success(t, "success", success),
                refusal=_extractor(t, "refusal_code", refusal),
                refusals=step_refusals,
                upload=upload,
                otp=channels[0] if channels else None,
                resend=resend,
                follow_redirects=t.boolean("follow_redirects", True),
            )
        )
        kept.update(keep)
        t.finish()
    return tuple(steps)


def _check_session_sources(source: str, session: Session, steps: tuple[Step, ...]) -> None:
    kept = set().union(*(s.keep for s in steps))
    if session.token is not None:
        missing = [n[5:] for n in session.token.names() if n.startswith("kept.") and n[5:] not in kept]
        if missing:
            raise InvalidInputFile(
                f"{source}: key 'session.token': expected a token kept by a step (keep = {{ {missing[0]} = "
                f'"json:/..." }}), got {session.token.source!r}'
            )
    if session.csrf is not None and session.csrf.source == "kept" and session.csrf.name not in kept:
        raise InvalidInputFile(
            f"{source}: key 'session.csrf.from': expected kept:NAME of a value a step keeps, "
            f"got 'kept:{session.csrf.name}'"
        )


def _read_wave(t: TomlTable) -> WaveOpen | None:
    if "open" not in t.data:
        t.finish()
        return None
    value = t.data["open"]
    if value == "reference":
        t.seen.add("open")
        t.finish()
        return WaveOpen("reference")
    if not isinstance(value, dict):
        raise t.fail("open", '"reference" or a table { method, path, json | form, success }', value)
    o = t.table("open")
    kinds = [k for k in ("json", "form") if k in o.data]
    if len(kinds) > 1:
        raise o.fail(kinds[1], f"one body only (already {kinds[0]})", show=False)
    path = _template(o, "path")
    for used in path.names():
        if used not in ("wave", "quota", "selection"):
            raise o.fail("path", "a template using only {wave}, {quota}, {selection}", path.source)
    wave = WaveOpen(
        "request",
        method=o.string("method", "POST", choices=METHODS),
        path=path,
        body_kind=kinds[0] if kinds else None,
        body=_body(o, kinds[0]) if kinds else None,
        success=_read_success(o, "success", Success((200, 201, 204, 409))),
    )
    o.finish()
    t.finish()
    return wave


__all__ = [
    "DEFAULT_PROFILE",
    "Profile",
    "Session",
    "Step",
    "Success",
    "build_otp_sources",
    "builtin_profiles",
    "load_profile",
    "parse_profile",
    "profile_text",
]
