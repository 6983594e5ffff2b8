"""What a killed run leaves behind, and the one sweep that removes it on the next run: temporary
files beside their targets, ``/dev/shm/psim-*`` segments (the chunk hand-over's, see
:mod:`simulator.io.handover`), semaphores.

Each is named after the process that owns it (pid, and host for files that a shared disk may
show to other machines), so a sweep removes only what belongs to a process that no longer exists.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

SHARED_MEMORY = Path("/dev/shm")
SEGMENT_PREFIX = "psim-"
"""Shared-memory segments of the chunk hand-over (population writer, seed-db): ``psim-<pid>-...``."""
SEMAPHORE_GRACE_S = 60.0
"""A semaphore file no process maps is a leak once it is this old (one just made is mapped at once)."""

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
"""This machine's short name as temporary file names carry it."""
_TEMP_FILE = re.compile(r"^\..+\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[0-9a-f]+\.tmp$")


def temp_prefix(target_name: str) -> str:
    """The start of a temporary file's name for ``target_name``: ``.<name>.<pid>@<host>.``."""
    return f".{target_name}.{os.getpid()}@{HOST}."


def sweep(directory: str | os.PathLike[str] | None = None) -> int:
    """Remove what dead runs left in ``directory``, in /dev/shm and in the temporary directory;
    returns how many entries were removed. Costs a directory listing of each (and /proc's maps
    only when an old semaphore file is found): commands call it once, as they start."""
    places = {str(SHARED_MEMORY), tempfile.gettempdir()}
    if directory is not None:
        places.add(str(Path(directory).resolve()))
    removed = sum(remove_dead_entries(place) for place in places)
    return removed + remove_leaked_semaphores()


def is_dead(pid: int) -> bool:
    """True if no process has this pid (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def dead_owner(name: str) -> bool:
    """Whether ``name`` is one of ours (a temporary file, a shared-memory segment) whose owner
    process is gone."""
    match = _TEMP_FILE.match(name)
    if match:
        return match["host"] == HOST and is_dead(int(match["pid"]))
    pid = name[len(SEGMENT_PREFIX) :].partition("-")[0]
    if name.startswith(SEGMENT_PREFIX) and pid.isdigit():
        return is_dead(int(pid))
    return False


def remove_dead_entries(directory: str | os.PathLike[str]) -> int:
    """Remove the entries of ``directory`` that :func:`dead_owner` says were left by a dead run."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if not dead_owner(entry.name):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)  # for a segment in /dev/shm: what shm_unlink does
                removed += 1
    return removed


def remove_leaked_semaphores(now: float | None = None) -> int:
    """``/dev/shm/sem.mp-*`` of this user that no process has open: left by a killed process pool.

    multiprocessing names its semaphores at random, so the owner cannot be read from the name;
    a live one is always mapped by the processes using it (``/proc/<pid>/maps``).
    """
    try:
        candidates = [
            e
            for e in os.scandir(SHARED_MEMORY)
            if e.name.startswith("sem.mp-") and e.stat(follow_symlinks=False).st_uid == os.getuid()
        ]
    except OSError:
        return 0
    if not candidates:
        return 0
    now = time.time() if now is None else now
    old = [e for e in candidates if now - e.stat(follow_symlinks=False).st_mtime > SEMAPHORE_GRACE_S]
    if not old:
        return 0
    mapped = mapped_shared_memory()
    if mapped is None:
        return 0  # cannot tell which are in use: leave them
    removed = 0
    for entry in old:
        if entry.path not in mapped:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


def mapped_shared_memory() -> set[str] | None:
    """Every /dev/shm file some process of this user maps, from /proc (None without /proc)."""
    proc = Path("/proc")
    if not (proc / "self" / "maps").exists():
        return None
    mapped: set[str] = set()
    marker = f" {SHARED_MEMORY}/"
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    at = line.find(marker)
                    if at >= 0:
                        mapped.add(line[at + 1 :].rstrip("\n").removesuffix(" (deleted)"))
        except OSError:
            continue  # gone meanwhile, or another user's (whose semaphores are not ours)
    return mapped
