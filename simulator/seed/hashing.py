"""Password hashes for millions of seeded accounts: argon2id at a low cost, across processes.

Same format as the API (``simulator.api.passwords``), so a seeded account logs in; the salt is
derived from the seed and the applicant, so the same seed gives the same hashes on any machine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from argon2.low_level import Type, hash_secret

from simulator.api.passwords import COST_LEVELS, PasswordCost, cost_of
from simulator.errors import InvalidOption

SEED_COST = PasswordCost(time_cost=1, memory_kib=8, parallelism=1)
"""argon2's own minimum (one pass over 8 KiB): about 20k hashes/s per core, the default for seeds.

Any cost verifies at login: the parameters travel inside each hash."""

_SALT_BYTES = 16
_HASH_BYTES = 32
_SUB_BATCH = 2_000  # passwords per task sent to a worker: big enough to amortise pickling


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
