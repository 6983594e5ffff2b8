"""``seed-db``: fill the reference API's schema with a population, fast, in every funnel state.

``seed_database`` is the library entry point; ``simulator.seed.cli`` is its click shell.
"""

from simulator.seed.runner import APPEND, TRUNCATE, SeedResult, seed_database
from simulator.seed.states import PROFILES, FunnelState, parse_states

__all__ = ["APPEND", "PROFILES", "TRUNCATE", "FunnelState", "SeedResult", "parse_states", "seed_database"]
