"""Errors a user can cause. The CLI turns each into one clear line and a non-zero exit.

Library code raises these (never ``SystemExit``); tests catch them by type.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class: something the user can fix. ``str(err)`` is the one line shown to them."""

    exit_code = 2


class InvalidOption(SimulatorError):
    """A command-line option or library argument has a value that cannot work."""


class InvalidInputFile(SimulatorError):
    """A scenario, parameter or population file is missing, unreadable or breaks its schema.

    The message names the file, the key (or row/column) and what was expected.
    """


class UnsafeTarget(SimulatorError):
    """A load or fault test was pointed at a non-loopback host without the explicit opt-in flag."""


class TargetUnavailable(SimulatorError):
    """A host, database or service could not be reached."""

    exit_code = 3
