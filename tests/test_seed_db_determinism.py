"""Same seed, same database: whatever ``chunk_rows`` and the number of hashing processes.

Also the password pool: large seeds share ``distinct_passwords`` passwords, each hashed once,
and every account still logs in with the password the side file gives it.
"""

from __future__ import annotations

import csv
import datetime as dt
import os

import pyarrow as pa
import pytest
import sqlalchemy as sa

from simulator.database import schema as t
from simulator.database.db import make_engine
from simulator.database.passwords import verify_password
from simulator.errors import InvalidOption
from simulator.seed import seed_database
from simulator.seed.hashing import PasswordChoice, parse_distinct
from simulator.seed.mapping.passwords import HashWorkers, PasswordColumn, scheme_of
from simulator.seed.verify import violations

AS_OF = dt.datetime(2026, 11, 27, 22, 0)
SIZE = 5000
BLOCK = 2000  # blocks of 2000, 2000, 1000: reads of 1000 and of 3000 rows cut them differently
POOL = 300


def _seed(tmp_path, chunk_rows: int, workers: int) -> tuple[list, list[dict], object]:
    db = tmp_path / f"c{chunk_rows}-w{workers}.db"
    result = seed_database(
        str(db), size=SIZE, seed=17, mode="truncate", as_of=AS_OF, chunk_rows=chunk_rows,
        block_rows=BLOCK, workers=workers, distinct_passwords=POOL, states="even",
    )  # fmt: skip
    engine = make_engine(str(db))
    try:
        with engine.connect() as conn:
            assert violations(conn) == []
            dump = [
                conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
                for table in t.metadata.sorted_tables
                if table.name != "schema_meta"
            ]
    finally:
        engine.dispose()
    with open(str(db) + ".passwords.csv", newline="", encoding="utf-8") as handle:
        side = list(csv.DictReader(handle))
    return dump, side, result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("determinism")
    return {key: _seed(tmp, *key) for key in ((1000, 1), (3000, 1), (3000, 2))}


@pytest.mark.parametrize(
    "other", [(3000, 1), (3000, 2)], ids=["chunk-rows-3000", "chunk-rows-3000-2-workers"]
)
def test_same_seed_same_tables_whatever_the_chunking_and_the_workers(runs, other):
    dump, side, _ = runs[(1000, 1)]
    other_dump, other_side, _ = runs[other]
    assert sum(len(rows) for rows in dump) > SIZE  # accounts and the rows of every later step
    for rows, other_rows in zip(dump, other_dump, strict=True):
        assert rows == other_rows
    assert side == other_side


