"""Password hashes for millions of seeded accounts: argon2id at a low cost, across processes.

Same format as the API (``simulator.database.passwords``), so a seeded account logs in. Each distinct
plain password is hashed once (salted from the seed and the password, so the same seed gives the
same hashes on any machine); large seeds share a pool of passwords (``--distinct-passwords``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from argon2.low_level import Type, hash_secret

from simulator.database.passwords import COST_LEVELS, PasswordCost, cost_of
from simulator.errors import InvalidOption, SimulatorError

SEED_COST = PasswordCost(time_cost=1, memory_kib=8, parallelism=1)
"""argon2's own minimum (one pass over 8 KiB): about 20k hashes/s per core, the default for seeds.

Any cost verifies at login: the parameters travel inside each hash."""

_SALT_BYTES = 16
_HASH_BYTES = 32
_SUB_BATCH = 2_000  # passwords per task sent to a worker: big enough to amortise pickling


DEFAULT_DISTINCT_PASSWORDS = 10_000
"""Runs of up to this many applicants keep every applicant's own password; larger ones share a
pool of this many (hashed in about a second at the seed cost, instead of one hash per account)."""

_HASH_CACHE_LIMIT = 1 << 18  # distinct hashes remembered across chunks (own passwords of a big run)


def parse_cost(text: str | int | None) -> PasswordCost:
    """``--password-cost``: ``min`` (the default, :data:`SEED_COST`) or one of the API's levels 0-4."""
    if text is None or str(text).strip().lower() in ("min", "seed", ""):
        return SEED_COST
    try:
        level = int(str(text).strip())
    except ValueError:
        raise InvalidOption(
            f"--password-cost must be 'min' or one of the API's levels {sorted(COST_LEVELS)}, got {text!r}"
        ) from None
    return cost_of(level)


def parse_distinct(text: str | int | None) -> int | None:
    """``--distinct-passwords``: a pool size N >= 1, or ``all`` (None: every account its own)."""
    if text is None:
        return DEFAULT_DISTINCT_PASSWORDS
    if str(text).strip().lower() in ("all", "own", "unique"):
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidOption(f"--distinct-passwords must be a number >= 1 or 'all', got {text!r}")
    return value


@dataclass(frozen=True)
class PasswordChoice:
    """Which plain password each account gets: its own from the population, or one of a pool.

    Pool password ``k`` depends only on the seed and ``k``, and an account's ``k`` only on the
    seed and its applicant id: the same whatever the chunking, the workers or the shard.
    """

    seed: int
    pool: pa.Array | None  # None: the population's own passwords

    @classmethod
    def for_run(cls, seed: int, distinct: int | None, applicants: int | None) -> PasswordChoice:
        """A pool of ``distinct`` passwords, unless the run is no bigger than the pool (or ``all``)."""
        if distinct is None or (applicants is not None and applicants <= distinct):
            return cls(seed, None)
        tag = hashlib.blake2b(str(seed).encode(), digest_size=2, person=b"prakerja-pw").hexdigest()
        # 16 characters with a capital, digits and a symbol: valid under any password rule the API has.
        return cls(seed, pa.array([f"Uji-{tag}-{k:06d}!" for k in range(distinct)], pa.string()))

    @property
    def label(self) -> str:
        return "each account its own" if self.pool is None else f"a pool of {len(self.pool):,} shared"

    def plain(self, own: pa.Array | pa.ChunkedArray, keys: np.ndarray) -> pa.Array:
        """The plain password of each account; ``keys`` are the applicant ids (uint64)."""
        if self.pool is None:
            return own.combine_chunks() if isinstance(own, pa.ChunkedArray) else own
        return self.pool.take(pa.array(_mix64(keys, self.seed) % np.uint64(len(self.pool))))


