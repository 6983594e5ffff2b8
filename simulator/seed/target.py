"""Where ``seed-db`` writes: turns the user's ``--db`` value into a SQLAlchemy engine per engine kind.

Accepts a SQLite path or URL, ``postgresql://``, ``mysql://`` and ``mariadb://``; refuses a
non-loopback host unless the caller opts in, and says clearly when a server cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from simulator.api.db import make_engine
from simulator.errors import InvalidOption, TargetUnavailable, UnsafeTarget
from simulator.net import is_loopback

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
MARIADB = "mariadb"

# The driver each engine kind is loaded with; the bulk paths below talk to these drivers directly.
_DRIVERS = {SQLITE: "sqlite", POSTGRESQL: "postgresql+psycopg", MARIADB: "mysql+pymysql"}
_SCHEMES = {
    "sqlite": SQLITE,
    "postgres": POSTGRESQL,
    "postgresql": POSTGRESQL,
    "mysql": MARIADB,
    "mariadb": MARIADB,
}


@dataclass(frozen=True)
class Target:
    """A database to seed: its engine kind and the SQLAlchemy URL with the driver we load with."""

    kind: str
    url: URL

    @property
    def label(self) -> str:
        """The URL without its password, for messages and the side file header."""
        return self.url.render_as_string(hide_password=True)


def parse_target(db: str, *, allow_remote: bool = False) -> Target:
    """Read a ``--db`` value: a file path (SQLite) or a URL of one of the three engines."""
    if not db or not db.strip():
        raise InvalidOption(
            "--db is empty: give a SQLite path or a postgresql://, mysql:// or mariadb:// URL"
        )
    db = db.strip()
    if "://" not in db:
        path = Path(db).expanduser()
        if path.is_dir():
            raise InvalidOption(f"--db {db!r} is a directory; give a SQLite file path")
        return Target(SQLITE, URL.create("sqlite", database=str(path.resolve())))
    try:
        url = make_url(db)
    except sa.exc.ArgumentError as err:
        raise InvalidOption(f"--db {db!r} is not a database URL ({err})") from None
    scheme = url.drivername.partition("+")[0].lower()
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise InvalidOption(
            f"--db {db!r}: unsupported scheme {scheme!r}; use a SQLite path, postgresql://, mysql:// or mariadb://"
        )
    url = url.set(drivername=_DRIVERS[kind])
    if kind == SQLITE:
        if not url.database or url.database == ":memory:":
            raise InvalidOption(
                "--db: an in-memory SQLite database would vanish when seed-db exits; give a file"
            )
        return Target(kind, url.set(database=str(Path(url.database).expanduser().resolve())))
    if not url.database:
        raise InvalidOption(f"--db {url.render_as_string(hide_password=True)!r} names no database")
    if not allow_remote and not is_loopback(url.host or "127.0.0.1"):
        raise UnsafeTarget(
            f"--db points at {url.host!r}, which is not this machine; pass --allow-remote to seed it anyway"
        )
    return Target(kind, url)


def create_engine(target: Target) -> sa.Engine:
    """The API's own engine set-up (same SQLite pragmas, same drivers), plus what bulk loads need."""
    url = target.url
    if target.kind == MARIADB:
        # LOAD DATA LOCAL needs the client to announce it; the server must allow it too.
        url = url.update_query_dict({"local_infile": "1"})
    return make_engine(url.render_as_string(hide_password=False), pool_size=2)


def connect(engine: sa.Engine, target: Target) -> sa.Connection:
    """Open a connection, turning a refused or unknown server into a one-line :class:`TargetUnavailable`."""
    try:
        return engine.connect()
    except sa.exc.OperationalError as err:
        reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
        raise TargetUnavailable(f"cannot reach the database {target.label}: {reason}") from None
