"""NIK / KK structure rules: decoding, every reason a number is refused, the vectorised encoders
(round-tripped through python-stdnum and our parser), and ``prakerja-sim nik parse``."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import stdnum.id.nik as stdnum_nik
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.generators.cli import nik as nik_command
from simulator.rules import nik as rules
from simulator.rules.reasons import Reason


def test_parse_nik_decodes_region_birth_date_gender_and_serial():
    info = rules.parse_nik("3273024708950012")
    assert (info.province_code, info.regency_code, info.district_code) == ("32", "32.73", "32.73.02")
    assert (info.province, info.regency, info.district) == ("JAWA BARAT", "KOTA BANDUNG", "COBLONG")
    assert info.birth_date == dt.date(1995, 8, 7) and info.gender == "P" and info.serial == 12
    man = rules.parse_nik("3171011708450001")  # python-stdnum's documented example
    assert man.gender == "L" and man.birth_date == dt.date(1945, 8, 17)
    assert man.birth_date == stdnum_nik.get_birth_date("3171011708450001")


def test_two_digit_years_resolve_to_the_past():
    assert rules.parse_nik("3273020101050001", today=dt.date(2020, 11, 2)).birth_date == dt.date(2005, 1, 1)
    assert rules.parse_nik("3273020101250001", today=dt.date(2020, 11, 2)).birth_date == dt.date(1925, 1, 1)


@pytest.mark.parametrize(
    ("number", "words"),
    [
        ("327302470895001", "16 digits"),
        ("32730247089500012", "16 digits"),
        ("3273024708950O01", "only digits"),
        ("9973024708950001", "unknown province code 99"),
        ("3299024708950001", "unknown district code 32.99.02"),
        ("3273020008950001", "impossible birth day 00"),
        ("3273023608950001", "impossible birth day 36"),
        ("3273027208950001", "impossible birth day 72"),
        ("3273021713950001", "impossible birth month 13"),
        ("3273023002950001", "impossible birth date 30-02-95"),
        ("3273021708950000", "serial"),
    ],
)
def test_malformed_niks_say_why(number, words):
    with pytest.raises(rules.NikError) as err:
        rules.parse_nik(number)
    assert err.value.reason == Reason.NIK_MALFORMED
    assert words in err.value.message
    assert rules.nik_problem(number) == err.value.message
    assert not stdnum_nik.is_valid(number) or "district" in words or "serial" in words


def test_nik_problem_is_none_for_a_good_number_and_non_strings_are_refused():
    assert rules.nik_problem("3273024708950001") is None
    with pytest.raises(rules.NikError, match="string"):
        rules.parse_nik(3273024708950001)  # type: ignore[arg-type]


def test_parse_kk_reads_the_recording_date_without_the_women_offset():
    info = rules.parse_kk("3273021203150007")
    assert info.recorded_on == dt.date(2015, 3, 12) and info.district == "COBLONG" and info.serial == 7
    with pytest.raises(rules.NikError, match="recording date"):
        rules.parse_kk("3273025203150007")


@settings(max_examples=200, deadline=None)
@given(
    born=st.dates(min_value=dt.date(1921, 1, 1), max_value=dt.date(2019, 12, 31)),
    female=st.booleans(),
    serial=st.integers(1, 9999),
    district=st.integers(0, 7284),
)
def test_encoders_round_trip_through_the_parser_and_stdnum(born, female, serial, district):
    from simulator.generators.columns import digits
    from simulator.regions import region_tables

    regions = region_tables()
    prefix = regions.district_prefix[district]
    value = rules.encode_nik(
        np.array([prefix]), np.array([born], dtype="datetime64[D]"), np.array([female]), np.array([serial])
    )
    nik = digits(value, 16)[0].as_py()
    info = rules.parse_nik(nik, today=dt.date(2020, 1, 1))
    assert (info.birth_date, info.gender, info.serial) == (born, "P" if female else "L", serial)
    assert info.district_code == regions.district_codes[district]
    decoded = stdnum_nik.get_birth_date(nik)
    assert (decoded.day, decoded.month, decoded.year % 100) == (born.day, born.month, born.year % 100)
    columns = rules.decode_nik_columns(value)
    assert int(columns["serial"][0]) == serial and int(columns["district_prefix"][0]) == prefix


def test_nik_parse_command_prints_regions_or_reasons_and_sets_the_exit_code():
    runner = CliRunner()
    result = runner.invoke(nik_command, ["parse", "3273024708950001"], standalone_mode=False)
    assert result.exception is None and result.return_value == 0
    assert "COBLONG, KOTA BANDUNG, JAWA BARAT" in result.output and "PEREMPUAN" in result.output
    assert "1995-08-07" in result.output
    result = runner.invoke(
        nik_command, ["parse", "--json", "3273024708950001", "12345"], standalone_mode=False
    )
    assert result.return_value == 1
    good, bad = (json.loads(line) for line in result.output.splitlines())
    assert good["valid"] and good["district_code"] == "32.73.02" and good["gender"] == "P"
    assert not bad["valid"] and bad["reason"] == "NIK_MALFORMED" and "16 digits" in bad["message"]


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=20), st.text(alphabet="0123456789", min_size=16, max_size=16)))
def test_any_text_is_either_a_nik_or_a_clear_refusal(text):
    try:
        info = rules.parse_nik(text)
    except rules.NikError as err:
        assert err.reason == Reason.NIK_MALFORMED and err.message
    else:
        assert info.nik == text.strip() and info.gender in ("L", "P") and info.serial >= 1


def test_one_person_numbers_are_the_column_encoders_and_parse_back():
    """`nik_of`/`kk_of` (the Faker provider's and the API test helpers' numbers) are encode_nik/encode_kk."""
    born, recorded = dt.date(1995, 8, 7), dt.date(2012, 3, 12)
    nik = rules.nik_of(327302, born, True, 12)
    assert nik == "3273024708950012"
    column = rules.encode_nik(
        np.array([327302]), np.array([born], dtype="datetime64[D]"), np.array([True]), np.array([12])
    )
    assert nik == f"{int(column[0]):016d}"
    info = rules.parse_nik(nik)
    assert (info.birth_date, info.gender, info.serial) == (born, "P", 12)
    man = rules.parse_nik(rules.nik_of(317101, dt.date(1945, 8, 17), False, 1))
    assert (man.birth_date, man.gender) == (dt.date(1945, 8, 17), "L")
    kk = rules.kk_of(327302, recorded, 7)
    assert kk == "3273021203120007" and rules.parse_kk(kk).recorded_on == recorded
    with pytest.raises(ValueError, match="0001 to 9999"):
        rules.nik_of(327302, born, False, 10_000)


def test_faker_provider_and_test_residents_build_their_numbers_with_the_rules():
    from faker import Faker

    from simulator.api.testing import make_resident
    from simulator.generators.faker_provider import PrakerjaProvider

    fake = Faker("id_ID")
    fake.add_provider(PrakerjaProvider)
    fake.seed_instance(7)
    for gender in ("L", "P") * 20:
        born = dt.date(1980, 1, 1) + dt.timedelta(days=fake.random_int(0, 9000))
        info = rules.parse_nik(fake.nik(gender=gender, birth_date=born))
        assert (info.gender, info.birth_date) == (gender, born)
        rules.parse_kk(fake.kk())
    for index in (0, 1, 9998, 12_345):
        row = make_resident(index)
        info = rules.parse_nik(row["nik"])
        assert (info.birth_date, info.gender) == (row["birth_date"], row["gender"])
        assert rules.parse_kk(row["kk"]).district_code == "32.73.02"
