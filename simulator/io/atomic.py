"""Atomic file writes, the one way the project writes a file: a temporary file beside the target,
fsync, rename. A reader never sees a half-written file; an interrupted write leaves the old one.

The temporary file is named after its owner (:func:`simulator.io.leftovers.temp_prefix`), so the
next run can remove what a killed one left.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from simulator.io.leftovers import temp_prefix

PRIVATE_MODE = 0o600
"""For files only their owner may read (plain passwords)."""
USUAL_MODE = 0o666
"""What ``open()`` asks for: the user's umask then takes its bits away, as for any other file."""


class AtomicFile:
    """A file written under a temporary name beside ``path``; :meth:`commit` renames it over ``path``.

    Several may be committed together (a population's tables), so committing is not tied to a
    ``with`` block; used as one, a clean exit commits and an exception aborts.
    ``private``: the file is 0600 whatever the umask. ``fsync=False`` skips the data and directory
    syncs, for sets of many small files that something written last (and synced) marks complete.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str = "wb",
        encoding: str | None = None,
        *,
        private: bool = False,
        fsync: bool = True,
    ):
        self.target = Path(path)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        prefix = temp_prefix(self.target.name)
        while True:
            tmp = self.target.parent / f"{prefix}{secrets.token_hex(4)}.tmp"
            try:
                # The kernel applies the umask to USUAL_MODE, as for any file the user creates.
                fd = os.open(
                    tmp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                    PRIVATE_MODE if private else USUAL_MODE,
                )
                break
            except FileExistsError:
                continue
        self.tmp = tmp
        self.handle: IO = os.fdopen(fd, mode, encoding=None if "b" in mode else (encoding or "utf-8"))

    def write(self, data: bytes | str | memoryview) -> int:
        return self.handle.write(data)

    def commit(self) -> None:
        """Make the file whole on disk, then put it in place of the target."""
        self.handle.flush()
        if self.fsync:
            os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.target)
        if self.fsync:
            fsync_directory(self.target.parent)

    def abort(self) -> None:
        """Drop the temporary file; the target stays as it was."""
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "wb",
    encoding: str | None = None,
    *,
    private: bool = False,
    fsync: bool = True,
) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    with AtomicFile(path, mode, encoding, private=private, fsync=fsync) as file:
        yield file.handle


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    with atomic_write(path, "wb", fsync=fsync) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def fsync_directory(directory: Path) -> None:
    """Make a rename or an unlink in ``directory`` durable (its entry is on disk once this returns)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
