"""``seed_database``: the reference API's schema seeded through its shipped mapping, plus the rules
only that schema has.

The rows go through the one loader, :func:`simulator.seed.mapping.seed_mapped`, with
``simulator/seed/mapping/reference.toml``. What is the reference schema's own lives here: the schema
is created first by the API's ``create_schema`` (and the tables it created dropped again if the
run fails, so an interrupted run leaves the database as it was); ``--append`` reads the open wave,
the waves' counts and the KK ledger back from the database; at the end the waves' quotas and counts
are set from every row in the database and the rules no constraint holds are checked (a wave's
quota, at most 2 recipients per KK), in the load's own transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa

from simulator import DEFAULT_SEED
from simulator.database import schema
from simulator.errors import InvalidOption, SimulatorError
from simulator.progress import ProgressCallback
from simulator.rules.eligibility import MAX_KK_RECIPIENTS
from simulator.seed.rows import SeedCursor
from simulator.seed.runner import (
    APPEND,
    BLOCK_ROWS,
    DEFAULT_CHUNK_ROWS,
    DEFAULT_WAVE,
    TRUNCATE,
    SeedResult,
)
from simulator.seed.states import StateMix
from simulator.seed.target import Target, connect
from simulator.seed.waves import PUBLISHED_WAVES, WaveCalendar


def seed_database(
    db: str,
    *,
    size: int | None = None,
    seed: int = DEFAULT_SEED,
    shard: tuple[int, int] = (0, 1),
    population_dir: str | os.PathLike[str] | None = None,
    states: str | StateMix | None = None,
    mode: str | None = None,
    wave: int = DEFAULT_WAVE,
    as_of: dt.datetime | None = None,
    open_days: float = 7.0,
    password_cost: str | int | None = None,
    distinct_passwords: str | int | None = None,
    workers: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    block_rows: int = BLOCK_ROWS,
    passwords_out: str | os.PathLike[str] | None = None,
    allow_remote: bool = False,
    progress: ProgressCallback | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> SeedResult:
    """Seed the reference API's schema in ``db`` with a population, in one transaction.

    The population is generated (``size``, ``seed``, optionally one ``shard`` of it, as
    ``prakerja-sim population`` would) or read from ``population_dir``.

    ``mode``: ``"truncate"`` empties the schema's tables first (in the same transaction; on
    PostgreSQL the tables are loaded aside and swapped in at one commit), ``"append"`` adds to what
    is there (the open wave and calendar are read from the database); ``None`` refuses a database
    that already holds accounts. ``password_cost``: the argon2id cost (``"min"`` or the API's levels
    0-4). Other arguments as :func:`simulator.seed.mapping.seed_mapped`, which does the load.
    """
    from simulator.seed.mapping import REFERENCE_MAPPING, seed_mapped

    if mode not in (None, TRUNCATE, APPEND):
        raise InvalidOption(f"mode must be {TRUNCATE!r} or {APPEND!r}, got {mode!r}")
    return seed_mapped(
        db, REFERENCE_MAPPING, size=size, seed=seed, shard=shard, population_dir=population_dir,
        states=states, mode=mode, wave=wave, as_of=as_of, open_days=open_days,
        password_cost=password_cost, distinct_passwords=distinct_passwords, workers=workers,
        chunk_rows=chunk_rows, block_rows=block_rows, passwords_out=passwords_out,
        allow_remote=allow_remote, progress=progress, on_chunk=on_chunk, rules=ReferenceRules(),
    )  # fmt: skip


def _count(conn: sa.Connection, table: sa.Table) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


class ReferenceRules:
    """What the one loader asks of the reference schema beyond its mapping (see the module docstring)."""

    appends = True

    def __init__(self) -> None:
        self._created: list[sa.Table] = []

    def prepare(self, engine: sa.Engine, target: Target, mode: str | None) -> str:
        """Refuse a database holding accounts unless told what to do with them; create the schema.
        Returns the mode of the load (``None``, a fresh or empty schema, is loaded as ``truncate``)."""
        with connect(engine, target) as conn:
            before = set(sa.inspect(conn).get_table_names())
            if mode is None and "accounts" in before and _count(conn, schema.accounts) > 0:
                raise InvalidOption(
                    f"{target.label} already holds seeded or registered accounts: pass --truncate to "
                    "replace them or --append to add to them"
                )
        schema.create_schema(engine)
        self._created = [t for t in schema.metadata.sorted_tables if t.name not in before]
        return mode or TRUNCATE

    def undo(self, engine: sa.Engine) -> None:
        if self._created:
            # DDL committed by create_schema is undone by hand: the database is as it was.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                schema.metadata.drop_all(engine, tables=self._created, checkfirst=True)

    def calendar(self, conn: sa.Connection) -> WaveCalendar:
        """``--append``: the calendar of the waves a previous seed wrote."""
        waves = schema.waves
        rows = conn.execute(sa.select(waves.c.number, waves.c.opens_at, waves.c.closes_at, waves.c.state)
                            .order_by(waves.c.number)).all()  # fmt: skip
        open_rows = [r for r in rows if r.state == "open"]
        if not rows or not open_rows:
            raise InvalidOption("--append needs a database seeded before (with an open wave); use --truncate")
        open_wave = open_rows[-1].number
        if [r.number for r in rows[:open_wave]] != list(range(1, open_wave + 1)):
            raise InvalidOption(
                "--append: the waves in the database are not 1..K as seed-db makes them; use --truncate"
            )
        return WaveCalendar(
            open_wave=open_wave,
            as_of=rows[open_wave - 1].opens_at + dt.timedelta(hours=1),
            opens_at=np.array([r.opens_at for r in rows[:open_wave]], dtype="datetime64[s]"),
            closes_at=np.array([r.closes_at for r in rows[:open_wave]], dtype="datetime64[s]"),
            published_accepted=np.array([w.accepted for w in PUBLISHED_WAVES[:open_wave]], dtype=np.int64),
        )

    def cursor(self, conn: sa.Connection, calendar: WaveCalendar) -> SeedCursor:
        """``--append``: recipients per wave, join orders and the KK ledger of the earlier runs."""
        cursor = SeedCursor()
        r, j = schema.recipients, schema.wave_joins
        per_wave = np.zeros(calendar.open_wave - 1, dtype=np.int64)
        for number, count in conn.execute(
            sa.select(r.c.wave_number, sa.func.count()).group_by(r.c.wave_number)
        ):
            if 1 <= number < calendar.open_wave:
                per_wave[number - 1] = count
        cursor.recipients_per_wave = per_wave
        cursor.recipients = int(per_wave.sum())
        joins = np.zeros(calendar.open_wave, dtype=np.int64)
        for number, last in conn.execute(
            sa.select(j.c.wave_number, sa.func.max(j.c.join_order)).group_by(j.c.wave_number)
        ):
            if 1 <= number <= calendar.open_wave:
                joins[number - 1] = last or 0
        cursor.joins_per_wave = joins
        kk_rows = conn.execute(sa.select(r.c.kk, sa.func.count()).group_by(r.c.kk)).all()
        if kk_rows:
            keys = np.array([int(k) for k, _ in kk_rows], dtype=np.int64)
            counts = np.array([c for _, c in kk_rows], dtype=np.int64)
            order = np.argsort(keys)
            cursor.ledger.keys, cursor.ledger.counts = keys[order], counts[order]
        return cursor

    def finish(self, conn: sa.Connection, calendar: WaveCalendar) -> list[dict]:
        """Counts and quotas of every wave from the rows now in the database (earlier runs included),
        then the rules no constraint holds; returns the waves' summary."""
        waves, j = schema.waves, schema.wave_joins
        joined = dict(
            conn.execute(sa.select(j.c.wave_number, sa.func.count()).group_by(j.c.wave_number)).all()
        )
        selected = dict(
            conn.execute(
                sa.select(j.c.wave_number, sa.func.count())
                .where(j.c.selected.is_(True))
                .group_by(j.c.wave_number)
            ).all()
        )
        accounts = _count(conn, schema.accounts)
        per_wave = np.array([selected.get(w, 0) for w in range(1, calendar.open_wave)], dtype=np.int64)
        quotas = calendar.quotas(accounts, per_wave)
        existing = dict(conn.execute(sa.select(waves.c.number, waves.c.quota)).all())
        summary = []
        for number in range(1, calendar.open_wave + 1):
            quota = max(int(quotas[number - 1]), int(existing.get(number) or 0))
            values = {
                "quota": quota,
                "joined_count": int(joined.get(number, 0)),
                "selected_count": int(selected.get(number, 0)),
            }
            conn.execute(sa.update(waves).where(waves.c.number == number).values(**values))
            summary.append(
                {"number": number, "state": "open" if number == calendar.open_wave else "closed", **values}
            )
        _check_constraints(conn)
        return summary


