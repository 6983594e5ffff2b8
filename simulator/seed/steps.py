"""The steps of a seeded applicant's way through the funnel: when each happened, and the rows of
the later steps' tables (profiles, KTP uploads, test answers, wave joins, recipients).

Column-wise, as :func:`simulator.seed.rows.build_chunk`, which calls these for each block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import InvalidInputFile
from simulator.generators.columns import group_rank
from simulator.seed.states import STATE_CODE, STATES, FunnelState
from simulator.seed.waves import BUY_DEADLINE, RESULTS_DELAY, WaveCalendar

if TYPE_CHECKING:
    from simulator.seed.rows import SeedCursor

SELECTED, BOUGHT, FINISHED, PAID, REVOKED = (
    STATE_CODE[FunnelState.SELECTED],
    STATE_CODE[FunnelState.TRAINING_BOUGHT],
    STATE_CODE[FunnelState.FINISHED],
    STATE_CODE[FunnelState.INCENTIVE_PAID],
    STATE_CODE[FunnelState.REVOKED],
)
JOINED = STATE_CODE[FunnelState.JOINED]
# The states with a ``recipients`` row. Recipients of the oldest waves have gone furthest: paid,
# finished, revoked (30 days passed), in training, and the newest are still choosing a training.
# Revoked places count towards the 2-per-KK limit too: erring on the safe side keeps the limit
# true whichever way the API reads it.
RECIPIENT_ORDER = (PAID, FINISHED, REVOKED, BOUGHT, SELECTED)
# recipients.state of each funnel state (paid people have finished: months paid tell them apart)
RECIPIENT_STATE_NAMES = np.full(len(STATES), None, dtype=object)
RECIPIENT_STATE_NAMES[[SELECTED, BOUGHT, FINISHED, PAID, REVOKED]] = [
    "selected",
    "training_bought",
    "finished",
    "finished",
    "revoked",
]
AGE_RANK = np.zeros(len(STATES), dtype=np.int64)
AGE_RANK[list(RECIPIENT_ORDER)] = np.arange(len(RECIPIENT_ORDER))


def padded(values: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    out[: min(size, values.size)] = values[:size]
    return out


# --- time -------------------------------------------------------------------------------------------

_SECOND = np.timedelta64(1, "s")


class Timeline:
    """When each step happened, walking back from the last step an applicant took."""

    def __init__(self, n: int, rng: np.random.Generator, calendar: WaveCalendar):
        self.n = n
        self.rng = rng
        self.calendar = calendar
        self.latest = np.datetime64(calendar.as_of, "s") - np.timedelta64(60, "s")

    def _minutes(self, mean: float) -> np.ndarray:
        return (self.rng.exponential(mean * 60.0, self.n).astype(np.int64) + 30) * _SECOND

    def join_times(self, wave: np.ndarray, carried: np.ndarray, state: np.ndarray) -> np.ndarray:
        """When each applicant joined their wave (NaT for those who never joined)."""
        cal = self.calendar
        joined = np.full(self.n, np.datetime64("NaT"), dtype="datetime64[s]")
        in_wave = wave > 0
        index = wave[in_wave] - 1
        opens, closes = cal.opens_at[index], np.minimum(cal.closes_at[index], self.latest)
        span = (closes - opens).astype(np.int64)
        # Half of a wave's joiners come in its first day (the opening surge), the rest spread out.
        first_day = np.minimum(span, 86_400)
        surge = self.rng.random(index.size) < 0.5
        offset = np.where(
            surge,
            (self.rng.random(index.size) * first_day).astype(np.int64),
            (self.rng.random(index.size) * span).astype(np.int64),
        )
        joined[in_wave] = opens + offset * _SECOND
        # Those rolled over first joined the earlier wave; that join is what the later steps follow.
        rolled = carried > 0
        if rolled.any():
            c_index = carried[rolled] - 1
            c_span = (cal.closes_at[c_index] - cal.opens_at[c_index]).astype(np.int64)
            joined[rolled] = (
                cal.opens_at[c_index] + (self.rng.random(c_index.size) * c_span).astype(np.int64) * _SECOND
            )
        return joined

    def steps_before(self, joined_at: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
        """Times of every step, ending at the join (or at a random moment for those who never joined)."""
        cal = self.calendar
        start = cal.opens_at[0] - np.timedelta64(2, "D")
        free = (
            start
            + (self.rng.random(self.n) * (self.latest - start).astype(np.int64)).astype(np.int64) * _SECOND
        )
        anchor = np.where(np.isnat(joined_at), free, joined_at)
        gaps = {
            "test": self._minutes(20),
            "phone": self._minutes(15),
            "ktp": self._minutes(10),
            "profile": self._minutes(8),
            # People came back days later for the identity step (the registry, the KK at hand).
            "identity": self._minutes(60)
            + (self.rng.exponential(1.5, self.n) * 86_400).astype(np.int64) * _SECOND,
            "email": self._minutes(20),
        }
        # The last step done sits at the anchor; each earlier one a gap before the next.
        order = ["test", "phone", "ktp", "profile", "identity", "email"]
        step_depth = {"test": 4, "phone": 3, "ktp": 3, "profile": 2, "identity": 2, "email": 1}
        times: dict[str, np.ndarray] = {}
        t = anchor.copy()
        for name in order:
            done_later = depth > step_depth[name]
            t = np.where(done_later, t - gaps[name], t)
            times[name] = t.copy()
        # created: one gap before email (or at the anchor for those who stopped at registering)
        times["created"] = np.where(depth >= 1, times["email"] - self._minutes(5), anchor)
        for name, value in times.items():
            times[name] = np.minimum(value, self.latest)
        return times


def times(values: np.ndarray, mask: np.ndarray | None) -> pa.Array:
    values = values.astype("datetime64[us]")
    if mask is None:
        return pa.array(values, pa.timestamp("us"))
    return pa.array(values, pa.timestamp("us"), mask=~mask)


def dates(column: pa.ChunkedArray | pa.Array, source: str) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_date32(column.type):
        return column
    try:
        return column.cast(pa.string()).cast(pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidInputFile(f"{source}: column birth_date must hold ISO dates (YYYY-MM-DD)") from None


# --- tables -----------------------------------------------------------------------------------------


def profiles(applicants: pa.Table, account_id: pa.Array, idx: pa.Array, updated: np.ndarray) -> pa.Table:
    """Step 3's personal data; the domicile (where a wave may be limited to) when it differs from the KTP."""

    def col(name: str) -> pa.Array:
        if name not in applicants.column_names:
            return pa.nulls(len(idx), pa.string())
        return applicants.column(name).cast(pa.string()).take(idx)

    def domicile(name: str) -> pa.Array:
        own = col(name)
        if f"domicile_{name}" not in applicants.column_names:
            return own
        return pc.coalesce(col(f"domicile_{name}"), own)

    parts = [col("address")]
    if "rt_rw" in applicants.column_names:
        parts.append(pc.binary_join_element_wise("RT/RW", col("rt_rw"), " "))
    parts.append(domicile("village"))
    address = pc.binary_join_element_wise(*parts, ", ", null_handling="skip")
    address = pc.utf8_slice_codeunits(pc.if_else(pc.equal(address, ""), "-", address), 0, 300)
    return pa.table(
        {
            "account_id": account_id.take(idx),
            "address": address,
            "province_code": domicile("province_code"),
            "regency_code": domicile("regency_code"),
            "district_code": domicile("district_code"),
            "village_code": domicile("village_code"),
            "postal_code": col("postal_code"),
            "education": col("education"),
            "employment_status": col("employment_status"),
            "updated_at": times(updated, None),
        }
    )


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_digests(rng: np.random.Generator, n: int) -> pa.Array:
    # Stand-ins for the sha256 of photos we never render: 32 random bytes each, in hex.
    raw = np.frombuffer(rng.bytes(32 * n), dtype=np.uint8)
    digits = np.empty((raw.size, 2), dtype=np.uint8)
    digits[:, 0] = _HEX[raw >> 4]
    digits[:, 1] = _HEX[raw & 15]
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()))


