"""Where people live: provinces and villages drawn by population, somewhere else for those who moved,
region names as dictionary-encoded columns, and street addresses shaped by city or countryside.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.generators.columns import (
    choice,
    digits,
    join,
    lookup,
    take,
)
from simulator.regions import RegionTables, region_tables

STREETS = (
    "MERDEKA",
    "SUDIRMAN",
    "DIPONEGORO",
    "GATOT SUBROTO",
    "AHMAD YANI",
    "PAHLAWAN",
    "RAYA",
    "MAWAR",
    "MELATI",
    "KENANGA",
    "ANGGREK",
    "FLAMBOYAN",
    "CEMPAKA",
    "KARTINI",
    "IMAM BONJOL",
    "PEMUDA",
    "PELITA",
    "KAMBOJA",
    "NANGKA",
    "MANGGA",
    "RAMBUTAN",
    "SILIWANGI",
    "HASANUDDIN",
    "TERATAI",
    "PERINTIS KEMERDEKAAN",
    "SISINGAMANGARAJA",
    "VETERAN",
    "GAJAH MADA",
    "HAYAM WURUK",
    "SETIABUDI",
    "BHAYANGKARA",
    "KH. AGUS SALIM",
    "CUT NYAK DIEN",
    "DR. SUTOMO",
    "PATIMURA",
    "SUKARNO HATTA",
)


ESTATES = (
    "GRIYA ASRI",
    "BUMI INDAH",
    "PURI HARAPAN",
    "TAMAN SARI",
    "GRAHA PERMAI",
    "BUKIT HIJAU",
    "CITRA LESTARI",
    "VILLA MAS",
)


BLOCK_LETTERS = tuple("ABCDEFGHJK")


def draw_villages(rng: np.random.Generator, regions: RegionTables, province: np.ndarray) -> np.ndarray:
    start = regions.province_village_start[province]
    count = regions.province_village_start[province + 1] - start
    return start + np.floor(rng.random(len(province)) * count).astype(np.int64)


def draw_provinces(rng: np.random.Generator, regions: RegionTables, n: int, only: int | None) -> np.ndarray:
    if only is not None:
        return np.full(n, only, dtype=np.int64)
    return choice(rng, n, tuple(regions.province_weights))


def elsewhere_villages(
    rng: np.random.Generator, regions: RegionTables, province: np.ndarray, same_province_share: float
) -> np.ndarray:
    """Villages for people living away: mostly in the same province, else anywhere by population."""
    n = len(province)
    other = choice(rng, n, tuple(regions.province_weights))
    target = np.where(rng.random(n) < same_province_share, province, other)
    return draw_villages(rng, regions, target)


@functools.cache
def _region_dictionary(name: str) -> tuple[pa.Array, np.ndarray]:
    # Distinct values only (district and birth-place names repeat across regencies): Parquet's
    # dictionary pages come out the same whichever process built the chunk.
    encoded = pc.dictionary_encode(region_tables().arrow[name])
    return encoded.dictionary, encoded.indices.to_numpy()


def region_lookup(name: str, index: np.ndarray) -> pa.DictionaryArray:
    """Region table ``name`` (e.g. ``"district_names"``) at ``index``, dictionary-encoded."""
    values, position = _region_dictionary(name)
    return lookup(values, position[index])


# How a rural address names its hamlet: kampung in Sundanese areas, banjar in Bali, dusun elsewhere.
HAMLET_WORD_BY_PROVINCE = {"32": "KP.", "36": "KP.", "51": "BANJAR"}
_ADDRESS_WORDS = ("JL.", "GG.", "PERUM", "DUSUN", "KP.", "BANJAR")


@functools.cache
def _block_labels() -> pa.Array:
    # Entry letter * 30 + k is "BLOK <letter><k>" (k from 1 to 29).
    return pa.array([f"BLOK {letter}{k}" for letter in BLOCK_LETTERS for k in range(30)], type=pa.string())


@functools.cache
def _house_numbers() -> pa.Array:
    return pa.array([f"NO. {k}" for k in range(120)], type=pa.string())


def addresses(
    rng: np.random.Generator, regions: RegionTables, village: np.ndarray
) -> tuple[pa.Array, pa.Array]:
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
    hamlet_word = np.array(
        [
            _ADDRESS_WORDS.index(HAMLET_WORD_BY_PROVINCE.get(str(code), "DUSUN"))
            for code in regions.province_codes
        ]
    )[regions.district_province[district]]
    prefix = take(pa.array(_ADDRESS_WORDS), np.where(form == 3, hamlet_word, form))
    names_table = pa.array(STREETS + ESTATES)
    name_index = np.where(
        form == 2, len(STREETS) + rng.integers(0, len(ESTATES), n), rng.integers(0, len(STREETS), n)
    )
    name = pc.if_else(
        pa.array(form == 3),
        pc.take(regions.arrow["village_names"], pa.array(village)),
        take(names_table, name_index),
    )
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
