"""Where a mapped table's rows come from: the population, the seeded accounts and their events, the waves.

Each source has a catalogue (column kinds, when a column is never NULL, when it is unique) used to
check a mapping before anything is written, and a builder that makes its rows for one block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from simulator.database import schema as reference
from simulator.generators.schema import APPLICANT_SCHEMA, RESIDENT_SCHEMA
from simulator.seed.rows import ChunkRows, depth_caps
from simulator.seed.states import DEPTH, STATES, FunnelState
from simulator.seed.waves import WaveCalendar

TEXT, INTEGER, BOOLEAN, DATE, TIMESTAMP = "text", "integer", "boolean", "date", "timestamp"

NEVER = 99
"""A depth no account reaches: the column may be NULL whatever the filter."""


@dataclass(frozen=True)
class SourceColumn:
    """What a mapping may read from a source column."""

    kind: str  # TEXT, INTEGER, BOOLEAN, DATE or TIMESTAMP
    present_from: int = 0  # never NULL among accounts at least this deep (NEVER: may always be NULL)
    unique_from: int = NEVER  # unique among accounts at least this deep (NEVER: not unique)
    max_length: int | None = None  # longest text value, when known


def _population(schema: pa.Schema, always: set[str], unique: dict[str, int], lengths: dict[str, int]):
    kinds = {pa.string(): TEXT, pa.date32(): DATE, pa.bool_(): BOOLEAN}
    return {
        f.name: SourceColumn(
            kinds.get(f.type, INTEGER if pa.types.is_integer(f.type) else TEXT),
            0 if f.name in always else NEVER,
            unique.get(f.name, NEVER),
            lengths.get(f.name),
        )
        for f in schema
    }


# Lengths the rules fix; other text (names, e-mails) is checked against its column row by row.
_LENGTHS = {"nik": 16, "kk": 16, "gender": 1, "postal_code": 5}
# The generator leaves no population column empty; files read with --from are checked row by row.
_APPLICANT_ALWAYS = set(APPLICANT_SCHEMA.names)
_RESIDENT_ALWAYS = set(RESIDENT_SCHEMA.names)

RESIDENTS = _population(RESIDENT_SCHEMA, _RESIDENT_ALWAYS, {"nik": 0}, _LENGTHS)
APPLICANTS = _population(APPLICANT_SCHEMA, _APPLICANT_ALWAYS, {"applicant_id": 0}, _LENGTHS)

# Depths (simulator.seed.states.DEPTH): 1 email verified, 2 identity, 3 phone + KTP, 4 tested,
# 5 joined the open wave, 6 selected (recipients), 7 training bought, 8 finished, 9 paid.
ACCOUNTS: dict[str, SourceColumn] = {
    **APPLICANTS,
    # Among accounts: refused sign-ups (a taken e-mail...) have none, so e-mails are unique; a NIK
    # is unique once its identity check passed (a second account of the same NIK is refused).
    "email": SourceColumn(TEXT, 0, 0),
    "nik": SourceColumn(TEXT, 0, 2, 16),
    "account_id": SourceColumn(TEXT, 0, 0, 36),
    "state": SourceColumn(TEXT, 0, NEVER, 20),
    "password": SourceColumn(TEXT, 0, NEVER),
    "created_at": SourceColumn(TIMESTAMP),
    "email_verified_at": SourceColumn(TIMESTAMP, 1),
    "identity_checked_at": SourceColumn(TIMESTAMP, 2),
    "identity_nik": SourceColumn(TEXT, 2, 0, 16),
    "profile_updated_at": SourceColumn(TIMESTAMP, 2),
    "profile_address": SourceColumn(TEXT, 2, NEVER, 300),
    "verified_phone": SourceColumn(TEXT, 3, 0),
    "phone_verified_at": SourceColumn(TIMESTAMP, 3),
    "ktp_uploaded_at": SourceColumn(TIMESTAMP, 3),
    "tested_at": SourceColumn(TIMESTAMP, 4),
    "test_score": SourceColumn(INTEGER, 4),
    "wave_number": SourceColumn(INTEGER, 5),
    "joined_at": SourceColumn(TIMESTAMP, 5),
    "selected_at": SourceColumn(TIMESTAMP, 6),
    "recipient_state": SourceColumn(TEXT, 6, NEVER, 20),
    "training_bought_at": SourceColumn(TIMESTAMP, 7),
    "training_finished_at": SourceColumn(TIMESTAMP, 8),
    "incentive_months_paid": SourceColumn(INTEGER, 6),
    "revoked_at": SourceColumn(TIMESTAMP, NEVER),
}
"""An account's columns: the applicant's own, plus where it stands and when each step happened."""


def column_kind(column_type: sa.types.TypeEngine) -> str:
    """The kind of value a SQLAlchemy column type holds."""
    if isinstance(column_type, sa.Boolean):
        return BOOLEAN
    if isinstance(column_type, sa.Integer):
        return INTEGER
    if isinstance(column_type, sa.DateTime):
        return TIMESTAMP
    return DATE if isinstance(column_type, sa.Date) else TEXT


def _event(table: sa.Table, one_per_account: bool) -> dict[str, SourceColumn]:
    """An event's columns: its account's, and (winning over those) the reference table's own."""
    own = {
        c.name: SourceColumn(
            column_kind(c.type),
            NEVER if c.nullable else 0,
            0 if c.unique else NEVER,
            getattr(c.type, "length", None),
        )
        for c in table.columns
        if c.name not in ("id", "state")  # recipients' state is the account's recipient_state
    }
    own["account_id"] = SourceColumn(TEXT, 0, 0 if one_per_account else NEVER, 36)
    return {**ACCOUNTS, **own}


