"""The stand-ins' state (:class:`Upstreams`: registry, outbox, faults, counters) and their HTTP routes
(:class:`Routes`): the registry check, the SMS gateway, and the read API the harness uses (codes by
recipient, counters). Served by :mod:`simulator.upstreams.httpd` (or as ASGI, :mod:`.asgi`); the
SMTP sink is :mod:`simulator.upstreams.smtp`.

No web framework on the hot path: a check is one bisection and one JSON answer joined from bytes,
answered without a task or an await unless a fault injects a delay (:class:`Routes`).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import urllib.parse
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson

from simulator.rules.reasons import Reason
from simulator.upstreams.faults import RegistryFaults, SinkFaults
from simulator.upstreams.messages import TEXT_LIMIT, Message, Outbox, email_key, extract_otp, phone_key
from simulator.upstreams.profile import Profile
from simulator.upstreams.registry import MATCH, VERDICTS, Registry
from simulator.upstreams.stats import ServiceCounters

MAX_BODY_BYTES = 16_384
"""Largest request body the registry and the SMS gateway read; more is refused with 413."""
MAX_RECIPIENTS_PER_MESSAGE = 100
READ_LIMIT = 100
"""Most messages one read of the outbox returns."""


class BadRequest(Exception):
    """A request the stand-in refuses: answered ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Upstreams:
    """Everything the stand-ins hold: the registry, the recorded messages, faults, counters."""

    registry: Registry
    profile: Profile = field(default_factory=Profile)
    registry_faults: RegistryFaults = field(default_factory=RegistryFaults)
    sms_faults: SinkFaults = field(default_factory=lambda: SinkFaults(name="sms"))
    email_faults: SinkFaults = field(default_factory=lambda: SinkFaults(name="email"))
    outbox: Outbox = field(default_factory=Outbox)
    seed: int | None = None

    def __post_init__(self) -> None:
        # One stream per service: the registry's draws do not shift when the SMS traffic changes.
        self.rng = {
            name: random.Random(None if self.seed is None else f"{self.seed}-{name}")
            for name in ("registry", "sms", "email")
        }
        self.counters = {name: ServiceCounters(name) for name in ("registry", "sms", "smtp")}
        self.clock_started = time.monotonic()
        self.clock_started_at = time.time()
        self._ids = itertools.count(1)

    def reset_clock(self) -> None:
        """Restart the slow-down schedule's clock (e.g. at the wave's opening)."""
        self.clock_started = time.monotonic()
        self.clock_started_at = time.time()

    # -- the message sinks ---------------------------------------------------------------------
    def file_message(
        self, channel: str, to: str, text: str, subject: str | None = None, sender: str | None = None
    ) -> bool:
        """Record one message to one recipient; False when the fault knobs lose it."""
        faults = self.sms_faults if channel == "sms" else self.email_faults
        delay = faults.delivery(self.rng["sms" if channel == "sms" else "email"])
        if delay is None:
            return False
        now = time.time()
        code = extract_otp(text) or (extract_otp(subject) if subject else None)
        self.outbox.add(Message(channel, to, now, now + delay, code, text[:TEXT_LIMIT], subject, sender))
        return True

    def next_id(self) -> str:
        return f"msg-{next(self._ids)}"


# ------------------------------------------------------------------------------------------------
# The routes, independent of the HTTP server that carries them

Headers = tuple[tuple[bytes, bytes], ...]
Response = tuple[int, bytes, Headers]
"""An answer: status, JSON body, extra headers (the content type and length are the server's)."""
_NO_HEADERS: Headers = ()
_RETRY_AFTER: Headers = ((b"retry-after", b"5"),)


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _refusal(bad: BadRequest) -> Response:
    headers = ((b"allow", bad.message.rsplit(" ", 1)[-1].encode()),) if bad.status == 405 else _NO_HEADERS
    return bad.status, orjson.dumps(_error(bad.code, bad.message)), headers


