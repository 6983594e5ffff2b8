"""Who arrives: applicants from a population file assigned to arrivals, and each one's journey plan.

Owns applicant selection (defect share), fates (how far each person goes), think times, retries and uploads.

Everything is drawn for the whole schedule from the scenario seed, then sliced per worker
(arrival ``i`` -> worker ``i % n``), so a run's journeys are the same whatever the number of workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import InvalidInputFile
from simulator.rules.eligibility import ELIGIBILITY_ORDER
from simulator.rules.reasons import ACCEPT, Reason
from simulator.surge.scenario import KTP_DEFECT_CODES, STEPS, Scenario
from simulator.surge.schedule import STREAM_APPLICANTS, STREAM_JOURNEY, Schedule

FORM_COLUMNS = (
    "applicant_id",
    "nik",
    "kk",
    "full_name",
    "birth_date",
    "email",
    "phone",
    "password",
    "address",
    "province_code",
    "regency_code",
    "district_code",
    "village_code",
    "postal_code",
    "education",
    "employment_status",
    "expected_outcome",
    "domicile_province_code",
    "domicile_regency_code",
    "domicile_district_code",
    "domicile_village_code",
)
REQUIRED_COLUMNS = (
    "applicant_id",
    "nik",
    "kk",
    "full_name",
    "birth_date",
    "email",
    "phone",
    "expected_outcome",
)
FATE_FLAGS = (
    # (population column, scenario funnel rate, the last step of those who stop here)
    ("fate_email_verified", "email_verify", "create_account"),
    ("fate_identity_submitted", "identity_submit", "login"),
    ("fate_phone_verified", "phone_verify", "phone"),
    ("fate_test_finished", "test_finish", "verify_phone"),
    ("fate_joins_wave", "join", "test"),
)
KTP_CHOICES: tuple[str, ...] = (ACCEPT, *KTP_DEFECT_CODES)
"""Index 0 is a valid photo; the others are bad photos named by the reason the API should give."""
MAX_KTP_UPLOADS = 8
MAX_RETRIES = 8

# Where the API gives each refusal: if a journey gets past this step, the refusal was missed.
REFUSAL_STEP: dict[str, str] = {
    **{
        r: "create_account"
        for r in (
            Reason.EMAIL_TAKEN,
            Reason.EMAIL_INVALID,
            Reason.EMAIL_DOMAIN_TYPO,
            Reason.PASSWORD_TOO_SHORT,
            Reason.PASSWORD_MISMATCH,
        )
    },
    **{
        r: "identity"
        for r in (
            Reason.NIK_MALFORMED,
            Reason.NIK_NOT_FOUND,
            Reason.NIK_BIRTHDATE_MISMATCH,
            Reason.NIK_KK_MISMATCH,
            Reason.NIK_ALREADY_REGISTERED,
            *ELIGIBILITY_ORDER,  # the eligibility rules, checked at identity submission
        )
    },
    **{r: "phone" for r in (Reason.PHONE_TAKEN, Reason.PHONE_INVALID)},
}
# Two applicants typing the same email / phone / NIK: whichever comes second is refused, and in a
# surge that may be either of them, so both count the refusal as expected.
DUPLICATE_REASONS = {
    "email": Reason.EMAIL_TAKEN,
    "phone": Reason.PHONE_TAKEN,
    "nik": Reason.NIK_ALREADY_REGISTERED,
}


@dataclass
class JourneyPlans:
    """The journeys one worker runs, as columns; row ``j`` is global arrival ``arrivals[j]``."""

    arrivals: np.ndarray
    scheduled_s: np.ndarray
    applicants: list[dict[str, Any]]
    last_step: np.ndarray  # index into STEPS of the last step each person intends to do
    retries: np.ndarray  # retries each person makes after failures, over the whole journey
    think_s: np.ndarray  # (n, len(STEPS)) harness seconds of thinking before each step
    backoff_s: np.ndarray  # (n, MAX_RETRIES) harness seconds before each retry
    ktp_uploads: np.ndarray  # (n, MAX_KTP_UPLOADS) KTP_CHOICES index per attempt, -1 after the last
    duplicates: dict[str, np.ndarray]  # 'email' / 'phone' / 'nik' shared with another arrival

    def __len__(self) -> int:
        return len(self.arrivals)


def applicant_password(applicant: dict[str, Any]) -> str:
    """The population's password, or one made from the applicant id (sign-up and log-in agree)."""
    return applicant.get("password") or f"Prakerja-{applicant['applicant_id']}"


def load_applicants(population: str | os.PathLike | None, size: int, seed: int) -> tuple[pa.Table, str]:
    """The applicants table from a population directory, or a fresh one of ``size`` rows.

    Returns the table and a label saying where it came from (for reports).
    """
    if population is None:
        from simulator.generators.population import generate_tables

        _residents, applicants = generate_tables(size, seed)
        return applicants, f"generated (size {size}, seed {seed})"
    from simulator.io.reader import read_table

    directory = Path(population)
    if not directory.is_dir():
        raise InvalidInputFile(
            f"{directory}: no such population directory (make one with `prakerja-sim population`)"
        )
    table = read_table(directory, "applicants")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise InvalidInputFile(f"{directory}: applicants table lacks column(s) {', '.join(missing)}")
    return table, str(directory)


