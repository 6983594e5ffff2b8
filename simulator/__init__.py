"""prakerja-sim: make a Kartu Prakerja-style wave registration testable before it opens.

Generators, the reference registration API, the demand model and the surge harness's library parts.
"""

__version__ = "0.1.0"
