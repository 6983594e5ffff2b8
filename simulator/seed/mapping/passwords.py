"""Passwords in the target system's own hash format: Laravel's bcrypt ``$2y$``, Django's
``pbkdf2_sha256$``, argon2id (PHC), or plain; each distinct password hashed once, on worker processes.

Salts come from the seed, the scheme and the password, so the same seed gives the same hashes on any
machine. Costs default to each scheme's minimum: the cost travels inside every hash, so the target
application verifies it whatever its own setting (and may rehash at the next login).
"""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from simulator.errors import InvalidOption, SimulatorError
from simulator.seed.hashing import hash_many, parse_cost

BCRYPT_ROUNDS = 4  # bcrypt's minimum cost (2^4 rounds): about 1 ms a hash
PBKDF2_ITERATIONS = 100
"""About as cheap as argon2 at seed-db's cost (Django verifies any count, and re-hashes at the next
login with its own, far higher one)."""

HASH_LENGTHS = {"bcrypt": 60, "pbkdf2_sha256": 88, "argon2id": 100}
"""Longest hash each scheme writes at the costs a mapping can ask for (for the type check)."""

_BATCH = 1_000  # passwords per task sent to a worker
_STD_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_B64 = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TO_BCRYPT = bytes.maketrans(_STD_B64, _BCRYPT_B64)
_DJANGO_SALT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class Scheme:
    """A hash format and its cost: bcrypt rounds, PBKDF2 iterations, or an argon2 cost level."""

    name: str
    cost: int | str | None = None

    @property
    def label(self) -> str:
        if self.name == "bcrypt":
            return f"bcrypt $2y$ cost {self.cost}"
        if self.name == "pbkdf2_sha256":
            return f"pbkdf2_sha256 {self.cost} iterations"
        return self.name if self.name == "plain" else f"argon2id cost {self.cost}"


def scheme_of(name: str, *, rounds: int | None = None, iterations: int | None = None, cost=None) -> Scheme:
    if name == "bcrypt":
        return Scheme(name, rounds or BCRYPT_ROUNDS)
    if name == "pbkdf2_sha256":
        return Scheme(name, iterations or PBKDF2_ITERATIONS)
    if name == "argon2id":
        parse_cost(cost)  # refuses a bad level here, before anything is written
        return Scheme(name, "min" if cost is None else cost)
    if name == "plain":
        return Scheme(name)
    raise InvalidOption(f"unknown password scheme {name!r}")


def _salt(seed: int, scheme: str, plain: str, size: int) -> bytes:
    key = f"{seed}:{scheme}:{plain}".encode()
    return hashlib.blake2b(key, digest_size=size, person=b"prakerja-map").digest()


def hash_batch(scheme: Scheme, passwords: Sequence[str], seed: int) -> list[str]:
    """Each password hashed in ``scheme``'s format, salted from ``seed`` and the password."""
    if scheme.name == "plain":
        return list(passwords)
    if scheme.name == "argon2id":
        return hash_many(passwords, [f"{seed}:{p}" for p in passwords], parse_cost(scheme.cost))
    hashed = []
    if scheme.name == "bcrypt":
        import bcrypt

        for plain in passwords:
            salt = base64.b64encode(_salt(seed, "bcrypt", plain, 16))[:22].translate(_TO_BCRYPT)
            setting = b"$2b$%02d$" % scheme.cost + salt
            # Laravel (PHP's password_hash) writes $2y$; it is the same algorithm as $2b$.
            hashed.append("$2y$" + bcrypt.hashpw(plain.encode(), setting).decode("ascii")[4:])
        return hashed
    for plain in passwords:
        raw = _salt(seed, "pbkdf2", plain, 22)
        salt = "".join(_DJANGO_SALT[b % len(_DJANGO_SALT)] for b in raw)
        digest = hashlib.pbkdf2_hmac("sha256", plain.encode(), salt.encode(), scheme.cost)
        hashed.append(f"pbkdf2_sha256${scheme.cost}${salt}${base64.b64encode(digest).decode('ascii')}")
    return hashed


