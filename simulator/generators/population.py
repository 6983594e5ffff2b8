"""The applicant population: ``residents`` (the registry's truth) and ``applicants`` (what people type
into the form, with labels), generated in independent, deterministic chunks of whole columns.

Chunk ``k`` of a population draws from ``SeedSequence(seed, spawn_key=(k,))`` and covers persons
``[k * chunk_rows, (k + 1) * chunk_rows)``: any worker can make any chunk, so output does not depend
on the number of workers, and shards (ranges of chunks) concatenate to the unsharded population.
NIK and KK serials, emails and phones are unique across all chunks by construction (see
``_Serials`` and ``simulator.generators.contact``), never by a global set.

This module plans the chunks and makes the ``residents`` table of each; beside it: ``shapes`` (the
cited shares and assumptions), ``schema`` (the columns), ``dates``, ``places`` (villages, region
names, addresses) and ``applicants`` (the form as typed, with its defects and label).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import InvalidOption
from simulator.generators import names
from simulator.generators.applicants import applicant_table
from simulator.generators.columns import (
    bucket,
    choice,
    digits,
    group_rank,
    iso_dates,
    lookup,
    take,
)
from simulator.generators.dates import birth_day_bounds, day_number, lattice_days
from simulator.generators.defects import DEFECT_NAMES, DefectRates, parse_defects
from simulator.generators.places import (
    addresses,
    draw_provinces,
    draw_villages,
    elsewhere_villages,
    region_lookup,
)
from simulator.generators.schema import APPLICANT_SCHEMA, ENCODED_SCHEMAS, RESIDENT_SCHEMA
from simulator.generators.shapes import (
    AGE_BRACKETS,
    BLOOD_SHARES,
    BLOOD_TYPES,
    EXCLUDED_DRAW,
    FEMALE_SHARE,
    KK_ADULTS,
    MARITAL,
    MARITAL_BY_AGE,
    NOT_FOUND_SERIAL,
    OCCUPATIONS,
    OCCUPATIONS_FEMALE,
    OCCUPATIONS_MALE,
    RELIGION_BY_PROVINCE,
    RELIGION_DEFAULT,
    RELIGIONS,
    STUDENT,
)
from simulator.regions import region_tables
from simulator.rules import eligibility
from simulator.rules import nik as nik_rules

GENERATOR_VERSION = "population/3"  # 2: Parquet columns dictionary-encoded from the generator; 3: REQUIRED
DEFAULT_CHUNK_ROWS = 100_000
MAX_SIZE = 99_999_999  # phones draw from 10^8 subscriber numbers
DATE_RESIDUES = 16  # see _Serials


@dataclass(frozen=True)
class FunnelRates:
    """Chance of taking each step, given the previous one was reached.

    Calibrated on the 30 Oct 2020 funnel (okezone, 3 Nov 2020): 40M accounts, 26M email verified
    (0.65), 20M NIK+KK valid (0.77 of those: identity submitted 0.85 x passes ~0.9 with the
    realistic defects), 18M phone verified (0.90). Finishing the test and joining a wave are not
    published: 0.95 and 0.92 are assumptions. Retries: share retrying a failed step 0, 1, 2, 3 times.
    """

    email_verified: float = 0.65
    identity_submitted: float = 0.85
    phone_verified: float = 0.90
    test_finished: float = 0.95
    joins_wave: float = 0.92
    retry_shares: tuple[float, ...] = (0.70, 0.20, 0.07, 0.03)


@dataclass(frozen=True)
class PopulationOptions:
    """Everything besides size and seed that shapes a population (recorded in the manifest)."""

    defects: DefectRates = field(default_factory=lambda: parse_defects(None))
    province: str | None = None  # a province code ("32"): only people whose KTP is there
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    reference_date: dt.date = eligibility.REFERENCE_DATE
    female_share: float = FEMALE_SHARE
    nik_elsewhere_share: float = 0.08  # NIK issued in another district than the current KTP address
    domicile_elsewhere_share: float = 0.15  # living away from the KTP address (domicile differs)
    priority_share: float = 0.05  # NIKs proposed by a ministry: drawn first by the lottery
    funnel: FunnelRates = field(default_factory=FunnelRates)

    def as_dict(self) -> dict[str, object]:
        return {
            "defects": self.defects.as_dict, "province": self.province, "chunk_rows": self.chunk_rows,
            "reference_date": self.reference_date.isoformat(), "female_share": self.female_share,
            "nik_elsewhere_share": self.nik_elsewhere_share,
            "domicile_elsewhere_share": self.domicile_elsewhere_share, "priority_share": self.priority_share,
            "funnel": {k: list(v) if isinstance(v, tuple) else v for k, v in self.funnel.__dict__.items()},
        }  # fmt: skip


@dataclass
class PopulationChunk:
    """One chunk: persons ``[start, stop)`` of the population, both tables row-aligned by person."""

    index: int
    start: int
    stop: int
    residents: pa.Table
    applicants: pa.Table


@dataclass(frozen=True)
class PopulationPlan:
    """How a population of ``size`` splits into chunks and shards."""

    size: int
    seed: int
    options: PopulationOptions

    @property
    def chunk_count(self) -> int:
        return max(1, math.ceil(self.size / self.options.chunk_rows))

    def shard_chunks(self, shard_index: int, shard_count: int) -> range:
        """The global chunk indices of shard ``shard_index`` of ``shard_count`` (contiguous)."""
        c = self.chunk_count
        return range(shard_index * c // shard_count, (shard_index + 1) * c // shard_count)

    def chunk_bounds(self, k: int) -> tuple[int, int]:
        rows = self.options.chunk_rows
        return k * rows, min(self.size, (k + 1) * rows)


def make_plan(
    size: int,
    seed: int,
    *,
    defects: str | dict | DefectRates | None = None,
    province: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    reference_date: dt.date | None = None,
    funnel: FunnelRates | None = None,
    **shares: float,
) -> PopulationPlan:
    """Check the options and freeze them into a :class:`PopulationPlan`."""
    if not isinstance(size, int) or size < 1 or size > MAX_SIZE:
        raise InvalidOption(f"size must be an integer from 1 to {MAX_SIZE:,}, got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise InvalidOption(f"seed must be a non-negative integer, got {seed!r}")
    if chunk_rows < 1_000:
        raise InvalidOption(f"chunk_rows must be at least 1000, got {chunk_rows}")
    province_code = None
    if province is not None:
        regions = region_tables()
        try:
            province_code = str(regions.province_codes[regions.province_index(str(province))])
        except KeyError:
            known = ", ".join(
                f"{c} {n}" for c, n in zip(regions.province_codes, regions.province_names, strict=True)
            )
            raise InvalidOption(f"unknown province {province!r}; use a code or name: {known}") from None
    options = PopulationOptions(defects=parse_defects(defects), province=province_code, chunk_rows=chunk_rows)
    if reference_date is not None:
        options = replace(options, reference_date=reference_date)
    if funnel is not None:
        options = replace(options, funnel=funnel)
    for name, value in shares.items():
        if name not in ("female_share", "nik_elsewhere_share", "domicile_elsewhere_share", "priority_share"):
            raise InvalidOption(f"unknown population option {name!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise InvalidOption(f"{name} must be between 0 and 1, got {value}")
        options = replace(options, **{name: float(value)})
    return PopulationPlan(size=size, seed=seed, options=options)


def generate(
    size: int,
    seed: int,
    *,
    shard_index: int = 0,
    shard_count: int = 1,
    defects: str | dict | DefectRates | None = None,
    province: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    **options,
) -> Iterator[PopulationChunk]:
    """Yield the chunks of shard ``shard_index``/``shard_count`` of the population, in order.

    Options are checked here, before the first chunk is asked for (``InvalidOption``).
    """
    if not 0 <= shard_index < shard_count:
        raise InvalidOption(f"shard must be I/N with 0 <= I < N, got {shard_index}/{shard_count}")
    plan = make_plan(size, seed, defects=defects, province=province, chunk_rows=chunk_rows, **options)
    return (generate_chunk(plan, k) for k in plan.shard_chunks(shard_index, shard_count))


def generate_tables(size: int, seed: int, **options) -> tuple[pa.Table, pa.Table]:
    """The whole population in memory as ``(residents, applicants)``: for tests and small sizes."""
    chunks = list(generate(size, seed, **options))
    return (pa.concat_tables([c.residents for c in chunks]), pa.concat_tables([c.applicants for c in chunks]))


# --- one chunk ------------------------------------------------------------------------------------


@dataclass
class _Serials:
    """Serial layout: chunk k owns day residue ``k % modulus`` and serial offset ``k // modulus``.

    Within a chunk, people of the same (district, day) get ranks 0, 1, 2... and the serial is
    ``1 + offset + stride * rank``: two chunks either use different days or different serials,
    so NIKs (and KKs) never collide, and most serials stay small as on real cards.
    """

    modulus: int
    residue: int
    offset: int
    stride: int

    @classmethod
    def for_chunk(cls, plan: PopulationPlan, k: int) -> _Serials:
        modulus = min(plan.chunk_count, DATE_RESIDUES)
        return cls(modulus, k % modulus, k // modulus, math.ceil(plan.chunk_count / modulus))

    def serials(self, prefix: np.ndarray, day: np.ndarray) -> np.ndarray:
        rank = group_rank(prefix * 1_000_000 + (day + 100_000))
        serial = 1 + self.offset + self.stride * rank
        if serial.max(initial=1) >= NOT_FOUND_SERIAL:
            raise RuntimeError("NIK serial space exhausted: use a larger chunk count or fewer rows per day")
        return serial


def _assign_defects(
    rng: np.random.Generator,
    n: int,
    rates: DefectRates,
    household: np.ndarray,
    hh_start: np.ndarray,
    hh_size: np.ndarray,
    member: np.ndarray,
) -> np.ndarray:
    """Index into DEFECT_NAMES per person, -1 for none; KK-limit targets come with two recipient peers."""
    defect = np.full(n, -1, dtype=np.int64)
    table = rates.as_dict
    kk_rate = table.pop("kk_recipient_limit", 0.0)
    if table:
        order = [DEFECT_NAMES.index(name) for name in table]
        edges = np.cumsum(list(table.values()))
        u = rng.random(n)
        slot = bucket(edges, u)
        hit = slot < len(order)
        defect[hit] = np.array(order)[slot[hit]]
    if kk_rate > 0 and n:
        big = hh_size[household] >= 3
        share_big = big.mean()
        # Each target brings two peers, so targets are drawn at rate r / share in big households.
        want = big & (rng.random(n) < min(1.0, kk_rate / max(share_big, 1e-9)))
        targets = np.flatnonzero(want)
        targets = targets[group_rank(household[targets]) == 0]  # one target per family card
        offsets = np.array([[1, 2], [0, 2], [0, 1]])[np.minimum(member[targets], 2)]
        peers = hh_start[household[targets]][:, None] + offsets
        defect[peers.ravel()] = DEFECT_NAMES.index("already_recipient")
        defect[targets] = DEFECT_NAMES.index("kk_recipient_limit")
        # Any further member of such a family card hits the same limit: labelled so, not clean.
        touched = np.zeros(int(household.max()) + 1, dtype=bool)
        touched[household[targets]] = True
        others = touched[household] & (defect != DEFECT_NAMES.index("already_recipient"))
        defect[others] = DEFECT_NAMES.index("kk_recipient_limit")
    if n:
        # Two recipients drawn into one family card by chance: the rest of it hits the limit too.
        recipient = defect == DEFECT_NAMES.index("already_recipient")
        per_card = np.bincount(household, weights=recipient, minlength=int(household.max()) + 1)
        defect[(per_card[household] >= 2) & (defect < 0)] = DEFECT_NAMES.index("kk_recipient_limit")
    return defect


def _sources(rng: np.random.Generator, targets: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """For each target row, an earlier clean row to copy from (-1 if there is none)."""
    clean_rows = np.flatnonzero(clean)
    before = np.searchsorted(clean_rows, targets)
    pick = np.floor(rng.random(len(targets)) * before).astype(np.int64)
    return np.where(before > 0, clean_rows[np.minimum(pick, max(len(clean_rows) - 1, 0))], -1)


def generate_chunk(plan: PopulationPlan, k: int, *, dictionary: bool = False) -> PopulationChunk:
    """Chunk ``k`` of the population: a pure function of (plan, k).

    The tables have the contract's schemas (:data:`SCHEMAS`); with ``dictionary=True`` the
    columns of :data:`DICTIONARY_COLUMNS` stay dictionary-encoded (:data:`ENCODED_SCHEMAS`), the
    same values at a fraction of the cost, for the file writers.
    """
    opts = plan.options
    start, stop = plan.chunk_bounds(k)
    n = stop - start
    rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(k,)))
    regions = region_tables()
    arrow = regions.arrow
    on = opts.reference_date
    serials = _Serials.for_chunk(plan, k)
    gidx = np.arange(start, stop, dtype=np.int64)

    # Family cards: consecutive persons share one; the adults-per-KK shape is KK_ADULTS.
    sizes = np.array(list(KK_ADULTS))[choice(rng, n, KK_ADULTS)]
    household = np.repeat(np.arange(n), sizes)[:n]
    n_hh = int(household[-1]) + 1
    hh_size = np.bincount(household, minlength=n_hh)
    hh_start = np.concatenate([[0], np.cumsum(hh_size)[:-1]])
    member = np.arange(n) - hh_start[household]

    defect = _assign_defects(rng, n, opts.defects, household, hh_start, hh_size, member)
    is_defect = {name: defect == i for i, name in enumerate(DEFECT_NAMES)}
    clean = defect < 0
    dup_targets = {}
    for name in ("duplicate_nik", "duplicate_email", "duplicate_phone"):
        rows = np.flatnonzero(is_defect[name])
        src = _sources(rng, rows, clean)
        defect[rows[src < 0]] = -1  # nothing earlier to copy: this one stays clean
        is_defect[name][rows[src < 0]] = False
        dup_targets[name] = (rows[src >= 0], src[src >= 0])
    clean = defect < 0

    # Where the family card is registered (the KTP address), and where each NIK was issued.
    only = regions.province_by_code[opts.province] if opts.province else None
    hh_province = draw_provinces(rng, regions, n_hh, only)
    hh_village = draw_villages(rng, regions, hh_province)
    village = hh_village[household]
    district = regions.village_district[village]
    province = hh_province[household]
    moved = rng.random(n) < opts.nik_elsewhere_share
    nik_district = np.where(
        moved, regions.village_district[elsewhere_villages(rng, regions, province, 0.6)], district
    )

    # Gender, age and birth date (on the chunk's day lattice, see _Serials).
    female = rng.random(n) < opts.female_share
    bracket = choice(rng, n, tuple(b[2] for b in AGE_BRACKETS))
    age_lo = np.array([b[0] for b in AGE_BRACKETS])[bracket]
    age_hi = np.array([b[1] for b in AGE_BRACKETS])[bracket]
    student = is_defect["still_student"]
    age_lo = np.where(student, 18, age_lo)
    age_hi = np.where(student, 23, age_hi)
    under = is_defect["underage"]
    age_lo = np.where(under, 15, age_lo)
    age_hi = np.where(under, 17, age_hi)
    lo, hi = birth_day_bounds(age_lo, age_hi, on)
    birth_day = lattice_days(rng, lo, hi, serials.residue, serials.modulus)
    birth = birth_day.astype("datetime64[D]")

    nik_prefix = regions.district_prefix[nik_district]
    nik_serial = serials.serials(nik_prefix, birth_day)
    nik_int = nik_rules.encode_nik(nik_prefix, birth, female, nik_serial)

    kk_lo = np.full(n_hh, day_number(dt.date(2010, 1, 1)))
    kk_hi = np.full(n_hh, day_number(on) - 30)
    kk_day = lattice_days(rng, kk_lo, kk_hi, serials.residue, serials.modulus)
    kk_prefix = regions.district_prefix[regions.village_district[hh_village]]
    kk_serial = serials.serials(kk_prefix, kk_day)
    hh_kk_int = nik_rules.encode_kk(kk_prefix, kk_day.astype("datetime64[D]"), kk_serial)
    kk_int = hh_kk_int[household]

    # Religion by family card and province; the naming style follows both.
    rel_table = np.array([RELIGION_BY_PROVINCE.get(str(c), RELIGION_DEFAULT) for c in regions.province_codes])
    rel_cum = np.cumsum(rel_table / rel_table.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(n_hh)
    hh_religion = np.zeros(n_hh, dtype=np.int64)
    for edge in np.ascontiguousarray(rel_cum.T):  # religions passed: one table column at a time
        hh_religion += u > edge[hh_province]
    hh_religion = hh_religion.clip(0, len(RELIGIONS) - 1)
    religion = hh_religion[household]
    style = names.style_table(tuple(str(c) for c in regions.province_codes), RELIGIONS)[province, religion]
    person_names = names.draw_names(rng, style, female, household, regions.province_codes)

    ages = eligibility.ages_on(birth, on)
    marital = np.zeros(n, dtype=np.int64)
    upper = 0
    for limit, shares in MARITAL_BY_AGE:
        rows = (ages > upper) & (ages <= limit) if upper else ages <= limit
        marital[rows] = choice(rng, int(rows.sum()), shares)
        upper = limit
    marital = np.where(under, 0, marital)
    blood = choice(rng, n, BLOOD_SHARES)

    # Occupations as indices into OCCUPATIONS.
    occupation_m = _occupation_index(tuple(OCCUPATIONS_MALE))[choice(rng, n, OCCUPATIONS_MALE)]
    occupation_f = _occupation_index(tuple(OCCUPATIONS_FEMALE))[choice(rng, n, OCCUPATIONS_FEMALE)]
    occupation = np.where(female, occupation_f, occupation_m)
    student_index = OCCUPATIONS.index(STUDENT)
    occupation = np.where(student | under, student_index, occupation)
    excluded = is_defect["excluded_occupation"]
    excluded_draw = choice(rng, int(excluded.sum()), EXCLUDED_DRAW)
    occupation[excluded] = _occupation_index(tuple(EXCLUDED_DRAW))[excluded_draw]
    is_recipient = is_defect["already_recipient"]
    other_aid = is_defect["receives_other_aid"]
    priority = rng.random(n) < opts.priority_share

    # Birth place: mostly the regency where the NIK was issued, else the province, else anywhere.
    nik_regency = regions.district_regency[nik_district]
    nik_province = regions.district_province[nik_district]
    r_start = regions.province_regency_start[nik_province]
    r_count = regions.province_regency_start[nik_province + 1] - r_start
    same_province_regency = r_start + np.floor(rng.random(n) * r_count).astype(np.int64)
    anywhere_village = draw_villages(rng, regions, choice(rng, n, tuple(regions.province_weights)))
    anywhere_regency = regions.district_regency[regions.village_district[anywhere_village]]
    place_draw = rng.random(n)
    birth_regency = np.where(
        place_draw < 0.80, nik_regency, np.where(place_draw < 0.92, same_province_regency, anywhere_regency)
    )

    # KTP issued from the 17th birthday (and not before e-KTP, 2011) up to the reference date.
    issue_lo = np.maximum(birth_day + 17 * 365 + 4, day_number(dt.date(2011, 1, 1)))
    issue_hi = np.full(n, day_number(on))
    ktp_issued = np.minimum(
        issue_lo + np.floor(rng.random(n) * np.maximum(issue_hi - issue_lo, 1)).astype(np.int64), issue_hi
    )

    hh_address, hh_rt_rw = addresses(rng, regions, hh_village)
    vill = pa.array(village)
    nik_str = digits(nik_int, 16)
    kk_str = digits(kk_int, 16)
    regency = regions.district_regency[district]
    residents = pa.table(
        {
            "nik": nik_str,
            "kk": kk_str,
            "full_name": person_names.full_name,
            "gender": lookup(("L", "P"), female),
            "birth_place": region_lookup("regency_place_names", birth_regency),
            "birth_date": iso_dates(birth),
            "religion": lookup(RELIGIONS, religion),
            "marital_status": lookup(MARITAL, marital),
            "occupation": lookup(OCCUPATIONS, occupation),
            "blood_type": lookup(BLOOD_TYPES, blood),
            "nationality": lookup(("WNI",), np.zeros(n, dtype=np.int32)),
            "address": take(hh_address, household),
            "rt_rw": take(hh_rt_rw, household),
            "village": pc.take(arrow["village_names"], vill),
            "district": region_lookup("district_names", district),
            "regency": region_lookup("regency_names", regency),
            "province": region_lookup("province_names", province),
            "postal_code": pc.take(arrow["village_postal"], vill),
            "province_code": region_lookup("province_codes", province),
            "regency_code": region_lookup("regency_codes", regency),
            "district_code": region_lookup("district_codes", district),
            "village_code": pc.take(arrow["village_codes"], vill),
            "ktp_issued_on": iso_dates(ktp_issued.astype("datetime64[D]")),
            "is_student": pa.array(occupation == student_index),
            "is_recipient": pa.array(is_recipient),
            "receives_other_aid": pa.array(other_aid),
            "is_priority": pa.array(priority),
        },
        schema=ENCODED_SCHEMAS["residents"],
    )

    applicants = applicant_table(
        rng,
        plan,
        gidx,
        residents,
        person_names,
        defect,
        is_defect,
        dup_targets,
        nik_int,
        kk_int,
        hh_kk_int,
        household,
        birth_day,
        female,
        province,
        village,
        is_recipient,
    )
    if not dictionary:
        residents, applicants = residents.cast(RESIDENT_SCHEMA), applicants.cast(APPLICANT_SCHEMA)
    return PopulationChunk(index=k, start=start, stop=stop, residents=residents, applicants=applicants)


@functools.cache
def _occupation_index(labels: tuple[str, ...]) -> np.ndarray:
    return np.array([OCCUPATIONS.index(label) for label in labels], dtype=np.int64)
