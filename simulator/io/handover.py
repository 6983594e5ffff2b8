"""Chunks handed from worker processes to their parent: the one mechanism, through shared memory.

Used by the population writer (``simulator.io.population``: encoded chunks from a pool of spawned
workers) and by ``seed-db`` (``simulator.seed.runner.ChunkPrefetch``: generated chunks from one
forked worker). Pickling a chunk through a pipe (tens of MB) costs both processes more CPU than
making it; shared memory costs the worker one write and the parent one read.

A payload (an Arrow table, as an IPC stream, or encoded bytes) travels in a *slot*: a block the
parent creates once (:class:`Slots`) and both sides keep mapped for the whole run, so its pages are
faulted in and zeroed once, not once per chunk (a fresh 50 MB block per chunk cost the workers ~0.5
CPU-s per million people in page faults). A payload that does not fit its slot's room travels in a
block of its own, which the parent unlinks once read.

Every block is named ``psim-<pid>-<random>-...`` after the parent process (``run_name``): what a
killed run leaves in /dev/shm is removed by the next run's sweep (``simulator.io.leftovers``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
from collections.abc import Iterable
from multiprocessing import shared_memory

import pyarrow as pa
import pyarrow.ipc  # pa.ipc

from simulator.io.leftovers import SEGMENT_PREFIX
from simulator.io.segments import create_for_owner

Handle = tuple[str, int, int]
"""Where a payload is: (block name, offset, size)."""

_ALIGN = 64
_ATTACHED: dict[str, shared_memory.SharedMemory] = {}  # a worker's slots, mapped once per process


def run_name() -> str:
    """A name for one parent's blocks: its pid (so a later run can tell it was killed) and a random part."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def _own_block_name(run: str, key: object, name: str) -> str:
    return f"{SEGMENT_PREFIX}{run}-{key}-{name}"


def _write_ipc(sink: pa.NativeFile, table: pa.Table) -> None:
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)


def _size(payload: object) -> int:
    if isinstance(payload, pa.Table):
        measure = pa.MockOutputStream()
        _write_ipc(measure, payload)
        return measure.size()
    return len(memoryview(payload).cast("B"))


def _fill(target: memoryview, payload: object) -> None:
    if isinstance(payload, pa.Table):
        # Written straight into shared memory (one copy); the parent reads it in place.
        buffer = pa.py_buffer(target)
        sink = pa.FixedSizeBufferWriter(buffer)
        _write_ipc(sink, payload)
        sink.close()
        del sink, buffer  # release the exported view
    else:
        view = memoryview(payload).cast("B")  # Arrow buffers export signed bytes
        target[: len(view)] = view


