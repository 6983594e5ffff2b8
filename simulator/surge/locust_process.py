"""The Locust child of a surge: started in its own process group, stopped in order, never left behind.

Owns what Ctrl-C, SIGTERM and SIGHUP do to a run: the first one asks Locust to stop (it then writes
what was measured), a second one, or Locust not ending in time, kills its whole process group.

Locust runs in a session of its own, so a terminal's Ctrl-C reaches only this process, which
decides; Locust's local workers (``--processes``) share Locust's group, so one ``killpg`` ends all
of them. Locust's master watches this process too (``PARENT_ENV``): if it dies without a word
(``kill -9``), the master stops the run itself rather than loading the target for minutes.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from types import FrameType

from simulator.errors import SimulatorError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PARENT_ENV = "PRAKERJA_SURGE_PARENT"
"""The pid of the process that started Locust; the Locust master stops when it is gone."""
STOP_GRACE_S = 60.0
"""After the first stop signal, Locust gets this long to collect and write its measurements."""
POLL_S = 0.2


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class RunInterrupted(SimulatorError):
    """A stop signal arrived while no Locust was running (before the load, or while reporting)."""

    def __init__(self, signum: int, what: str):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted ({signal_name(signum)}) {what}")


class StopSignals:
    """While active, Ctrl-C / SIGTERM / SIGHUP stop the run in order instead of killing this process.

    Before Locust runs, a signal raises :class:`RunInterrupted` (whatever was being prepared is
    unwound: a demo's API server stops too). While Locust runs, the first signal is forwarded to it
    as SIGTERM and one line says so; a second one kills Locust's process group at once.
    """

    def __init__(self, say: Callable[[str], None], *, whole_group: bool = False):
        self.say = say
        self.whole_group = whole_group  # workers: each stops itself; a master stops its workers
        self.received: int | None = None
        self.locust: subprocess.Popen | None = None
        self.load_sent = False
        self.after_load = "while writing the report"  # the runner says where the raw results are
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if self.locust is None:
            raise RunInterrupted(signum, self.after_load if self.load_sent else "before any load was sent")
        if first:
            self.say(
                f"surge: {signal_name(signum)}: stopping every load generator and writing the report "
                "of what was measured (again to stop at once)"
            )
            with contextlib.suppress(ProcessLookupError, PermissionError):
                # The surge's Locust processes take SIGTERM as Ctrl-C (controller.install).
                if self.whole_group:
                    os.killpg(self.locust.pid, signal.SIGTERM)
                else:
                    self.locust.send_signal(signal.SIGTERM)
        else:
            kill_group(self.locust)

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number (the shell's convention), or None when no signal came."""
        return None if self.received is None else 128 + self.received


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL every process left in ``process``'s group (it leads the group: see :func:`run_locust`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def run_locust(cmd: list[str], stops: StopSignals) -> int:
    """Run Locust in its own process group until it ends; leave no process of that group alive.

    Returns Locust's exit code. The group is killed while Locust's master is still a zombie (it is
    reaped last), so its process group id cannot have been reused by an unrelated process.
    """
    env = dict(os.environ)
    env[PARENT_ENV] = str(os.getpid())
    process = subprocess.Popen(cmd, env=env, start_new_session=True)
    stops.locust, stops.load_sent = process, True
    try:
        stop_deadline: float | None = None
        while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is None:
            if stops.received is not None and stop_deadline is None:
                stop_deadline = time.monotonic() + STOP_GRACE_S
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                stops.say(f"surge: Locust did not stop within {STOP_GRACE_S:.0f} s: killing it")
                kill_group(process)
                stop_deadline = math.inf
            time.sleep(POLL_S)
    finally:
        kill_group(process)  # local workers, or all of it when this process is being unwound
        code = process.wait()
        stops.locust = None
    return code
