"""The admin routes of the reference API (open and close waves, stats), behind the admin token.

Owns the admin routes (`add_admin_routes`); the waves' writes are `waves.WaveStore`, the stats
snapshot `stats.StatsSnapshot`.
"""

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from simulator.api import models as m
from simulator.api.admin_auth import ADMIN_HEADER, AdminToken
from simulator.api.responses import ApiError, JsonResponse, reply_response
from simulator.api.stats import STATS_MAX_AGE_S, StatsSnapshot
from simulator.api.waves import WaveNumber, WaveStore
from simulator.rules.reasons import Reason


def add_admin_routes(
    router: APIRouter, waves: WaveStore, token: AdminToken, stats: StatsSnapshot, idempotent
) -> None:
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

    admin = {"tags": ["admin"], "dependencies": [Depends(require_admin)]}

    @router.post(
        "/v1/admin/waves", name="open_wave", status_code=201, responses={201: {"model": m.WaveOut}}, **admin
    )
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
        return reply_response(await run_in_threadpool(waves.create_wave, values))

    @router.post(
        "/v1/admin/waves/{wave}/close", name="close_wave", responses={200: {"model": m.WaveOut}}, **admin
    )
    async def close_wave(wave: WaveNumber, body: m.WaveClose | None = None):
        return reply_response(await run_in_threadpool(waves.close_wave, wave, body.seed if body else None))

    @router.get("/v1/admin/stats", name="stats", response_model=m.Stats, **admin)
    async def stats_route(
        max_age_s: Annotated[
            float, Query(ge=0, le=3600, description="oldest snapshot acceptable, seconds; 0 for a fresh one")
        ] = STATS_MAX_AGE_S,
    ):
        return JsonResponse(await run_in_threadpool(stats.get, max_age_s))
