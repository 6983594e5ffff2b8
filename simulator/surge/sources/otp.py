"""Where a journey's one-time codes come from, per channel (``email``, ``sms``): one interface, five sources.

A profile's ``[otp.email]`` / ``[otp.sms]`` table names the source and its keys
(docs/target-profile-sources.md):

- ``outbox``: the reference API's sandbox outbox, ``GET {url or target}/v1/sandbox/outbox?to=``.
- ``fixed``: a staging system that accepts one code for everybody (``code = "123456"``).
- ``sql``: a query against the user's database over a read-only connection (``url`` or ``url_env``,
  ``query`` with an ``:address`` parameter and optionally ``:channel``).
- ``redis``: a key template (``key = "otp:{address}"``), read with GET or as the newest of a list.
- ``upstreams``: the stand-ins' read API (``surge --upstreams``), the same outbox shape.

``code(channel, address)`` returns the newest code or None (not delivered yet); the harness polls.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any, Protocol

from simulator.errors import InvalidInputFile, InvalidOption, TargetUnavailable
from simulator.net import require_local
from simulator.surge.sources._common import HttpReader, ReadOnlyDatabase, Spec, redis_endpoint, select_query

CHANNELS = ("email", "sms")
SOURCES = ("outbox", "fixed", "sql", "redis", "upstreams")
OUTBOX_PATH = "/v1/sandbox/outbox"


class OtpSource(Protocol):
    def code(self, channel: str, address: str) -> str | None: ...  # newest code, or None (not yet)


def _newest_in_outbox(body: Any, channel: str) -> str | None:
    """The first message of the channel with a code: the outbox lists the newest first."""
    messages = body.get("messages", []) if isinstance(body, dict) else []
    for message in messages:
        if isinstance(message, dict) and message.get("channel") == channel and message.get("code"):
            return str(message["code"])
    return None


class OutboxOtp:
    """``GET /v1/sandbox/outbox?to=ADDRESS`` on the reference API (sandbox mode) or the stand-ins."""

    def __init__(self, base: str, *, what: str, option: str, allow_remote: bool | None):
        self.reader = HttpReader(base, what=what, option=option, allow_remote=allow_remote)

    def code(self, channel: str, address: str) -> str | None:
        status, body = self.reader.get_json(OUTBOX_PATH, {"to": address})
        return _newest_in_outbox(body, channel) if status == 200 else None


class FixedOtp:
    """A staging system's one code for everybody."""

    def __init__(self, code: str):
        self.fixed = code

    def code(self, channel: str, address: str) -> str | None:
        return self.fixed


class SqlOtp:
    """The newest code from the user's database: ``query`` run with ``:address`` (and ``:channel``)."""

    def __init__(self, db: ReadOnlyDatabase, query: str, channel_value: str):
        self.db, self.query, self.channel_value = db, query, channel_value
        self.binds = {name for name in ("address", "channel") if re.search(rf"(?<![:\w]):{name}\b", query)}

    def code(self, channel: str, address: str) -> str | None:
        params = {"address": address, "channel": self.channel_value}
        value = self.db.scalar(self.query, {k: v for k, v in params.items() if k in self.binds})
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return text.strip() or None


class RedisOtp:
    """A key per address: a string (GET) or a list whose newest entry is at its head (LPUSH) or tail."""

    def __init__(self, client: Any, key: str, kind: str, newest: str, channel_value: str):
        self.client, self.key, self.kind, self.newest = client, key, kind, newest
        self.channel_value = channel_value

    def code(self, channel: str, address: str) -> str | None:
        import redis

        key = self.key.format(address=address, channel=self.channel_value)
        try:
            if self.kind == "string":
                value = self.client.get(key)
            else:
                value = self.client.lindex(key, 0 if self.newest == "head" else -1)
        except redis.RedisError as err:
            raise TargetUnavailable(f"redis {key!r}: {err}") from None
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return text.strip() or None


