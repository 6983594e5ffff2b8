"""PostgreSQL ``--truncate`` seeds go through a staging schema: what the swap must leave behind.

The seeded tables carry exactly the keys, unique constraints, indexes and (validated) foreign keys
the API's own ``create_schema`` makes; no staging schema survives a run, a failed one, or (on the
next run) a killed one; a duplicate found while building the keys leaves the target as it was.
"""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pytest
import sqlalchemy as sa

from simulator.api.testing import scratch_database
from simulator.database import schema as t
from simulator.database.db import make_engine
from simulator.errors import SimulatorError
from simulator.seed import rows as seed_rows
from simulator.seed import seed_database
from simulator.seed.staging import STAGE_PREFIX

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("PRAKERJA_TEST_POSTGRES_URL"), reason="PRAKERJA_TEST_POSTGRES_URL is not set"
    ),
]

AS_OF = dt.datetime(2026, 11, 27, 22, 0)
CHUNK = 1000


def _seed(db_url: str, tmp_path, **options):
    options = {
        "size": 2500, "seed": 4, "mode": "truncate", "as_of": AS_OF, "chunk_rows": CHUNK,
        "block_rows": CHUNK, "passwords_out": tmp_path / "pw.csv", "workers": 1, **options,
    }  # fmt: skip
    return seed_database(db_url, **options)


def _catalog(conn: sa.Connection) -> set[tuple]:
    """Every constraint and index of the schema's tables in the current schema, as the server has them."""
    constraints = conn.execute(
        sa.text(
            "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid), convalidated "
            "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace"
        )
    ).all()
    indexes = conn.execute(
        sa.text("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    ).all()
    return {("constraint", *row) for row in constraints} | {("index", *row) for row in indexes}


def _stages(conn: sa.Connection) -> list[str]:
    return (
        conn.execute(
            sa.text("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, :p)"), {"p": STAGE_PREFIX}
        )
        .scalars()
        .all()
    )


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())
            for table in t.metadata.sorted_tables
        }


@pytest.fixture
def server():
    return os.environ["PRAKERJA_TEST_POSTGRES_URL"]


def test_seeded_tables_have_every_constraint_and_index_of_the_schema(server, tmp_path):
    with (
        scratch_database(server, prefix="test_seed_pg") as reference,
        scratch_database(server, prefix="test_seed_pg") as db_url,
    ):
        t.create_schema(reference)
        result = _seed(db_url, tmp_path)
        assert "staging schema" in result.loader
        want, got = make_engine(reference), make_engine(db_url)
        try:
            with want.connect() as a, got.connect() as b:
                expected, seeded = _catalog(a), _catalog(b)
                assert not _stages(b)
                # ktp_uploads.id still draws from its own sequence, now in the target schema
                default = b.execute(
                    sa.text(
                        "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef "
                        "WHERE adrelid = 'ktp_uploads'::regclass"
                    )
                ).scalar()
                next_id = b.execute(sa.text("SELECT nextval('ktp_uploads_id_seq')")).scalar()
                uploads = b.execute(sa.select(sa.func.count()).select_from(t.ktp_uploads)).scalar()
        finally:
            want.dispose()
            got.dispose()
    assert seeded == expected
    assert all(row[-1] is True for row in seeded if row[0] == "constraint")  # every FK validated
    assert default == "nextval('ktp_uploads_id_seq'::regclass)"
    assert next_id == uploads + 1


