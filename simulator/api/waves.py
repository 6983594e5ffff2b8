"""Waves and selection: opening and closing waves, joining one, the carry-over between lottery waves.

Owns `WaveStore` (tables ``waves`` and ``wave_joins``; selection itself is `selection.run_selection`)
and the waves routes (``POST /v1/waves/{wave}/join``, ``GET /v1/waves/{wave}``); the admin routes that
open and close waves (simulator/api/admin.py) call `WaveStore` too. The fcfs quota is held by one
conditional UPDATE of the wave's counter, never by a check in Python.
"""

import datetime as dt
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Path
from sqlalchemy import Connection, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from simulator.api import models as m
from simulator.api.auth import Auth
from simulator.api.progress import STEPS, ProgressStore, require
from simulator.api.responses import ApiError, Reply, reply_response
from simulator.api.selection import run_selection
from simulator.api.store import Store
from simulator.database import schema as t
from simulator.database.schema import utcnow
from simulator.rules.reasons import Reason

WaveNumber = Annotated[int, Path(ge=1, le=1_000_000)]


class WaveStore:
    """The waves' rows and joins. Thread-safe; each call is one transaction."""

    def __init__(self, store: Store):
        self.store = store
        self.engine = store.engine

    def wave_row(self, conn: Connection, number: int):
        row = conn.execute(select(t.waves).where(t.waves.c.number == number)).one_or_none()
        if row is None:
            raise ApiError(Reason.NOT_FOUND, f"no wave {number}")
        return row

    def wave_status(self, number: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return wave_json(self.wave_row(conn, number), utcnow())

    def create_wave(self, values: dict[str, Any]) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            number = values.get("number")
            if number is None:
                number = (conn.execute(select(func.max(t.waves.c.number))).scalar_one_or_none() or 0) + 1
            row = dict(values, number=number, state="open", joined_count=0, selected_count=0, created_at=now)
            if row.get("selection_seed") is None:
                row["selection_seed"] = secrets.randbelow(2**31)
            try:
                conn.execute(insert(t.waves).values(**row))
            except IntegrityError as err:
                raise ApiError(Reason.WAVE_EXISTS, f"wave {number} exists") from err
            if row["mode"] == "lottery":
                previous = conn.execute(
                    select(func.max(t.waves.c.number)).where(
                        t.waves.c.number < number, t.waves.c.state == "closed"
                    )
                ).scalar_one_or_none()
                if previous is not None:
                    _carry_over(conn, previous, number, now)
            return Reply(
                201, wave_json(self.wave_row(conn, number), now), {"Location": f"/v1/waves/{number}"}
            )

        return self.store.write(work)

    def join_wave(self, account_id: str, number: int, province_code: str | None) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            wave = self.wave_row(conn, number)
            _check_open(wave, now)
            if wave.province_codes and province_code not in wave.province_codes.split(","):
                raise ApiError(
                    Reason.DOMICILE_MISMATCH,
                    f"wave {number} takes domiciles in {wave.province_codes}, yours is {province_code}",
                )
            joined = conn.execute(
                select(t.wave_joins.c.join_order).where(
                    t.wave_joins.c.wave_number == number, t.wave_joins.c.account_id == account_id
                )
            ).scalar_one_or_none()
            if joined is not None:
                raise ApiError(Reason.ALREADY_JOINED, f"already joined wave {number}")
            # The one statement that enforces the fcfs quota on every engine: the row lock (or
            # SQLite's write lock) serialises it, and it only counts while a place is left.
            counter = update(t.waves).where(t.waves.c.number == number, t.waves.c.state == "open")
            if wave.mode == "fcfs":
                counter = counter.where(t.waves.c.joined_count < t.waves.c.quota)
            if conn.execute(counter.values(joined_count=t.waves.c.joined_count + 1)).rowcount != 1:
                fresh = self.wave_row(conn, number)
                _check_open(fresh, now)
                raise ApiError(Reason.WAVE_FULL, f"wave {number} has given all {fresh.quota} places")
            order = conn.execute(
                select(t.waves.c.joined_count).where(t.waves.c.number == number)
            ).scalar_one()
            try:
                conn.execute(
                    insert(t.wave_joins).values(
                        wave_number=number, account_id=account_id, joined_at=now, join_order=order
                    )
                )
            except IntegrityError as err:
                raise ApiError(Reason.ALREADY_JOINED, f"already joined wave {number}") from err
            return Reply(
                201,
                {
                    "wave": number,
                    "join_order": order,
                    "joined_at": now.isoformat() + "Z",
                    "mode": wave.mode,
                    "selected": None,
                },
            )

        return self.store.write(work)

    def close_wave(self, number: int, seed: int | None) -> Reply:
        def work(conn: Connection) -> Reply:
            now = utcnow()
            wave = self.wave_row(conn, number)
            closed = conn.execute(
                update(t.waves)
                .where(t.waves.c.number == number, t.waves.c.state == "open")
                .values(state="closed", closed_at=now, **({} if seed is None else {"selection_seed": seed}))
            ).rowcount
            if closed != 1:
                raise ApiError(Reason.WAVE_CLOSED, f"wave {number} is already closed")
            wave = self.wave_row(conn, number)
            outcome = run_selection(conn, wave, now)
            nxt = conn.execute(
                select(t.waves.c.number)
                .where(t.waves.c.number > number, t.waves.c.state == "open", t.waves.c.mode == "lottery")
                .order_by(t.waves.c.number)
                .limit(1)
            ).scalar_one_or_none()
            carried = _carry_over(conn, number, nxt, now) if nxt is not None else 0
            body = wave_json(self.wave_row(conn, number), now)
            body["selection"] = dict(outcome, carried_over_to=nxt, carried_over=carried)
            return Reply(200, body)

        return self.store.write(work)


def _check_open(wave, now: dt.datetime) -> None:
    if wave.state != "open" or now >= wave.closes_at:
        raise ApiError(Reason.WAVE_CLOSED, f"wave {wave.number} closed at {wave.closes_at.isoformat()}Z")
    if now < wave.opens_at:
        raise ApiError(Reason.WAVE_NOT_OPEN, f"wave {wave.number} opens at {wave.opens_at.isoformat()}Z")


def wave_state(wave, now: dt.datetime) -> str:
    if wave.state == "closed":
        return "closed"
    if now < wave.opens_at:
        return "scheduled"
    return "open" if now < wave.closes_at else "ended"


def wave_json(wave, now: dt.datetime) -> dict[str, Any]:
    return {
        "number": wave.number,
        "quota": wave.quota,
        "mode": wave.mode,
        "state": wave_state(wave, now),
        "opens_at": wave.opens_at.isoformat() + "Z",
        "closes_at": wave.closes_at.isoformat() + "Z",
        "province_codes": wave.province_codes.split(",") if wave.province_codes else None,
        "joined": wave.joined_count,
        "selected": wave.selected_count,
        "remaining": max(0, wave.quota - wave.joined_count)
        if wave.mode == "fcfs"
        else max(0, wave.quota - wave.selected_count),
    }


def _carry_over(conn: Connection, from_wave: int, to_wave: int, now: dt.datetime) -> int:
    """Join the applicants ``from_wave`` did not select into ``to_wave`` (no new sign-up, no retest)."""
    target = conn.execute(select(t.waves).where(t.waves.c.number == to_wave)).one()
    if target.mode != "lottery" or target.state != "open":
        return 0
    j = t.wave_joins
    already = select(j.c.account_id).where(j.c.wave_number == to_wave)
    account_ids = (
        conn.execute(
            select(j.c.account_id)
            .where(
                j.c.wave_number == from_wave,
                j.c.selected.is_(False),
                j.c.account_id.not_in(already),
                ~exists().where(t.recipients.c.account_id == j.c.account_id),
            )
            .order_by(j.c.join_order)
        )
        .scalars()
        .all()
    )
    if not account_ids:
        return 0
    conn.execute(
        update(t.waves)
        .where(t.waves.c.number == to_wave)
        .values(joined_count=t.waves.c.joined_count + len(account_ids))
    )
    base = conn.execute(select(t.waves.c.joined_count).where(t.waves.c.number == to_wave)).scalar_one()
    first = base - len(account_ids) + 1
    rows = [
        {
            "wave_number": to_wave,
            "account_id": a,
            "joined_at": now,
            "join_order": first + i,
            "carried_over_from": from_wave,
        }
        for i, a in enumerate(account_ids)
    ]
    for start in range(0, len(rows), 5000):
        conn.execute(insert(j), rows[start : start + 5000])
    return len(rows)


def add_wave_routes(router: APIRouter, waves: WaveStore, progress: ProgressStore, auth: Auth) -> None:
    Account = Annotated[str, auth.account]

    @router.post(
        "/v1/waves/{wave}/join",
        tags=["waves"],
        name="join_wave",
        status_code=201,
        responses={201: {"model": m.JoinOut}},
    )
    async def join_wave(wave: WaveNumber, account_id: Account):
        done = await progress.of(account_id)
        if done["recipient"] is not None:
            raise ApiError(Reason.ALREADY_RECIPIENT, f"already selected in wave {done['recipient']['wave']}")
        require(done, *STEPS)
        return reply_response(
            await run_in_threadpool(waves.join_wave, account_id, wave, done["province_code"])
        )

    @router.get("/v1/waves/{wave}", tags=["waves"], name="wave_status", response_model=m.WaveOut)
    async def wave_status(wave: WaveNumber):
        return await run_in_threadpool(waves.wave_status, wave)
