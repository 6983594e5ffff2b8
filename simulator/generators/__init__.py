"""Vectorised, deterministic generators: regions, names, contacts, defects, the population, KTP cards.

No I/O and no HTTP here: given a seed and a slice, they return columns (``simulator.io`` writes them).
"""
