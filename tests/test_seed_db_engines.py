"""seed-db against real engines: SQLite always, PostgreSQL and MariaDB when their URLs are set.

Counts per state match the mix, every constraint holds, only valid applicants pass the identity
step, passwords verify, an interrupted run leaves the database as it was, ``--append`` adds.
"""

from __future__ import annotations

import csv
import datetime as dt
import os

import pytest
import sqlalchemy as sa
from engines import ENGINES, server_url

from simulator.api.testing import scratch_database
from simulator.database import schema as t
from simulator.database.db import make_engine
from simulator.database.passwords import verify_password
from simulator.errors import InvalidOption, SimulatorError
from simulator.seed import seed_database
from simulator.seed.states import parse_states
from simulator.seed.verify import state_census, violations

SIZE = 3000
CHUNK = 1000
AS_OF = dt.datetime(2026, 11, 27, 22, 0)
MIX = (
    "registered=0.2,email_verified=0.1,identity_verified=0.05,phone_verified=0.05,tested=0.1,joined=0.2,"
    "selected=0.05,training_bought=0.05,finished=0.05,incentive_paid=0.1,revoked=0.05"
)


@pytest.fixture(scope="module", params=ENGINES)
def seeded(request, tmp_path_factory):
    """One database per engine, seeded once with a 3000-person population in three chunks."""
    server = server_url(request.param)
    with scratch_database(server, prefix="test_seed") as db_url:
        out = tmp_path_factory.mktemp("seed")
        passwords = out / "passwords.csv"
        result = seed_database(
            db_url, size=SIZE, seed=11, states=MIX, mode="truncate", as_of=AS_OF,
            chunk_rows=CHUNK, block_rows=CHUNK, passwords_out=passwords, workers=2,
        )  # fmt: skip
        engine = make_engine(db_url)
        try:
            yield db_url, engine, result, passwords
        finally:
            engine.dispose()


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())
            for table in t.metadata.sorted_tables
        }


def test_counts_per_state_match_the_requested_mix(seeded):
    _, engine, result, _ = seeded
    with engine.connect() as conn:
        census = state_census(conn)
    accounts = sum(census.values())
    assert accounts == result.accounts > SIZE * 0.9  # only refused sign-ups (duplicate e-mail...) are missing
    for state, share in parse_states(MIX).as_dict().items():
        assert abs(census[state] - share * accounts) <= 2, state
    assert census == result.states


def test_every_constraint_holds(seeded):
    _, engine, _, _ = seeded
    with engine.connect() as conn:
        assert violations(conn) == []
        waves = conn.execute(sa.select(t.waves).order_by(t.waves.c.number)).all()
    assert [w.number for w in waves] == list(range(1, 12))
    assert [w.state for w in waves] == ["closed"] * 10 + ["open"]
    assert all(w.selected_count <= w.quota for w in waves)
    open_wave = waves[-1]
    assert open_wave.opens_at <= AS_OF < open_wave.closes_at  # the API takes joins at once


def test_only_valid_applicants_pass_the_identity_step(seeded):
    _, engine, _, passwords = seeded
    outcome = {row["account_id"]: row["expected_outcome"] for row in _rows(passwords)}
    with engine.connect() as conn:
        verified = conn.execute(sa.select(t.identities.c.account_id)).scalars().all()
        past_identity = (
            conn.execute(sa.select(t.accounts.c.id).where(t.accounts.c.phone_verified_at.is_not(None)))
            .scalars()
            .all()
        )
        nik_of = dict(conn.execute(sa.select(t.identities.c.account_id, t.identities.c.nik)).all())
        registry = set(conn.execute(sa.select(t.residents.c.nik)).scalars())
    assert verified and past_identity
    # The identity step takes only valid, eligible people; a bad phone is refused one step later.
    assert {outcome[a] for a in verified} <= {"accept", "PHONE_TAKEN", "PHONE_INVALID"}
    assert {outcome[a] for a in past_identity} == {"accept"}
    assert set(nik_of.values()) <= registry


