"""``seed-db --mapping`` on foreign schemas (Django-style, Laravel-style) and on the reference one,
on SQLite always and on PostgreSQL and MariaDB when their URLs are set.

Counts per state follow the mix, every key, unique and foreign key holds, a seeded user logs in
through a small app on that schema with its hashed password, a broken mapping fails with one line
and writes nothing, the same seed gives the same rows.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import tomllib

import bcrypt
import pytest
import sqlalchemy as sa
from engines import ENGINES, server_url
from mapping_schemas import SCHEMAS

from simulator.api.testing import scratch_database
from simulator.database import schema as reference
from simulator.database.db import make_engine
from simulator.database.passwords import verify_password
from simulator.seed.mapping import REFERENCE_MAPPING, MappingError, parse_mapping, plan_for, seed_mapped
from simulator.seed.states import STATES, parse_states
from simulator.seed.verify import state_census, violations

SIZE = 1200
CHUNK = 400
AS_OF = dt.datetime(2026, 11, 27, 22, 0)
MIX = (
    "registered=0.1,email_verified=0.1,identity_verified=0.1,phone_verified=0.1,tested=0.1,joined=0.1,"
    "selected=0.1,training_bought=0.1,finished=0.05,incentive_paid=0.1,revoked=0.05"
)
IDENTITY_AND_BEYOND = {s.value for s in STATES[2:]}


def mapping_of(name: str):
    return parse_mapping(tomllib.loads(SCHEMAS[name][1]), name)


def make_schema(db_url: str, name: str) -> sa.Engine:
    engine = make_engine(db_url)
    metadata = SCHEMAS[name][0]()
    metadata.drop_all(engine)
    metadata.create_all(engine)
    return engine


@pytest.fixture(
    scope="module", params=[(e, s) for e in ENGINES for s in SCHEMAS], ids=lambda p: f"{p[0].id}-{p[1]}"
)
def seeded(request, tmp_path_factory):
    engine_param, name = request.param
    if engine_param.marks and any(m.name == "skipif" and m.args[0] for m in engine_param.marks):
        pytest.skip(engine_param.marks[-1].kwargs["reason"])
    with scratch_database(server_url(engine_param.values[0]), prefix="test_map") as db_url:
        engine = make_schema(db_url, name)
        passwords = tmp_path_factory.mktemp("map") / "passwords.csv"
        result = seed_mapped(
            db_url, mapping_of(name), size=SIZE, seed=5, states=MIX, mode="truncate", as_of=AS_OF,
            chunk_rows=CHUNK, block_rows=CHUNK, passwords_out=passwords, workers=2,
        )  # fmt: skip
        try:
            yield name, db_url, engine, result, passwords
        finally:
            engine.dispose()


def _count(conn: sa.Connection, sql: str) -> int:
    return int(conn.exec_driver_sql(sql).scalar())


def _side_file(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_counts_per_state_follow_the_mix(seeded):
    name, _, engine, result, passwords = seeded
    accounts = result.accounts
    assert accounts > SIZE * 0.9
    for state, share in parse_states(MIX).as_dict().items():
        assert abs(result.states[state] - share * accounts) <= 2, state
    deep = sum(result.states[s] for s in IDENTITY_AND_BEYOND)
    joined = sum(
        result.states[s]
        for s in ("joined", "selected", "training_bought", "finished", "incentive_paid", "revoked")
    )
    with engine.connect() as conn:
        if name == "django":
            assert _count(conn, "SELECT COUNT(*) FROM auth_user") == accounts
            assert _count(conn, "SELECT COUNT(*) FROM peserta_profil") == deep
            members = _count(conn, "SELECT COUNT(DISTINCT user_id) FROM keanggotaan_gelombang")
            assert members == joined
            assert _count(conn, "SELECT COUNT(*) FROM gelombang") == 11
        else:
            assert _count(conn, "SELECT COUNT(*) FROM users") == accounts
            per_state = dict(
                conn.exec_driver_sql("SELECT status, COUNT(*) FROM registrations GROUP BY status").all()
            )
            assert per_state == {s: result.states[s] for s in IDENTITY_AND_BEYOND if result.states[s]}
            assert _count(conn, "SELECT COUNT(*) FROM roles") == 2
    assert len(_side_file(passwords)) == accounts


def test_every_key_unique_and_foreign_key_holds(seeded):
    _, _, engine, _, _ = seeded
    metadata = sa.MetaData()
    with engine.connect() as conn:
        metadata.reflect(bind=conn)
        inspector = sa.inspect(conn)
        for table in metadata.tables.values():
            assert inspector.get_pk_constraint(table.name)["constrained_columns"], table.name  # rebuilt
            for fk in table.foreign_keys:
                orphans = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table.outerjoin(fk.column.table, fk.parent == fk.column))
                    .where(fk.parent.is_not(None), fk.column.is_(None))
                ).scalar()
                assert orphans == 0, f"{table.name}.{fk.parent.name}"
            singles = [c["column_names"] for c in inspector.get_unique_constraints(table.name)]
            singles += [i["column_names"] for i in inspector.get_indexes(table.name) if i.get("unique")]
            singles.append(inspector.get_pk_constraint(table.name)["constrained_columns"])
            for columns in singles:
                cols = [table.c[c] for c in columns]
                dupes = conn.execute(
                    sa.select(sa.func.count()).select_from(
                        sa.select(*cols).where(*(c.is_not(None) for c in cols)).group_by(*cols)
                        .having(sa.func.count() > 1).subquery()
                    )
                ).scalar()  # fmt: skip
                assert dupes == 0, f"{table.name}{columns}"
        fks = sum(len(inspector.get_foreign_keys(t)) for t in metadata.tables)
        assert fks == sum(len(t.foreign_keys) for t in SCHEMAS[seeded[0]][0]().tables.values())


# --- a small app on the seeded schema: POST /login checks the password as the real one would ------


def django_check(plain: str, encoded: str) -> bool:
    """Django's PBKDF2PasswordHasher.verify, written out (algorithm$iterations$salt$hash)."""
    algorithm, iterations, salt, digest = encoded.split("$", 3)
    assert algorithm == "pbkdf2_sha256"
    again = hashlib.pbkdf2_hmac("sha256", plain.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(base64.b64encode(again).decode("ascii"), digest)


def laravel_check(plain: str, encoded: str) -> bool:
    """Laravel's Hash::check for the bcrypt driver: PHP's password_verify of a $2y$ hash."""
    assert encoded.startswith("$2y$")
    return bcrypt.checkpw(plain.encode(), encoded.encode())


LOGIN = {
    "django": ("SELECT password FROM auth_user WHERE username = :login AND is_active", django_check),
    "laravel": ("SELECT password FROM users WHERE email = :login", laravel_check),
    "reference": (
        "SELECT password_hash FROM accounts WHERE email = :login",
        lambda p, h: verify_password(h, p),
    ),
}


def login_app(engine: sa.Engine, style: str):
    """A WSGI app of one route, POST /login {login, password}: 200 when the password matches."""
    query, check = LOGIN[style]

    def app(environ, start_response):
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        with engine.connect() as conn:
            stored = conn.execute(sa.text(query), {"login": body["login"]}).scalar()
        ok = stored is not None and check(body["password"], stored)
        start_response("200 OK" if ok else "401 Unauthorized", [("Content-Type", "application/json")])
        return [json.dumps({"ok": ok}).encode()]

    return app


def post_login(app, login: str, password: str) -> str:
    body = json.dumps({"login": login, "password": password}).encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/login", "CONTENT_LENGTH": str(len(body)),
               "wsgi.input": io.BytesIO(body)}  # fmt: skip
    status = []
    b"".join(app(environ, lambda s, headers: status.append(s)))
    return status[0]


