"""The API's prepared statements hand the driver exactly the values SQLAlchemy itself would,
through public interfaces only (no ``compiled._bind_processors``)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from simulator.database import schema as t
from simulator.database.db import PreparedStatement, make_engine


def test_prepared_statements_bind_what_sqlalchemy_binds(tmp_path):
    engine = make_engine(tmp_path / "api.db")
    t.metadata.create_all(engine)
    sent: list = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO accounts"):
            sent.append(parameters)

    values = {
        "id": "acc-1",
        "email": "a@example.invalid",
        "name": "Siti",
        "password_hash": "x",
        "email_verified_at": dt.datetime(2020, 11, 2, 12, 5),
        "phone": None,
        "phone_verified_at": None,
        "created_at": dt.datetime(2020, 11, 2, 12, 0, 0, 123456),
    }
    statement = sa.insert(t.accounts)
    prepared = PreparedStatement(engine, statement)
    assert prepared.processors  # the timestamps have processors: the comparison below means something
    with engine.begin() as conn:
        conn.execute(statement, values)
    assert sent == [prepared.params(values)]
    engine.dispose()
