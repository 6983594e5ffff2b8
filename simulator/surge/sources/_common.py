"""What the OTP and truth sources share: reading a spec table with one-line errors, and the
read-only, guarded connections they open (HTTP, SQL, Redis).

Every connection a source opens goes through the remote guard (simulator.net.require_local) first.
Drivers are the ones that cooperate with gevent-patched Locust workers: the standard library's
http.client and sqlite3, psycopg 3 (gevent support from 3.1.14), PyMySQL and redis-py (pure Python
sockets).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sqlite3
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from simulator.errors import InvalidInputFile, InvalidOption, TargetUnavailable
from simulator.net import (
    MARIADB,
    POSTGRESQL,
    SQLITE,
    Endpoint,
    http_endpoint,
    require_local,
    resolve_database,
)

_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
"""A named bind parameter (``:address``), not a PostgreSQL cast (``::text``)."""


class Spec:
    """One table of a profile (``[otp.email]``, ``[reconcile]``) and the place it came from.

    ``where`` is ``"FILE [table]"``; every error is one line ``FILE: key 'table.key': expected ...``.
    """

    def __init__(self, data: Mapping[str, Any], where: str):
        if not isinstance(data, Mapping):
            raise InvalidInputFile(f"{where}: expected a table, got {type(data).__name__} {data!r}")
        self.data = data
        self.where = where
        file, sep, table = where.rpartition(" [")
        if sep and table.endswith("]"):
            self.file, self.table = file, table[:-1]
        else:
            self.file, self.table = where, ""

    def key(self, name: str) -> str:
        return f"{self.table}.{name}" if self.table else name

    def error(self, name: str, expected: str, value: Any = ...) -> InvalidInputFile:
        shown = "" if value is ... else f", got {value!r}"
        return InvalidInputFile(f"{self.file}: key '{self.key(name)}': expected {expected}{shown}")

    def only(self, *known: str) -> None:
        unknown = [k for k in self.data if k not in known]
        if unknown:
            raise InvalidInputFile(
                f"{self.file}: unknown key '{self.key(unknown[0])}' (expected one of: {', '.join(known)})"
            )

    def string(self, name: str, expected: str, *, required: bool = True, default: str | None = None) -> Any:
        if name not in self.data:
            if required:
                raise InvalidInputFile(f"{self.file}: key '{self.key(name)}' is required ({expected})")
            return default
        value = self.data[name]
        if not isinstance(value, str) or not value.strip():
            raise self.error(name, expected, value)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, "true or false", value)
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.error(name, f"a number from {low:g} to {high:g}", value)
        return float(value)

    def url(self, expected: str) -> tuple[str, str]:
        """``url`` or ``url_env`` (the name of an environment variable holding it, so a password
        stays out of the profile); returns (url, the key it came from)."""
        if "url" in self.data and "url_env" in self.data:
            raise InvalidInputFile(
                f"{self.file}: keys '{self.key('url')}' / '{self.key('url_env')}': "
                "expected one of them, not both"
            )
        if "url_env" in self.data:
            name = self.string("url_env", "the name of an environment variable holding the URL")
            value = os.environ.get(name, "").strip()
            if not value:
                raise InvalidInputFile(
                    f"{self.file}: key '{self.key('url_env')}': environment variable {name} is not set "
                    f"(expected {expected})"
                )
            return value, "url_env"
        return self.string("url", expected), "url"


def select_query(spec: Spec, name: str, value: Any, params: frozenset[str]) -> str:
    """A single SELECT (or WITH ... SELECT) whose bind parameters are among ``params``."""
    if value is None:
        raise InvalidInputFile(f"{spec.file}: key '{spec.key(name)}' is required (an SQL SELECT query)")
    if not isinstance(value, str) or not value.strip():
        raise spec.error(name, "an SQL SELECT query", value)
    text = value.strip().rstrip(";").strip()
    if not re.match(r"(?is)^(select|with)\b", text) or ";" in text:
        raise spec.error(name, "one SQL SELECT query (read-only; no other statement)", value)
    binds = set(_BIND.findall(text))
    unknown = sorted(binds - params)
    if unknown:
        allowed = ", ".join(f":{p}" for p in sorted(params)) or "none"
        raise spec.error(name, f"bind parameters among {allowed}, not :{unknown[0]}", value)
    return text


def bind_names(query: str) -> frozenset[str]:
    return frozenset(_BIND.findall(query))


# --- HTTP ----------------------------------------------------------------------------------------


class HttpReader:
    """GET JSON from one loopback (or allowed) base URL over a small pool of keep-alive connections.

    Safe for greenlets and threads: each request takes a connection from the pool or opens one.
    """

    def __init__(
        self, base: str, *, what: str, option: str, allow_remote: bool | None, timeout_s: float = 10.0
    ):
        """``allow_remote=None``: the URL is --host or --upstreams, which the run has guarded already."""
        try:
            endpoint = http_endpoint(base, option)
        except InvalidOption as err:
            raise InvalidInputFile(str(err)) from None
        if allow_remote is not None:
            require_local([endpoint], allow_remote=allow_remote, what=what)
        parsed = urllib.parse.urlparse(base)
        self.base = base.rstrip("/")
        self.prefix = parsed.path.rstrip("/")
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or ""
        self.port = parsed.port
        self.timeout_s = timeout_s
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=self.timeout_s)

    def get_json(self, path: str, params: Mapping[str, str]) -> tuple[int, Any]:
        target = f"{self.prefix}{path}?{urllib.parse.urlencode(params)}"
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more, fresh
            conn = self._connection()
            try:
                conn.request("GET", target, headers={"Accept": "application/json"})
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                if attempt == 2:
                    raise TargetUnavailable(f"{self.base}{path}: cannot connect ({err})") from err
                continue
            if response.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)
            try:
                return response.status, json.loads(raw) if raw else None
            except ValueError:
                return response.status, None
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# --- SQL -----------------------------------------------------------------------------------------


class ReadOnlyDatabase:
    """A read-only connection pool to the user's database: SQLite, PostgreSQL or MariaDB/MySQL.

    SQLite is opened with ``mode=ro``; PostgreSQL sessions default to read-only transactions
    (``default_transaction_read_only``, and psycopg's ``read_only``); MariaDB/MySQL sessions are
    ``SET SESSION TRANSACTION READ ONLY``. A write in a query is refused by the engine itself.
    """

    def __init__(self, url: str, *, option: str, allow_remote: bool, timeout_s: float = 10.0):
        import sqlalchemy as sa

        target = resolve_database(url, option=option)
        require_local(list(target.endpoints), allow_remote=allow_remote, what=f"{option} {target.label}")
        self.kind, self.label = target.kind, target.label
        if target.kind == SQLITE:
            path = target.database
            if path == ":memory:" or not os.path.exists(path):
                raise InvalidInputFile(f"{option}: {path} is not an existing SQLite database file")
            uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"

            def connect() -> sqlite3.Connection:
                conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, check_same_thread=False)
                conn.execute("PRAGMA query_only = ON")
                return conn

            self.engine = sa.create_engine(
                "sqlite://", creator=connect, pool_size=4, max_overflow=8, poolclass=sa.pool.QueuePool
            )
        elif target.kind == POSTGRESQL:
            self.engine = sa.create_engine(
                target.url,
                pool_size=2,
                max_overflow=8,
                pool_pre_ping=True,
                connect_args={"connect_timeout": max(1, int(timeout_s))},
            )

            @sa.event.listens_for(self.engine, "connect")
            def _read_only_pg(dbapi_conn, _record):
                dbapi_conn.autocommit = True
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                    cur.execute("SET default_transaction_read_only = on")
                dbapi_conn.autocommit = False
                dbapi_conn.read_only = True
        elif target.kind == MARIADB:
            self.engine = sa.create_engine(
                target.url,
                pool_size=2,
                max_overflow=8,
                pool_pre_ping=True,
                connect_args={"connect_timeout": max(1, int(timeout_s))},
            )

            @sa.event.listens_for(self.engine, "connect")
            def _read_only_my(dbapi_conn, _record):
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET SESSION TRANSACTION READ ONLY")
        else:  # pragma: no cover - resolve_database knows only these
            raise InvalidOption(f"{option}: unsupported database {target.label}")

    def scalar(self, query: str, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None when there is no row)."""
        import sqlalchemy as sa

        try:
            with self.engine.connect() as conn:
                row = conn.execute(sa.text(query), dict(params)).first()
                conn.rollback()
        except sa.exc.DBAPIError as err:
            raise TargetUnavailable(
                f"{self.label}: the query failed ({str(err.orig).strip().splitlines()[0]})"
            ) from None
        return None if row is None else row[0]

    def close(self) -> None:
        self.engine.dispose()


def redis_endpoint(url: str, option: str) -> Endpoint:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "unix":
        return Endpoint(parsed.path, option, socket=True)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise InvalidInputFile(f"{option}: expected a URL like redis://127.0.0.1:6379/0, got {url!r}")
    return Endpoint(parsed.hostname, f"{option} {parsed.scheme}://{parsed.hostname}")
