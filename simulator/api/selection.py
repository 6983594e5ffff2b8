"""Selection when a wave closes: the real rule (lottery, ministry-priority NIKs first) or fcfs.

Works on whole columns with numpy; the same seed and joiners give the same recipients.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, insert, select, update

from simulator.database import schema as t
from simulator.rules.eligibility import MAX_KK_RECIPIENTS


def choose(
    priority: np.ndarray,
    kk_codes: np.ndarray,
    kk_already: np.ndarray,
    quota: int,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """Boolean mask of the selected candidates.

    Candidates are ranked priority first, then by a random draw (``rng``) or, when ``rng`` is
    None (fcfs), in the order given. Going down the ranking, a candidate is skipped when their KK
    already holds ``MAX_KK_RECIPIENTS`` recipients (``kk_already[kk_codes]`` plus those picked
    above them); the first ``quota`` who are not skipped are selected.
    """
    n = len(priority)
    if n == 0 or quota <= 0:
        return np.zeros(n, dtype=bool)
    draw = rng.random(n) if rng is not None else np.arange(n, dtype=float)
    rank = np.lexsort((draw, ~priority.astype(bool)))  # priority first, then the draw
    # Position of each ranked candidate among the ranked members of their KK (a cumcount).
    ranked_kk = kk_codes[rank]
    by_kk = np.argsort(ranked_kk, kind="stable")
    sorted_kk = ranked_kk[by_kk]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_kk)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    within = np.empty(n, dtype=np.int64)
    within[by_kk] = np.arange(n) - group_start
    allowed = kk_already[ranked_kk] + within < MAX_KK_RECIPIENTS
    # A KK's skipped member never counts against a later one: within counts only ranked order,
    # and allowed is monotone inside a KK (once the cap is hit, every later member is over it).
    picked = allowed & (np.cumsum(allowed) <= quota)
    mask = np.zeros(n, dtype=bool)
    mask[rank[picked]] = True
    return mask


def run_selection(conn: Connection, wave, now: dt.datetime) -> dict[str, Any]:
    """Mark every join of ``wave`` selected or not and create its recipients (caller's transaction)."""
    j = t.wave_joins
    rows = conn.execute(
        select(
            j.c.account_id,
            j.c.join_order,
            t.identities.c.kk,
            func.coalesce(t.residents.c.is_priority, False).label("priority"),
        )
        .select_from(
            j.join(t.identities, t.identities.c.account_id == j.c.account_id).outerjoin(
                t.residents, t.residents.c.nik == t.identities.c.nik
            )
        )
        .where(j.c.wave_number == wave.number, j.c.selected.is_(None))
        .order_by(j.c.join_order)
    ).all()
    account_ids = np.array([r.account_id for r in rows], dtype=object)
    kk = np.array([r.kk for r in rows], dtype=object)
    priority = np.array([bool(r.priority) for r in rows], dtype=bool)

    kk_values, kk_codes = np.unique(kk, return_inverse=True) if len(kk) else (np.array([]), np.array([], int))
    kk_already = np.zeros(len(kk_values), dtype=np.int64)
    if len(kk_values):
        held: dict[str, int] = {}
        for chunk in _chunks(list(kk_values), 5000):
            for k, n in conn.execute(
                select(t.recipients.c.kk, func.count())
                .where(t.recipients.c.kk.in_(chunk), t.recipients.c.state != "revoked")
                .group_by(t.recipients.c.kk)
            ):
                held[k] = held.get(k, 0) + int(n)
            for k, n in conn.execute(
                select(t.residents.c.kk, func.count())
                .where(t.residents.c.kk.in_(chunk), t.residents.c.is_recipient.is_(True))
                .group_by(t.residents.c.kk)
            ):
                held[k] = held.get(k, 0) + int(n)
        kk_already = np.array([held.get(k, 0) for k in kk_values], dtype=np.int64)

    rng = np.random.default_rng(int(wave.selection_seed)) if wave.mode == "lottery" else None
    mask = choose(priority, kk_codes, kk_already, wave.quota, rng)

    chosen = account_ids[mask].tolist()
    for chunk in _chunks(chosen, 5000):
        conn.execute(
            update(j).where(j.c.wave_number == wave.number, j.c.account_id.in_(chunk)).values(selected=True)
        )
    conn.execute(
        update(j).where(j.c.wave_number == wave.number, j.c.selected.is_(None)).values(selected=False)
    )
    recipients = [
        {
            "account_id": a,
            "wave_number": wave.number,
            "kk": k,
            "priority": bool(p),
            "state": "selected",
            "selected_at": now,
            "incentive_months_paid": 0,
        }
        for a, k, p in zip(chosen, kk[mask].tolist(), priority[mask].tolist(), strict=True)
    ]
    for chunk in _chunks(recipients, 5000):
        conn.execute(insert(t.recipients), chunk)
    conn.execute(update(t.waves).where(t.waves.c.number == wave.number).values(selected_count=len(chosen)))
    return {
        "mode": wave.mode,
        "seed": int(wave.selection_seed) if wave.mode == "lottery" else None,
        "candidates": len(rows),
        "selected": len(chosen),
        "selected_priority": int(priority[mask].sum()),
    }


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]
