"""prakerja-sim: make a Kartu Prakerja-style wave registration testable before it opens.

Generators, the reference registration API, the demand model and the surge harness's library parts.
"""

__version__ = "0.1.0"

# Every command's --seed default (population, seed-db, demand and its backtest and season):
# with no --seed, population and seed-db make the same people and the demand runs are repeatable.
DEFAULT_SEED = 2020
