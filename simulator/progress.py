"""Progress for long work: a bar on an interactive terminal, nothing in pipes, logs or CI.

Library functions take an optional ``progress`` callback ``(done_increment: int) -> None``;
commands build one with :func:`progress_bar`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import click

ProgressCallback = Callable[[int], None]


def _noop(_: int) -> None:
    return None


@contextlib.contextmanager
def progress_bar(total: int | None, label: str, *, enabled: bool | None = None) -> Iterator[ProgressCallback]:
    """Yield an ``advance(n)`` callback that drives a click progress bar on stderr.

    ``enabled=None`` means: show it only when stderr is a terminal.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _noop
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True) as bar:
        yield bar.update