def test_a_staging_schema_left_by_a_killed_run_is_dropped_and_reported(server, tmp_path):
    with scratch_database(server, prefix="test_seed_pg") as db_url:
        engine = make_engine(db_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {STAGE_PREFIX}deadbeef"))
                conn.execute(sa.text(f"CREATE TABLE {STAGE_PREFIX}deadbeef.accounts (id text)"))
            result = _seed(db_url, tmp_path, size=1200)
            with engine.connect() as conn:
                assert not _stages(conn)
        finally:
            engine.dispose()
    assert any(f"{STAGE_PREFIX}deadbeef" in note for note in result.notes)


def test_a_duplicate_found_while_building_keys_leaves_the_target_as_it_was(server, tmp_path, monkeypatch):
    with scratch_database(server, prefix="test_seed_pg") as db_url:
        first = _seed(db_url, tmp_path, size=1200)
        engine = make_engine(db_url)
        try:
            before = _counts(engine)
            build = seed_rows.build_chunk

            def duplicate_an_email(applicants, **kwargs):
                rows = build(applicants, **kwargs)
                accounts = rows.tables["accounts"]
                emails = accounts.column("email").to_pylist()
                emails[1] = emails[0]
                index = accounts.schema.get_field_index("email")
                rows.tables["accounts"] = accounts.set_column(index, "email", pa.array(emails, pa.string()))
                return rows

            from simulator.seed.mapping import stream

            monkeypatch.setattr(stream, "build_chunk", duplicate_an_email)
            with pytest.raises(SimulatorError, match="as it was"):
                _seed(db_url, tmp_path, size=1500, seed=9)
            assert _counts(engine) == before
            assert before["accounts"] == first.accounts
            with engine.connect() as conn:
                assert not _stages(conn)
        finally:
            engine.dispose()


def test_an_interrupted_run_drops_its_staging_schema(server, tmp_path):
    with scratch_database(server, prefix="test_seed_pg") as db_url:
        _seed(db_url, tmp_path, size=1200)
        engine = make_engine(db_url)
        try:
            before = _counts(engine)

            def stop(chunk_index: int) -> None:
                raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                _seed(db_url, tmp_path, size=2500, seed=5, on_chunk=stop)
            assert _counts(engine) == before
            with engine.connect() as conn:
                assert not _stages(conn)
        finally:
            engine.dispose()


def test_binary_copy_writes_every_type_as_the_api_reads_it(server):
    from simulator.seed.loaders import PostgresCopyLoader

    metadata = sa.MetaData()
    table = sa.Table(
        "kinds",
        metadata,
        sa.Column("text", sa.String(50)),
        sa.Column("small", sa.SmallInteger),
        sa.Column("normal", sa.Integer),
        sa.Column("big", sa.BigInteger),
        sa.Column("flag", sa.Boolean),
        sa.Column("day", sa.Date),
        sa.Column("at", t.Timestamp),
    )
    texts = ["plain", "tab\there", "new\nline", 'quote"s,', "back\\slash", "", None, "Ñusa Tenggara 🙂"]
    n = len(texts)
    rows = pa.table(
        {
            "text": pa.array(texts, pa.string()),
            "small": pa.array([0, 1, -1, 32767, -32768, None, 5, 6], pa.int16()),
            "normal": pa.array([0, 1, -1, 2**31 - 1, -(2**31), 7, None, 8], pa.int32()),
            "big": pa.array([0, 1, -1, 2**62, -(2**62), 9, 10, None], pa.int64()),
            "flag": pa.array([True, False, None, True, False, True, False, True], pa.bool_()),
            "day": pa.array(
                [dt.date(2000, 1, 1), dt.date(1999, 12, 31), dt.date(1960, 2, 29), None]
                + [dt.date(2038, 1, 19)] * 4,
                pa.date32(),
            ),
            "at": pa.array(
                [dt.datetime(2000, 1, 1), dt.datetime(1999, 12, 31, 23, 59, 59, 999999), None]
                + [dt.datetime(2026, 11, 27, 22, 0, 1, 123456)] * (n - 3),
                pa.timestamp("us"),
            ),
        }
    )
    with scratch_database(server, prefix="test_seed_pg") as db_url:
        engine = make_engine(db_url)
        try:
            metadata.create_all(engine)
            with engine.begin() as conn:
                assert PostgresCopyLoader(conn).load(table, rows) == n
            with engine.connect() as conn:
                back = [tuple(r) for r in conn.execute(sa.select(table)).all()]
        finally:
            engine.dispose()
    assert sorted(back, key=repr) == sorted((tuple(r.values()) for r in rows.to_pylist()), key=repr)


def test_a_second_seed_of_the_same_database_is_refused_while_one_runs(server, tmp_path):
    from simulator.seed.staging import _LOCK_KEY

    with scratch_database(server, prefix="test_seed_pg") as db_url:
        engine = make_engine(db_url)
        try:
            with engine.connect() as holder:  # stands for a seed-db run in progress
                holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
                with pytest.raises(SimulatorError, match="another seed-db run"):
                    _seed(db_url, tmp_path, size=1200)
                holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                with engine.connect() as conn:
                    assert not _stages(conn)
                    assert sa.inspect(conn).get_table_names() == []  # as it was: empty
            assert _seed(db_url, tmp_path, size=1200).accounts > 0
        finally:
            engine.dispose()
