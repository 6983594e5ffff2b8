"""The database engines a test runs on: SQLite always, PostgreSQL and MariaDB when their URL is set.

Parametrize a fixture with ``ENGINES``; ``server_url(param)`` gives the server URL (None for SQLite).
"""

from __future__ import annotations

import os

import pytest


def _engine(env: str, engine_id: str, mark: pytest.MarkDecorator):
    return pytest.param(
        env,
        id=engine_id,
        marks=[mark, pytest.mark.skipif(not os.environ.get(env), reason=f"{env} is not set")],
    )


ENGINES = [
    pytest.param(None, id="sqlite"),
    _engine("PRAKERJA_TEST_POSTGRES_URL", "postgresql", pytest.mark.postgres),
    _engine("PRAKERJA_TEST_MARIADB_URL", "mariadb", pytest.mark.mariadb),
]


def server_url(param: str | None) -> str | None:
    """The database server URL a parametrized engine stands for; None means a SQLite file."""
    return os.environ[param] if param else None
