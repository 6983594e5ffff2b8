"""Attempt budgets kept in the database: failed logins and wrong OTP guesses per subject and time window.

Spending is one conditional UPDATE (``used < limit``, checked by its row count): parallel attempts never
overspend.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from simulator.database import schema as t


def subject(kind: str, key: str) -> str:
    """The stored subject of ``key`` (an email, a phone, an account id): kind plus a digest, fixed length."""
    return f"{kind}:{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:64]}"


def window_start(now: dt.datetime, window_s: float) -> dt.datetime:
    """Start of the fixed window of ``window_s`` seconds that holds ``now`` (naive UTC)."""
    epoch = dt.datetime(2000, 1, 1)
    step = max(1, int(window_s))
    return epoch + dt.timedelta(seconds=int((now - epoch).total_seconds()) // step * step)


def retry_after_s(now: dt.datetime, window_s: float) -> int:
    """Whole seconds until the window that holds ``now`` ends."""
    end = window_start(now, window_s) + dt.timedelta(seconds=max(1, int(window_s)))
    return max(1, int((end - now).total_seconds() + 0.999))


def spend(conn: Connection, who: str, limit: int, window_s: float, now: dt.datetime) -> bool:
    """Spend one attempt of ``who``'s budget in this window; False when it is used up (nothing spent)."""
    b = t.attempt_budgets
    start = window_start(now, window_s)
    counted = update(b).where(b.c.subject == who, b.c.window_start == start, b.c.used < limit)
    if conn.execute(counted.values(used=b.c.used + 1)).rowcount == 1:
        return True
    try:
        with _savepoint(conn):
            conn.execute(insert(b).values(subject=who, window_start=start, used=1))
        return True
    except IntegrityError:  # the row exists: used up, or a parallel attempt made it just now
        return conn.execute(counted.values(used=b.c.used + 1)).rowcount == 1


def exhausted(conn: Connection, who: str, limit: int, window_s: float, now: dt.datetime) -> bool:
    """True when ``who`` has no attempt left in this window."""
    b = t.attempt_budgets
    used = conn.execute(
        select(b.c.used).where(b.c.subject == who, b.c.window_start == window_start(now, window_s))
    ).scalar_one_or_none()
    return used is not None and used >= limit


def forget_before(conn: Connection, before: dt.datetime) -> int:
    """Drop the windows that started before ``before`` (they can no longer refuse anyone)."""
    return conn.execute(delete(t.attempt_budgets).where(t.attempt_budgets.c.window_start < before)).rowcount


def _savepoint(conn: Connection):  # a context manager
    # PostgreSQL aborts the whole transaction on a failed INSERT unless it runs in a savepoint.
    import contextlib

    return conn.begin_nested() if conn.dialect.name == "postgresql" else contextlib.nullcontext()