EVENTS: dict[str, tuple[int, dict[str, SourceColumn]]] = {
    "wave_joins": (5, _event(reference.wave_joins, False)),
    "recipients": (6, _event(reference.recipients, True)),
    "identities": (2, _event(reference.identities, True)),
    "profiles": (2, _event(reference.profiles, True)),
    "ktp_uploads": (3, _event(reference.ktp_uploads, True)),
    "test_results": (4, _event(reference.test_results, True)),
}
"""One row per event of an account, with the reference schema's columns for it: (the depth every
such account has reached, its columns)."""

WAVES: dict[str, SourceColumn] = {
    "number": SourceColumn(INTEGER, 0, 0),
    "mode": SourceColumn(TEXT, 0, NEVER, 10),
    "state": SourceColumn(TEXT, 0, NEVER, 10),
    "opens_at": SourceColumn(TIMESTAMP),
    "closes_at": SourceColumn(TIMESTAMP),
    "created_at": SourceColumn(TIMESTAMP),
    "closed_at": SourceColumn(TIMESTAMP, NEVER),
    "selection_seed": SourceColumn(INTEGER),
    "quota": SourceColumn(INTEGER),
    "joined_count": SourceColumn(INTEGER),
    "selected_count": SourceColumn(INTEGER),
    "province_codes": SourceColumn(TEXT, NEVER),
}
"""Waves 1..K of the seeded calendar. quota and the counts are known once every row is built:
they are written as 0 and set by one UPDATE per wave at the end of the load."""

WAVE_TOTALS = ("quota", "joined_count", "selected_count")

ACCOUNT_SOURCES = ("accounts", *EVENTS)
SOURCES = ("residents", "applicants", "accounts", *EVENTS, "waves", "lookup")


def catalogue(source: str) -> dict[str, SourceColumn]:
    if source == "residents":
        return RESIDENTS
    if source == "applicants":
        return APPLICANTS
    if source == "accounts":
        return ACCOUNTS
    if source == "waves":
        return WAVES
    return EVENTS[source][1]


def base_depth(source: str) -> int:
    """The depth every account behind a row of ``source`` has reached."""
    return EVENTS[source][0] if source in EVENTS else 0


def state_depths(states: tuple[str, ...] | None) -> np.ndarray | None:
    """Depths of the states a table is limited to (None: every state)."""
    if states is None:
        return None
    return np.array([DEPTH[STATES.index(FunnelState(s))] for s in states], dtype=np.int64)


# --- frames: the rows of one block ------------------------------------------------------------------


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns decoded (a mapping reads values, not codes)."""
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(columns, names=table.column_names)


def _scatter(n: int, positions: np.ndarray, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` placed at row ``positions`` of ``n`` rows, NULL elsewhere."""
    inverse = np.full(n, -1, dtype=np.int64)
    inverse[positions] = np.arange(positions.size)
    return values.take(pa.array(inverse, mask=inverse < 0))


