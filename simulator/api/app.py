"""The reference registration API (docs/architecture.md 3.2): the app wired from its steps.

`create_app(settings)` builds the ASGI app; `prakerja-sim serve` runs it under uvicorn. This module
only wires: the stores of each step, their routes, the error handlers, the middleware stack and
the background tasks (outcome flush, WAL checkpoint, attempt cleanup, access log). What each module
owns is listed in the package docstring (simulator/api/__init__.py).
"""

import asyncio
import contextlib
import logging
import sys
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator import __version__
from simulator.api import models as m
from simulator.api.access_log import AccessLogBuffer, AccessLogMiddleware, access_logger
from simulator.api.accounts import AccountStore, add_account_routes
from simulator.api.admin import add_admin_routes
from simulator.api.admin_auth import AdminToken, new_admin_token
from simulator.api.auth import Auth, TokenSigner
from simulator.api.body_limits import BodyLimitMiddleware
from simulator.api.health import BackgroundFaults, add_service_routes
from simulator.api.idempotency import (
    IDEMPOTENCY_HEADER,
    IdempotencyMiddleware,
    IdempotentReplay,
    current_idempotency,
    idempotency_dependency,
)
from simulator.api.openapi import document_refusals
from simulator.api.otps import OtpStore, add_sandbox_routes
from simulator.api.phone import PhoneStore, add_phone_routes
from simulator.api.progress import ProgressStore, add_applicant_routes
from simulator.api.registry import RegistryLink
from simulator.api.responses import ApiError, JsonResponse, error_response
from simulator.api.settings import Settings
from simulator.api.signup import LeanSignupMiddleware, Signups
from simulator.api.stats import OutcomeCounter, StatsSnapshot, StatsStore
from simulator.api.store import Store
from simulator.api.uploads import DecodePool, add_upload_routes
from simulator.api.waves import WaveStore, add_wave_routes
from simulator.database.db import checkpoint, make_engine
from simulator.database.schema import create_schema
from simulator.rules.reasons import Reason

error_logger = logging.getLogger("prakerja_sim.api")

THREADPOOL_SIZE = 32
"""Threads per worker for database work and hashing; the connection pool is sized to match."""

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": m.ErrorResponse,
        "description": "Refused: the code says why (simulator/rules/reasons.py)",
    },
}