def _check_constraints(conn: sa.Connection) -> None:
    """The rules no database constraint holds: a wave's quota, and at most 2 recipients per KK."""
    waves, r = schema.waves, schema.recipients
    over = conn.execute(sa.select(waves.c.number).where(waves.c.selected_count > waves.c.quota)).first()
    if over is not None:
        raise SimulatorError(
            f"internal error: wave {over.number} would select more than its quota; nothing was kept"
        )
    # Counted as the API counts them: recipients not revoked, plus the registry's own recipients.
    members = sa.union_all(
        sa.select(r.c.kk, sa.literal(1).label("seeded")).where(r.c.state != "revoked"),
        sa.select(schema.residents.c.kk, sa.literal(0).label("seeded")).where(
            schema.residents.c.is_recipient.is_(True)
        ),
    ).subquery()
    crowded = conn.execute(
        sa.select(members.c.kk)
        .group_by(members.c.kk)
        .having(sa.func.count() > MAX_KK_RECIPIENTS, sa.func.sum(members.c.seeded) > 0)
        .limit(1)
    ).first()
    if crowded is not None:
        raise SimulatorError(
            f"KK {crowded.kk} would have more than {MAX_KK_RECIPIENTS} recipients; nothing was kept"
        )


__all__ = ["ReferenceRules", "seed_database"]
