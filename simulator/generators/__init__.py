"""Vectorised, deterministic generators: names, contacts, defects, the population, KTP cards.

No I/O and no HTTP here: given a seed and a slice, they return columns and images (``simulator.io``
writes them; the region codes they draw from are ``simulator.regions``). ``population`` plans the
chunks and makes each one from ``shapes`` (the cited shares), ``schema``, ``dates``, ``places``,
``names``, ``contact``, ``defects`` and ``applicants``. The ``cli.py`` files are click shells, in the
CLI layer above ``simulator.io`` (``simulator/__init__.py``).
"""