def _mix64(keys: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of key ^ seed: spreads consecutive ids evenly over the pool."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_many(passwords: Sequence[str], salt_keys: Sequence[str], cost: PasswordCost) -> list[str]:
    """argon2id PHC strings for each password, salted with a digest of its ``salt_keys`` entry."""
    hashed = []
    for plain, key in zip(passwords, salt_keys, strict=True):
        salt = hashlib.blake2b(key.encode(), digest_size=_SALT_BYTES, person=b"prakerja-seed").digest()
        hashed.append(
            hash_secret(
                plain.encode(),
                salt,
                time_cost=cost.time_cost,
                memory_cost=cost.memory_kib,
                parallelism=cost.parallelism,
                hash_len=_HASH_BYTES,
                type=Type.ID,
            ).decode("ascii")
        )
    return hashed


class PasswordHasherPool:
    """Hashes chunks of passwords on worker processes while the main process loads the database."""

    def __init__(self, cost: PasswordCost, workers: int | None = None):
        self.cost = cost
        self.workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
        self._executor: Executor | None = None
        if self.workers > 1:
            # Forked (the Linux default): no re-import of the caller's __main__, which spawning
            # needs; the workers share the parent's pages copy-on-write and only touch argon2.
            self._executor = ProcessPoolExecutor(max_workers=self.workers)

    def start(self) -> None:
        """Fork the workers now (rather than at the first chunk, when this process is bigger: a
        forked worker keeps its own copy of every page the parent frees afterwards)."""
        if self._executor is not None:
            self._executor.submit(int).result()

    def submit(self, passwords: list[str], salt_keys: list[str]) -> list[Future] | list[str]:
        """Start hashing; hand the result to :meth:`collect`."""
        if self._executor is None:
            return hash_many(passwords, salt_keys, self.cost)
        return [
            self._executor.submit(
                hash_many,
                passwords[start : start + _SUB_BATCH],
                salt_keys[start : start + _SUB_BATCH],
                self.cost,
            )
            for start in range(0, len(passwords), _SUB_BATCH)
        ]

    @staticmethod
    def collect(pending: list[Future] | list[str]) -> list[str]:
        if not pending or isinstance(pending[0], str):
            return list(pending)  # type: ignore[arg-type]
        hashed: list[str] = []
        for future in pending:
            hashed.extend(future.result())  # type: ignore[union-attr]
        return hashed

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> PasswordHasherPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass
class _PendingHashes:
    distinct: list[str]  # the chunk's distinct plain passwords
    asked: list[str]  # those this chunk sent to the workers
    work: list[Future] | list[str]
    plain: pa.Array


class HashBook:
    """One argon2 hash per distinct plain password, salted from the seed and the password.

    Accounts with the same password share its hash string (as in any QA database where test users
    share passwords); each chunk only hashes passwords no earlier chunk asked for.
    """

    def __init__(self, hasher: PasswordHasherPool, seed: int, pool: pa.Array | None = None):
        self.hasher = hasher
        self.seed = seed
        self.hashed = 0  # argon2 hashes computed
        self._hashes: dict[str, str] = {}
        self._asked: set[str] = set()
        # A shared pool (``PasswordChoice.pool``): every pool password hashed once, from the start,
        # and each chunk's hashes taken by position (no Python work per account or per chunk).
        self._pool = pool
        self._pool_hashes: pa.Array | None = None
        self._pool_work = None
        if pool is not None:
            passwords = pool.to_pylist()
            self._pool_work = hasher.submit(passwords, self._salt_keys(passwords))
            self.hashed = len(passwords)

    def submit(self, plain: pa.Array) -> _PendingHashes:
        """Start hashing the chunk's passwords not seen before; hand the result to :meth:`collect`."""
        if self._pool is not None:
            return _PendingHashes([], [], [], plain)
        distinct = pc.unique(plain).to_pylist()
        asked = [p for p in distinct if p not in self._asked]
        self._asked.update(asked)
        self.hashed += len(asked)
        return _PendingHashes(distinct, asked, self.hasher.submit(asked, self._salt_keys(asked)), plain)

    def collect(self, pending: _PendingHashes) -> pa.Array:
        """The hash of every account of the chunk, in row order."""
        if self._pool is not None:
            if self._pool_hashes is None:
                self._pool_hashes = pa.array(self.hasher.collect(self._pool_work), pa.string())
                self._pool_work = None
            position = pc.index_in(pending.plain, value_set=self._pool)
            if position.null_count:
                raise SimulatorError("internal error: a password outside the pool reached the hash book")
            return self._pool_hashes.take(position)
        self._hashes.update(zip(pending.asked, self.hasher.collect(pending.work), strict=True))
        lost = [p for p in pending.distinct if p not in self._hashes]
        if lost:  # asked by an earlier chunk, forgotten since the cache was emptied: hash here
            again = hash_many(lost, self._salt_keys(lost), self.hasher.cost)
            self._hashes.update(zip(lost, again, strict=True))
        values = pa.array([self._hashes[p] for p in pending.distinct], pa.string())
        hashes = values.take(pc.index_in(pending.plain, value_set=pa.array(pending.distinct, pa.string())))
        if len(self._hashes) > _HASH_CACHE_LIMIT:  # bounded memory; hashes are salted by content anyway
            self._hashes.clear()
            self._asked.clear()
        return hashes

    def _salt_keys(self, passwords: list[str]) -> list[str]:
        return [f"{self.seed}:{p}" for p in passwords]
