"""Where ``seed-db`` writes: turns the user's ``--db`` value into a SQLAlchemy engine per engine kind.

Accepts a SQLite path or URL, ``postgresql://``, ``mysql://`` and ``mariadb://``; refuses a
non-loopback host unless the caller opts in (:mod:`simulator.net`), and says clearly when a server
cannot be reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from simulator.database.db import make_engine
from simulator.errors import InvalidOption, TargetUnavailable
from simulator.net import DRIVERS, MARIADB, POSTGRESQL, SQLITE, check_database

__all__ = ["MARIADB", "POSTGRESQL", "SQLITE", "Target", "connect", "create_engine", "parse_target"]


@dataclass(frozen=True)
class Target:
    """A database to seed: its engine kind, the SQLAlchemy URL we connect with, and its label."""

    kind: str
    url: URL
    """Pinned to the hosts the remote guard resolved (see :func:`simulator.net.resolve_database`)."""
    label: str
    """The user's URL without its password, for messages and the side file header."""


def parse_target(db: str, *, allow_remote: bool = False, environ: Mapping[str, str] | None = None) -> Target:
    """Read a ``--db`` value: a file path (SQLite) or a URL of one of the three engines.

    A server URL is resolved as its driver would resolve it (URL, service or option file,
    environment) and refused, before any connection, if one of its hosts is not this machine.
    """
    if not db or not db.strip():
        raise InvalidOption(
            "--db is empty: give a SQLite path or a postgresql://, mysql:// or mariadb:// URL"
        )
    db = db.strip()
    if "://" not in db or db.partition("://")[0].lower().startswith(SQLITE):
        return _sqlite_target(db)
    resolved = check_database(db, allow_remote=allow_remote, environ=environ)
    return Target(resolved.kind, make_url(resolved.url), resolved.label)


def _sqlite_target(db: str) -> Target:
    if "://" in db:
        try:
            url = make_url(db)
        except sa.exc.ArgumentError as err:
            raise InvalidOption(f"--db {db!r} is not a database URL ({err})") from None
        if not url.database or url.database == ":memory:":
            raise InvalidOption(
                "--db: an in-memory SQLite database would vanish when seed-db exits; give a file"
            )
        path = Path(url.database).expanduser()
    else:
        path = Path(db).expanduser()
    if path.is_dir():
        raise InvalidOption(f"--db {db!r} is a directory; give a SQLite file path")
    path = path.resolve()
    if not path.parent.is_dir():
        # The API's engine would create it (as whoever runs seed-db): a typo must not become a tree.
        raise InvalidOption(f"--db {db!r}: the directory {path.parent} does not exist; create it first")
    return Target(SQLITE, URL.create(DRIVERS[SQLITE], database=str(path)), str(path))


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