def test_a_seeded_user_logs_in_with_the_hashed_password(seeded):
    name, _, engine, _, passwords = seeded
    app = login_app(engine, name)
    users = [row for row in _side_file(passwords) if row["state"] == "joined"][:3]
    assert users
    for user in users:
        assert post_login(app, user["email"], user["password"]) == "200 OK"
        assert post_login(app, user["email"], user["password"] + "x") == "401 Unauthorized"


def test_suggested_mapping_validates_once_its_gaps_are_filled(seeded):
    name, db_url, engine, _, _ = seeded
    from simulator.seed.mapping import suggest_mapping

    with engine.connect() as conn:
        draft = suggest_mapping(conn)
    document = tomllib.loads(draft)
    todos = [
        (t, c) for t, body in document["tables"].items() for c, v in body["columns"].items() if "todo" in v
    ]
    # The roles lookup is not drafted (its rows are the user's to say), so users.role_id is marked.
    assert set(todos) == ({("users", "role_id")} if name == "laravel" else set())
    if todos:
        with pytest.raises(MappingError, match=r"^tables\.users\.columns\.role_id: not placed yet"):
            parse_mapping(document)
    fills = {("users", "role_id"): 1}
    for table, column in todos:
        document["tables"][table]["columns"][column] = fills[(table, column)]
    plan = plan_for(db_url, parse_mapping(document))
    assert {t.name for t in plan.tables} >= {"auth_user" if name == "django" else "users"}


# --- the reference schema through the same machinery -------------------------------------------------


@pytest.mark.parametrize("engine_param", ENGINES)
def test_the_reference_mapping_seeds_the_reference_schema(engine_param, tmp_path):
    with scratch_database(server_url(engine_param), prefix="test_mapref") as db_url:
        engine = make_engine(db_url)
        try:
            reference.create_schema(engine)
            plan = plan_for(db_url, REFERENCE_MAPPING)
            order = [t.name for t in plan.tables]  # parents first
            assert order.index("accounts") < min(
                order.index(n) for n in ("identities", "wave_joins", "recipients")
            )
            assert order.index("waves") < order.index("wave_joins")
            assert {t.name for t in plan.emptied} == {
                "otps", "idempotency_keys", "outcome_counts", "attempt_budgets",
            }  # fmt: skip
            result = seed_mapped(
                db_url, REFERENCE_MAPPING, size=SIZE, seed=5, states=MIX, mode="truncate", as_of=AS_OF,
                chunk_rows=CHUNK, block_rows=CHUNK, passwords_out=tmp_path / "pw.csv", workers=2,
            )  # fmt: skip
            with engine.connect() as conn:
                assert state_census(conn) == result.states
                assert violations(conn) == []
                version = conn.execute(sa.select(reference.schema_meta.c.value)).scalar()
                assert version == str(reference.SCHEMA_VERSION)
            app = login_app(engine, "reference")
            user = next(r for r in _side_file(tmp_path / "pw.csv") if r["state"] == "tested")
            assert post_login(app, user["email"], user["password"]) == "200 OK"
        finally:
            engine.dispose()
