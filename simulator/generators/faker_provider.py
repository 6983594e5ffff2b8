"""A Faker provider: ``fake.nik()``, ``fake.kk()``, ``fake.ktp_person()`` for people who use Faker.

It draws from the same region codes, age shape and name styles as the population generator, one
record at a time, seeded by Faker's own random (``Faker.seed``). Unlike ``prakerja-sim population``
it cannot promise unique NIKs across calls: use the generator for populations.

    from faker import Faker
    from simulator.generators.faker_provider import PrakerjaProvider
    fake = Faker("id_ID"); fake.add_provider(PrakerjaProvider)
    fake.nik(gender="P")  # '3273024708950003'
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from faker.providers import BaseProvider

from simulator.generators.population import generate_chunk, make_plan
from simulator.generators.shapes import AGE_BRACKETS, FEMALE_SHARE
from simulator.regions import region_tables
from simulator.rules.eligibility import REFERENCE_DATE
from simulator.rules.nik import kk_of, nik_of


class PrakerjaProvider(BaseProvider):
    """NIK, KK and whole KTP records with real Kemendagri district codes."""

    def _district_index(self, district_code: str | None) -> int:
        regions = region_tables()
        if district_code is not None:
            prefix = int(district_code.replace(".", ""))
            if prefix not in regions.district_by_prefix:
                raise ValueError(f"unknown Kemendagri district code {district_code!r}")
            return regions.district_by_prefix[prefix]
        rnd = self.generator.random
        province = rnd.choices(range(len(regions.province_codes)), weights=regions.province_weights)[0]
        start, stop = regions.province_village_start[province], regions.province_village_start[province + 1]
        return int(regions.village_district[rnd.randrange(int(start), int(stop))])

    def _birth_date(self) -> dt.date:
        rnd = self.generator.random
        low, high, _ = rnd.choices(AGE_BRACKETS, weights=[b[2] for b in AGE_BRACKETS])[0]
        age_days = rnd.randrange(low * 365 + 1, (high + 1) * 365 - 1)
        return REFERENCE_DATE - dt.timedelta(days=age_days)

    def nik(
        self, gender: str | None = None, birth_date: dt.date | None = None, district_code: str | None = None
    ) -> str:
        """A well-formed NIK: district code + DDMMYY (day + 40 for women, ``gender="P"``) + serial."""
        rnd = self.generator.random
        regions = region_tables()
        district = self._district_index(district_code)
        if gender is None:
            gender = "P" if rnd.random() < FEMALE_SHARE else "L"
        if gender not in ("L", "P"):
            raise ValueError(f"gender is 'L' or 'P', got {gender!r}")
        born = birth_date or self._birth_date()
        serial = 1 + int(rnd.expovariate(0.25)) % 9000
        return nik_of(int(regions.district_prefix[district]), born, gender == "P", serial)

    def kk(self, district_code: str | None = None, recorded_on: dt.date | None = None) -> str:
        """A well-formed family-card number: district code + recording date DDMMYY + serial."""
        rnd = self.generator.random
        regions = region_tables()
        district = self._district_index(district_code)
        when = recorded_on or dt.date(2010, 1, 1) + dt.timedelta(days=rnd.randrange(0, 3900))
        serial = 1 + int(rnd.expovariate(0.25)) % 9000
        return kk_of(int(regions.district_prefix[district]), when, serial)

    def ktp_person(self, province: str | None = None) -> dict[str, Any]:
        """One coherent ``residents`` row (see the population contract): name, NIK, KK, address..."""
        seed = self.generator.random.getrandbits(63)
        plan = make_plan(1, seed, defects="none", province=province, chunk_rows=1000)
        return generate_chunk(plan, 0).residents.to_pylist()[0]