def select_applicants(
    applicants: pa.Table, count: int, scenario: Scenario, skip: int = 0, source: str = "population"
) -> np.ndarray:
    """Row numbers of the applicants who make arrivals ``0 .. count-1`` (each applicant used once).

    ``skip`` leaves the first applicants out (they were used by an earlier run on the same server).
    With ``defects.applicant_share`` the arrivals are drawn so that this share has a non-accept
    ``expected_outcome``; otherwise applicants come in file order, with the population's own mix.
    """
    available = applicants.num_rows - skip
    share = scenario.defects.applicant_share
    if share is None:
        if count > available:
            raise InvalidInputFile(
                f"{source}: {applicants.num_rows:,} applicants (skipping {skip:,}) but the scenario "
                f"schedules {count:,} arrivals; make a bigger population "
                f"(prakerja-sim population --size {count + skip})"
            )
        return np.arange(skip, skip + count, dtype=np.int64)
    outcome = _column(applicants, "expected_outcome", object)[skip:]
    defective = np.flatnonzero(outcome != ACCEPT) + skip
    clean = np.flatnonzero(outcome == ACCEPT) + skip
    rng = np.random.default_rng([scenario.seed, STREAM_APPLICANTS])
    bad = int(rng.binomial(count, share))
    if bad > len(defective) or count - bad > len(clean):
        raise InvalidInputFile(
            f"{source}: defects.applicant_share {share:g} needs {bad:,} defective and {count - bad:,} clean "
            f"applicants; the population has {len(defective):,} and {len(clean):,}"
        )
    rows = np.concatenate((defective[:bad], clean[: count - bad]))
    return rows[rng.permutation(count)]


def build_plans(
    scenario: Scenario,
    schedule: Schedule,
    applicants: pa.Table,
    rows: np.ndarray,
    worker_index: int = 0,
    worker_count: int = 1,
) -> JourneyPlans:
    """Journey plans of one worker's arrivals; ``rows[i]`` is the applicant of global arrival ``i``."""
    total = len(schedule)
    rng = np.random.default_rng([scenario.seed, STREAM_JOURNEY])
    funnel, scale = scenario.funnel, scenario.replay.time_scale

    # Draw for every arrival (same numbers whatever the worker count), then keep this worker's.
    think_means = np.array([funnel.think_s[step] for step in STEPS]) / scale
    think = rng.exponential(1.0, size=(total, len(STEPS))) * think_means
    backoff = rng.exponential(funnel.retry_backoff_s / scale, size=(total, MAX_RETRIES))
    ktp = _ktp_attempts(rng, total, scenario)
    funnel_draws = rng.random(size=(total, len(FATE_FLAGS)))

    mine = schedule.worker_indices(worker_index, worker_count)
    table = applicants.take(pa.array(rows[mine]))
    last_step = _last_steps(table, scenario, funnel_draws[mine])
    if "fate_retries" in table.column_names:
        retries = np.clip(_column(table, "fate_retries", np.int64), 0, MAX_RETRIES)
    else:
        retries = np.full(len(mine), min(funnel.retries_max, MAX_RETRIES), dtype=np.int64)

    selected = applicants.take(pa.array(rows))
    duplicates = {}
    for column in DUPLICATE_REASONS:
        values = selected.column(column)
        counts = pc.value_counts(values)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
        shared = pc.is_in(table.column(column), value_set=repeated)
        duplicates[column] = np.asarray(shared.to_numpy(zero_copy_only=False), dtype=bool)

    columns = [c for c in FORM_COLUMNS if c in table.column_names]
    return JourneyPlans(
        arrivals=mine,
        scheduled_s=schedule.starts_s[mine],
        applicants=table.select(columns).to_pylist(),
        last_step=last_step,
        retries=retries,
        think_s=think[mine],
        backoff_s=backoff[mine],
        ktp_uploads=ktp[mine],
        duplicates=duplicates,
    )


def _ktp_attempts(rng: np.random.Generator, total: int, scenario: Scenario) -> np.ndarray:
    """Upload attempts per arrival: bad photos (the defect mix) are retaken until one passes, then
    ``ktp_uploads_mean - 1`` extra valid uploads on average (double taps, second thoughts)."""
    shares = np.zeros(len(KTP_CHOICES))
    for code, share in scenario.defects.ktp.items():
        shares[KTP_CHOICES.index(code)] = share
    shares[0] = max(0.0, 1.0 - shares[1:].sum())
    choices = rng.choice(len(KTP_CHOICES), size=(total, MAX_KTP_UPLOADS), p=shares / shares.sum())
    extra = rng.poisson(scenario.funnel.ktp_uploads_mean - 1.0, size=total)
    rows = np.arange(total)
    valid = choices == 0
    first_valid = np.where(valid.any(axis=1), valid.argmax(axis=1), MAX_KTP_UPLOADS - 1)
    choices[rows, first_valid] = 0  # the photo that finally passes
    attempts = np.minimum(first_valid + 1 + extra, MAX_KTP_UPLOADS)
    position = np.arange(MAX_KTP_UPLOADS)[None, :]
    choices = np.where(position > first_valid[:, None], 0, choices)
    return np.where(position < attempts[:, None], choices, -1).astype(np.int8)


def _last_steps(table: pa.Table, scenario: Scenario, draws: np.ndarray) -> np.ndarray:
    """Index into STEPS of the last step each person means to do (their fate, or the funnel's)."""
    use_population = scenario.funnel.source == "population" and all(
        column in table.column_names for column, _, _ in FATE_FLAGS
    )
    last = np.full(table.num_rows, STEPS.index("join"), dtype=np.int64)
    going = np.ones(table.num_rows, dtype=bool)
    for k, (column, rate_name, stop_step) in enumerate(FATE_FLAGS):
        if use_population:
            does = _column(table, column, bool)
        else:
            does = draws[:, k] < getattr(scenario.funnel, rate_name)
        stops = going & ~does
        last[stops] = STEPS.index(stop_step)
        going &= does
    return last


def _column(table: pa.Table, name: str, dtype: Any) -> np.ndarray:
    column = table.column(name)
    if dtype is bool:
        column = column.fill_null(False)
    elif dtype is np.int64:
        column = column.fill_null(0)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)
