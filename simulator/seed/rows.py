"""From a chunk of population applicants to the API's rows: states drawn, timelines built, tables filled.

Everything is column-wise (numpy / pyarrow). The only per-row work of a seed, argon2, happens
elsewhere (``simulator.seed.hashing``) on worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import InvalidInputFile, InvalidOption
from simulator.rules.eligibility import MAX_KK_RECIPIENTS
from simulator.rules.reasons import ACCEPT, Reason
from simulator.seed.hashing import PasswordChoice
from simulator.seed.states import (
    DEPTH,
    INCENTIVE_MONTHS_SHARES,
    STATES,
    StateMix,
    apportion,
)
from simulator.seed.steps import (
    AGE_RANK,
    JOINED,
    PAID,
    RECIPIENT_ORDER,
    SELECTED,
    Timeline,
    answers,
    dates,
    group_rank,
    hex_digests,
    padded,
    profiles,
    recipients,
    times,
    wave_joins,
)
from simulator.seed.waves import WaveCalendar

APPLICANT_COLUMNS = (
    "applicant_id", "nik", "kk", "full_name", "birth_date", "email", "phone", "password",
    "province_code", "education", "employment_status", "expected_outcome",
)  # fmt: skip
"""Population columns (architecture 3.1) a seed cannot do without."""

_READ_COLUMNS = frozenset(APPLICANT_COLUMNS) | {
    "address", "rt_rw", "village", "regency_code", "district_code", "village_code", "postal_code",
    "domicile_village", "domicile_province_code", "domicile_regency_code", "domicile_district_code",
    "domicile_village_code", "is_priority",
}  # fmt: skip
"""Every population column build_chunk reads (the required ones and those it uses when present)."""

RESIDENT_COLUMNS = ("nik", "kk", "birth_date", "full_name", "gender", "province_code", "regency_code",
                    "district_code", "occupation")  # fmt: skip

# The deepest step a labelled applicant can reach (index into DEPTH; -1: the account is refused).
_NO_ACCOUNT = -1
_DEPTH_CAP: dict[str, int] = {
    Reason.EMAIL_TAKEN: _NO_ACCOUNT,
    Reason.EMAIL_INVALID: _NO_ACCOUNT,
    Reason.PASSWORD_TOO_SHORT: _NO_ACCOUNT,
    Reason.PASSWORD_MISMATCH: _NO_ACCOUNT,
    Reason.EMAIL_DOMAIN_TYPO: 0,  # the OTP never arrives at gmial.com
    Reason.PHONE_TAKEN: 2,  # identity passes; the phone step refuses them
    Reason.PHONE_INVALID: 2,
}
_DEFAULT_CAP = 1  # every other refusal is given at the identity step: email verified at most
_ACCEPT_CAP = 9

CARRIED_OVER_SHARE = 0.5
"""Share of the open wave's joiners who joined an earlier wave and were not selected (rolled over).
Not published; the sum of joiners per wave (e.g. 5.8M in wave 9, 6.7M in wave 10) is several
times the number of distinct people, so rolling over was common."""


@dataclass
class KkLedger:
    """Recipients per family card so far, to keep ``MAX_KK_RECIPIENTS`` across chunks and runs."""

    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def existing(self, kk: np.ndarray) -> np.ndarray:
        if self.keys.size == 0:
            return np.zeros(kk.size, dtype=np.int64)
        pos = np.searchsorted(self.keys, kk).clip(0, self.keys.size - 1)
        return np.where(self.keys[pos] == kk, self.counts[pos], 0)

    def add(self, kk: np.ndarray) -> None:
        keys = np.concatenate([self.keys, kk])
        counts = np.concatenate([self.counts, np.ones(kk.size, dtype=np.int64)])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.counts = np.bincount(inverse, weights=counts, minlength=self.keys.size).astype(np.int64)


@dataclass
class SeedCursor:
    """Running totals carried from chunk to chunk (and read back from the database in ``--append``)."""

    accounts: int = 0
    states: np.ndarray = field(default_factory=lambda: np.zeros(len(STATES), dtype=np.int64))
    recipients: int = 0
    recipients_per_wave: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    joins_per_wave: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ledger: KkLedger = field(default_factory=KkLedger)


@dataclass
class ChunkRows:
    """The rows of one chunk, per table name of the API schema, plus the side-file rows."""

    tables: dict[str, pa.Table]
    credentials: pa.Table  # plain passwords and where each test user stands
    passwords: pa.Array  # each account's plain password, in row order
    positions: dict[str, np.ndarray] = field(default_factory=dict)
    """For each event table, the accounts row of each of its rows (so no lookup by id is needed)."""

    def with_hashes(self, hashes: pa.Array | list[str]) -> dict[str, pa.Table]:
        accounts = self.tables["accounts"]
        index = accounts.schema.get_field_index("password_hash")
        tables = dict(self.tables)
        hashes = hashes if isinstance(hashes, pa.Array) else pa.array(hashes, pa.string())
        tables["accounts"] = accounts.set_column(index, "password_hash", hashes)
        return tables


def depth_caps(expected_outcome: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The deepest funnel depth each applicant's label allows (-1: no account at all)."""
    outcome = pc.fill_null(expected_outcome, "").cast(pa.string())
    caps = np.full(len(outcome), _DEFAULT_CAP, dtype=np.int8)
    caps[pc.equal(outcome, ACCEPT).to_numpy(zero_copy_only=False)] = _ACCEPT_CAP
    for reason, cap in _DEPTH_CAP.items():
        caps[pc.equal(outcome, str(reason)).to_numpy(zero_copy_only=False)] = cap
    return caps


