"""The ``applicants`` table: what each person types into the form (with the typos, stale cards and
deliberate defects that make it differ from the registry), their domicile, and the label the system
should give it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from simulator.generators import contact, names
from simulator.generators.columns import (
    choice,
    digits,
    join,
    lookup,
    take,
)
from simulator.generators.dates import calendar_years
from simulator.generators.defects import DEFECT_NAMES, DEFECT_REASONS
from simulator.generators.places import elsewhere_villages, region_lookup
from simulator.generators.schema import ENCODED_SCHEMAS
from simulator.generators.shapes import (
    DROP_STEPS,
    EDUCATION,
    EMPLOYMENT,
    NOT_FOUND_SERIAL,
)
from simulator.regions import region_tables
from simulator.rules import eligibility
from simulator.rules import nik as nik_rules
from simulator.rules.reasons import ACCEPT


def _contact_keys(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # The same keys for every chunk of the population (the bijections must be global).
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31 - 1,)))
    return contact.feistel_keys(rng), contact.feistel_keys(rng)


def applicant_table(
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
) -> pa.Table:
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
        with_bad_day = (
            parts["district_prefix"] * 10**10
            + bad_day * 10**8
            + parts["month"] * 10**6
            + parts["yy"] * 10**4
            + parts["serial"]
        )
        with_bad_month = (
            typed_nik[malformed] // 10**8 * 10**8 + 13 * 10**6 + parts["yy"] * 10**4 + parts["serial"]
        )
        unknown_region = parts["district_prefix"] // 10_000 * 10_000 + parts["district_prefix"] % 100
        with_unknown = unknown_region * 10**10 + typed_nik[malformed] % 10**10
        as_int = np.select([kind == 1, kind == 2], [with_bad_day, with_bad_month], default=with_unknown)
        text = digits(as_int, 16)
        short = kind == 0
        text = pc.if_else(
            pa.array(short & (rng.random(len(malformed)) < 0.5)), pc.utf8_slice_codeunits(text, 0, 15), text
        )
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
    emails = contact.draw_emails(
        rng,
        gidx,
        plan.size,
        email_keys,
        given_word,
        person_names.family_word[identity_src],
        person_names.email_forms,
        typo=is_defect["email_typo_domain"],
    )
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
    birth_year = calendar_years(typed_birth)
    passwords = contact.draw_passwords(rng, given_word, person_names.email_forms, birth_year)

    # Domicile: where they live now, if not at the KTP address.
    away = rng.random(n) < opts.domicile_elsewhere_share
    village_idx = village
    dom_village = np.where(away, elsewhere_villages(rng, regions, province, 0.7), village_idx)
    dom_district = regions.village_district[dom_village]
    dom_regency = regions.district_regency[dom_district]
    dom_province = regions.district_province[dom_district]
    away = dom_village != village_idx

    # Labels: identity defects by their reason; eligibility from the rules, on the registry's facts.
    kk_recipients = eligibility.kk_recipient_counts(kk_int, is_recipient)
    elig = eligibility.eligibility_reasons(
        birth_day.astype("datetime64[D]"),
        residents["occupation"],
        is_recipient,
        residents["receives_other_aid"].to_numpy(zero_copy_only=False),
        kk_recipients,
        opts.reference_date,
    )
    reasons = np.array([DEFECT_REASONS[name].value for name in DEFECT_NAMES] + [ACCEPT], dtype=object)
    label_index = np.where(defect >= 0, defect, len(DEFECT_NAMES))
    expected = reasons[label_index]
    eligibility_defect = np.isin(
        label_index, np.flatnonzero(np.isin(reasons, [r.value for r in eligibility.ELIGIBILITY_ORDER]))
    )  # on the small label table, not per row
    elig_typed = elig[identity_src]
    if (
        not np.array_equal(expected[eligibility_defect], elig_typed[eligibility_defect])
        or (elig_typed[defect < 0] != "").any()
    ):
        raise AssertionError("generated facts disagree with the eligibility rules")

    f = opts.funnel
    # Step j is taken if every step up to j is: a running AND, one step (a contiguous row) at a time.
    steps = (
        rng.random((n, 5))
        < np.array([f.email_verified, f.identity_submitted, f.phone_verified, f.test_finished, f.joins_wave])
    ).T.copy()
    for j in range(1, 5):
        steps[j] &= steps[j - 1]
    steps = steps.T
    drop = steps.sum(axis=1)  # index of the first step not taken; 5 = reached the end
    retries = choice(rng, n, f.retry_shares).astype(np.int8)

    def typed_or(column: str) -> pa.Array:
        chunked = residents[column]
        values = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
        return pc.take(values, pa.array(identity_src)) if copies else values

    return pa.table(
        {
            "applicant_id": pa.array(gidx + 1),
            "nik": nik_col,
            "kk": kk_col,
            "full_name": names.title_case(typed_or("full_name")),
            "gender": typed_or("gender"),
            "birth_place": typed_or("birth_place"),
            "birth_date": pa.array(typed_birth.astype("datetime64[D]"), type=pa.date32()),
            "email": emails,
            "phone": phones,
            "password": passwords,
            **{
                c: typed_or(c)
                for c in (
                    "address",
                    "rt_rw",
                    "village",
                    "district",
                    "regency",
                    "province",
                    "postal_code",
                    "province_code",
                    "regency_code",
                    "district_code",
                    "village_code",
                )
            },
            "domicile_differs": pa.array(away),
            "domicile_province_code": region_lookup("province_codes", dom_province),
            "domicile_regency_code": region_lookup("regency_codes", dom_regency),
            "domicile_district_code": region_lookup("district_codes", dom_district),
            "domicile_village_code": take(arrow["village_codes"], dom_village),
            "domicile_province": region_lookup("province_names", dom_province),
            "domicile_regency": region_lookup("regency_names", dom_regency),
            "domicile_district": region_lookup("district_names", dom_district),
            "domicile_village": take(arrow["village_names"], dom_village),
            "education": lookup(tuple(EDUCATION), choice(rng, n, EDUCATION)),
            "employment_status": lookup(tuple(EMPLOYMENT), choice(rng, n, EMPLOYMENT)),
            "expected_outcome": lookup(tuple(reasons), label_index),
            "defect": lookup((*DEFECT_NAMES, ""), label_index),
            "fate_email_verified": pa.array(steps[:, 0]),
            "fate_identity_submitted": pa.array(steps[:, 1]),
            "fate_phone_verified": pa.array(steps[:, 2]),
            "fate_test_finished": pa.array(steps[:, 3]),
            "fate_joins_wave": pa.array(steps[:, 4]),
            "fate_drop_step": lookup((*DROP_STEPS, ""), drop),
            "fate_retries": pa.array(retries, type=pa.int8()),
        },
        schema=ENCODED_SCHEMAS["applicants"],
    )


def _scatter(column: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """``column`` with ``column[rows] = values`` (rows ascending)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    index = np.arange(n)
    index[rows] = n + np.arange(len(rows))
    return pc.take(pa.concat_arrays([column, values.cast(column.type)]), pa.array(index))