def put(run: str, slot: str, key: object, payloads: dict[str, object]) -> dict[str, Handle]:
    """On a worker: leave each payload (an Arrow table or bytes) in ``slot``, or in a block of its own
    when the slot has no room left; returns where each is, for the parent (:func:`received`)."""
    block = _ATTACHED.get(slot)
    if block is None:
        # Attached, not created: the parent owns the slot and unlinks it.
        block = _ATTACHED[slot] = shared_memory.SharedMemory(name=slot)
    offset = 0
    handles: dict[str, Handle] = {}
    for name, payload in payloads.items():
        size = _size(payload)
        if offset + size <= block.size:
            target = block.buf[offset : offset + size]
            _fill(target, payload)
            target.release()
            handles[name] = (slot, offset, size)
            offset += -(-size // _ALIGN) * _ALIGN
        else:  # bigger than the slot's room: a block of its own, which the parent unlinks
            own = create_for_owner(_own_block_name(run, key, name), max(size, 1))
            target = own.buf[:size]
            _fill(target, payload)
            target.release()
            own.close()
            handles[name] = (own.name, 0, size)
    return handles


class Slots:
    """The parent's slots: ``count`` blocks of ``capacity`` bytes, created at the start of a run and
    unlinked at its end (:meth:`close`). A page costs nothing until a worker writes it."""

    def __init__(self, run: str, count: int, capacity: int):
        self.run = run
        self.blocks: dict[str, shared_memory.SharedMemory] = {}
        self.free: list[str] = []
        try:
            for i in range(count):
                block = shared_memory.SharedMemory(
                    name=f"{SEGMENT_PREFIX}{run}-slot{i}", create=True, size=capacity
                )
                self.blocks[block.name] = block
                self.free.append(block.name)
        except BaseException:
            self.close()
            raise

    def acquire(self) -> str:
        return self.free.pop()

    def release(self, name: str) -> None:
        self.free.append(name)

    def abandon(self, keys: Iterable[object], names: Iterable[str]) -> None:
        """Unlink the blocks of their own that chunks ``keys`` may have left (a run given up half-way)."""
        names = list(names)
        for key in keys:
            for name in names:
                with contextlib.suppress(FileNotFoundError, OSError):
                    block = shared_memory.SharedMemory(name=_own_block_name(self.run, key, name))
                    block.close()
                    block.unlink()

    def close(self) -> None:
        for block in self.blocks.values():
            with contextlib.suppress(BufferError):
                block.close()
            with contextlib.suppress(FileNotFoundError, OSError):
                block.unlink()
        self.blocks.clear()

    def __enter__(self) -> Slots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SharedBytes:
    """A payload a worker left in shared memory: ``with`` it to get a view of its bytes.

    In a slot, the view is released on exit (the slot is reused); in a block of its own, the block
    is unlinked too.
    """

    def __init__(self, slots: Slots, handle: Handle):
        self.name, self.offset, self.size = handle
        self.in_slot = self.name in slots.blocks
        self._slots = slots
        self._block: shared_memory.SharedMemory | None = None
        self._view: memoryview | None = None

    def __enter__(self) -> memoryview:
        if self.in_slot:
            self._block = self._slots.blocks[self.name]
        else:
            self._block = shared_memory.SharedMemory(name=self.name)
        self._view = self._block.buf[self.offset : self.offset + self.size]
        return self._view

    def __exit__(self, *exc: object) -> None:
        assert self._block is not None and self._view is not None
        self._view.release()  # BufferError if anything still points into the slot
        if not self.in_slot:
            self._block.close()
            self.discard()

    def discard(self) -> None:
        """Free a block of its own if it was never read (a run abandoned half-way)."""
        if not self.in_slot and self.name:
            with contextlib.suppress(FileNotFoundError, OSError):
                block = shared_memory.SharedMemory(name=self.name)
                block.close()
                block.unlink()
            self.name = ""


class SharedTable(SharedBytes):
    """A table a worker left in shared memory: ``with`` it to read it in place (zero-copy: drop it
    before the block ends)."""

    def __enter__(self) -> pa.Table:  # type: ignore[override]
        view = super().__enter__()
        with pa.ipc.open_stream(pa.py_buffer(view)) as reader:
            return reader.read_all()  # its buffers point into shared memory

    def __exit__(self, *exc: object) -> None:
        # The caller has dropped the table; collect any reference cycle still exporting the view.
        try:
            super().__exit__(*exc)
        except BufferError:
            gc.collect()
            super().__exit__(*exc)


def received(slots: Slots, handles: dict[str, Handle]) -> dict[str, pa.Table]:
    """On the parent: the tables a worker :func:`put`, copied into this process's own memory (one
    copy, so they may live on after the slot is reused); the blocks are free again on return."""
    tables = {}
    for name, handle in handles.items():
        with SharedBytes(slots, handle) as view:
            own = pa.py_buffer(bytes(view))
        with pa.ipc.open_stream(own) as reader:
            tables[name] = reader.read_all()
    return tables


__all__ = ["Handle", "SharedBytes", "SharedTable", "Slots", "put", "received", "run_name"]
