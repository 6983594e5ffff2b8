"""The admin routes of the reference API (open and close waves, stats), behind the admin token.

Owns the admin router and the stats snapshot: one scan of the tables at a time, shared by callers.
"""

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from simulator.api import models as m
from simulator.api.admin_auth import ADMIN_HEADER, AdminToken
from simulator.api.health import BackgroundFaults
from simulator.api.responses import JsonResponse, reply_response
from simulator.api.store import ApiError, Store
from simulator.rules.reasons import Reason

STATS_MAX_AGE_S = 2.0
"""Default age of the stats snapshot an answer may give (``?max_age_s=0`` asks for a fresh one)."""


class StatsSnapshot:
    """``Store.stats`` computed by one caller at a time; callers who waited share its answer.

    On a million accounts a scan takes about a second: eight admins polling at once would
    otherwise run eight scans side by side and slow every applicant's request down.
    """

    def __init__(self, store: Store, flush: Callable[[], None], faults: BackgroundFaults):
        self.store = store
        self.flush = flush
        self.faults = faults
        self._lock = threading.Lock()
        self._taken_at = 0.0  # monotonic start of the scan behind `_body`
        self._body: dict[str, Any] | None = None

    def get(self, max_age_s: float) -> dict[str, Any]:
        """A snapshot begun at most ``max_age_s`` ago (0: begun after this call), with its age."""
        asked = time.monotonic()
        with self._lock:
            fresh_enough = self._body is not None and self._taken_at >= asked - max_age_s
            if not fresh_enough:
                started = time.monotonic()
                try:
                    self.flush()  # this process's outcome counts, so the answer includes them
                    self.faults.succeeded("outcome flush")
                except Exception as err:  # noqa: BLE001 - counted next time; the stats still answer
                    self.faults.failed("outcome flush", err)
                self._body, self._taken_at = self.store.stats(), started
            body, taken_at = self._body, self._taken_at
        return dict(body, snapshot_age_s=round(max(0.0, time.monotonic() - taken_at), 3))


def admin_router(store: Store, token: AdminToken, stats: StatsSnapshot, idempotent) -> APIRouter:  # noqa: ANN001
    """The ``/v1/admin`` routes; each needs ``X-Admin-Token`` (401 ADMIN_UNAUTHORIZED without it)."""
    header = APIKeyHeader(
        name=ADMIN_HEADER,
        auto_error=False,
        description="the admin token: serve --admin-token or PRAKERJA_ADMIN_TOKEN (printed when made)",
    )

    async def require_admin(request: Request, presented: Annotated[str | None, Depends(header)]) -> str:
        if not token.accepts(presented):
            raise ApiError(
                Reason.ADMIN_UNAUTHORIZED,
                f"admin routes need the {ADMIN_HEADER} header with the server's admin token",
                headers={"WWW-Authenticate": ADMIN_HEADER},
            )
        await idempotent(request, "admin")
        return "admin"

    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])
    WaveNumber = Annotated[int, Path(ge=1, le=1_000_000)]

    @router.post("/waves", name="open_wave", status_code=201, responses={201: {"model": m.WaveOut}})
    async def open_wave(body: m.WaveCreate):
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        opens_at = body.opens_at or now
        closes_at = body.closes_at or opens_at + dt.timedelta(seconds=body.duration_s or 4 * 86400)
        if closes_at <= opens_at:
            raise ApiError(Reason.VALIDATION_ERROR, "closes_at must be after opens_at")
        values = {
            "number": body.number,
            "quota": body.quota,
            "mode": body.mode,
            "opens_at": opens_at,
            "closes_at": closes_at,
            "selection_seed": body.selection_seed,
            "province_codes": ",".join(body.province_codes) if body.province_codes else None,
        }
        return reply_response(await run_in_threadpool(store.create_wave, values))

    @router.post("/waves/{wave}/close", name="close_wave", responses={200: {"model": m.WaveOut}})
    async def close_wave(wave: WaveNumber, body: m.WaveClose | None = None):
        return reply_response(await run_in_threadpool(store.close_wave, wave, body.seed if body else None))

    @router.get("/stats", name="stats", response_model=m.Stats)
    async def stats_route(
        max_age_s: Annotated[
            float, Query(ge=0, le=3600, description="oldest snapshot acceptable, seconds; 0 for a fresh one")
        ] = STATS_MAX_AGE_S,
    ):
        return JsonResponse(await run_in_threadpool(stats.get, max_age_s))

    return router
