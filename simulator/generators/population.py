"""The applicant population: ``residents`` (the registry's truth) and ``applicants`` (what people type
into the form, with labels), generated in independent, deterministic chunks of whole columns.

Chunk ``k`` of a population draws from ``SeedSequence(seed, spawn_key=(k,))`` and covers persons
``[k * chunk_rows, (k + 1) * chunk_rows)``: any worker can make any chunk, so output does not depend
on the number of workers, and shards (ranges of chunks) concatenate to the unsharded population.
NIK and KK serials, emails and phones are unique across all chunks by construction (see
``_serials`` and ``simulator.generators.contact``), never by a global set.
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
from simulator.generators import contact, names
from simulator.generators.columns import (
    DICTIONARY,
    bucket,
    choice,
    digits,
    group_rank,
    iso_dates,
    join,
    lookup,
    take,
)
from simulator.generators.defects import DEFECT_NAMES, DEFECT_REASONS, DefectRates, parse_defects
from simulator.regions import RegionTables, region_tables
from simulator.rules import eligibility
from simulator.rules import nik as nik_rules
from simulator.rules.reasons import ACCEPT

GENERATOR_VERSION = "population/3"  # 2: Parquet columns dictionary-encoded from the generator; 3: REQUIRED
DEFAULT_CHUNK_ROWS = 100_000
MAX_SIZE = 99_999_999  # phones draw from 10^8 subscriber numbers
DATE_RESIDUES = 16  # see _serials
NOT_FOUND_SERIAL = 9000  # serials 9000-9999 are never issued: a typed NIK there is absent

# --- published shapes (cited) and stated assumptions ----------------------------------------------
# Age of Kartu Prakerja recipients, West Java, waves 1-22 (docs/domain.md): 18-25 34%, 26-35 39%,
# 36-45 15%, 46-55 8%, over 55 4% (capped at 64, the program's working-age population).
AGE_BRACKETS: tuple[tuple[int, int, float], ...] = (
    (18, 25, 0.34), (26, 35, 0.39), (36, 45, 0.15), (46, 55, 0.08), (56, 64, 0.04),
)
FEMALE_SHARE = 0.47  # 47% of registrants were women (okezone, 3 Nov 2020)
# Adults (18-64) per family card. Assumption shaped on BPS's average household of ~3.9 people,
# about 2.4 of them of working age.
KK_ADULTS: dict[int, float] = {1: 0.22, 2: 0.40, 3: 0.22, 4: 0.11, 5: 0.05}
RELIGIONS = ("ISLAM", "KRISTEN", "KATOLIK", "HINDU", "BUDDHA", "KONGHUCU")
# Religion shares by province, BPS SP2010 (Kewarganegaraan, Suku Bangsa, Agama), rounded;
# provinces not listed follow the national shape of Muslim-majority provinces.
RELIGION_DEFAULT = (0.965, 0.015, 0.007, 0.004, 0.008, 0.001)
RELIGION_BY_PROVINCE: dict[str, tuple[float, ...]] = {
    "12": (0.664, 0.270, 0.040, 0.001, 0.024, 0.001), "31": (0.834, 0.087, 0.040, 0.002, 0.036, 0.001),
    "51": (0.132, 0.015, 0.009, 0.836, 0.007, 0.001), "53": (0.091, 0.348, 0.536, 0.002, 0.001, 0.022),
    "61": (0.595, 0.115, 0.225, 0.002, 0.060, 0.003), "62": (0.741, 0.160, 0.032, 0.065, 0.001, 0.001),
    "71": (0.306, 0.636, 0.044, 0.006, 0.002, 0.006), "72": (0.771, 0.169, 0.010, 0.040, 0.005, 0.005),
    "81": (0.506, 0.414, 0.072, 0.002, 0.001, 0.005), "21": (0.778, 0.121, 0.030, 0.001, 0.067, 0.003),
    "19": (0.896, 0.016, 0.015, 0.001, 0.063, 0.009), "82": (0.745, 0.248, 0.004, 0.001, 0.001, 0.001),
    "91": (0.159, 0.653, 0.180, 0.001, 0.001, 0.006), "92": (0.384, 0.538, 0.074, 0.002, 0.001, 0.001),
    "93": (0.159, 0.653, 0.180, 0.001, 0.001, 0.006), "94": (0.159, 0.653, 0.180, 0.001, 0.001, 0.006),
    "95": (0.060, 0.750, 0.185, 0.001, 0.001, 0.003), "96": (0.384, 0.538, 0.074, 0.002, 0.001, 0.001),
    "64": (0.855, 0.098, 0.037, 0.002, 0.007, 0.001), "65": (0.705, 0.225, 0.064, 0.001, 0.004, 0.001),
    "52": (0.962, 0.003, 0.002, 0.030, 0.002, 0.001), "18": (0.951, 0.015, 0.010, 0.017, 0.006, 0.001),
}
MARITAL = ("BELUM KAWIN", "KAWIN", "CERAI HIDUP", "CERAI MATI")
MARITAL_BY_AGE: tuple[tuple[int, tuple[float, ...]], ...] = (  # (up to age, shares): assumption
    (24, (0.78, 0.21, 0.009, 0.001)), (34, (0.32, 0.64, 0.03, 0.01)), (200, (0.07, 0.84, 0.05, 0.04)),
)
BLOOD_TYPES = ("O", "A", "B", "AB", "-")
BLOOD_SHARES = (0.24, 0.17, 0.19, 0.05, 0.35)  # O 37%, A 26%, B 29%, AB 8% of the known; "-" unknown
# Occupation as written on the KTP (Permendagri list); eligible values only. 88% of registrants
# were not working (docs/domain.md), though a KTP often still shows an old job.
OCCUPATIONS_MALE: dict[str, float] = {
    "BELUM/TIDAK BEKERJA": 0.40, "KARYAWAN SWASTA": 0.22, "WIRASWASTA": 0.14, "BURUH HARIAN LEPAS": 0.09,
    "PETANI/PEKEBUN": 0.05, "PEDAGANG": 0.03, "SOPIR": 0.02, "KARYAWAN HONORER": 0.015,
    "NELAYAN/PERIKANAN": 0.01, "TUKANG BATU": 0.01, "MEKANIK": 0.005, "KARYAWAN BUMN": 0.005,
    "GURU": 0.005,
}
OCCUPATIONS_FEMALE: dict[str, float] = {
    "BELUM/TIDAK BEKERJA": 0.33, "MENGURUS RUMAH TANGGA": 0.30, "KARYAWAN SWASTA": 0.17,
    "WIRASWASTA": 0.09, "PEDAGANG": 0.04, "BURUH HARIAN LEPAS": 0.03, "KARYAWAN HONORER": 0.02,
    "PETANI/PEKEBUN": 0.01, "GURU": 0.006, "PERAWAT": 0.004, "KARYAWAN BUMN": 0.004,
}
STUDENT = "PELAJAR/MAHASISWA"
EXCLUDED_DRAW: dict[str, float] = {  # how an excluded occupation is drawn for that defect
    "PEGAWAI NEGERI SIPIL (PNS)": 0.50, "TENTARA NASIONAL INDONESIA (TNI)": 0.10,
    "KEPOLISIAN RI (POLRI)": 0.10, "PERANGKAT DESA": 0.15, "KEPALA DESA": 0.04,
    "ANGGOTA DPRD KABUPATEN/KOTA": 0.04, "ANGGOTA DPRD PROVINSI": 0.01, "DIREKSI/KOMISARIS BUMN": 0.03,
    "DIREKSI/KOMISARIS BUMD": 0.03,
}
# Every occupation a KTP here can show, once: the occupation column indexes into it.
OCCUPATIONS: tuple[str, ...] = tuple(dict.fromkeys(
    [*OCCUPATIONS_MALE, *OCCUPATIONS_FEMALE, STUDENT, *EXCLUDED_DRAW]))
# 87% finished high school or more (docs/domain.md).
EDUCATION: dict[str, float] = {
    "SD": 0.04, "SMP": 0.09, "SMA/SMK": 0.60, "D1-D3": 0.07, "D4/S1": 0.19, "S2": 0.01,
}
# 88% not working (docs/domain.md); how the not-working split is an assumption.
EMPLOYMENT: dict[str, float] = {
    "TIDAK BEKERJA": 0.50, "KORBAN PHK": 0.24, "DIRUMAHKAN": 0.14, "BEKERJA": 0.07, "WIRAUSAHA": 0.05,
}
STREETS = (
    "MERDEKA", "SUDIRMAN", "DIPONEGORO", "GATOT SUBROTO", "AHMAD YANI", "PAHLAWAN", "RAYA", "MAWAR",
    "MELATI", "KENANGA", "ANGGREK", "FLAMBOYAN", "CEMPAKA", "KARTINI", "IMAM BONJOL", "PEMUDA",
    "PELITA", "KAMBOJA", "NANGKA", "MANGGA", "RAMBUTAN", "SILIWANGI", "HASANUDDIN", "TERATAI",
    "PERINTIS KEMERDEKAAN", "SISINGAMANGARAJA", "VETERAN", "GAJAH MADA", "HAYAM WURUK", "SETIABUDI",
    "BHAYANGKARA", "KH. AGUS SALIM", "CUT NYAK DIEN", "DR. SUTOMO", "PATIMURA", "SUKARNO HATTA",
)
ESTATES = ("GRIYA ASRI", "BUMI INDAH", "PURI HARAPAN", "TAMAN SARI", "GRAHA PERMAI", "BUKIT HIJAU",
           "CITRA LESTARI", "VILLA MAS")
BLOCK_LETTERS = tuple("ABCDEFGHJK")
DROP_STEPS = ("email_verify", "identity", "phone_verify", "test", "join")


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
        }


RESIDENT_SCHEMA = pa.schema([
    ("nik", pa.string()), ("kk", pa.string()), ("full_name", pa.string()), ("gender", pa.string()),
    ("birth_place", pa.string()), ("birth_date", pa.date32()), ("religion", pa.string()),
    ("marital_status", pa.string()), ("occupation", pa.string()), ("blood_type", pa.string()),
    ("nationality", pa.string()), ("address", pa.string()), ("rt_rw", pa.string()), ("village", pa.string()),
    ("district", pa.string()), ("regency", pa.string()), ("province", pa.string()),
    ("postal_code", pa.string()), ("province_code", pa.string()), ("regency_code", pa.string()),
    ("district_code", pa.string()), ("village_code", pa.string()), ("ktp_issued_on", pa.date32()),
    ("is_student", pa.bool_()), ("is_recipient", pa.bool_()), ("receives_other_aid", pa.bool_()),
    ("is_priority", pa.bool_()),
])
APPLICANT_SCHEMA = pa.schema([
    ("applicant_id", pa.int64()), ("nik", pa.string()), ("kk", pa.string()), ("full_name", pa.string()),
    ("gender", pa.string()), ("birth_place", pa.string()), ("birth_date", pa.date32()),
    ("email", pa.string()), ("phone", pa.string()), ("password", pa.string()),
    ("address", pa.string()), ("rt_rw", pa.string()), ("village", pa.string()), ("district", pa.string()),
    ("regency", pa.string()), ("province", pa.string()), ("postal_code", pa.string()),
    ("province_code", pa.string()), ("regency_code", pa.string()), ("district_code", pa.string()),
    ("village_code", pa.string()), ("domicile_differs", pa.bool_()),
    ("domicile_province_code", pa.string()), ("domicile_regency_code", pa.string()),
    ("domicile_district_code", pa.string()), ("domicile_village_code", pa.string()),
    ("domicile_province", pa.string()), ("domicile_regency", pa.string()),
    ("domicile_district", pa.string()), ("domicile_village", pa.string()),
    ("education", pa.string()), ("employment_status", pa.string()), ("expected_outcome", pa.string()),
    ("defect", pa.string()), ("fate_email_verified", pa.bool_()), ("fate_identity_submitted", pa.bool_()),
    ("fate_phone_verified", pa.bool_()), ("fate_test_finished", pa.bool_()), ("fate_joins_wave", pa.bool_()),
    ("fate_drop_step", pa.string()), ("fate_retries", pa.int8()),
])
SCHEMAS: dict[str, pa.Schema] = {"residents": RESIDENT_SCHEMA, "applicants": APPLICANT_SCHEMA}
# Columns whose values come from a small table (at most a few thousand distinct values per chunk).
# ``generate_chunk(..., dictionary=True)`` keeps them dictionary-encoded: the writers then move
# int32 indices instead of strings. Village-level columns (~83k values) stay plain.
DICTIONARY_COLUMNS = frozenset({
    "gender", "birth_place", "religion", "marital_status", "occupation", "blood_type", "nationality",
    "district", "regency", "province", "province_code", "regency_code", "district_code",
    "domicile_province_code", "domicile_regency_code", "domicile_district_code", "domicile_province",
    "domicile_regency", "domicile_district", "education", "employment_status", "expected_outcome",
    "defect", "fate_drop_step",
})


def _dictionary_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([(f.name, DICTIONARY if f.name in DICTIONARY_COLUMNS else f.type) for f in schema])


# The schemas of ``generate_chunk(..., dictionary=True)``: same columns and values, some encoded.
ENCODED_SCHEMAS: dict[str, pa.Schema] = {name: _dictionary_schema(s) for name, s in SCHEMAS.items()}


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


def make_plan(size: int, seed: int, *, defects: str | dict | DefectRates | None = None,
              province: str | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS,
              reference_date: dt.date | None = None, funnel: FunnelRates | None = None,
              **shares: float) -> PopulationPlan:
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
            known = ", ".join(f"{c} {n}" for c, n in zip(regions.province_codes, regions.province_names,
                                                         strict=True))
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


def generate(size: int, seed: int, *, shard_index: int = 0, shard_count: int = 1,
             defects: str | dict | DefectRates | None = None, province: str | None = None,
             chunk_rows: int = DEFAULT_CHUNK_ROWS, **options) -> Iterator[PopulationChunk]:
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
    return (pa.concat_tables([c.residents for c in chunks]),
            pa.concat_tables([c.applicants for c in chunks]))


# --- one chunk ------------------------------------------------------------------------------------


def _day(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def _years_before(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def _lattice_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, residue: int,
                  modulus: int) -> np.ndarray:
    """A day in [lo, hi] (day numbers) that is ``residue`` mod ``modulus``, uniform among those."""
    first = lo + (residue - lo) % modulus
    count = (hi - first) // modulus + 1
    return first + modulus * np.floor(rng.random(len(lo)) * count).astype(np.int64)


def _birth_day_bounds(ages: np.ndarray, ages_hi: np.ndarray, on: dt.date) -> tuple[np.ndarray, np.ndarray]:
    # Aged a..b on ``on``: born after ``on`` minus (b + 1) years, and on or before ``on`` minus a years.
    lo_table = np.array([_day(_years_before(on, a + 1)) + 1 for a in range(0, 120)], dtype=np.int64)
    hi_table = np.array([_day(_years_before(on, a)) for a in range(0, 120)], dtype=np.int64)
    return lo_table[ages_hi], hi_table[ages]


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


def _draw_villages(rng: np.random.Generator, regions: RegionTables, province: np.ndarray) -> np.ndarray:
    start = regions.province_village_start[province]
    count = regions.province_village_start[province + 1] - start
    return start + np.floor(rng.random(len(province)) * count).astype(np.int64)


def _draw_provinces(rng: np.random.Generator, regions: RegionTables, n: int, only: int | None) -> np.ndarray:
    if only is not None:
        return np.full(n, only, dtype=np.int64)
    return choice(rng, n, tuple(regions.province_weights))


def _elsewhere_villages(rng: np.random.Generator, regions: RegionTables, province: np.ndarray,
                        same_province_share: float) -> np.ndarray:
    """Villages for people living away: mostly in the same province, else anywhere by population."""
    n = len(province)
    other = choice(rng, n, tuple(regions.province_weights))
    target = np.where(rng.random(n) < same_province_share, province, other)
    return _draw_villages(rng, regions, target)


def _assign_defects(rng: np.random.Generator, n: int, rates: DefectRates, household: np.ndarray,
                    hh_start: np.ndarray, hh_size: np.ndarray, member: np.ndarray) -> np.ndarray:
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


def _contact_keys(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # The same keys for every chunk of the population (the bijections must be global).
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31 - 1,)))
    return contact.feistel_keys(rng), contact.feistel_keys(rng)


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
    hh_province = _draw_provinces(rng, regions, n_hh, only)
    hh_village = _draw_villages(rng, regions, hh_province)
    village = hh_village[household]
    district = regions.village_district[village]
    province = hh_province[household]
    moved = rng.random(n) < opts.nik_elsewhere_share
    nik_district = np.where(moved, regions.village_district[_elsewhere_villages(rng, regions, province, 0.6)],
                            district)

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
    lo, hi = _birth_day_bounds(age_lo, age_hi, on)
    birth_day = _lattice_days(rng, lo, hi, serials.residue, serials.modulus)
    birth = birth_day.astype("datetime64[D]")

    nik_prefix = regions.district_prefix[nik_district]
    nik_serial = serials.serials(nik_prefix, birth_day)
    nik_int = nik_rules.encode_nik(nik_prefix, birth, female, nik_serial)

    kk_lo = np.full(n_hh, _day(dt.date(2010, 1, 1)))
    kk_hi = np.full(n_hh, _day(on) - 30)
    kk_day = _lattice_days(rng, kk_lo, kk_hi, serials.residue, serials.modulus)
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
    anywhere_village = _draw_villages(rng, regions, choice(rng, n, tuple(regions.province_weights)))
    anywhere_regency = regions.district_regency[regions.village_district[anywhere_village]]
    place_draw = rng.random(n)
    birth_regency = np.where(place_draw < 0.80, nik_regency,
                             np.where(place_draw < 0.92, same_province_regency, anywhere_regency))

    # KTP issued from the 17th birthday (and not before e-KTP, 2011) up to the reference date.
    issue_lo = np.maximum(birth_day + 17 * 365 + 4, _day(dt.date(2011, 1, 1)))
    issue_hi = np.full(n, _day(on))
    ktp_issued = np.minimum(issue_lo + np.floor(rng.random(n) * np.maximum(issue_hi - issue_lo, 1)).astype(
        np.int64), issue_hi)

    hh_address, hh_rt_rw = _addresses(rng, regions, hh_village)
    vill = pa.array(village)
    nik_str = digits(nik_int, 16)
    kk_str = digits(kk_int, 16)
    regency = regions.district_regency[district]
    residents = pa.table({
        "nik": nik_str, "kk": kk_str, "full_name": person_names.full_name,
        "gender": lookup(("L", "P"), female),
        "birth_place": _region_lookup("regency_place_names", birth_regency), "birth_date": iso_dates(birth),
        "religion": lookup(RELIGIONS, religion), "marital_status": lookup(MARITAL, marital),
        "occupation": lookup(OCCUPATIONS, occupation), "blood_type": lookup(BLOOD_TYPES, blood),
        "nationality": lookup(("WNI",), np.zeros(n, dtype=np.int32)),
        "address": take(hh_address, household), "rt_rw": take(hh_rt_rw, household),
        "village": pc.take(arrow["village_names"], vill),
        "district": _region_lookup("district_names", district),
        "regency": _region_lookup("regency_names", regency),
        "province": _region_lookup("province_names", province),
        "postal_code": pc.take(arrow["village_postal"], vill),
        "province_code": _region_lookup("province_codes", province),
        "regency_code": _region_lookup("regency_codes", regency),
        "district_code": _region_lookup("district_codes", district),
        "village_code": pc.take(arrow["village_codes"], vill),
        "ktp_issued_on": iso_dates(ktp_issued.astype("datetime64[D]")),
        "is_student": pa.array(occupation == student_index), "is_recipient": pa.array(is_recipient),
        "receives_other_aid": pa.array(other_aid), "is_priority": pa.array(priority),
    }, schema=ENCODED_SCHEMAS["residents"])

    applicants = _applicants(rng, plan, gidx, residents, person_names, defect, is_defect, dup_targets,
                             nik_int, kk_int, hh_kk_int, household, birth_day, female, province, village,
                             is_recipient)
    if not dictionary:
        residents, applicants = residents.cast(RESIDENT_SCHEMA), applicants.cast(APPLICANT_SCHEMA)
    return PopulationChunk(index=k, start=start, stop=stop, residents=residents, applicants=applicants)


@functools.cache
def _region_dictionary(name: str) -> tuple[pa.Array, np.ndarray]:
    # Distinct values only (district and birth-place names repeat across regencies): Parquet's
    # dictionary pages come out the same whichever process built the chunk.
    encoded = pc.dictionary_encode(region_tables().arrow[name])
    return encoded.dictionary, encoded.indices.to_numpy()


def _region_lookup(name: str, index: np.ndarray) -> pa.DictionaryArray:
    """Region table ``name`` (e.g. ``"district_names"``) at ``index``, dictionary-encoded."""
    values, position = _region_dictionary(name)
    return lookup(values, position[index])


@functools.cache
def _occupation_index(labels: tuple[str, ...]) -> np.ndarray:
    return np.array([OCCUPATIONS.index(label) for label in labels], dtype=np.int64)


# How a rural address names its hamlet: kampung in Sundanese areas, banjar in Bali, dusun elsewhere.
HAMLET_WORD_BY_PROVINCE = {"32": "KP.", "36": "KP.", "51": "BANJAR"}
_ADDRESS_WORDS = ("JL.", "GG.", "PERUM", "DUSUN", "KP.", "BANJAR")


_YEAR_TABLE_FIRST = _day(dt.date(1900, 1, 1))


@functools.cache
def _year_by_day() -> np.ndarray:
    # Calendar year of every day from 1900-01-01 to 2099-12-31 (days since 1970 - _YEAR_TABLE_FIRST).
    days = np.arange(_YEAR_TABLE_FIRST, _day(dt.date(2100, 1, 1)), dtype=np.int64)
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def _calendar_years(days: np.ndarray) -> np.ndarray:
    """Calendar year of each day number (days since 1970-01-01): one lookup, not datetime casts."""
    table = _year_by_day()
    offset = days - _YEAR_TABLE_FIRST
    if len(offset) and 0 <= offset.min() and offset.max() < len(table):
        return table[offset]
    return days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


@functools.cache
def _block_labels() -> pa.Array:
    # Entry letter * 30 + k is "BLOK <letter><k>" (k from 1 to 29).
    return pa.array([f"BLOK {letter}{k}" for letter in BLOCK_LETTERS for k in range(30)], type=pa.string())


@functools.cache
def _house_numbers() -> pa.Array:
    return pa.array([f"NO. {k}" for k in range(120)], type=pa.string())


def _addresses(rng: np.random.Generator, regions: RegionTables,
               village: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Street address and RT/RW of each family card, shaped by city or rural regency.

    Forms: ``JL. <street> NO. <n>``, ``GG. <street> NO. <n>``, ``PERUM <estate> BLOK <A12> NO. <n>``
    in cities and towns; ``DUSUN|KP.|BANJAR <village>`` in the countryside.
    """
    n = len(village)
    district = regions.village_district[village]
    regency = regions.district_regency[district]
    is_city = regions.regency_is_city[regency]
    city_shares = (0.55, 0.25, 0.20, 0.0)
    rural_shares = (0.35, 0.10, 0.05, 0.50)
    form = np.where(is_city, choice(rng, n, city_shares), choice(rng, n, rural_shares))
    hamlet_word = np.array([_ADDRESS_WORDS.index(HAMLET_WORD_BY_PROVINCE.get(str(code), "DUSUN"))
                            for code in regions.province_codes])[regions.district_province[district]]
    prefix = take(pa.array(_ADDRESS_WORDS), np.where(form == 3, hamlet_word, form))
    names_table = pa.array(STREETS + ESTATES)
    name_index = np.where(form == 2, len(STREETS) + rng.integers(0, len(ESTATES), n),
                          rng.integers(0, len(STREETS), n))
    name = pc.if_else(pa.array(form == 3), pc.take(regions.arrow["village_names"], pa.array(village)),
                      take(names_table, name_index))
    estate = form == 2
    # "BLOK A12" on estates, "NO. 7" on streets and estates; left out (null) elsewhere. Both come
    # from small per-process tables (one entry per letter and number), not joins and casts per row.
    letter = rng.integers(0, len(BLOCK_LETTERS), n)
    block_number = rng.integers(1, 30, n)
    block = take(_block_labels(), np.where(estate, letter * 30 + block_number, -1))
    has_number = form < 3
    number = take(_house_numbers(), np.where(has_number, rng.integers(1, 120, n), -1))
    address = join([prefix, name, block, number], " ")
    rt = np.minimum(1 + rng.geometric(0.15, n), 30)
    rw = np.minimum(1 + rng.geometric(0.2, n), 25)
    rt_rw = join([digits(rt, 3), "/", digits(rw, 3)])
    return address, rt_rw