def answers(rng: np.random.Generator, n: int) -> pa.Array:
    letters = np.frombuffer(b"ABCD", dtype=np.uint8)[rng.integers(0, 4, size=(n, 18))].ravel()
    offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(letters.tobytes()))


def wave_joins(
    account_id: pa.Array,
    wave: np.ndarray,
    carried: np.ndarray,
    joined_at: np.ndarray,
    is_recipient: np.ndarray,
    calendar: WaveCalendar,
    cursor: SeedCursor,
) -> tuple[pa.Table, np.ndarray]:
    """One row per join, and the account row of each: recipients in the wave that picked them,
    joiners in the open wave (and, when rolled over, a not-selected row in the wave they came from)."""
    open_wave = calendar.open_wave
    joiner = (wave > 0) & ~is_recipient
    rolled = carried > 0
    rows_account = np.concatenate(
        [np.flatnonzero(is_recipient), np.flatnonzero(rolled), np.flatnonzero(joiner)]
    )
    rows_wave = np.concatenate([wave[is_recipient], carried[rolled], wave[joiner]])
    selected = np.concatenate(
        [
            np.ones(int(is_recipient.sum()), dtype=np.int8),
            np.zeros(int(rolled.sum()), dtype=np.int8),
            np.full(int(joiner.sum()), -1, dtype=np.int8),  # open wave: not decided yet
        ]
    )
    carried_from = np.concatenate(
        [
            np.zeros(int(is_recipient.sum()), dtype=np.int64),
            np.zeros(int(rolled.sum()), dtype=np.int64),
            carried[joiner],
        ]
    )
    at = np.concatenate([joined_at[is_recipient], joined_at[rolled], joined_at[joiner]])
    # A rolled-over applicant is in the open wave from the moment it opened.
    open_opens = calendar.opens_at[open_wave - 1]
    at = np.where((rows_wave == open_wave) & (carried_from > 0), open_opens, at)
    # join_order follows joined_at within each wave, continuing the waves' earlier counts.
    cursor.joins_per_wave = padded(cursor.joins_per_wave, open_wave)
    by_time = np.lexsort((at.astype(np.int64), rows_wave))
    rank = np.empty(rows_wave.size, dtype=np.int64)
    rank[by_time] = group_rank(rows_wave[by_time])
    join_order = cursor.joins_per_wave[rows_wave - 1] + rank + 1
    cursor.joins_per_wave += np.bincount(rows_wave - 1, minlength=open_wave)[:open_wave]
    table = pa.table(
        {
            "wave_number": pa.array(rows_wave, pa.int32()),
            "account_id": account_id.take(pa.array(rows_account)),
            "joined_at": times(at, None),
            "join_order": pa.array(join_order, pa.int32()),
            "carried_over_from": pa.array(carried_from, pa.int32(), mask=carried_from == 0),
            "selected": pa.array(selected == 1, pa.bool_(), mask=selected < 0),
        }
    )
    return table, rows_account


