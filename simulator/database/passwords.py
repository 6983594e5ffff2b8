"""Password hashing for accounts: argon2id with a cost a load test can choose.

Used by the API and by seed-db (a seeded account logs in with the password it was seeded with).
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from simulator.errors import InvalidOption


@dataclass(frozen=True)
class PasswordCost:
    """argon2id parameters: passes over memory, memory in KiB, lanes."""

    time_cost: int
    memory_kib: int
    parallelism: int = 1


COST_LEVELS: dict[int, PasswordCost] = {
    # Load tests that do not measure hashing: argon2's minimum memory (8 KiB per lane), ~50 us.
    0: PasswordCost(time_cost=1, memory_kib=8),
    1: PasswordCost(time_cost=1, memory_kib=1024),
    2: PasswordCost(time_cost=2, memory_kib=8 * 1024),
    3: PasswordCost(time_cost=2, memory_kib=19 * 1024),  # OWASP's argon2id minimum (m=19 MiB, t=2)
    4: PasswordCost(time_cost=3, memory_kib=64 * 1024),  # RFC 9106's second recommendation
}
"""Named cost levels; ``--password-cost N`` picks one. Higher is slower and safer."""

DEFAULT_COST = 3

_hashers: dict[PasswordCost, PasswordHasher] = {}


def cost_of(cost: int | PasswordCost) -> PasswordCost:
    """The argon2 parameters of a cost level (or the parameters themselves)."""
    if isinstance(cost, PasswordCost):
        return cost
    if cost not in COST_LEVELS:
        raise InvalidOption(f"password cost must be one of {sorted(COST_LEVELS)}, got {cost!r}")
    return COST_LEVELS[cost]


def _hasher(cost: PasswordCost) -> PasswordHasher:
    hasher = _hashers.get(cost)
    if hasher is None:
        hasher = PasswordHasher(
            time_cost=cost.time_cost, memory_cost=cost.memory_kib, parallelism=cost.parallelism
        )
        _hashers[cost] = hasher
    return hasher


def hash_password(plain: str, cost: int | PasswordCost = DEFAULT_COST) -> str:
    """An argon2id hash string (PHC format, carries its own parameters and salt)."""
    return _hasher(cost_of(cost)).hash(plain)


def verify_password(password_hash: str, plain: str) -> bool:
    """True when ``plain`` is the password; whatever cost the hash was made with."""
    try:
        # Any hasher verifies any argon2 hash: the parameters are read from the hash itself.
        return _hasher(COST_LEVELS[0]).verify(password_hash, plain)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
