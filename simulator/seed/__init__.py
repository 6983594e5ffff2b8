"""``seed-db``: fill the reference API's schema with a population, fast, in every funnel state.

``seed_database`` is the library entry point; ``simulator.seed.cli`` is its click shell. Names
are imported on first use, so hashing workers that import ``simulator.seed.hashing`` stay small.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "APPEND": "simulator.seed.runner",
    "TRUNCATE": "simulator.seed.runner",
    "SeedResult": "simulator.seed.runner",
    "seed_database": "simulator.seed.reference",
    "PROFILES": "simulator.seed.states",
    "FunnelState": "simulator.seed.states",
    "parse_states": "simulator.seed.states",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'simulator.seed' has no attribute {name!r}")
