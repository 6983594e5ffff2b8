"""prakerja-sim: make a Kartu Prakerja-style wave registration testable before it opens.

Generators, the reference registration API, the demand model and the surge harness's library parts.

Layers, lowest first. A module imports only from its own layer and the layers below it; the
packages of the commands layer do not import each other except along the arrows that
tests/test_layers.py lists, each with its reason (that test reads this list and checks every import,
including those inside functions and modules named in ``importlib`` strings):

    1. base        simulator errors progress net regions
    2. rules       rules
    3. generators  generators
    4. io          io
    5. shared      report database
    6. commands    seed api surge demand upstreams
    7. cli         cli *.cli

``base`` is this module's constants, the user-facing errors, progress callbacks, the loopback guard
and the Kemendagri region codes; ``rules`` the registration rules; ``generators`` columns from a seed,
with no I/O; ``io`` the files (it drives the generators into them); ``shared`` what several commands
use (the reports; the database schema and helpers); ``commands`` the library side of each command;
``cli`` the click shells (``simulator/cli.py`` and every package's ``cli.py``), which wire the rest.
"""

__version__ = "0.1.0"

# Every command's --seed default (population, seed-db, demand and its backtest and season):
# with no --seed, population and seed-db make the same people and the demand runs are repeatable.
DEFAULT_SEED = 2020
