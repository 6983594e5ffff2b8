"""Where a target is: the one loopback test, and the one remote guard behind ``serve --db``,
``surge --host`` and ``seed-db``, deciding on every host the driver would really connect to.

A database URL is resolved as its driver resolves it (libpq: URL, then service file, then PG*
environment; PyMySQL: URL query, then option file) and handed back pinned, so nothing else is used.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from simulator.errors import InvalidOption, UnsafeTarget

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
MARIADB = "mariadb"

DATABASE_SCHEMES = {
    "sqlite": SQLITE,
    "postgres": POSTGRESQL,
    "postgresql": POSTGRESQL,
    "mysql": MARIADB,
    "mariadb": MARIADB,
}
"""URL schemes (before any ``+driver``) and the engine kind each stands for."""

DRIVERS = {SQLITE: "sqlite", POSTGRESQL: "postgresql+psycopg", MARIADB: "mysql+pymysql"}
"""The driver each engine kind is loaded with: the resolution below is that driver's."""


def is_loopback(host: str) -> bool:
    """True for ``localhost``, a loopback address (127.0.0.0/8, ::1), or a name every address of which
    is one; False for anything else, including a name that does not resolve."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    # An IPv6 address may carry its zone ("fe80::1%eth0"): the address is what precedes it.
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


@dataclass(frozen=True)
class Endpoint:
    """One place a client would connect to, and what decided it (for the refusal's message)."""

    host: str
    """A host name, an IP address, or a Unix socket (a path or libpq's ``@abstract`` name)."""
    source: str
    """Where the value came from: ``the URL``, ``PGHOSTADDR``, ``service 'qa' in FILE``..."""
    socket: bool = False

    def is_local(self) -> bool:
        return self.socket or is_loopback(self.host)


def require_local(
    endpoints: list[Endpoint] | tuple[Endpoint, ...],
    *,
    allow_remote: bool,
    what: str,
    flag: str = "--allow-remote",
) -> None:
    """Raise :class:`UnsafeTarget` unless every endpoint is on this machine (or ``allow_remote``).

    Runs before anything is opened: a name is resolved (``is_loopback``), never connected to.
    """
    if allow_remote:
        return
    remote = [e for e in endpoints if not e.is_local()]
    if remote:
        hosts = ", ".join(f"{e.host!r} (from {e.source})" for e in remote)
        raise UnsafeTarget(
            f"{what} would connect to {hosts}, which is not this machine; pass {flag} if you mean it"
        )


def http_endpoint(url: str, option: str = "--host") -> Endpoint:
    """The host an ``http(s)://`` base URL names; InvalidOption for anything else."""
    parsed = urllib.parse.urlparse(url)
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise InvalidOption(f"{option}: {url!r} has a port that is not a number") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidOption(f"{option}: expected a URL like http://127.0.0.1:8000, got {url!r}")
    return Endpoint(parsed.hostname, f"{option} {url}")


# --- databases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseTarget:
    """A ``--db`` value resolved: engine kind, the URL pinned to the resolved hosts, and those hosts."""

    kind: str
    url: str
    """A SQLAlchemy URL with our driver that names every host explicitly (password included)."""
    endpoints: tuple[Endpoint, ...]
    label: str
    """The user's URL without its password, for messages."""
    database: str


def resolve_database(
    db: str, *, option: str = "--db", environ: Mapping[str, str] | None = None
) -> DatabaseTarget:
    """Resolve a database URL (or a SQLite path) the way its driver will, without connecting."""
    env = os.environ if environ is None else environ
    text = db.strip()
    if "://" not in text:
        path = str(Path(text).expanduser().absolute())
        return DatabaseTarget(
            SQLITE, f"sqlite:///{path}", (Endpoint(path, "a file", socket=True),), path, path
        )
    scheme = text.partition("://")[0].partition("+")[0].lower()
    kind = DATABASE_SCHEMES.get(scheme)
    if kind is None:
        raise InvalidOption(
            f"{option} {_hide_password(text)!r}: unsupported database URL scheme {scheme!r}; "
            "use a SQLite path, postgresql://, mysql:// or mariadb://"
        )
    if kind == SQLITE:
        path = text.partition("://")[2].partition("?")[0][1:] or ":memory:"
        return DatabaseTarget(SQLITE, text, (Endpoint(path, "a file", socket=True),), path, path)
    if kind == POSTGRESQL:
        return _resolve_postgres(text, option, env)
    return _resolve_mysql(text, option)


def check_database(
    db: str, *, allow_remote: bool, option: str = "--db", environ: Mapping[str, str] | None = None
) -> DatabaseTarget:
    """:func:`resolve_database`, refusing a target with any host off this machine."""
    target = resolve_database(db, option=option, environ=environ)
    require_local(target.endpoints, allow_remote=allow_remote, what=f"{option} {target.label}")
    return target


def _hide_password(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not at or ":" not in userinfo.split("/")[0]:
        return text
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{tail}"


# libpq's own keywords and environment variables for where to connect.
_PG_WHERE = (("host", "PGHOST"), ("hostaddr", "PGHOSTADDR"), ("port", "PGPORT"))


def _resolve_postgres(text: str, option: str, env: Mapping[str, str]) -> DatabaseTarget:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    uri = "postgresql" + text[text.index("://") :]  # libpq knows no "+driver" suffix
    label = _hide_password(text)
    try:
        params = conninfo_to_dict(uri)  # libpq's own parser: multi-host lists, ?host=, ?hostaddr=
    except psycopg.Error as err:
        raise InvalidOption(
            f"{option} {label!r} is not a URL libpq can read ({str(err).strip().splitlines()[-1]})"
        ) from None
    if not params.get("dbname"):
        raise InvalidOption(f"{option} {label!r} names no database")
    # libpq fills what the URL leaves out from the service, then from PG* variables.
    service = params.get("service") or env.get("PGSERVICE")
    from_service, service_source = _pg_service(service, env, option) if service else ({}, "")
    resolved: dict[str, tuple[str, str]] = {}
    for key, variable in _PG_WHERE:
        if key in params:
            resolved[key] = (str(params[key]), "the URL")
        elif key in from_service:
            resolved[key] = (from_service[key], service_source)
        elif env.get(variable) is not None:
            resolved[key] = (env[variable], variable)
    hosts = _split(resolved.get("host"))
    addresses = _split(resolved.get("hostaddr"))
    ports = _split(resolved.get("port"))
    if hosts and addresses and len(hosts) != len(addresses):
        raise InvalidOption(
            f"{option} {label!r}: {len(hosts)} host(s) but {len(addresses)} hostaddr value(s)"
        )
    count = max(len(hosts), len(addresses), 1)
    if len(ports) > 1 and len(ports) != count:
        raise InvalidOption(f"{option} {label!r}: {len(ports)} ports for {count} host(s)")
    endpoints = []
    for i in range(count):
        address = addresses[i] if addresses else ""
        host = hosts[i] if hosts else ""
        if address:  # libpq connects to hostaddr; host then only names the server for TLS and auth
            endpoints.append(Endpoint(address, resolved["hostaddr"][1]))
        elif not host:
            endpoints.append(Endpoint("the default Unix socket", "libpq's default", socket=True))
        elif host.startswith(("/", "@")):
            endpoints.append(Endpoint(host, resolved["host"][1], socket=True))
        else:
            endpoints.append(Endpoint(host, resolved["host"][1]))
    # Pinned: every resolved value is written out, so neither PG* nor a service can change it.
    query = {
        k: str(v)
        for k, v in params.items()
        if k not in ("user", "password", "dbname", "host", "hostaddr", "port")
    }
    for key, _variable in _PG_WHERE:
        if key in resolved and resolved[key][0]:
            query[key] = resolved[key][0]
    from sqlalchemy.engine import URL

    url = URL.create(
        DRIVERS[POSTGRESQL],
        username=params.get("user"),
        password=params.get("password"),
        database=params["dbname"],
        query=query,
    )
    return DatabaseTarget(
        POSTGRESQL, url.render_as_string(hide_password=False), tuple(endpoints), label, params["dbname"]
    )


def _split(value: tuple[str, str] | None) -> list[str]:
    return value[0].split(",") if value and value[0] else []


def _pg_service(name: str, env: Mapping[str, str], option: str) -> tuple[dict[str, str], str]:
    """The service's keywords, from the files libpq reads (the user's first, then the system's).

    A service none of them defines is refused: libpq might find it in a file compiled into it,
    and the guard decides only on what it can see.
    """
    user_file = env.get("PGSERVICEFILE") or str(Path(env.get("HOME", "~")).expanduser() / ".pg_service.conf")
    files = [user_file]
    if env.get("PGSYSCONFDIR"):
        files.append(str(Path(env["PGSYSCONFDIR"]) / "pg_service.conf"))
    for path in files:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # keywords are case-sensitive
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as err:
            raise InvalidOption(f"{option}: service file {path} is unreadable ({err})") from None
        if parser.has_section(name):
            return dict(parser.items(name)), f"service {name!r} in {path}"
    raise InvalidOption(
        f"{option}: PostgreSQL service {name!r} is not defined in {' or '.join(files)}; "
        "name the host in the URL instead"
    )


def _resolve_mysql(text: str, option: str) -> DatabaseTarget:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    label = _hide_password(text)
    if "," in text.partition("://")[2].partition("/")[0]:
        raise InvalidOption(f"{option} {label!r} names several hosts; a MySQL/MariaDB URL names one")
    try:
        url = make_url(text)
        port = url.port
    except (sa.exc.ArgumentError, ValueError) as err:
        raise InvalidOption(
            f"{option} {label!r} is not a database URL with one host ({str(err).splitlines()[0]})"
        ) from None
    if not url.database:
        raise InvalidOption(f"{option} {label!r} names no database")
    query = dict(url.query)
    for key, value in query.items():
        if not isinstance(value, str):
            raise InvalidOption(f"{option} {label!r}: ?{key}= is given more than once")
    # PyMySQL takes the URL's query as keyword arguments: ?host= wins over the URL's host.
    host, host_source = (query["host"], "?host=") if query.get("host") else (url.host, "the URL")
    socket_path, socket_source = (query.get("unix_socket"), "?unix_socket=")
    option_file = query.get("read_default_file")
    if not option_file and query.get("read_default_group"):
        option_file = "/etc/my.cnf"  # PyMySQL's choice when only a group is named
    if option_file:  # PyMySQL fills what is not given from the option file's group
        import pymysql.optionfile

        group = query.get("read_default_group") or "client"
        parser = pymysql.optionfile.Parser()
        try:
            parser.read(os.path.expanduser(option_file))
        except (configparser.Error, UnicodeDecodeError) as err:
            raise InvalidOption(f"{option}: option file {option_file} is unreadable ({err})") from None
        if not host and parser.has_option(group, "host"):
            host, host_source = parser.get(group, "host"), f"[{group}] in {option_file}"
        if not socket_path and parser.has_option(group, "socket"):
            socket_path, socket_source = parser.get(group, "socket"), f"[{group}] in {option_file}"
        if not port and not query.get("port") and parser.has_option(group, "port"):
            query["port"] = parser.get(group, "port")
    host = host or "localhost"  # PyMySQL's default (it reads no MYSQL_HOST)
    if socket_path:
        endpoints = (Endpoint(socket_path, socket_source, socket=True),)
        query["unix_socket"] = socket_path
    else:
        endpoints = (Endpoint(host, host_source),)
    query.pop("host", None)
    query_port = query.pop("port", None)
    try:
        port = port or (int(query_port) if query_port else None)
    except ValueError:
        raise InvalidOption(f"{option} {label!r}: port {query_port!r} is not a number") from None
    pinned = url.set(drivername=DRIVERS[MARIADB], host=host, port=port, query=query)
    return DatabaseTarget(
        MARIADB, pinned.render_as_string(hide_password=False), endpoints, label, url.database
    )