def _applicants(rng, plan, gidx, residents, person_names, defect, is_defect, dup_targets, nik_int, kk_int,
                hh_kk_int, household, birth_day, female, province, village, is_recipient) -> pa.Table:
    """What each person types into the form, with the label the system should give it."""
    opts = plan.options
    regions = region_tables()
    arrow = regions.arrow
    n = len(gidx)
    email_keys, phone_keys = _contact_keys(plan.seed)

    # Identity as typed: a re-registration copies another applicant's identity wholesale.
    identity_src = np.arange(n)
    dup_rows, dup_src = dup_targets["duplicate_nik"]
    identity_src[dup_rows] = dup_src
    copies = len(dup_rows) > 0
    typed_nik = nik_int[identity_src].copy()
    rows = np.flatnonzero(is_defect["nik_not_found"])
    typed_nik[rows] = typed_nik[rows] // 10_000 * 10_000 + NOT_FOUND_SERIAL + rng.integers(0, 1000, len(rows))
    nik_col = digits(typed_nik, 16)

    malformed = np.flatnonzero(is_defect["nik_malformed"])
    if len(malformed):
        kind = rng.integers(0, 4, len(malformed))
        parts = nik_rules.decode_nik_columns(typed_nik[malformed])
        bad_day = np.where(rng.random(len(malformed)) < 0.5, 0, 35 + 40 * female[malformed])
        with_bad_day = (parts["district_prefix"] * 10**10 + bad_day * 10**8 + parts["month"] * 10**6
                        + parts["yy"] * 10**4 + parts["serial"])
        with_bad_month = (typed_nik[malformed] // 10**8 * 10**8 + 13 * 10**6 + parts["yy"] * 10**4
                          + parts["serial"])
        unknown_region = parts["district_prefix"] // 10_000 * 10_000 + parts["district_prefix"] % 100
        with_unknown = unknown_region * 10**10 + typed_nik[malformed] % 10**10
        as_int = np.select([kind == 1, kind == 2], [with_bad_day, with_bad_month], default=with_unknown)
        text = digits(as_int, 16)
        short = kind == 0
        text = pc.if_else(pa.array(short & (rng.random(len(malformed)) < 0.5)),
                          pc.utf8_slice_codeunits(text, 0, 15), text)
        lengthen = short & (pc.utf8_length(text).to_numpy(zero_copy_only=False) == 16)
        extra_digit = digits(rng.integers(0, 10, len(malformed)), 1)
        text = pc.if_else(pa.array(lengthen), join([text, extra_digit]), text)
        nik_col = _scatter(nik_col, malformed, text)

    kk_col = digits(kk_int[identity_src], 16)
    rows = np.flatnonzero(is_defect["nik_kk_mismatch"])
    if len(rows):
        n_cards = len(hh_kk_int)
        other_hh = (household[rows] + 1 + rng.integers(0, max(n_cards - 1, 1), len(rows))) % n_cards
        wrong = hh_kk_int[other_hh]
        unissued = kk_int[rows] // 10_000 * 10_000 + NOT_FOUND_SERIAL + rng.integers(0, 1000, len(rows))
        wrong = np.where(wrong == kk_int[rows], unissued, wrong)  # a one-card chunk: a never-issued KK
        kk_col = _scatter(kk_col, rows, digits(wrong, 16))

    typed_birth = birth_day[identity_src].copy()
    rows = np.flatnonzero(is_defect["nik_birthdate_mismatch"])
    shifts = np.array([-365, -31, -10, -2, -1, 1, 2, 10, 31, 365])
    typed_birth[rows] += shifts[rng.integers(0, len(shifts), len(rows))]

    # Contact details: unique per person; duplicates and typos where the defect says so.
    # Made from the name of whoever registers (a re-registration is the original person again);
    # the digit tail comes from the row's own index, so the new account's email is still unique.
    given_word = person_names.given_word[identity_src]
    emails = contact.draw_emails(rng, gidx, plan.size, email_keys, given_word,
                                 person_names.family_word[identity_src], person_names.email_forms,
                                 typo=is_defect["email_typo_domain"])
    rows, src = dup_targets["duplicate_email"]
    if len(rows):
        emails = _scatter(emails, rows, pc.take(emails, pa.array(src)))
    phones = contact.draw_phones(rng, gidx, phone_keys)
    rows = np.flatnonzero(is_defect["invalid_phone"])
    if len(rows):
        phones = _scatter(phones, rows, contact.invalid_phones(rng, len(rows)))
    rows, src = dup_targets["duplicate_phone"]
    if len(rows):
        phones = _scatter(phones, rows, pc.take(phones, pa.array(src)))
    birth_year = _calendar_years(typed_birth)
    passwords = contact.draw_passwords(rng, given_word, person_names.email_forms, birth_year)

    # Domicile: where they live now, if not at the KTP address.
    away = rng.random(n) < opts.domicile_elsewhere_share
    village_idx = village
    dom_village = np.where(away, _elsewhere_villages(rng, regions, province, 0.7), village_idx)
    dom_district = regions.village_district[dom_village]
    dom_regency = regions.district_regency[dom_district]
    dom_province = regions.district_province[dom_district]
    away = dom_village != village_idx

    # Labels: identity defects by their reason; eligibility from the rules, on the registry's facts.
    kk_recipients = eligibility.kk_recipient_counts(kk_int, is_recipient)
    elig = eligibility.eligibility_reasons(
        birth_day.astype("datetime64[D]"), residents["occupation"],
        is_recipient, residents["receives_other_aid"].to_numpy(zero_copy_only=False), kk_recipients,
        opts.reference_date)
    reasons = np.array([DEFECT_REASONS[name].value for name in DEFECT_NAMES] + [ACCEPT], dtype=object)
    label_index = np.where(defect >= 0, defect, len(DEFECT_NAMES))
    expected = reasons[label_index]
    eligibility_defect = np.isin(label_index, np.flatnonzero(np.isin(reasons, [
        r.value for r in eligibility.ELIGIBILITY_ORDER])))  # on the small label table, not per row
    elig_typed = elig[identity_src]
    if not np.array_equal(expected[eligibility_defect], elig_typed[eligibility_defect]) or (
            elig_typed[defect < 0] != "").any():
        raise AssertionError("generated facts disagree with the eligibility rules")

    f = opts.funnel
    # Step j is taken if every step up to j is: a running AND, one step (a contiguous row) at a time.
    steps = (rng.random((n, 5)) < np.array(
        [f.email_verified, f.identity_submitted, f.phone_verified, f.test_finished, f.joins_wave])).T.copy()
    for j in range(1, 5):
        steps[j] &= steps[j - 1]
    steps = steps.T
    drop = steps.sum(axis=1)  # index of the first step not taken; 5 = reached the end
    retries = choice(rng, n, f.retry_shares).astype(np.int8)

    def typed_or(column: str) -> pa.Array:
        chunked = residents[column]
        values = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
        return pc.take(values, pa.array(identity_src)) if copies else values

    return pa.table({
        "applicant_id": pa.array(gidx + 1),
        "nik": nik_col, "kk": kk_col, "full_name": names.title_case(typed_or("full_name")),
        "gender": typed_or("gender"), "birth_place": typed_or("birth_place"),
        "birth_date": pa.array(typed_birth.astype("datetime64[D]"), type=pa.date32()),
        "email": emails, "phone": phones, "password": passwords,
        **{c: typed_or(c) for c in ("address", "rt_rw", "village", "district", "regency", "province",
                                    "postal_code", "province_code", "regency_code", "district_code",
                                    "village_code")},
        "domicile_differs": pa.array(away),
        "domicile_province_code": _region_lookup("province_codes", dom_province),
        "domicile_regency_code": _region_lookup("regency_codes", dom_regency),
        "domicile_district_code": _region_lookup("district_codes", dom_district),
        "domicile_village_code": take(arrow["village_codes"], dom_village),
        "domicile_province": _region_lookup("province_names", dom_province),
        "domicile_regency": _region_lookup("regency_names", dom_regency),
        "domicile_district": _region_lookup("district_names", dom_district),
        "domicile_village": take(arrow["village_names"], dom_village),
        "education": lookup(tuple(EDUCATION), choice(rng, n, EDUCATION)),
        "employment_status": lookup(tuple(EMPLOYMENT), choice(rng, n, EMPLOYMENT)),
        "expected_outcome": lookup(tuple(reasons), label_index),
        "defect": lookup((*DEFECT_NAMES, ""), label_index),
        "fate_email_verified": pa.array(steps[:, 0]), "fate_identity_submitted": pa.array(steps[:, 1]),
        "fate_phone_verified": pa.array(steps[:, 2]), "fate_test_finished": pa.array(steps[:, 3]),
        "fate_joins_wave": pa.array(steps[:, 4]),
        "fate_drop_step": lookup((*DROP_STEPS, ""), drop),
        "fate_retries": pa.array(retries, type=pa.int8()),
    }, schema=ENCODED_SCHEMAS["applicants"])


def _scatter(column: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """``column`` with ``column[rows] = values`` (rows ascending)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    index = np.arange(n)
    index[rows] = n + np.arange(len(rows))
    return pc.take(pa.concat_arrays([column, values.cast(column.type)]), pa.array(index))
