"""The rules the API refuses by, from simulator/rules/, and the generators that draw against them:
the phone format, the email format and typo domains, the test's scoring, the registry match, and
the lean sign-up path reading the request model's limits."""

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pytest
from pydantic import ValidationError

from simulator.api import models as m
from simulator.api.responses import ApiError
from simulator.api.signup import check_signup, plain_signup
from simulator.generators import contact
from simulator.rules import phone, scoring
from simulator.rules.email import TYPO_DOMAINS, email_refusal, normalize_email
from simulator.rules.identity import identity_refusal
from simulator.rules.reasons import Reason


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("081234567890", "081234567890"),
        ("0812-3456-7890", "081234567890"),
        ("+62 812 3456 7890", "081234567890"),
        ("62(812)34567890", "081234567890"),
        ("0812345678", "0812345678"),  # 10 digits, the shortest
        ("0812345678901", "0812345678901"),  # 13, the longest
    ],
)
def test_mobile_numbers_are_stored_in_their_08_form(text, stored):
    assert phone.normalize_phone(text) == stored
    assert phone.phone_problem(text) is None


@pytest.mark.parametrize(
    "text", ["081234567", "08123456789012", "080012345678", "0215123456", "+1 812 3456 7890", "08abc", ""]
)
def test_numbers_outside_the_rule_are_refused_with_one_line(text):
    assert phone.normalize_phone(text) is None
    problem = phone.phone_problem(text)
    assert problem is not None and "\n" not in problem and "10-13 digits" in problem


def test_the_generators_invalid_phones_fail_the_rule_and_their_valid_phones_pass_it():
    rng = np.random.default_rng(11)
    invalid = contact.invalid_phones(rng, 4000).to_pylist()
    assert all(phone.normalize_phone(p) is None for p in invalid)
    seen = {(p[:4], len(p)) for p in invalid}
    assert seen == set(phone.NOT_MOBILE_SHAPES.values())  # each listed shape, and only those
    valid = contact.draw_phones(rng, np.arange(4000), contact.feistel_keys(rng)).to_pylist()
    assert all(phone.normalize_phone(p) == p for p in valid)


def test_email_rule_refuses_bad_shapes_and_every_typo_domain():
    assert email_refusal("Siti.Rahayu@Example.co.id") is None
    assert normalize_email("Siti.Rahayu@Example.co.id") == "siti.rahayu@example.co.id"
    for bad in ("no-at-sign", "a@b", "a b@example.com", "@example.com", "a@example.c"):
        assert email_refusal(bad)[0] is Reason.EMAIL_INVALID, bad
    for domain in TYPO_DOMAINS:
        assert email_refusal(f"ani@{domain.upper()}")[0] is Reason.EMAIL_DOMAIN_TYPO, domain


def test_sign_up_rules_give_their_reason_codes():
    assert check_signup("Ani@Example.co.id", "rahasia", None) == "ani@example.co.id"
    for args, reason in (
        (("ani@gmial.com", "rahasia123", None), Reason.EMAIL_DOMAIN_TYPO),
        (("ani", "rahasia123", None), Reason.EMAIL_INVALID),
        (("ani@example.co.id", "12345", None), Reason.PASSWORD_TOO_SHORT),
        (("ani@example.co.id", "rahasia123", "rahasia124"), Reason.PASSWORD_MISMATCH),
    ):
        with pytest.raises(ApiError) as refused:
            check_signup(*args)
        assert refused.value.reason is reason


def test_the_score_counts_answers_matching_the_key():
    assert scoring.score(scoring.ANSWER_KEY) == scoring.QUESTIONS == len(scoring.ANSWER_KEY)
    assert scoring.score("A" * scoring.QUESTIONS) == scoring.ANSWER_KEY.count("A")
    shifted = "".join(scoring.CHOICES[(scoring.CHOICES.index(k) + 1) % 4] for k in scoring.ANSWER_KEY)
    assert scoring.score(shifted) == 0
    with pytest.raises(ValueError, match="18 questions"):
        scoring.score("ABCD")
    assert m.TEST_QUESTIONS == scoring.QUESTIONS  # the request model takes exactly that many


def test_registry_match_names_the_first_difference():
    resident = SimpleNamespace(kk="3273021203120007", birth_date=dt.date(1995, 8, 7))
    assert identity_refusal(resident, "3273021203120007", dt.date(1995, 8, 7)) is None
    assert identity_refusal(None, "3273021203120007", dt.date(1995, 8, 7))[0] is Reason.NIK_NOT_FOUND
    assert identity_refusal(resident, "3273021203120008", dt.date(1995, 8, 7))[0] is Reason.NIK_KK_MISMATCH
    assert identity_refusal(resident, "3273021203120007", dt.date(1995, 8, 8))[0] is (
        Reason.NIK_BIRTHDATE_MISMATCH
    )


def test_lean_sign_up_path_reads_the_request_models_limits():
    """At each field's declared maximum length the lean path and AccountCreate both take it; one more
    character and both refuse it (the lean path hands it to FastAPI, which answers 422)."""
    import orjson

    base = {"name": "Ani", "email": "ani@example.co.id", "password": "rahasia123"}
    for name, field in m.AccountCreate.model_fields.items():
        high = next(c.max_length for c in field.metadata if getattr(c, "max_length", None) is not None)
        for length, taken in ((high, True), (high + 1, False)):
            body = dict(base, **{name: "x" * length})
            assert (plain_signup(orjson.dumps(body)) is not None) is taken, (name, length)
            if taken:
                m.AccountCreate.model_validate(body)
            else:
                with pytest.raises(ValidationError):
                    m.AccountCreate.model_validate(body)


def test_seed_and_the_rules_do_not_import_the_api():
    """The schema, engines and password format live in simulator/database: seed-db, the rules and the
    generators load without a single simulator.api module."""
    import subprocess
    import sys

    code = (
        "import sys, simulator.seed.runner, simulator.seed.verify, simulator.seed.target, "
        "simulator.seed.hashing, simulator.seed.mapping.sources, simulator.generators.contact, "
        "simulator.generators.faker_provider, simulator.rules.phone, simulator.rules.identity; "
        "print(sorted(m for m in sys.modules if m.startswith('simulator.api')))"
    )
    run = [sys.executable, "-c", code]
    out = subprocess.run(run, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