def check_columns(table: pa.Table, required: tuple[str, ...], source: str) -> None:
    missing = [name for name in required if name not in table.column_names]
    if missing:
        raise InvalidInputFile(f"{source}: missing column(s) {', '.join(missing)} (see architecture 3.1)")


def build_chunk(
    applicants: pa.Table,
    *,
    chunk_index: int,
    seed: int,
    mix: StateMix,
    calendar: WaveCalendar,
    cursor: SeedCursor,
    source: str,
    choice: PasswordChoice | None = None,
) -> ChunkRows:
    """Rows for one block of applicants; advances ``cursor`` (counts, join orders, KK ledger).

    Every draw comes from a generator keyed by the seed and the block's first applicant id (its
    index when ids are not numbers), so a block comes out the same however the input was read.
    """
    check_columns(applicants, APPLICANT_COLUMNS, source)
    caps = depth_caps(applicants.column("expected_outcome"))
    # Only the columns read below are filtered (a population row has about 40).
    applicants = applicants.select([name for name in applicants.column_names if name in _READ_COLUMNS])
    if not (caps >= 0).all():
        applicants = applicants.filter(pa.array(caps >= 0))
    caps = caps[caps >= 0]
    n = applicants.num_rows
    numeric_ids = _numeric_ids(applicants.column("applicant_id"))
    block_key = int(numeric_ids[0]) if numeric_ids is not None and n else chunk_index
    rng = np.random.default_rng([seed, 7, 1 if numeric_ids is not None else 0, block_key])

    counts = mix.chunk_counts(cursor.states, cursor.accounts + n)
    kk = _kk_numbers(applicants.column("kk"), source)
    state = _draw_states(caps, counts, kk, rng, cursor, mix)
    cursor.accounts += n
    cursor.states += np.bincount(state, minlength=len(STATES))

    timeline = Timeline(n, rng, calendar)
    tables: dict[str, pa.Table] = {}
    account_id = _account_ids(applicants.column("applicant_id"), source)
    depth = DEPTH[state]

    # --- joins and recipients first: their wave fixes when everything before happened --------------
    is_recipient = np.isin(state, list(RECIPIENT_ORDER))
    recipient_rows = np.flatnonzero(is_recipient)
    wave = np.zeros(n, dtype=np.int64)
    months = np.zeros(n, dtype=np.int64)
    if recipient_rows.size:
        wave_counts = apportion(
            calendar.closed_accepted,
            padded(cursor.recipients_per_wave, calendar.open_wave - 1),
            cursor.recipients + recipient_rows.size,
        )
        cursor.recipients += int(recipient_rows.size)
        cursor.recipients_per_wave = padded(cursor.recipients_per_wave, calendar.open_wave - 1) + wave_counts
        waves_sorted = np.repeat(np.arange(1, calendar.open_wave), wave_counts)
        by_age = recipient_rows[np.argsort(AGE_RANK[state[recipient_rows]], kind="stable")]
        wave[by_age] = waves_sorted
        paid = by_age[state[by_age] == PAID]
        month_counts = apportion(
            np.array([round(s * 1e9) for s in INCENTIVE_MONTHS_SHARES.values()], dtype=np.int64),
            np.zeros(len(INCENTIVE_MONTHS_SHARES), dtype=np.int64),
            paid.size,
        )
        months[paid] = np.repeat(np.array(list(INCENTIVE_MONTHS_SHARES), dtype=np.int64), month_counts)[::-1]
    joined_rows = np.flatnonzero(state == JOINED)
    wave[joined_rows] = calendar.open_wave
    carried = np.zeros(n, dtype=np.int64)
    if joined_rows.size and calendar.open_wave > 1:
        takes = rng.random(joined_rows.size) < CARRIED_OVER_SHARE
        weights = calendar.closed_accepted / calendar.closed_accepted.sum()
        carried[joined_rows[takes]] = rng.choice(
            np.arange(1, calendar.open_wave), size=int(takes.sum()), p=weights
        )

    joined_at = timeline.join_times(wave, carried, state)
    steps = timeline.steps_before(joined_at, depth)

    # --- accounts and the steps of the flow -------------------------------------------------------
    email = pc.utf8_lower(applicants.column("email").cast(pa.string()))
    phone = applicants.column("phone").cast(pa.string())
    tables["accounts"] = pa.table(
        {
            "id": account_id,
            "email": email,
            "name": applicants.column("full_name").cast(pa.string()),
            "password_hash": pa.nulls(n, pa.string()),
            "email_verified_at": times(steps["email"], depth >= 1),
            "phone": pc.if_else(pa.array(depth >= 3), phone, pa.nulls(n, pa.string())),
            "phone_verified_at": times(steps["phone"], depth >= 3),
            "created_at": times(steps["created"], np.ones(n, dtype=bool)),
        }
    )
    has_identity = depth >= 2
    idx = pa.array(np.flatnonzero(has_identity))
    tables["identities"] = pa.table(
        {
            "account_id": account_id.take(idx),
            "nik": applicants.column("nik").cast(pa.string()).take(idx),
            "kk": applicants.column("kk").cast(pa.string()).take(idx),
            "birth_date": dates(applicants.column("birth_date"), source).take(idx),
            "checked_at": times(steps["identity"][has_identity], None),
        }
    )
    tables["profiles"] = profiles(applicants, account_id, idx, steps["profile"][has_identity])
    has_ktp = depth >= 3
    ktp_idx = pa.array(np.flatnonzero(has_ktp))
    k = int(has_ktp.sum())
    tables["ktp_uploads"] = pa.table(
        {
            "account_id": account_id.take(ktp_idx),
            "verdict": pa.array([ACCEPT] * k, pa.string()),
            "filename": pa.array(["ktp.jpg"] * k, pa.string()),
            "content_type": pa.array(["image/jpeg"] * k, pa.string()),
            "size_bytes": pa.array(rng.integers(180_000, 1_900_000, k), pa.int32()),
            "sha256": hex_digests(rng, k),
            "width": pa.array(np.full(k, 1280), pa.int32()),
            "height": pa.array(np.full(k, 807), pa.int32()),
            "created_at": times(steps["ktp"][has_ktp], None),
        }
    )
    tested = depth >= 4
    test_idx = pa.array(np.flatnonzero(tested))
    t = int(tested.sum())
    tables["test_results"] = pa.table(
        {
            "account_id": account_id.take(test_idx),
            "answers": answers(rng, t),
            # Most applicants pass a basic-skills test; the score matters for nothing downstream.
            "score": pa.array(rng.binomial(18, 0.8, t), pa.int16()),
            "completed_at": times(steps["test"][tested], None),
        }
    )

    # --- waves: joins (with roll-overs) and recipients ---------------------------------------------
    tables["wave_joins"], joins_at = wave_joins(
        account_id, wave, carried, joined_at, is_recipient, calendar, cursor
    )
    tables["recipients"] = recipients(
        applicants, account_id, recipient_rows, state, wave, months, calendar, timeline, rng
    )
    cursor.ledger.add(kk[recipient_rows])

    own = applicants.column("password").cast(pa.string())
    if choice is None or choice.pool is None:
        plain = own.combine_chunks() if isinstance(own, pa.ChunkedArray) else own
    else:  # ids that are not numbers: the account's position in the run instead
        keys = numeric_ids if numeric_ids is not None else cursor.accounts - n + np.arange(n)
        plain = choice.plain(own, keys)
    state_names = pa.array(np.array([s.value for s in STATES], dtype=object)[state], pa.string())
    credentials = pa.table(
        {
            "account_id": account_id,
            "applicant_id": applicants.column("applicant_id").cast(pa.string()),
            "email": email,
            "password": plain,
            "state": state_names,
            "wave": pa.array(np.where(wave > 0, wave, 0), pa.int64()).cast(pa.string()),
            "incentive_months_paid": pa.array(months, pa.int64()),
            "phone": phone,
            "nik": applicants.column("nik").cast(pa.string()),
            "kk": applicants.column("kk").cast(pa.string()),
            "birth_date": dates(applicants.column("birth_date"), source),
            "expected_outcome": applicants.column("expected_outcome").cast(pa.string()),
        }
    )
    wave_text = credentials.column("wave")
    credentials = credentials.set_column(
        credentials.schema.get_field_index("wave"),
        "wave",
        pc.if_else(pc.equal(wave_text, "0"), "", wave_text),
    )
    identity_rows = np.flatnonzero(has_identity)
    positions = {
        "identities": identity_rows, "profiles": identity_rows, "ktp_uploads": np.flatnonzero(has_ktp),
        "test_results": np.flatnonzero(tested), "wave_joins": joins_at, "recipients": recipient_rows,
    }  # fmt: skip
    return ChunkRows(tables=tables, credentials=credentials, passwords=plain, positions=positions)


