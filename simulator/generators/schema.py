"""The population contract's columns: ``residents`` and ``applicants`` as Arrow schemas, and the
dictionary-encoded form the generator hands the Parquet writer.
"""

from __future__ import annotations

import pyarrow as pa

from simulator.generators.columns import DICTIONARY

RESIDENT_SCHEMA = pa.schema(
    [
        ("nik", pa.string()),
        ("kk", pa.string()),
        ("full_name", pa.string()),
        ("gender", pa.string()),
        ("birth_place", pa.string()),
        ("birth_date", pa.date32()),
        ("religion", pa.string()),
        ("marital_status", pa.string()),
        ("occupation", pa.string()),
        ("blood_type", pa.string()),
        ("nationality", pa.string()),
        ("address", pa.string()),
        ("rt_rw", pa.string()),
        ("village", pa.string()),
        ("district", pa.string()),
        ("regency", pa.string()),
        ("province", pa.string()),
        ("postal_code", pa.string()),
        ("province_code", pa.string()),
        ("regency_code", pa.string()),
        ("district_code", pa.string()),
        ("village_code", pa.string()),
        ("ktp_issued_on", pa.date32()),
        ("is_student", pa.bool_()),
        ("is_recipient", pa.bool_()),
        ("receives_other_aid", pa.bool_()),
        ("is_priority", pa.bool_()),
    ]
)
APPLICANT_SCHEMA = pa.schema(
    [
        ("applicant_id", pa.int64()),
        ("nik", pa.string()),
        ("kk", pa.string()),
        ("full_name", pa.string()),
        ("gender", pa.string()),
        ("birth_place", pa.string()),
        ("birth_date", pa.date32()),
        ("email", pa.string()),
        ("phone", pa.string()),
        ("password", pa.string()),
        ("address", pa.string()),
        ("rt_rw", pa.string()),
        ("village", pa.string()),
        ("district", pa.string()),
        ("regency", pa.string()),
        ("province", pa.string()),
        ("postal_code", pa.string()),
        ("province_code", pa.string()),
        ("regency_code", pa.string()),
        ("district_code", pa.string()),
        ("village_code", pa.string()),
        ("domicile_differs", pa.bool_()),
        ("domicile_province_code", pa.string()),
        ("domicile_regency_code", pa.string()),
        ("domicile_district_code", pa.string()),
        ("domicile_village_code", pa.string()),
        ("domicile_province", pa.string()),
        ("domicile_regency", pa.string()),
        ("domicile_district", pa.string()),
        ("domicile_village", pa.string()),
        ("education", pa.string()),
        ("employment_status", pa.string()),
        ("expected_outcome", pa.string()),
        ("defect", pa.string()),
        ("fate_email_verified", pa.bool_()),
        ("fate_identity_submitted", pa.bool_()),
        ("fate_phone_verified", pa.bool_()),
        ("fate_test_finished", pa.bool_()),
        ("fate_joins_wave", pa.bool_()),
        ("fate_drop_step", pa.string()),
        ("fate_retries", pa.int8()),
    ]
)
SCHEMAS: dict[str, pa.Schema] = {"residents": RESIDENT_SCHEMA, "applicants": APPLICANT_SCHEMA}
# Columns whose values come from a small table (at most a few thousand distinct values per chunk).
# ``generate_chunk(..., dictionary=True)`` keeps them dictionary-encoded: the writers then move
# int32 indices instead of strings. Village-level columns (~83k values) stay plain.
DICTIONARY_COLUMNS = frozenset(
    {
        "gender",
        "birth_place",
        "religion",
        "marital_status",
        "occupation",
        "blood_type",
        "nationality",
        "district",
        "regency",
        "province",
        "province_code",
        "regency_code",
        "district_code",
        "domicile_province_code",
        "domicile_regency_code",
        "domicile_district_code",
        "domicile_province",
        "domicile_regency",
        "domicile_district",
        "education",
        "employment_status",
        "expected_outcome",
        "defect",
        "fate_drop_step",
    }
)


def _dictionary_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([(f.name, DICTIONARY if f.name in DICTIONARY_COLUMNS else f.type) for f in schema])


# The schemas of ``generate_chunk(..., dictionary=True)``: same columns and values, some encoded.
ENCODED_SCHEMAS: dict[str, pa.Schema] = {name: _dictionary_schema(s) for name, s in SCHEMAS.items()}
