"""A mapping that cannot work is refused with one line naming its key, before anything is written;
one that fails while loading rolls back whole; the same seed gives the same rows; the column
expressions (UUIDs, phones, case, templates, choices, NULLs, password formats) do what they say."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import tomllib

import bcrypt
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from mapping_schemas import DJANGO_MAPPING, LARAVEL_MAPPING, SCHEMAS
from test_seed_db_cli import run

from simulator.database.db import make_engine
from simulator.seed.mapping import parse_mapping, seed_mapped
from simulator.seed.mapping.build import uuids
from simulator.seed.mapping.passwords import Scheme, hash_batch

AS_OF = "2026-11-27T22:00"


@pytest.fixture()
def django_db(tmp_path):
    db = tmp_path / "django.db"
    engine = make_engine(str(db))
    SCHEMAS["django"][0]().create_all(engine)
    engine.dispose()
    return db


def table_counts(db) -> dict[str, int]:
    engine = make_engine(str(db))
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        counts = {n: conn.execute(sa.text(f"SELECT COUNT(*) FROM {n}")).scalar() for n in names}
    engine.dispose()
    return counts


BROKEN = {
    "unknown table": (
        ("[tables.auth_user]", "[tables.auth_users]"),
        ("[tables.auth_user.columns]", "[tables.auth_users.columns]"),
        ('"auth_user.id"', '"auth_users.id"'),
    ),
    "unknown column": (("is_staff = false", "is_staf = false"),),
    "type": (("is_staff = false", 'is_staff = { copy = "birth_date" }'),),
    "not null left empty": (('date_joined = { copy = "created_at" }\n', ""),),
    "nullable into not null": (
        ('date_joined = { copy = "created_at" }', 'date_joined = { copy = "tested_at" }'),
    ),
    "unique fed by a repeating source": (
        ('username = { copy = "email" }', 'username = { copy = "gender" }'),
    ),
    "unknown source column": (('no_kk = { copy = "kk" }', 'no_kk = { copy = "nomor_kk" }'),),
    "todo left": (("is_staff = false", 'is_staff = { todo = "BOOLEAN NOT NULL" }'),),
    "unknown state": (('min_state = "identity_verified"', 'min_state = "verified"'),),
    "ref to an unmapped table": (('user_id = { ref = "auth_user.id" }', 'user_id = { ref = "users.id" }'),),
    "bad toml": (("[tables.gelombang]", "[tables.gelombang"),),
}
USER, PROFILE = r"^tables\.auth_user\.columns\.", r"^tables\.peserta_profil\."
EXPECTED = {
    "unknown table": r"^tables\.auth_users: no table 'auth_users'",
    "unknown column": USER + r"is_staf: table 'auth_user' has no column 'is_staf'",
    "type": USER + r"is_staff: a boolean column cannot hold date values",
    "not null left empty": USER + r"date_joined: NOT NULL column left empty",
    "nullable into not null": USER + r"date_joined: the column is NOT NULL but this value may be NULL",
    "unique fed by a repeating source": USER + r"username: the column is unique but this value repeats",
    "unknown source column": PROFILE + r"columns\.no_kk\.copy: accounts has no column 'nomor_kk'",
    "todo left": USER + r"is_staff: not placed yet",
    "unknown state": PROFILE + r"min_state: unknown state 'verified'",
    "ref to an unmapped table": PROFILE + r"columns\.user_id\.ref: table 'users' is not in the mapping",
    "bad toml": r"not valid TOML",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_mapping_fails_with_one_line_and_writes_nothing(case, capsys, django_db, tmp_path):
    expected = EXPECTED[case]
    text = DJANGO_MAPPING
    for old, new in BROKEN[case]:
        assert old in text
        text = text.replace(old, new)
    mapping = tmp_path / "broken.toml"
    mapping.write_text(text)
    args = ["--db", str(django_db), "--mapping", str(mapping), "--size", "300", "--as-of", AS_OF]
    code, _, err = run(capsys, *args, "--truncate")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(expected, lines[0].removeprefix("error: ")), lines[0]
    assert set(table_counts(django_db).values()) == {0}
    assert not (tmp_path / "django.db.passwords.csv").exists()


def test_a_run_stopped_in_the_middle_of_the_load_leaves_the_database_as_it_was(capsys, django_db, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(DJANGO_MAPPING)
    code, _, err = run(
        capsys, "--db", str(django_db), "--size", "900", "--as-of", AS_OF, "--mapping", str(good)
    )
    assert code == 0, err
    before, side_file = dump(django_db), (tmp_path / "django.db.passwords.csv").read_bytes()

    def interrupt(block: int) -> None:
        if block == 1:  # block 0 and 1 are loaded by now
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seed_mapped(
            str(django_db), good, size=1500, seed=8, mode="truncate", as_of=dt.datetime(2026, 11, 27, 22),
            chunk_rows=300, block_rows=300, workers=1, on_chunk=interrupt,
        )  # fmt: skip
    assert dump(django_db) == before
    assert (tmp_path / "django.db.passwords.csv").read_bytes() == side_file


def dump(db) -> dict[str, list]:
    engine = make_engine(str(db))
    with engine.connect() as conn:
        names = sorted(sa.inspect(conn).get_table_names())
        rows = {n: conn.execute(sa.text(f"SELECT * FROM {n} ORDER BY 1")).all() for n in names}
    engine.dispose()
    return rows


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_same_seed_gives_the_same_rows_whatever_the_chunking(name, tmp_path):
    dumps = []
    for chunk_rows, workers in ((300, 1), (1000, 2)):
        db = tmp_path / f"{name}-{chunk_rows}.db"
        engine = make_engine(str(db))
        SCHEMAS[name][0]().create_all(engine)
        engine.dispose()
        seed_mapped(
            str(db), parse_mapping(tomllib.loads(SCHEMAS[name][1])), size=1500, seed=9, states="even",
            as_of=dt.datetime(2026, 11, 27, 22), chunk_rows=chunk_rows, block_rows=500, workers=workers,
            passwords_out=tmp_path / f"pw-{chunk_rows}.csv",
        )  # fmt: skip
        dumps.append(dump(db))
    assert dumps[0] == dumps[1]
    assert all(len(rows) > 0 for rows in dumps[0].values())


# --- expressions ---------------------------------------------------------------------------------------


def test_uuids_are_well_formed_unique_and_ordered_when_asked():
    v4 = uuids(1000, 0, 77).to_pylist()
    assert len(set(v4)) == 1000
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u) for u in v4
    )
    ordered = uuids(1000, 5000, 77, ordered=True).to_pylist()
    assert ordered == sorted(ordered) and all(u[14] == "7" for u in ordered)
    assert uuids(10, 3, 77).to_pylist() == v4[3:13]  # a row's UUID depends on its position only


def test_column_modifiers_phone_case_template_choice_and_nulls(tmp_path):
    mapping = (
        LARAVEL_MAPPING.replace(
            'name = { copy = "full_name", case = "title" }',
            'name = { template = "{full_name} <{nik}>", case = "upper" }',
        )
        .replace("role_id = 1", "role_id = { choice = [1, 2], weights = [3, 1] }")
        .replace('updated_at = { copy = "created_at" }', 'updated_at = { copy = "created_at", null = 0.5 }')
    )
    db = tmp_path / "l.db"
    engine = make_engine(str(db))
    SCHEMAS["laravel"][0]().create_all(engine)
    seed_mapped(
        str(db), parse_mapping(tomllib.loads(mapping)), size=2000, seed=2, states="even",
        as_of=dt.datetime(2026, 11, 27, 22), passwords_out=tmp_path / "pw.csv", workers=1,
    )  # fmt: skip
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM users")).scalars().all()
        phones = conn.execute(sa.text("SELECT phone FROM users WHERE phone IS NOT NULL")).scalars().all()
        roles = conn.execute(sa.text("SELECT role_id FROM users")).scalars().all()
        nulls = conn.execute(sa.text("SELECT AVG(updated_at IS NULL) FROM users")).scalar()
    engine.dispose()
    assert all(n == n.upper() and re.fullmatch(r".+ <[^<>]+>", n) for n in names)
    assert phones and all(re.fullmatch(r"\+628\d{7,12}", p) for p in phones)
    assert 0.68 < roles.count(1) / len(roles) < 0.82
    assert 0.44 < nulls < 0.56


def test_password_formats_verify_with_their_own_libraries():
    plain = ["Rahasia-123!", "kata sandi ünïcode"]
    for password, encoded in zip(plain, hash_batch(Scheme("bcrypt", 4), plain, 3), strict=True):
        assert encoded.startswith("$2y$04$") and len(encoded) == 60
        assert bcrypt.checkpw(password.encode(), encoded.encode())
        assert not bcrypt.checkpw(b"wrong", encoded.encode())
    for password, encoded in zip(plain, hash_batch(Scheme("pbkdf2_sha256", 1000), plain, 3), strict=True):
        algorithm, iterations, salt, digest = encoded.split("$")
        assert (algorithm, iterations) == ("pbkdf2_sha256", "1000") and re.fullmatch(r"[A-Za-z0-9]{22}", salt)
        again = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 1000)
        assert base64.b64encode(again).decode() == digest
    for password, encoded in zip(plain, hash_batch(Scheme("argon2id", "min"), plain, 3), strict=True):
        assert encoded.startswith("$argon2id$") and PasswordHasher().verify(encoded, password)
    assert hash_batch(Scheme("plain"), plain, 3) == plain
    assert hash_batch(Scheme("bcrypt", 4), plain, 3) == hash_batch(
        Scheme("bcrypt", 4), plain, 3
    )  # salted by seed
    assert hash_batch(Scheme("bcrypt", 4), plain, 3) != hash_batch(Scheme("bcrypt", 4), plain, 4)


def test_suggest_then_check_from_the_command_line(capsys, django_db, tmp_path):
    code, draft, err = run(capsys, "--db", str(django_db), "--suggest-mapping")
    assert code == 0, err
    assert "[tables.auth_user]" in draft and 'password = { password = "pbkdf2_sha256" }' in draft
    path = tmp_path / "draft.toml"
    path.write_text(draft)
    code, out, err = run(capsys, "--db", str(django_db), "--mapping", str(path), "--check")
    assert code == 0, err
    assert out.startswith(f"{path}: valid for") and "auth_user" in out
    assert set(table_counts(django_db).values()) == {0}  # --check writes nothing

    code, _, err = run(capsys, "--db", str(django_db), "--mapping", str(path), "--size", "100", "--append")
    assert code == 2 and err.strip().splitlines() == [
        "error: --append is not available with --mapping: seed with --truncate (or into empty tables)"
    ]
    code, _, err = run(capsys, "--db", str(django_db), "--mapping", str(tmp_path / "none.toml"), "--check")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot read it" in err


REGISTRY_MAPPING = """
[tables.agama]
from = "lookup"
rows = [
  { id = 1, nama = "ISLAM" }, { id = 2, nama = "KRISTEN" }, { id = 3, nama = "KATOLIK" },
  { id = 4, nama = "HINDU" }, { id = 5, nama = "BUDDHA" }, { id = 6, nama = "KONGHUCU" },
]

