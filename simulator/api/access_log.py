"""The access log (one JSON line per request, written in batches) and the outcome count of each answer.

Owns `AccessLogBuffer` and `AccessLogMiddleware`, the outermost middleware: it sees every answer,
the lean sign-up path's and the refusals of the body limits included.
"""

import datetime as dt
import logging
import os
import time

import orjson

from simulator.api.stats import OutcomeCounter
from simulator.rules.reasons import ACCEPT

access_logger = logging.getLogger("prakerja_sim.api.access")

UNCOUNTED_PATHS = frozenset(("/healthz", "/v1/admin/stats", "/v1/sandbox/outbox", "/hello"))
"""Paths whose answers are not outcomes of a registration step."""


class AccessLogBuffer:
    """Access-log lines collected and written together: one write per batch, not per request.

    Flushed when ``capacity`` lines wait, every ``interval_s`` by the app's lifespan task, and at
    shutdown; a worker killed with SIGKILL loses at most its last interval of log lines.
    """

    def __init__(self, capacity: int = 256, interval_s: float = 0.2):
        self.lines: list[str] = []
        self.capacity = capacity
        self.interval_s = interval_s

    def add(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= self.capacity:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            lines, self.lines = self.lines, []
            access_logger.info("\n".join(lines))


class AccessLogMiddleware:
    """One JSON line per request on stderr (buffered), and the outcome count per step."""

    def __init__(self, app, counter: OutcomeCounter, log: AccessLogBuffer | None):
        self.app = app
        self.counter = counter
        self.log = log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status_holder = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                # Counted before the answer leaves, so a client that reads /v1/admin/stats right
                # after its own response always finds it counted.
                self._count(scope, state, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if self.log is not None:
                status = status_holder[0]
                self.log.add(
                    orjson.dumps(
                        {
                            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                            "pid": os.getpid(),
                            "method": scope["method"],
                            "path": scope["path"],
                            "route": getattr(scope.get("route"), "name", None) or "unrouted",
                            "status": status,
                            "outcome": ACCEPT if status < 400 else state.get("error_code", str(status)),
                            "ms": round((time.perf_counter() - started) * 1000, 2),
                            "client": (scope.get("client") or ("", 0))[0],
                        }
                    ).decode()
                )

    def _count(self, scope, state: dict, status: int) -> None:
        if scope["path"] in UNCOUNTED_PATHS:
            return
        step = getattr(scope.get("route"), "name", None) or "unrouted"
        self.counter.add(step, ACCEPT if status < 400 else state.get("error_code", str(status)))
