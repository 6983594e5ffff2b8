"""``seed-db``: a database filled with a population in every funnel state, fast, all or nothing.

Owns: the funnel a seeded applicant went through (``states``, ``waves``, ``rows``, ``steps``), which
password each gets and its hash (``hashing``, ``mapping.passwords``), the one loader that writes any
schema through a mapping (``mapping``: the file, its checks against the reflected schema, the rows of
each table, the run), the engines' bulk loaders (``loaders``, ``copy_binary``), the two ways to be
all or nothing (``staging`` for PostgreSQL ``--truncate``, ``mapping.inplace`` otherwise), the
reference API's schema as one mapping plus its own rules (``reference``), the run's shared pieces
(``runner``: population stream, side file, result), the target database and its remote guard
(``target``), and the ``seed-db`` command (``cli``). ``verify`` checks a seeded reference database.

``seed_database`` (the reference schema) and ``simulator.seed.mapping.seed_mapped`` (any schema) are
the library entry points. Names are imported on first use, so hashing workers stay small.
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