def otp_source(
    spec: Mapping[str, Any],
    *,
    target: str,
    upstreams: str | None,
    where: str,
    allow_remote: bool = False,
) -> OtpSource:
    """The source a profile's ``[otp.email]`` or ``[otp.sms]`` table describes.

    ``target`` is the surge's base URL, ``upstreams`` the stand-ins' (``--upstreams``) or None,
    ``where`` is ``"FILE [otp.email]"`` for error lines. A bad spec raises InvalidInputFile with one
    line naming the file, the table and the key; a connection off this machine raises UnsafeTarget
    unless ``allow_remote`` (``surge --allow-remote``).
    """
    s = Spec(spec, where)
    channel = s.table.rpartition(".")[2] if s.table.startswith("otp.") else ""
    source = s.data.get("source")
    if source not in SOURCES:
        raise s.error("source", "one of " + ", ".join(f'"{x}"' for x in SOURCES), source)
    value_for_channel = {"email": "email", "sms": "sms"}.get(channel, channel)
    if source == "fixed":
        s.only("source", "code")
        return FixedOtp(s.string("code", 'the code the staging system accepts, e.g. "123456"'))
    if source in ("outbox", "upstreams"):
        s.only("source", "url")
        default = target if source == "outbox" else upstreams
        url = s.string("url", "a base URL like http://127.0.0.1:8000", required=default is None)
        base = url or default
        if not base:
            raise s.error("url", "a base URL (or surge --upstreams) for the upstreams' read API")
        option = (
            f"{s.file}: key '{s.key('url')}'" if url else ("--host" if source == "outbox" else "--upstreams")
        )
        try:
            # --host / --upstreams were guarded by the run already; a URL of the profile's is guarded here.
            guard = allow_remote if url else None
            return OutboxOtp(base, what=f"{option} (OTP {source})", option=option, allow_remote=guard)
        except InvalidOption as err:
            raise InvalidInputFile(str(err)) from None
    if source == "sql":
        s.only("source", "url", "url_env", "query", "channel")
        url, url_key = s.url("a read-only database URL (sqlite:///FILE, postgresql://, mysql://)")
        query = select_query(s, "query", s.data.get("query"), frozenset({"address", "channel"}))
        if ":address" not in query:
            raise s.error("query", "a query using the :address parameter (the email or phone)", query)
        value_for_channel = s.string(
            "channel", "the value :channel stands for", required=False, default=value_for_channel
        )
        try:
            db = ReadOnlyDatabase(url, option=f"{s.file}: key '{s.key(url_key)}'", allow_remote=allow_remote)
        except InvalidOption as err:
            raise InvalidInputFile(str(err)) from None
        source = SqlOtp(db, query, value_for_channel)
        try:  # once now, so a wrong table or column is one line before any load, not an error per poll
            source.code(channel or "email", "probe@example.invalid")
        except TargetUnavailable as err:
            raise InvalidInputFile(
                f"{s.file}: key '{s.key('query')}': expected a query the database can run: {err}"
            ) from None
        return source
    # redis
    s.only("source", "url", "url_env", "key", "type", "newest", "channel")
    url, url_key = s.url("a Redis URL like redis://127.0.0.1:6379/0")
    key = s.string("key", 'a key template like "otp:{address}"')
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(key) if name is not None}
    except ValueError:
        raise s.error("key", "a key template with {address} (braces balanced)", key) from None
    if "address" not in fields or fields - {"address", "channel"}:
        raise s.error("key", "a key template using {address} (and optionally {channel}) only", key)
    kind = s.data.get("type", "string")
    if kind not in ("string", "list"):
        raise s.error("type", '"string" (GET) or "list" (the newest entry of a list)', kind)
    newest = s.data.get("newest", "head")
    if newest not in ("head", "tail"):
        raise s.error("newest", '"head" (LPUSH) or "tail" (RPUSH)', newest)
    if kind == "string" and "newest" in s.data:
        raise s.error("newest", 'no "newest" unless type = "list"', newest)
    value_for_channel = s.string(
        "channel", "the value {channel} stands for", required=False, default=value_for_channel
    )
    option = f"{s.file}: key '{s.key(url_key)}'"
    require_local([redis_endpoint(url, option)], allow_remote=allow_remote, what=f"{option} (OTP redis)")
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
    except ValueError as err:
        raise InvalidInputFile(f"{option}: expected a URL like redis://127.0.0.1:6379/0 ({err})") from None
    return RedisOtp(client, key, kind, newest, value_for_channel)


__all__ = ["CHANNELS", "SOURCES", "OtpSource", "otp_source"]