def _positions(account_ids: pa.Array, of: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.index_in(of, value_set=account_ids).to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass
class BlockFrames:
    """One block's rows per source: the accounts (with their steps), and each kind of event."""

    accounts: pa.Table
    events: dict[str, pa.Table]


def block_frames(
    applicants: pa.Table, rows: ChunkRows, open_wave: int, needs: dict[str, set[str]] | None = None
) -> BlockFrames:
    """The accounts of a block (``build_chunk``'s), each with the applicant's columns and its steps,
    and each kind of event with its account's columns. ``needs``: the columns each source must have
    (the rest are not built); None: every column of every source."""
    tables = rows.tables
    accounts = tables["accounts"]
    account_id = accounts.column("id").combine_chunks()
    n = accounts.num_rows
    state = rows.credentials.column("state")
    own_columns = {name: set(tables[name].column_names) - {"state"} for name in EVENTS}
    if needs is None:
        wanted = set(ACCOUNTS)
        event_names = list(EVENTS)
    else:
        event_names = [name for name in EVENTS if name in needs]
        wanted = set(needs.get("accounts", ())) | {"account_id", "state"}
        for name in event_names:
            wanted |= needs[name] - own_columns[name]
    keep = depth_caps(applicants.column("expected_outcome")) >= 0
    people = applicants.select([c for c in applicants.column_names if c in wanted])
    people = _plain(people.filter(pa.array(keep)) if not keep.all() else people)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        name: people.column(name) for name in people.column_names
    }
    own = {
        "account_id": account_id,
        "email": accounts.column("email"),
        "state": state,
        "password": rows.passwords,
        "created_at": accounts.column("created_at"),
        "email_verified_at": accounts.column("email_verified_at"),
        "verified_phone": accounts.column("phone"),
        "phone_verified_at": accounts.column("phone_verified_at"),
    }
    columns.update({name: value for name, value in own.items() if name in wanted})

    def steps(table: str, named: dict[str, str], where: pa.Array | None = None) -> None:
        named = {ours: theirs for ours, theirs in named.items() if ours in wanted}
        if not named:
            return
        part = tables[table] if where is None else tables[table].filter(where)
        at = rows.positions.get(table)
        if at is None:
            at = _positions(account_id, part.column("account_id"))
        elif where is not None:
            mask = where.combine_chunks() if isinstance(where, pa.ChunkedArray) else where
            at = at[mask.to_numpy(zero_copy_only=False).astype(bool)]
        for ours, theirs in named.items():
            columns[ours] = _scatter(n, at, part.column(theirs))

    steps("identities", {"identity_checked_at": "checked_at", "identity_nik": "nik"})
    steps("profiles", {"profile_updated_at": "updated_at", "profile_address": "address"})
    steps("ktp_uploads", {"ktp_uploaded_at": "created_at"})
    steps("test_results", {"tested_at": "completed_at", "test_score": "score"})
    joins = tables["wave_joins"]
    # An account's own join: the one that picked it, or the open wave's (not a roll-over's first wave).
    current = pc.or_(
        pc.fill_null(joins.column("selected"), False), pc.equal(joins.column("wave_number"), open_wave)
    )
    steps("wave_joins", {"wave_number": "wave_number", "joined_at": "joined_at"}, current)
    steps("recipients", {
        "selected_at": "selected_at", "recipient_state": "state", "training_bought_at": "training_bought_at",
        "training_finished_at": "training_finished_at", "incentive_months_paid": "incentive_months_paid",
        "revoked_at": "revoked_at",
    })  # fmt: skip
    frame = pa.table(columns)
    events: dict[str, pa.Table] = {}
    for name in event_names:
        event = tables[name]
        if name == "recipients":  # its state is the frame's recipient_state; "state" stays the funnel's
            event = event.drop_columns(["state"])
        borrowed = [c for c in frame.column_names if c not in own_columns[name]]
        if needs is not None:
            borrowed = [c for c in borrowed if c in needs[name]]
        merged = {}
        if borrowed:
            at = rows.positions.get(name)
            if at is None:
                at = _positions(account_id, event.column("account_id"))
            merged = dict(zip(borrowed, frame.select(borrowed).take(pa.array(at)).columns, strict=True))
        merged.update({c: event.column(c) for c in event.column_names})
        events[name] = pa.table(merged)
    return BlockFrames(frame, events)


def wave_frame(calendar: WaveCalendar, seed: int) -> pa.Table:
    """Waves 1..K as the reference seed makes them (quota and counts set at the end)."""
    n = calendar.open_wave
    closed = np.arange(1, n + 1) < n
    created = calendar.opens_at - np.timedelta64(1, "D")
    zeros = pa.array(np.zeros(n, dtype=np.int64))
    return pa.table(
        {
            "number": pa.array(np.arange(1, n + 1), pa.int64()),
            "mode": pa.array(["lottery"] * n, pa.string()),
            "state": pa.array(np.where(closed, "closed", "open").tolist(), pa.string()),
            "opens_at": pa.array(calendar.opens_at.astype("datetime64[us]"), pa.timestamp("us")),
            "closes_at": pa.array(calendar.closes_at.astype("datetime64[us]"), pa.timestamp("us")),
            "created_at": pa.array(created.astype("datetime64[us]"), pa.timestamp("us")),
            "closed_at": pa.array(
                calendar.closes_at.astype("datetime64[us]"), pa.timestamp("us"), mask=~closed
            ),
            "selection_seed": pa.array(np.random.default_rng([seed, 11]).integers(0, 2**62, n), pa.int64()),
            "quota": zeros,
            "joined_count": zeros,
            "selected_count": zeros,
            "province_codes": pa.nulls(n, pa.string()),
        }
    )


def population_frame(part: pa.Table) -> pa.Table:
    return _plain(part)
