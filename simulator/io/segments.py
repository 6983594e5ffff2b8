"""Shared-memory segments one process makes for another to own: the one adapter over
multiprocessing's resource tracker, which would otherwise unlink them when their maker exits.

Python 3.13 says so with ``SharedMemory(track=False)``; before it, the maker unregisters the
segment from the tracker (``resource_tracker.unregister``, module-level but undocumented). The
range this is known to work on is ``requires-python`` in pyproject.toml; tests/test_population_files.py
fails loudly if a new Python changes it.
"""

from __future__ import annotations

import sys
from multiprocessing import resource_tracker, shared_memory


def create_for_owner(name: str, size: int) -> shared_memory.SharedMemory:
    """Create segment ``name`` of ``size`` bytes that outlives this process: another one (the owner)
    reads it and unlinks it."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, create=True, size=size, track=False)
    block = shared_memory.SharedMemory(name=name, create=True, size=size)
    # The tracker knows it by the name shm_open was given (with its leading slash).
    resource_tracker.unregister(block._name, "shared_memory")
    return block
