"""``seed-db --mapping``: the population seeded into any schema (Laravel, Django, Spring, Go services...).

A mapping file (TOML, see docs/mapping.md) says where each table's rows come from and how each column
is filled; :func:`suggest_mapping` drafts one from the reflected schema.
"""

from simulator.seed.mapping.load import plan_for, seed_mapped
from simulator.seed.mapping.spec import Mapping, MappingError, load_mapping, parse_mapping
from simulator.seed.mapping.suggest import suggest_mapping

REFERENCE_MAPPING = __file__.rpartition("/")[0] + "/reference.toml"
"""The reference API's schema as a mapping (it validates against ``simulator.database.schema``)."""

__all__ = [
    "REFERENCE_MAPPING", "Mapping", "MappingError", "load_mapping", "parse_mapping", "plan_for",
    "seed_mapped",
    "suggest_mapping",
]  # fmt: skip