def test_accounts_share_a_pool_of_passwords_each_hashed_once(runs):
    dump, side, result = runs[(1000, 1)]
    assert result.accounts == len(side) > POOL
    plain = {row["password"] for row in side}
    assert 0.9 * POOL <= len(plain) <= POOL  # spread over (nearly) the whole pool
    assert result.passwords_hashed == len(plain)
    accounts = (
        {row.id: row.password_hash for row in dump[0]} if "password_hash" in dump[0][0]._fields else None
    )
    assert accounts is not None
    assert len(set(accounts.values())) == len(plain)
    for row in side[:: len(side) // 40]:
        assert verify_password(accounts[row["account_id"]], row["password"])
        assert not verify_password(accounts[row["account_id"]], row["password"] + "x")


def test_a_run_no_bigger_than_the_pool_keeps_the_populations_own_passwords():
    own = pa.array(["Budi1987!", "Sari2001#"])
    keys = pa.array([1, 2]).to_numpy()
    assert PasswordChoice.for_run(1, 10, applicants=10).plain(own, keys) == own
    assert PasswordChoice.for_run(1, None, applicants=10**6).plain(own, keys) == own
    pooled = PasswordChoice.for_run(1, 10, applicants=11).plain(own, keys).to_pylist()
    assert pooled != own.to_pylist() and all(len(p) >= 8 for p in pooled)
    # the same account gets the same pool password in any run of the same seed, another in another seed
    again = PasswordChoice.for_run(1, 10, applicants=10**6).plain(own, keys).to_pylist()
    assert again == pooled
    assert PasswordChoice.for_run(2, 10, applicants=11).plain(own, keys).to_pylist() != pooled


def test_each_distinct_password_is_hashed_once_and_row_order_kept():
    hasher = HashWorkers(1)
    try:
        book = PasswordColumn(hasher, scheme_of("argon2id"), 5, None)
        first = pa.array(["a-secret", "b-secret", "a-secret"])
        second = pa.array(["b-secret", "c-secret"])
        pending = book.submit(first)
        later = book.submit(second)
        hashes, later_hashes = book.collect(pending).to_pylist(), book.collect(later).to_pylist()
    finally:
        hasher.close()
    assert book.hashed == 3
    assert hashes[0] == hashes[2] != hashes[1] and later_hashes[0] == hashes[1]
    for plain, hashed in zip(first.to_pylist() + second.to_pylist(), hashes + later_hashes, strict=True):
        assert verify_password(hashed, plain)


def test_a_pool_gives_the_hashes_of_one_hash_per_distinct_password():
    pool = pa.array(["a-secret", "b-secret", "c-secret"])
    rows = [pa.array(["b-secret", "a-secret", "b-secret"]), pa.array(["c-secret"])]
    hasher = HashWorkers(2)
    try:
        argon2id = scheme_of("argon2id")
        pooled, plain = PasswordColumn(hasher, argon2id, 5, pool), PasswordColumn(hasher, argon2id, 5, None)
        from_pool = [pooled.collect(pooled.submit(r)).to_pylist() for r in rows]
        one_by_one = [plain.collect(plain.submit(r)).to_pylist() for r in rows]
    finally:
        hasher.close()
    assert from_pool == one_by_one and pooled.hashed == 3


@pytest.mark.parametrize("text", ["0", "-3", "many"])
def test_bad_distinct_passwords_are_refused(text):
    with pytest.raises(InvalidOption, match="--distinct-passwords"):
        parse_distinct(text)


def _own_segments() -> list[str]:
    """Shared-memory blocks of hand-overs made by this test process (others may run beside it)."""
    return [name for name in os.listdir("/dev/shm") if name.startswith(f"psim-{os.getpid()}-")]


def test_prefetched_chunks_are_the_generators_own_and_leave_no_shared_memory():
    # The worker hands each chunk over through shared memory, which this process copies out of:
    # what arrives must be exactly what generate() makes, and nothing may stay behind, read to the
    # end or abandoned half way.
    from simulator.generators.population import generate, make_plan
    from simulator.seed import runner

    plan = make_plan(3500, 5, chunk_rows=1000)
    source = runner.PopulationSource(size=3500, seed=5)
    expected = list(generate(3500, 5, chunk_rows=1000))
    with runner.ChunkPrefetch(source, plan) as chunks:
        assert _own_segments()  # the slots: the chunks did come through shared memory
        got = list(chunks)
    assert [c.index for c in got] == [c.index for c in expected] == [0, 1, 2, 3]
    for mine, theirs in zip(got, expected, strict=True):
        assert (mine.start, mine.stop) == (theirs.start, theirs.stop)
        assert mine.residents.equals(theirs.residents)
        assert mine.applicants.equals(theirs.applicants)
    assert _own_segments() == []

    with runner.ChunkPrefetch(source, plan) as chunks:
        first_two = [c.index for _, c in zip(range(2), chunks, strict=False)]
    assert first_two == [0, 1]
    assert _own_segments() == []


def test_a_chunk_bigger_than_its_slot_travels_in_a_block_of_its_own_and_is_freed():
    from simulator.generators.population import generate, make_plan
    from simulator.seed import runner

    plan = make_plan(2500, 5, chunk_rows=1000)
    source = runner.PopulationSource(size=2500, seed=5)
    with runner.ChunkPrefetch(source, plan, slot_bytes_per_person=1) as chunks:  # no room in the slots
        got = [c.applicants for c in chunks]
    assert [t.num_rows for t in got] == [c.applicants.num_rows for c in generate(2500, 5, chunk_rows=1000)]
    assert _own_segments() == []


def test_shared_memory_left_by_a_killed_run_is_removed_and_a_live_runs_kept():
    import subprocess
    import sys

    from simulator.generators.population import make_plan
    from simulator.seed import runner

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"/dev/shm/psim-{int(gone.stdout)}-abc-slot0"
    alive = f"/dev/shm/psim-{os.getppid()}-def-slot0"
    try:
        for path in (dead, alive):
            with open(path, "wb") as handle:
                handle.write(b"x")
        source = runner.PopulationSource(size=2500, seed=5)
        with runner.ChunkPrefetch(source, make_plan(2500, 5, chunk_rows=1000)) as chunks:
            assert sum(1 for _ in chunks) == 3
        assert not os.path.exists(dead)
        assert os.path.exists(alive)
    finally:
        for path in (dead, alive):
            if os.path.exists(path):
                os.unlink(path)


def _no_room(plan, k, run, slot):  # on the worker, in place of generate_and_hand_over
    raise OSError(28, "No space left on device", "/dev/shm")


def test_a_chunk_that_cannot_be_handed_over_fails_with_a_clear_error(monkeypatch):
    from simulator.errors import SimulatorError
    from simulator.generators.population import make_plan
    from simulator.seed import runner

    monkeypatch.setattr(runner, "generate_and_hand_over", _no_room)
    source = runner.PopulationSource(size=2500, seed=5)
    with (
        runner.ChunkPrefetch(source, make_plan(2500, 5, chunk_rows=1000)) as chunks,
        pytest.raises(SimulatorError, match="could not hand a generated population chunk.*No space left"),
    ):
        list(chunks)
    assert _own_segments() == []
