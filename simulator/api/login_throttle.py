"""Login throttling per client address, in this worker's memory (per account it is in the database).

A client that fails too many logins in a window gets 429 LOGIN_THROTTLED with Retry-After until it ends.
"""

from __future__ import annotations

import threading
import time

MAX_CLIENTS_TRACKED = 100_000
"""Addresses remembered at most; past that the oldest windows are forgotten first."""


class ClientThrottle:
    """Failed logins per client address in fixed windows of ``window_s`` seconds.

    Only failures count, so a crowd behind one address (a campus NAT, a load generator) that
    logs in with the right passwords is never slowed; ``limit`` is per worker process.
    """

    def __init__(self, limit: int, window_s: float):
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[float, int]] = {}  # address -> (window start, failures)

    def _window(self, now: float) -> float:
        return now - now % self.window_s

    def locked(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        now = time.time()
        start, failures = self._failures.get(client, (0.0, 0))
        if start == self._window(now) and failures >= self.limit:
            return max(1, int(start + self.window_s - now + 0.999))
        return None

    def failed(self, client: str) -> None:
        now = time.time()
        window = self._window(now)
        with self._lock:
            start, failures = self._failures.get(client, (window, 0))
            self._failures[client] = (window, failures + 1 if start == window else 1)
            if len(self._failures) > MAX_CLIENTS_TRACKED:
                for old in [c for c, (s, _) in self._failures.items() if s != window]:
                    del self._failures[old]
                if len(self._failures) > MAX_CLIENTS_TRACKED:  # all in this window: forget half
                    for old in list(self._failures)[: MAX_CLIENTS_TRACKED // 2]:
                        del self._failures[old]