class HashWorkers:
    """Worker processes shared by every password column of a run (forked while this process is small)."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._executor: ProcessPoolExecutor | None = None
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))

    def submit(self, scheme: Scheme, passwords: list[str], seed: int) -> list[Future] | list[str]:
        if self._executor is None or scheme.name == "plain":
            return hash_batch(scheme, passwords, seed)
        return [
            self._executor.submit(hash_batch, scheme, passwords[i : i + _BATCH], seed)
            for i in range(0, len(passwords), _BATCH)
        ]

    @staticmethod
    def collect(pending: list[Future] | list[str]) -> list[str]:
        if not pending or isinstance(pending[0], str):
            return list(pending)  # type: ignore[arg-type]
        return [h for future in pending for h in future.result()]  # type: ignore[union-attr]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


_CACHE_LIMIT = 1 << 18  # distinct hashes remembered across blocks (own passwords of a big run)


@dataclass
class _Pending:
    distinct: list[str]  # the block's distinct plain passwords
    asked: list[str]  # those this block sent to the workers
    work: list[Future] | list[str]
    plain: pa.Array


class PasswordColumn:
    """The hashes of one password column: a distinct password is hashed once for the whole run.

    With a shared pool of test passwords (``PasswordChoice.pool``), the pool is hashed once at the
    start and every block takes its hashes by position; otherwise each block hashes the passwords no
    earlier block asked for (blocks may be submitted before the earlier ones are collected). Accounts
    with the same password share its hash string, as in any QA database where test users share
    passwords.
    """

    def __init__(self, workers: HashWorkers, scheme: Scheme, seed: int, pool: pa.Array | None):
        self.workers, self.scheme, self.seed = workers, scheme, seed
        self.hashed = 0
        self._known: dict[str, str] = {}
        self._asked: set[str] = set()
        self._pool = pool
        self._pool_hashes: pa.Array | None = None
        self._pool_work = None
        if pool is not None:
            self._pool_work = workers.submit(scheme, pool.to_pylist(), seed)
            self.hashed = len(pool)

    def submit(self, plain: pa.Array) -> _Pending:
        """Start hashing the block's passwords not asked for before; hand the result to :meth:`collect`."""
        if self._pool is not None:
            return _Pending([], [], [], plain)
        distinct = pc.unique(plain).to_pylist()
        asked = [p for p in distinct if p not in self._asked]
        self._asked.update(asked)
        self.hashed += len(asked)
        return _Pending(distinct, asked, self.workers.submit(self.scheme, asked, self.seed), plain)

    def collect(self, pending: _Pending) -> pa.Array:
        """The hash of every row's password, in row order."""
        if self._pool is not None:
            if self._pool_hashes is None:
                self._pool_hashes = pa.array(self.workers.collect(self._pool_work), pa.string())
                self._pool_work = None
            position = pc.index_in(pending.plain, value_set=self._pool)
            if position.null_count:
                raise SimulatorError("internal error: a password outside the pool reached the hashing")
            return self._pool_hashes.take(position)
        self._known.update(zip(pending.asked, self.workers.collect(pending.work), strict=True))
        lost = [p for p in pending.distinct if p not in self._known]
        if lost:  # asked by an earlier block, forgotten since the cache was emptied: hash here
            self._known.update(zip(lost, hash_batch(self.scheme, lost, self.seed), strict=True))
        values = pa.array([self._known[p] for p in pending.distinct], pa.string())
        hashes = values.take(pc.index_in(pending.plain, value_set=pa.array(pending.distinct, pa.string())))
        if len(self._known) > _CACHE_LIMIT:  # bounded memory; hashes are salted by content anyway
            self._known.clear()
            self._asked.clear()
        return hashes
