"""Read a seeded database back: accounts per funnel state, and the rules that must hold in it.

Works from the rows alone (as the API sees them), not from what the seeder meant to write, so
tests and QA can check any database seeded by any run.
"""

from __future__ import annotations

import sqlalchemy as sa

from simulator.database import schema as t
from simulator.rules.eligibility import MAX_KK_RECIPIENTS
from simulator.seed.states import STATES, FunnelState


def state_census(conn: sa.Connection) -> dict[str, int]:
    """How many accounts are in each funnel state, judged from the rows of every step."""
    a, r, j = t.accounts, t.recipients, t.wave_joins
    open_wave = sa.select(sa.func.max(t.waves.c.number)).where(t.waves.c.state == "open").scalar_subquery()
    in_open_wave = sa.exists().where(j.c.account_id == a.c.id, j.c.wave_number == open_wave)
    has = {
        "identity": sa.exists().where(t.identities.c.account_id == a.c.id),
        "ktp": sa.exists().where(t.ktp_uploads.c.account_id == a.c.id, t.ktp_uploads.c.verdict == "accept"),
        "test": sa.exists().where(t.test_results.c.account_id == a.c.id),
    }
    state = sa.case(
        (r.c.state == "revoked", FunnelState.REVOKED.value),
        (sa.and_(r.c.state == "finished", r.c.incentive_months_paid > 0), FunnelState.INCENTIVE_PAID.value),
        (r.c.state == "finished", FunnelState.FINISHED.value),
        (r.c.state == "training_bought", FunnelState.TRAINING_BOUGHT.value),
        (r.c.state == "selected", FunnelState.SELECTED.value),
        (in_open_wave, FunnelState.JOINED.value),
        (has["test"], FunnelState.TESTED.value),
        (sa.and_(a.c.phone_verified_at.is_not(None), has["ktp"]), FunnelState.PHONE_VERIFIED.value),
        (has["identity"], FunnelState.IDENTITY_VERIFIED.value),
        (a.c.email_verified_at.is_not(None), FunnelState.EMAIL_VERIFIED.value),
        else_=FunnelState.REGISTERED.value,
    ).label("state")
    per_account = sa.select(state).select_from(a.outerjoin(r, r.c.account_id == a.c.id)).subquery()
    counts = dict(
        conn.execute(sa.select(per_account.c.state, sa.func.count()).group_by(per_account.c.state)).all()
    )
    return {s.value: int(counts.get(s.value, 0)) for s in STATES}


def violations(conn: sa.Connection) -> list[str]:
    """Every broken rule found, as one line each (empty when the database is consistent)."""
    found: list[str] = []

    def scalar(query: sa.Select) -> int:
        return int(conn.execute(query).scalar() or 0)

    for table, column in ((t.accounts, "email"), (t.accounts, "phone"), (t.identities, "nik")):
        col = table.c[column]
        dupes = scalar(
            sa.select(sa.func.count()).select_from(
                sa.select(col).where(col.is_not(None)).group_by(col).having(sa.func.count() > 1).subquery()
            )
        )
        if dupes:
            found.append(f"{dupes} duplicated {table.name}.{column} values")
    for table in t.metadata.sorted_tables:
        for fk in table.foreign_keys:
            child, parent = fk.parent, fk.column
            orphans = scalar(
                sa.select(sa.func.count())
                .select_from(table.outerjoin(parent.table, child == parent))
                .where(child.is_not(None), parent.is_(None))
            )
            if orphans:
                found.append(f"{orphans} {table.name}.{child.name} rows point at no {parent.table.name}")
    w = t.waves
    for number, quota, selected in conn.execute(sa.select(w.c.number, w.c.quota, w.c.selected_count)):
        real = scalar(
            sa.select(sa.func.count()).where(
                t.wave_joins.c.wave_number == number, t.wave_joins.c.selected.is_(True)
            )
        )
        if real != selected:
            found.append(f"wave {number}: selected_count {selected} but {real} selected joins")
        if real > quota:
            found.append(f"wave {number}: {real} selected over a quota of {quota}")
        in_wave = scalar(sa.select(sa.func.count()).where(t.recipients.c.wave_number == number))
        if in_wave > quota:
            found.append(f"wave {number}: {in_wave} recipients over a quota of {quota}")
    r = t.recipients
    # As the API counts them: recipients not revoked plus the registry's own recipients, for
    # every KK where this database selected someone.
    members = sa.union_all(
        sa.select(r.c.kk, sa.literal(1).label("here")).where(r.c.state != "revoked"),
        sa.select(t.residents.c.kk, sa.literal(0).label("here")).where(t.residents.c.is_recipient.is_(True)),
    ).subquery()
    crowded = scalar(
        sa.select(sa.func.count()).select_from(
            sa.select(members.c.kk)
            .group_by(members.c.kk)
            .having(sa.func.count() > MAX_KK_RECIPIENTS, sa.func.sum(members.c.here) > 0)
            .subquery()
        )
    )
    if crowded:
        found.append(f"{crowded} KK with more than {MAX_KK_RECIPIENTS} recipients")
    unknown_nik = scalar(
        sa.select(sa.func.count())
        .select_from(t.identities.outerjoin(t.residents, t.residents.c.nik == t.identities.c.nik))
        .where(t.residents.c.nik.is_(None))
    )
    if unknown_nik:
        found.append(f"{unknown_nik} verified identities whose NIK the registry does not hold")
    return found