def test_side_file_lists_every_account_and_its_password_logs_in(seeded):
    _, engine, result, passwords = seeded
    rows = _rows(passwords)
    assert len(rows) == result.accounts
    with engine.connect() as conn:
        hashes = dict(conn.execute(sa.select(t.accounts.c.id, t.accounts.c.password_hash)).all())
    assert set(hashes) == {row["account_id"] for row in rows}
    for row in rows[:: len(rows) // 15]:
        assert verify_password(hashes[row["account_id"]], row["password"])
        assert not verify_password(hashes[row["account_id"]], row["password"] + "x")


def test_an_interrupted_run_leaves_the_database_as_it_was(seeded, tmp_path):
    db_url, engine, _, passwords = seeded
    before = _counts(engine)
    side_file = passwords.read_bytes()

    def stop_after_second_chunk(chunk_index: int) -> None:
        if chunk_index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seed_database(
            db_url, size=SIZE, seed=12, states="even", mode="truncate", as_of=AS_OF,
            chunk_rows=CHUNK, block_rows=CHUNK, passwords_out=passwords, on_chunk=stop_after_second_chunk,
            workers=1,
        )  # fmt: skip
    assert _counts(engine) == before
    assert passwords.read_bytes() == side_file
    assert not [p for p in passwords.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_seeded_database_is_not_overwritten_without_truncate_or_append(seeded):
    db_url, engine, _, _ = seeded
    before = _counts(engine)
    with pytest.raises(InvalidOption, match="--truncate"):
        seed_database(db_url, size=100, seed=1, as_of=AS_OF)
    assert _counts(engine) == before


def test_append_adds_the_other_shard_and_keeps_every_rule(tmp_path):
    from simulator.io.population import write_population

    halves = []
    for index in (0, 1):
        directory = tmp_path / f"shard{index}"
        write_population(directory, 4000, 5, fmt="parquet", shard=(index, 2), chunk_rows=1000)
        halves.append(directory)
    db = str(tmp_path / "shards.db")
    first = seed_database(
        db,
        population_dir=halves[0],
        mode="truncate",
        as_of=AS_OF,
        chunk_rows=CHUNK,
        block_rows=CHUNK,
        workers=1,
    )
    engine = make_engine(db)
    try:
        before = _counts(engine)
        # The same half again collides with itself (same NIKs, e-mails): refused, nothing kept.
        with pytest.raises(SimulatorError):
            seed_database(
                db, population_dir=halves[0], mode="append", chunk_rows=CHUNK, block_rows=CHUNK, workers=1
            )
        assert _counts(engine) == before

        second = seed_database(
            db, population_dir=halves[1], mode="append", chunk_rows=CHUNK, block_rows=CHUNK, workers=1
        )
        with engine.connect() as conn:
            census = state_census(conn)
            assert violations(conn) == []
            joins = (
                conn.execute(sa.select(t.wave_joins.c.join_order).where(t.wave_joins.c.wave_number == 11))
                .scalars()
                .all()
            )
            joined_count = conn.execute(
                sa.select(t.waves.c.joined_count).where(t.waves.c.number == 11)
            ).scalar()
    finally:
        engine.dispose()
    assert sum(census.values()) == first.accounts + second.accounts
    for state, count in census.items():
        assert count == first.states[state] + second.states[state]
    # join orders continue where the first run stopped: 1..N without a gap or a repeat
    assert sorted(joins) == list(range(1, len(joins) + 1)) and joined_count == len(joins)
    rows = _rows(tmp_path / "shards.db.passwords.csv")
    assert len(rows) == first.accounts + second.accounts


def test_fresh_database_fails_cleanly_and_keeps_no_tables(tmp_path):
    db = tmp_path / "fresh.db"

    def fail(chunk_index: int) -> None:
        raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError, match="disk full"):
        seed_database(
            str(db),
            size=1500,
            seed=3,
            mode="truncate",
            as_of=AS_OF,
            chunk_rows=CHUNK,
            block_rows=CHUNK,
            on_chunk=fail,
        )
    engine = make_engine(str(db))
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert not (tmp_path / "fresh.db.passwords.csv").exists()


@pytest.mark.mariadb
@pytest.mark.skipif(
    not os.environ.get("PRAKERJA_TEST_MARIADB_URL"), reason="PRAKERJA_TEST_MARIADB_URL is not set"
)
def test_mariadb_without_local_infile_falls_back_to_insert_batches_and_says_so(monkeypatch, tmp_path):
    from simulator.seed import loaders

    # The shared server allows LOAD DATA LOCAL; pretend it does not rather than change it for everyone.
    monkeypatch.setattr(loaders, "mariadb_allows_local_infile", lambda conn: False)
    with scratch_database(os.environ["PRAKERJA_TEST_MARIADB_URL"], prefix="test_seed") as db_url:
        result = seed_database(
            db_url, size=1500, seed=8, mode="truncate", as_of=AS_OF, chunk_rows=CHUNK, block_rows=CHUNK,
            passwords_out=tmp_path / "pw.csv", workers=1,
        )  # fmt: skip
        assert "INSERT" in result.loader
        assert any("local_infile=OFF" in note for note in result.notes)
        engine = make_engine(db_url)
        try:
            with engine.connect() as conn:
                assert state_census(conn) == result.states
                assert violations(conn) == []
        finally:
            engine.dispose()