DESCRIPTION = (
    "The embedded default target of prakerja-sim: the Kartu Prakerja registration flow "
    "(account, email OTP, login, identity against a simulated Dukcapil, profile, phone OTP, "
    "KTP upload, the 18-question test, joining a wave) with its rules and bottlenecks. "
    'Every refusal is `{"error": {"code": REASON, "message": ...}}` with a 4xx status. '
    "POST and PUT accept an `Idempotency-Key` header: the first answer is replayed."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (creating the schema if it is missing)."""
    settings = settings or Settings()
    engine = create_schema(
        make_engine(settings.db_url, pool_size=THREADPOOL_SIZE // 4, background_checkpoints=True)
    )
    store = Store(engine, settings)
    otps = OtpStore(store)
    accounts = AccountStore(store, otps)
    signups = Signups(store, otps, settings.password_cost)  # the sign-up storage path is chosen here
    progress = ProgressStore(store)
    phones = PhoneStore(otps)
    waves = WaveStore(store)
    stats_store = StatsStore(store)
    upstream_registry = None
    if settings.registry_url:
        from simulator.upstreams.client import RegistryClient

        upstream_registry = RegistryClient(settings.registry_url)
    counter = OutcomeCounter(stats_store)
    access_log = AccessLogBuffer()
    faults = BackgroundFaults()
    idempotent = idempotency_dependency(store.idempotency)
    auth = Auth(TokenSigner(store.token_secret(), settings.token_ttl_s), idempotent)
    admin_token = AdminToken(settings.admin_token or new_admin_token())  # none given: nobody is admin

    async def background(kind: str, work, *args) -> None:
        try:
            await run_in_threadpool(work, *args)
        except Exception as err:  # nobody waits for it: recorded, logged, shown in /healthz
            faults.failed(kind, err)
        else:
            faults.succeeded(kind)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        async def flush_forever():
            ticks = 0
            while True:
                await asyncio.sleep(1.0)
                ticks += 1
                await background("outcome flush", counter.flush)
                # SQLite: the WAL is copied back here, not in commits (auto-checkpoints are off,
                # so a checkpoint that keeps failing would grow the WAL without bound: shown).
                await background("wal checkpoint", checkpoint, engine)
                if ticks % 60 == 0:
                    await background("attempt cleanup", accounts.forget_old_attempts)

        async def flush_log_forever():
            while True:
                await asyncio.sleep(access_log.interval_s)
                access_log.flush()

        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADPOOL_SIZE
        tasks = [asyncio.create_task(flush_forever()), asyncio.create_task(flush_log_forever())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            access_log.flush()
            await background("outcome flush", counter.flush)
            engine.dispose()

    app = FastAPI(
        title="prakerja-sim reference registration API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JsonResponse,
        responses=ERROR_RESPONSES,
    )
    app.state.store = store
    app.state.settings = settings
    _install_error_handlers(app)

    # Each step adds its routes to the app's own APIRouter: FastAPI 0.165 matches an included
    # router's routes through an extra layer per request (about 10 us of CPU on /healthz).
    stats = StatsSnapshot(stats_store, counter.flush, faults)
    router = app.router
    add_service_routes(router, faults, engine.dialect.name)
    add_account_routes(router, accounts, signups, auth)
    add_applicant_routes(router, progress, auth, RegistryLink(settings), upstream_registry)
    add_phone_routes(router, phones, progress, auth)
    add_upload_routes(router, store, progress, auth, DecodePool(settings.image_decoders))
    add_wave_routes(router, waves, progress, auth)
    add_admin_routes(router, waves, admin_token, stats, idempotent)
    add_sandbox_routes(router, otps, settings.sandbox)

    def openapi() -> dict[str, Any]:
        # The Idempotency-Key header is read by middleware, so FastAPI cannot see it: add it.
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            document_refusals(schema, app.routes)
            for path_item in schema["paths"].values():
                for method in ("post", "put"):
                    if method in path_item:
                        path_item[method].setdefault("parameters", []).append(IDEMPOTENCY_HEADER)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    signup_route = next(r for r in app.routes if getattr(r, "name", None) == "create_account")
    # Outermost last: access log -> body limits -> idempotency -> lean sign-up -> the routes.
    app.add_middleware(LeanSignupMiddleware, signups=signups, route=signup_route)
    app.add_middleware(IdempotencyMiddleware, records=store.idempotency)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(AccessLogMiddleware, counter=counter, log=access_log if settings.access_log else None)
    return app


def _mark(request: Request, code: str) -> None:
    request.scope.setdefault("state", {})["error_code"] = code


def _install_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"error": {"code", "message"}}``; a bug as one 500 INTERNAL_ERROR, logged."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        _mark(request, str(err.reason))
        return error_response(err.reason, err.message, err.status, err.headers)

    @app.exception_handler(IdempotentReplay)
    async def _replay(request: Request, replay: IdempotentReplay):
        holder = current_idempotency.get()
        if holder is not None:
            holder.stored = True
        return Response(
            replay.body,
            status_code=replay.status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        _mark(request, Reason.VALIDATION_ERROR)
        details = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in err.errors()[:10]
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'][1:] or first['loc']) or 'request'}: {first['msg']}"
        return error_response(Reason.VALIDATION_ERROR, message, 422, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        reason = {
            404: Reason.NOT_FOUND,
            405: Reason.METHOD_NOT_ALLOWED,
            401: Reason.UNAUTHENTICATED,
            403: Reason.UNAUTHENTICATED,
        }.get(err.status_code, Reason.VALIDATION_ERROR)
        # Anything else the framework refuses (a body it cannot parse: 400) is a VALIDATION_ERROR,
        # answered 422 like every other one, so the OpenAPI document's statuses stay complete.
        status = err.status_code if reason is not Reason.VALIDATION_ERROR else 422
        message = str(err.detail) if status != 422 else f"the request cannot be read ({err.detail})"
        _mark(request, str(reason))
        return error_response(reason, message, status, getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception):
        error_logger.exception("unhandled error on %s %s", request.method, request.url.path)
        _mark(request, Reason.INTERNAL_ERROR)
        return error_response(
            Reason.INTERNAL_ERROR, f"internal error ({type(err).__name__}); this is a bug", 500
        )


def create_app_from_env() -> FastAPI:
    """uvicorn factory for worker processes: settings come from ``PRAKERJA_API_SETTINGS``."""
    _configure_logging()
    return create_app(Settings.from_env())


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.handlers[:] = [handler]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False
