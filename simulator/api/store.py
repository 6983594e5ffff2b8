"""The store's common part: one engine, one write transaction per step, the answer kept with it.

Every step's data operations (`accounts`, `otps`, `signup`, `progress`, `phone`, `uploads`, `waves`,
`stats`) run through a `Store`: `Store.write` runs one short transaction and, when the request carries
an ``Idempotency-Key``, stores the answer in that same transaction, so an acknowledged write and its
key commit together. The same code runs on SQLite, PostgreSQL and MariaDB; invariants live in the
database (unique constraints, conditional UPDATEs such as the fcfs wave counter), never in a
check-then-write in Python.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable

import orjson
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from simulator.api.idempotency import IdempotencyRecords, current_idempotency
from simulator.api.responses import Reply
from simulator.api.settings import Settings
from simulator.database import schema as t
from simulator.database.db import run_write


def new_account_id() -> str:
    """32 hex digits, time-ordered (48-bit milliseconds + 80 random bits) so B-tree inserts append."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def worker_name() -> str:
    """This process's name in ``outcome_counts``: host, pid and a random tag (pids are reused)."""
    return f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(3)}"


class Store:
    """The engine and settings every step's operations share. Thread-safe; each call is one transaction."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.idempotency = IdempotencyRecords(engine)

    def write(self, work: Callable[[Connection], Reply]) -> Reply:
        """Run ``work`` in one write transaction; store the reply under the request's Idempotency-Key."""
        scope = current_idempotency.get()

        def body(conn: Connection) -> Reply:
            reply = work(conn)
            if scope is not None and not scope.stored:
                self.idempotency.store(conn, scope, reply.status, orjson.dumps(reply.body))
            return reply

        reply = run_write(self.engine, body)
        if scope is not None:
            scope.stored = True
        return reply

    def token_secret(self) -> bytes:
        """The HMAC key of bearer tokens, kept in the database so restarts keep sessions valid."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(t.schema_meta.c.value).where(t.schema_meta.c.name == "token_secret")
            ).scalar_one_or_none()
        if value is None:
            try:
                run_write(
                    self.engine,
                    lambda conn: conn.execute(
                        insert(t.schema_meta).values(name="token_secret", value=secrets.token_hex(32))
                    ),
                )
            except IntegrityError:
                pass  # another worker made it first
            return self.token_secret()
        return bytes.fromhex(value)
