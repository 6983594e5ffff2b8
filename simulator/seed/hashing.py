"""Which plain password each seeded account gets, and argon2id as the API writes it.

:class:`PasswordChoice`: the population's own passwords, or (large seeds) a pool of
``--distinct-passwords`` shared ones. :func:`hash_many`: argon2id in the API's format
(``simulator.database.passwords``), so a seeded account logs in; salted from the seed and the password,
so the same seed gives the same hashes on any machine. The other formats, the worker processes and
the one-hash-per-distinct-password book are in :mod:`simulator.seed.mapping.passwords`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from argon2.low_level import Type, hash_secret

from simulator.database.passwords import COST_LEVELS, PasswordCost, cost_of
from simulator.errors import InvalidOption

SEED_COST = PasswordCost(time_cost=1, memory_kib=8, parallelism=1)
"""argon2's own minimum (one pass over 8 KiB): about 20k hashes/s per core, the default for seeds.

Any cost verifies at login: the parameters travel inside each hash."""

_SALT_BYTES = 16
_HASH_BYTES = 32
_SUB_BATCH = 2_000  # passwords per task sent to a worker: big enough to amortise pickling


DEFAULT_DISTINCT_PASSWORDS = 10_000
"""Runs of up to this many applicants keep every applicant's own password; larger ones share a
pool of this many (hashed in about a second at the seed cost, instead of one hash per account)."""


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
        return self.pool.take(pa.array(mix64(keys, self.seed) % np.uint64(len(self.pool))))


def mix64(keys: np.ndarray, seed: int) -> np.ndarray:
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