# --- states -----------------------------------------------------------------------------------------


def _draw_states(
    caps: np.ndarray,
    counts: np.ndarray,
    kk: np.ndarray,
    rng: np.random.Generator,
    cursor: SeedCursor,
    mix: StateMix,
) -> np.ndarray:
    """A state per applicant: exactly ``counts`` of each, within what each one's label allows.

    Deepest states are filled first from the applicants allowed to reach them (the sets are
    nested, so this never strands a shallower state); recipients also need room on their KK.
    """
    n = caps.size
    state = np.full(n, -1, dtype=np.int64)
    order = rng.permutation(n)
    recipient_codes = list(RECIPIENT_ORDER)
    wanted = int(counts[recipient_codes].sum())
    if wanted:
        candidates = order[caps[order] >= DEPTH[SELECTED]]
        room = cursor.ledger.existing(kk[candidates]) + group_rank(kk[candidates]) < MAX_KK_RECIPIENTS
        chosen = candidates[room][:wanted]
        _check_supply(chosen.size, wanted, "a recipient state (selected and beyond)", mix)
        state[chosen] = rng.permutation(np.repeat(recipient_codes, counts[recipient_codes]))
    for code in sorted(set(range(len(STATES))) - set(recipient_codes), key=lambda c: -DEPTH[c]):
        need = int(counts[code])
        if not need:
            continue
        pool = order[(state[order] < 0) & (caps[order] >= DEPTH[code])]
        _check_supply(pool.size, need, STATES[code].value, mix)
        state[pool[:need]] = code
    return state


