"""OTP sources: where the code a person would get by email or SMS is read during a surge.

Interface (agreed in /work/tasks/profile.md)::

    class OtpSource(Protocol):
        def code(self, channel: str, address: str) -> str | None: ...  # newest code, or None (not yet)
    def otp_source(spec, *, target, upstreams, where) -> OtpSource

``outbox`` (the reference API's GET /v1/sandbox/outbox?to=, or the stand-ins' with --upstreams),
``upstreams`` (the stand-ins' outbox) and ``fixed`` (a staging code) live here; the journey reads
``outbox`` / ``upstreams`` with its own HTTP client so the polls are measured (profile/journey.py).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

from simulator.errors import InvalidInputFile

SOURCES = ("outbox", "fixed", "sql", "redis", "upstreams")


class OtpSource(Protocol):
    def code(self, channel: str, address: str) -> str | None: ...


class OutboxSource:
    """The sandbox outbox shape: ``{"messages": [{"channel", "code", ...}, ...]}``, newest last."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def code(self, channel: str, address: str) -> str | None:
        from simulator.surge.target import http_json

        query = urllib.parse.urlencode({"to": address})
        status, body = http_json("GET", f"{self.base}/v1/sandbox/outbox?{query}")
        messages = body.get("messages", []) if status == 200 and isinstance(body, dict) else []
        found = None
        for message in messages:
            if message.get("channel") == channel and message.get("code"):
                found = str(message["code"])
        return found


class FixedSource:
    """A staging system that accepts one code for everybody."""

    def __init__(self, value: str):
        self.value = value

    def code(self, channel: str, address: str) -> str | None:
        return self.value


def _keys(spec: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(spec) - {"source", *allowed})
    if unknown:
        known = ", ".join(("source", *allowed))
        raise InvalidInputFile(f"{where}: unknown key '{unknown[0]}' (expected one of: {known})")


def otp_source(spec: Mapping[str, Any], *, target: str, upstreams: str | None, where: str) -> OtpSource:
    """The source a profile's ``[otp.email]`` / ``[otp.sms]`` table names; one error line on a bad spec."""
    source = spec.get("source")
    if source == "outbox":
        _keys(spec, where, ())
        return OutboxSource(upstreams or target)
    if source == "upstreams":
        _keys(spec, where, ())
        if not upstreams:
            raise InvalidInputFile(
                f"{where}: key 'source': expected --upstreams URL (or [target] upstreams in the scenario) "
                "for source \"upstreams\""
            )
        return OutboxSource(upstreams)
    if source == "fixed":
        _keys(spec, where, ("code",))
        value = spec.get("code")
        if not isinstance(value, str) or not value:
            raise InvalidInputFile(f"{where}: key 'code': expected the staging OTP as a string, got {value!r}")
        return FixedSource(value)
    if source in ("sql", "redis"):
        raise InvalidInputFile(
            f"{where}: key 'source': source {source!r} is not in this build yet (simulator/surge/sources)"
        )
    raise InvalidInputFile(f"{where}: key 'source': expected one of {', '.join(SOURCES)}, got {source!r}")


__all__ = ["FixedSource", "OtpSource", "OutboxSource", "otp_source"]