def _json_object(body: bytes, what: str) -> dict:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest(400, str(Reason.VALIDATION_ERROR), f"{what}: the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(400, str(Reason.VALIDATION_ERROR), f"{what}: expected a JSON object")
    return data


def _field(data: dict, name: str, what: str) -> str:
    value = data.get(name)
    if value is None:
        raise BadRequest(400, str(Reason.VALIDATION_ERROR), f"{what}: field {name!r} is required")
    if not isinstance(value, str):
        raise BadRequest(400, str(Reason.VALIDATION_ERROR), f"{what}: field {name!r} must be a string")
    return value


class Routes:
    """The registry check, the SMS gateway and the read API of ``upstreams`` as one call per request.

    :meth:`handle` takes a request already read (method, path, query, content type, body) and returns
    a :data:`Response`, or, only when an injected delay must pass first, a coroutine giving one: a
    check without faults never touches the event loop. Both servers carry it: the lean HTTP/1.1
    protocol of :mod:`simulator.upstreams.http` (what ``prakerja-sim upstreams`` runs) and the ASGI
    adapter :func:`simulator.upstreams.asgi.create_app`.
    """

    def __init__(self, upstreams: Upstreams):
        self.upstreams = upstreams
        self.registry_profile = profile = upstreams.profile.registry
        self.sms_profile = upstreams.profile.sms
        self.registry_path, self.sms_path = profile.path, self.sms_profile.path
        self.counters = upstreams.counters
        # The answer's fixed parts, encoded once: a check joins them with the resident's record.
        keys = {
            name: orjson.dumps(getattr(profile, name)) + b":"
            for name in ("verdict", "nik_found", "kk_match", "birth_date_match", "record")
        }
        self._record_key = b"," + keys["record"]
        self._opening, self._closing = (
            (b"{" + orjson.dumps(profile.envelope) + b":{", b"}}") if profile.envelope else (b"{", b"}")
        )
        self._flags = {
            verdict: self._opening
            + b",".join(
                [
                    keys["verdict"] + orjson.dumps(verdict),
                    keys["nik_found"] + orjson.dumps(verdict != Reason.NIK_NOT_FOUND),
                    keys["kk_match"] + orjson.dumps(verdict in (MATCH, str(Reason.NIK_BIRTHDATE_MISMATCH))),
                    keys["birth_date_match"] + orjson.dumps(verdict == MATCH),
                ]
            )
            for verdict in VERDICTS
        }
        self._nik_message = f"registry check: field {profile.nik!r} must be 16 digits"

    # -- dispatch --------------------------------------------------------------------------------
    def handle(
        self,
        method: str,
        path: str,
        query: bytes,
        content_type: str,
        body: bytes,
        started: float | None = None,
    ) -> Response | Coroutine[Any, Any, Response]:
        """The answer to one request; ``started`` (``time.perf_counter()``) is when it began arriving."""
        if started is None:
            started = time.perf_counter()
        try:
            if path == self.registry_path:
                _only(method, "POST")
                return self.registry_check(body, started)
            if path == self.sms_path:
                _only(method, "POST")
                return self.sms_send(content_type, body, started)
            return self.read_api(method, path, query)
        except BadRequest as bad:
            return _refusal(bad)

    def too_large(self, path: str, started: float | None = None) -> Response:
        """The 413 of a body over :data:`MAX_BODY_BYTES`, counted against the service it was for."""
        service = "registry" if path == self.registry_path else "sms" if path == self.sms_path else None
        if service:
            elapsed = (time.perf_counter() - started) * 1000 if started is not None else None
            self.counters[service].record("bad_request", elapsed)
        return _refusal(
            BadRequest(413, str(Reason.VALIDATION_ERROR), f"request body over {MAX_BODY_BYTES} bytes")
        )

    # -- the registry ----------------------------------------------------------------------------
    def registry_check(self, body: bytes, started: float) -> Response | Coroutine[Any, Any, Response]:
        profile = self.registry_profile
        try:
            data = _json_object(body, "registry check")
            nik = _field(data, profile.nik, "registry check")
            kk = _field(data, profile.kk, "registry check")
            birth_text = _field(data, profile.birth_date, "registry check")
            if not (len(nik) == 16 and nik.isdigit()):
                raise BadRequest(400, str(Reason.VALIDATION_ERROR), self._nik_message)
            try:
                birth_date = profile.parse_date(birth_text)
            except ValueError:
                raise BadRequest(
                    400,
                    str(Reason.VALIDATION_ERROR),
                    f"registry check: field {profile.birth_date!r} must be a date "
                    f"as {profile.birth_date_format!r}, got {birth_text[:40]!r}",
                ) from None
        except BadRequest as bad:
            self.counters["registry"].record("bad_request", (time.perf_counter() - started) * 1000)
            return _refusal(bad)
        upstreams = self.upstreams
        faults = upstreams.registry_faults
        rng = upstreams.rng["registry"]
        delay_ms = faults.latency_ms(rng, time.monotonic() - upstreams.clock_started)
        fate = faults.fate(rng)
        if fate == "timeout":
            delay_ms += faults.timeout_s * 1000
        if delay_ms > 0:
            return self._delayed_check(delay_ms, fate, nik, kk, birth_date, started)
        return self._finish_check(fate, nik, kk, birth_date, started)

    async def _delayed_check(
        self, delay_ms: float, fate: str, nik: str, kk: str, birth_date: Any, started: float
    ) -> Response:
        await asyncio.sleep(delay_ms / 1000)
        return self._finish_check(fate, nik, kk, birth_date, started)

    def _finish_check(self, fate: str, nik: str, kk: str, birth_date: Any, started: float) -> Response:
        counters = self.counters["registry"]
        if fate != "ok":
            counters.record(fate, (time.perf_counter() - started) * 1000)
            timeout_s = self.upstreams.registry_faults.timeout_s
            status, message = (
                (503, "the registry is unavailable (injected fault)")
                if fate == "error"
                else (504, f"the registry did not answer within {timeout_s:g} s (injected timeout)")
            )
            return status, orjson.dumps(_error(str(Reason.REGISTRY_UNAVAILABLE), message)), _RETRY_AFTER
        check = self.upstreams.registry.check(nik, kk, birth_date)
        if check.row is None:
            answer = self._flags[check.verdict] + self._closing
        else:
            record = self.upstreams.registry.record_json(check.row)
            answer = self._flags[check.verdict] + self._record_key + record + self._closing
        counters.record(check.verdict, (time.perf_counter() - started) * 1000)
        return 200, answer, _NO_HEADERS

    # -- the SMS gateway -------------------------------------------------------------------------
    def sms_send(self, content_type: str, body: bytes, started: float) -> Response:
        profile, upstreams = self.sms_profile, self.upstreams
        try:
            fields_ = _sms_fields(content_type, body)
            recipients = _pick(fields_, profile.to, "recipient")
            text = _pick(fields_, profile.text, "text")
            if isinstance(text, list):
                text = " ".join(str(t) for t in text)
            numbers = _recipients(recipients)
        except BadRequest as bad:
            self.counters["sms"].record("bad_request", (time.perf_counter() - started) * 1000)
            return _refusal(bad)
        accepted = [upstreams.file_message("sms", number, str(text)) for number in numbers]
        elapsed = (time.perf_counter() - started) * 1000
        counters = self.counters["sms"]
        for delivered in accepted:
            counters.record("accepted" if delivered else "lost", elapsed)
        # A gateway accepts what it will lose: the sender cannot tell (that is what loss looks like).
        answer = {"status": "accepted", "message_id": upstreams.next_id(), "recipients": len(numbers)}
        return 202, orjson.dumps(answer), _NO_HEADERS

    # -- the read API ----------------------------------------------------------------------------
    def read_api(self, method: str, path: str, query_string: bytes) -> Response:
        upstreams, counters = self.upstreams, self.counters
        query = urllib.parse.parse_qs(query_string.decode("latin-1"))
        if path == "/v1/healthz":
            _only(method, "GET")
            answer: Any = {
                "status": "ok",
                "residents": len(upstreams.registry),
                "registry_path": self.registry_path,
                "sms_path": self.sms_path,
            }
        elif path in ("/v1/sandbox/outbox", "/v1/codes"):
            _only(method, "GET")
            to = (query.get("to") or [""])[0]
            key = email_key(to) if "@" in to else phone_key(to)
            if key is None:
                raise BadRequest(
                    400,
                    str(Reason.VALIDATION_ERROR),
                    "to: expected an email address or a phone number, e.g. ?to=081234567890",
                )
            channel = (query.get("channel") or [None])[0]
            if channel not in (None, "sms", "email"):
                raise BadRequest(400, str(Reason.VALIDATION_ERROR), "channel: expected sms or email")
            limit = _int(query, "limit", 20, 1, READ_LIMIT)
            messages = [
                m
                for m in upstreams.outbox.delivered(key, limit=READ_LIMIT)
                if channel is None or m.channel == channel
            ][:limit]
            if path == "/v1/codes":
                answer = {"to": key, "codes": [m.code for m in messages if m.code]}
            else:
                answer = {"messages": [m.as_json() for m in messages]}
        elif path == "/v1/stats":
            _only(method, "GET")
            answer = stats_document(upstreams)
        elif path == "/v1/stats/series":
            _only(method, "GET")
            service = (query.get("service") or ["registry"])[0]
            if service not in counters:
                raise BadRequest(400, str(Reason.VALIDATION_ERROR), "service: expected registry, sms or smtp")
            since = _float(query, "since", time.time() - 60)
            series = counters[service].per_second(since)
            answer = {"service": service, "per_second": [[s, n] for s, n in series]}
        elif path == "/v1/clock":
            _only(method, "POST")
            upstreams.reset_clock()
            answer = {"clock_started_at": upstreams.clock_started_at}
        else:
            raise BadRequest(404, str(Reason.NOT_FOUND), f"no such path {path!r} (see docs/upstreams.md)")
        return 200, orjson.dumps(answer), _NO_HEADERS


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise BadRequest(405, str(Reason.METHOD_NOT_ALLOWED), f"method {method} not allowed; use {allowed}")


def _int(query: dict, name: str, default: int, low: int, high: int) -> int:
    text = (query.get(name) or [None])[0]
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(400, str(Reason.VALIDATION_ERROR), f"{name}: expected an integer {low}..{high}")
    return value


def _float(query: dict, name: str, default: float) -> float:
    text = (query.get(name) or [None])[0]
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise BadRequest(400, str(Reason.VALIDATION_ERROR), f"{name}: expected a number") from None


def _sms_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """The request's fields, keys lower-cased: a JSON object or an urlencoded form."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" or (not kind and body[:1] in (b"{", b"[")):
        data = _json_object(body, "sms")
    elif kind == "application/x-www-form-urlencoded" or not kind:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(400, str(Reason.VALIDATION_ERROR), "sms: the form is not UTF-8") from None
        data = _form(text)
    else:
        raise BadRequest(
            415, str(Reason.VALIDATION_ERROR), f"sms: content type {kind!r}; send application/json or a form"
        )
    return {str(k).lower(): v for k, v in data.items()}


def _form(text: str) -> dict[str, Any]:
    """An urlencoded form (parse_qs semantics: a repeated key gives a list); unquoting only where
    needed (parse_qs took ~40 % of a message's cost)."""
    fields: dict[str, Any] = {}
    for pair in text.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        if "%" in key or "+" in key:
            key = urllib.parse.unquote_plus(key)
        if "%" in value or "+" in value:
            value = urllib.parse.unquote_plus(value)
        if key in fields:
            held = fields[key]
            fields[key] = [*held, value] if isinstance(held, list) else [held, value]
        else:
            fields[key] = value
    return fields


def _pick(data: dict[str, Any], names: tuple[str, ...], what: str) -> Any:
    for name in names:
        if name in data and data[name] not in (None, "", []):
            return data[name]
    raise BadRequest(400, str(Reason.VALIDATION_ERROR), f"sms: no {what} field (one of: {', '.join(names)})")


def _recipients(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value).split(",")
    if len(items) > MAX_RECIPIENTS_PER_MESSAGE:
        raise BadRequest(
            400,
            str(Reason.VALIDATION_ERROR),
            f"sms: at most {MAX_RECIPIENTS_PER_MESSAGE} recipients per request",
        )
    numbers = []
    for item in items:
        key = phone_key(str(item)) if isinstance(item, str | int) else None
        if key is None:
            raise BadRequest(
                400,
                str(Reason.VALIDATION_ERROR),
                f"sms: {str(item)[:40]!r} is not a phone number (08..., 628... or +628...)",
            )
        numbers.append(key)
    return numbers


def stats_document(upstreams: Upstreams) -> dict[str, Any]:
    """``GET /v1/stats``: every service's counters, the outbox's size, the faults in force."""
    faults = upstreams.registry_faults
    return {
        "now": time.time(),
        "clock_started_at": upstreams.clock_started_at,
        "services": {name: c.snapshot() for name, c in upstreams.counters.items()},
        "outbox": {
            "recipients": len(upstreams.outbox),
            "messages": upstreams.outbox.messages_held(),
            "evicted_recipients": upstreams.outbox.evicted_recipients,
            "per_recipient": upstreams.outbox.per_recipient,
            "max_recipients": upstreams.outbox.max_recipients,
        },
        "faults": {
            "registry": {
                "latency": str(faults.latency),
                "error_rate": faults.error_rate,
                "timeout_rate": faults.timeout_rate,
                "timeout_s": faults.timeout_s,
                "slowdown": [w.__dict__ for w in faults.slowdown],
            },
            "sms": {"delay": str(upstreams.sms_faults.delay), "loss_rate": upstreams.sms_faults.loss_rate},
            "email": {
                "delay": str(upstreams.email_faults.delay),
                "loss_rate": upstreams.email_faults.loss_rate,
            },
        },
    }
