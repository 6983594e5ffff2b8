"""Background failures of the reference API (outcome flush, WAL checkpoint) and what /healthz says of them.

Each kind of failure is logged once (and again when it comes back after a success); /healthz lists them all.
Owns `BackgroundFaults` and the service routes (``GET /healthz``, and ``GET /hello``, the bare-stack
baseline of benchmarks/bench_api.py).
"""

import datetime as dt
import logging
import os
import threading
from typing import Any

from fastapi import APIRouter

from simulator.api import models as m
from simulator.api.responses import JsonResponse
from simulator.database.schema import SCHEMA_VERSION

error_logger = logging.getLogger("prakerja_sim.api")

RECENT_S = 60.0
"""A failure this recent makes /healthz answer ``degraded`` instead of ``ok``."""


class BackgroundFaults:
    """Failures of work nobody waits for, by kind: counted, logged once per run of failures, shown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, dict[str, Any]] = {}
        self._failing: set[str] = set()

    def failed(self, kind: str, err: BaseException) -> None:
        """Record a failure of ``kind``; the first of a run is logged with its traceback."""
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            fault = self._faults.setdefault(kind, {"count": 0})
            fault.update(count=fault["count"] + 1, last_error=f"{type(err).__name__}: {err}"[:300], at=now)
            first = kind not in self._failing
            self._failing.add(kind)
        if first:
            error_logger.error(
                "background %s failed (logged once until it succeeds again)", kind, exc_info=err
            )

    def succeeded(self, kind: str) -> None:
        if kind in self._failing:
            with self._lock:
                self._failing.discard(kind)
            error_logger.warning("background %s works again", kind)

    def report(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", "faults": {kind: {count, last_error, at, failing}}}``."""
        if not self._faults:  # the usual case, on every /healthz: nothing to lock or format
            return {"status": "ok", "faults": {}}
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            faults = {
                kind: {
                    "count": f["count"],
                    "last_error": f["last_error"],
                    "at": f["at"].isoformat(timespec="seconds").replace("+00:00", "Z"),
                    "failing": kind in self._failing,
                }
                for kind, f in self._faults.items()
            }
            recent = any(
                kind in self._failing or (now - f["at"]).total_seconds() < RECENT_S
                for kind, f in self._faults.items()
            )
        return {"status": "degraded" if recent else "ok", "faults": faults}


def add_service_routes(router: APIRouter, faults: BackgroundFaults, database: str) -> None:
    """``GET /healthz`` and ``GET /hello``."""

    @router.get("/healthz", tags=["service"], name="healthz", response_model=m.Health)
    async def healthz():
        return JsonResponse(
            {
                **faults.report(),
                "database": database,
                "schema_version": SCHEMA_VERSION,
                "worker_pid": os.getpid(),
            }
        )

    @router.get("/hello", tags=["service"], name="hello", include_in_schema=False)
    async def hello():
        # The bare-stack baseline of benchmarks/bench_api.py: routing + JSON, no database.
        return JsonResponse(b'{"hello":"world"}')
