"""What more than one benchmark measures the same way."""

from __future__ import annotations

import threading

import psutil


class PeakMemory:
    """Samples the memory of a process (this one by default) and all its children from the moment it
    is made until :meth:`stop`; ``peak`` (PSS) and ``peak_rss`` in bytes.

    PSS (proportional set size) is the honest sum: forked workers share their parent's pages, and
    shared-memory blocks or mapped files that carry chunks between processes are mapped by several
    of them, so a sum of RSS counts each such page once per process. Reading PSS walks every
    process's page tables, which costs the measured run CPU: hence the 0.5 s interval.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.5):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            pss = rss = 0
            try:
                tree = [self.process, *self.process.children(recursive=True)]
            except psutil.Error:
                tree = []
            for process in tree:
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue
                pss += getattr(info, "pss", info.rss)
                rss += info.rss
            self.peak = max(self.peak, pss)
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        """Stop sampling; the peak PSS in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak

    def __enter__(self) -> PeakMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