def _check_supply(have: int, need: int, what: str, mix: StateMix) -> None:
    if have < need:
        raise InvalidOption(
            f"--states {mix.name}: a chunk needs {need} applicants in {what} but only {have} are allowed "
            "there (defective or ineligible applicants stop at the identity step, and at most "
            f"{MAX_KK_RECIPIENTS} recipients share a KK); lower the later states' shares or use a "
            "population with fewer defects"
        )


def _kk_numbers(kk: pa.ChunkedArray | pa.Array, source: str) -> np.ndarray:
    try:
        return pc.cast(kk, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise InvalidInputFile(f"{source}: column kk must hold 16-digit numbers") from None


def _account_ids(applicant_id: pa.ChunkedArray | pa.Array, source: str) -> pa.Array:
    """``seed-`` and the applicant id zero-padded to 12 digits: unique, and increasing with the
    applicant id, so B-tree primary keys (InnoDB's clustered index above all) grow at the end
    instead of splitting pages all over."""
    ids = _numeric_ids(applicant_id)
    if ids is None:
        # not a number we can pad: keep the population's own id text
        return pc.binary_join_element_wise("seed-", applicant_id.cast(pa.string()), "")
    text = np.empty((ids.size, 17), dtype=np.uint8)
    text[:, :5] = np.frombuffer(b"seed-", dtype=np.uint8)
    # Two halves of six digits each, in 32-bit arithmetic (a third of the cost of 64-bit division).
    for half, column in zip(np.divmod(ids, 1_000_000), (5, 11), strict=True):
        rest = half.astype(np.int32)
        for k in range(5, -1, -1):
            rest, digit = np.divmod(rest, 10)
            text[:, column + k] = digit + 48
    offsets = np.arange(0, 17 * (ids.size + 1), 17, dtype=np.int32)
    return pa.StringArray.from_buffers(ids.size, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def _numeric_ids(applicant_id: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Applicant ids as numbers 0..10**12-1, or None when they are not all such numbers."""
    if applicant_id.null_count:
        return None
    try:
        ids = pc.cast(applicant_id, pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if (ids < 0).any() or (ids >= 10**12).any():
        return None
    return ids