[tables.penduduk]
from = "residents"

[tables.penduduk.columns]
nik = { copy = "nik" }
nama = { copy = "full_name" }
tgl_lahir = { copy = "birth_date", format = "%d-%m-%Y" }
agama_id = { ref = "agama.id", by = "religion", match = "nama" }
"""


def test_registry_rows_find_a_lookup_row_by_value(tmp_path):
    db = tmp_path / "registry.db"
    engine = make_engine(str(db))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE agama (id INTEGER PRIMARY KEY, nama VARCHAR(20) NOT NULL UNIQUE)")
        conn.exec_driver_sql(
            "CREATE TABLE penduduk (nik CHAR(16) PRIMARY KEY, nama VARCHAR(200) NOT NULL, "
            "tgl_lahir CHAR(10) NOT NULL, agama_id INTEGER NOT NULL REFERENCES agama (id))"
        )
    result = seed_mapped(
        str(db), parse_mapping(tomllib.loads(REGISTRY_MAPPING)), size=600, seed=4,
        as_of=dt.datetime(2026, 11, 27, 22), passwords_out=tmp_path / "pw.csv", workers=1,
    )  # fmt: skip
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT p.tgl_lahir, a.nama FROM penduduk p JOIN agama a ON a.id = p.agama_id"
        ).all()
    engine.dispose()
    assert len(rows) == result.rows["penduduk"] >= 600
    assert len({religion for _, religion in rows}) > 1
    assert all(re.fullmatch(r"\d\d-\d\d-\d{4}", born) for born, _ in rows)


def test_each_events_account_row_is_the_row_its_account_id_names():
    # block_frames takes an event's account columns by these positions instead of looking the
    # account id up: they must be the very rows.
    import datetime as dt

    import pyarrow.compute as pc

    from simulator.generators.population import generate
    from simulator.seed.mapping.sources import block_frames
    from simulator.seed.rows import SeedCursor, build_chunk
    from simulator.seed.states import parse_states
    from simulator.seed.waves import make_calendar

    applicants = next(iter(generate(3000, 4, chunk_rows=3000))).applicants
    calendar = make_calendar(11, dt.datetime(2026, 11, 27, 22, 0), 7.0)
    rows = build_chunk(applicants, chunk_index=0, seed=4, mix=parse_states("even"), calendar=calendar,
                       cursor=SeedCursor(), source="test")  # fmt: skip
    ids = rows.tables["accounts"].column("id").combine_chunks()
    assert set(rows.positions) == {"identities", "profiles", "ktp_uploads", "test_results", "wave_joins",
                                   "recipients"}  # fmt: skip
    for name, at in rows.positions.items():
        looked_up = pc.index_in(rows.tables[name].column("account_id"), value_set=ids).to_numpy()
        assert at.tolist() == looked_up.tolist(), name
    frames = block_frames(applicants, rows, calendar.open_wave)
    nik = frames.events["profiles"].column("nik").to_pylist()
    assert nik == rows.tables["identities"].column("nik").to_pylist()  # the same accounts, in order