def recipients(
    applicants: pa.Table,
    account_id: pa.Array,
    rows: np.ndarray,
    state: np.ndarray,
    wave: np.ndarray,
    months: np.ndarray,
    calendar: WaveCalendar,
    timeline: Timeline,
    rng: np.random.Generator,
) -> pa.Table:
    r = rows.size
    st = state[rows]
    closes = calendar.closes_at[wave[rows] - 1]
    latest = timeline.latest
    selected_at = np.minimum(
        closes
        + np.timedelta64(int(RESULTS_DELAY.total_seconds()), "s")
        + (rng.random(r) * 86_400).astype(np.int64) * _SECOND,
        latest,
    )
    deadline = int(BUY_DEADLINE.total_seconds())
    bought_at = np.minimum(selected_at + (rng.random(r) * deadline * 0.6).astype(np.int64) * _SECOND, latest)
    finished_at = np.minimum(
        bought_at + (rng.exponential(7 * 86_400, r) + 86_400).astype(np.int64) * _SECOND, latest
    )
    revoked_at = np.minimum(selected_at + np.timedelta64(deadline, "s"), latest)
    has_bought = np.isin(st, [BOUGHT, FINISHED, PAID])
    has_finished = np.isin(st, [FINISHED, PAID])
    idx = pa.array(rows)
    priority = rng.random(r) < 0.05  # names proposed by ministries went first in the lottery
    if "is_priority" in applicants.column_names:
        priority = pc.fill_null(applicants.column("is_priority").take(idx), False).to_numpy(
            zero_copy_only=False
        )
    return pa.table(
        {
            "account_id": account_id.take(idx),
            "wave_number": pa.array(wave[rows], pa.int32()),
            "kk": applicants.column("kk").cast(pa.string()).take(idx),
            "priority": pa.array(priority, pa.bool_()),
            "state": pa.array(RECIPIENT_STATE_NAMES[st], pa.string()),
            "selected_at": times(selected_at, None),
            "training_bought_at": times(bought_at, has_bought),
            "training_finished_at": times(finished_at, has_finished),
            "incentive_months_paid": pa.array(months[rows], pa.int16()),
            "revoked_at": times(revoked_at, st == REVOKED),
        }
    )
