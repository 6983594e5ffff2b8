"""The reference registration API (docs/architecture.md 3.2): the app, applicant routes, errors, access log.

`create_app(settings)` builds the ASGI app; `prakerja-sim serve` runs it under uvicorn. Admin routes,
idempotency, body limits, uploads, throttling and health each live in their own module beside this one.
"""

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import sys
import threading
import time
from collections import Counter
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator import __version__
from simulator.api import models as m
from simulator.api.admin import StatsSnapshot, admin_router
from simulator.api.admin_auth import AdminToken, new_admin_token
from simulator.api.body_limits import BodyLimitMiddleware
from simulator.api.health import BackgroundFaults
from simulator.api.idempotency import IDEMPOTENCY_HEADER, IdempotencyMiddleware, idempotency_dependency
from simulator.api.login_throttle import ClientThrottle
from simulator.api.openapi import document_refusals
from simulator.api.registry import RegistryLink, RegistryUnavailable
from simulator.api.responses import JsonResponse, error_response, reply_response
from simulator.api.settings import Settings
from simulator.api.signup import LeanSignupMiddleware, SignupBatcher, check_signup
from simulator.api.store import ApiError, IdempotentReplay, Reply, Store, current_idempotency, worker_name
from simulator.api.uploads import DecodePool, read_upload
from simulator.database.db import checkpoint, make_engine
from simulator.database.passwords import hash_password, verify_password
from simulator.database.schema import SCHEMA_VERSION, create_schema
from simulator.rules.eligibility import resident_eligibility
from simulator.rules.nik import NikError, parse_kk, parse_nik
from simulator.rules.reasons import ACCEPT, Reason

access_logger = logging.getLogger("prakerja_sim.api.access")
error_logger = logging.getLogger("prakerja_sim.api")

THREADPOOL_SIZE = 32
"""Threads per worker for database work and hashing; the connection pool is sized to match."""

TEST_ANSWER_KEY = "BCADDBACBDCABDACBD"
"""Which answer scores each of the 18 questions (the test ranks, it never refuses anyone)."""

PHONE_RE = re.compile(r"^08[1-9][0-9]{7,10}$")
"""Indonesian mobile: 08xx, 10-13 digits with the leading 0 (docs/domain.md)."""

AccountIdPath = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[\x21-\x7e]+$")]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": m.ErrorResponse,
        "description": "Refused: the code says why (simulator/rules/reasons.py)",
    },
}


# --- tokens ----------------------------------------------------------------------------------------


class TokenSigner:
    """Stateless bearer tokens: ``account_id.expiry.hmac``; no session row to write at login."""

    def __init__(self, secret: bytes, ttl_s: float):
        self.secret = secret
        self.ttl_s = int(ttl_s)

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()[:20]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, account_id: str) -> str:
        payload = f"{account_id}.{int(time.time()) + self.ttl_s}"
        return f"{payload}.{self._mac(payload)}"

    def account_of(self, token: str) -> str | None:
        account_id, _, rest = token.partition(".")
        expiry, _, mac = rest.partition(".")
        if not (account_id and expiry.isdigit() and mac):
            return None
        if not hmac.compare_digest(mac, self._mac(f"{account_id}.{expiry}")):
            return None
        return account_id if int(expiry) > time.time() else None


# --- middleware: access log, outcome counts, idempotency ---------------------------------------------


class OutcomeCounter:
    """Answers per (step, outcome) in this process, added to the database about once a second."""

    def __init__(self, store: Store):
        self.store = store
        self.worker = worker_name()
        self.counts: Counter[tuple[str, str]] = Counter()
        # One flush at a time: a flush (GET /v1/admin/stats) that starts while the periodic one is
        # still writing waits for it, so the stats it reads include every count taken so far.
        self._flushing = threading.Lock()
        # `add` runs on the event loop, `flush` in the thread pool: the swap and the counting
        # must not interleave (a count added between reading and replacing would be lost).
        self._counting = threading.Lock()

    def add(self, step: str, outcome: str) -> None:
        with self._counting:
            self.counts[(step, outcome)] += 1

    def flush(self) -> None:
        with self._flushing:
            with self._counting:
                counts, self.counts = self.counts, Counter()
            try:
                self.store.flush_outcomes(self.worker, dict(counts))
            except Exception:  # the database is busy or gone: keep the counts for the next flush
                with self._counting:
                    self.counts.update(counts)
                raise


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

    def __init__(self, app, counter: OutcomeCounter, log: AccessLogBuffer | None):  # noqa: ANN001
        self.app = app
        self.counter = counter
        self.log = log

    async def __call__(self, scope, receive, send):  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        status_holder = [500]

        async def send_wrapper(message):  # noqa: ANN001
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

    def _count(self, scope, state: dict, status: int) -> None:  # noqa: ANN001
        if scope["path"] in ("/healthz", "/v1/admin/stats", "/v1/sandbox/outbox", "/hello"):
            return
        step = getattr(scope.get("route"), "name", None) or "unrouted"
        self.counter.add(step, ACCEPT if status < 400 else state.get("error_code", str(status)))


# --- the app -----------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (creating the schema if it is missing)."""
    settings = settings or Settings()
    engine = create_schema(
        make_engine(settings.db_url, pool_size=THREADPOOL_SIZE // 4, background_checkpoints=True)
    )
    store = Store(engine, settings)
    registry = RegistryLink(settings)
    upstream_registry = None
    if settings.registry_url:
        from simulator.upstreams.client import RegistryClient

        upstream_registry = RegistryClient(settings.registry_url)
    counter = OutcomeCounter(store)
    access_log = AccessLogBuffer()
    signer = TokenSigner(store.token_secret(), settings.token_ttl_s)
    faults = BackgroundFaults()
    idempotent = idempotency_dependency(store)
    admin_token = AdminToken(settings.admin_token or new_admin_token())  # none given: nobody is admin
    client_throttle = ClientThrottle(settings.login_failures_per_client, settings.login_window_s)
    dummy_hash = hash_password("not-a-password", settings.password_cost)
    decoders = DecodePool(settings.image_decoders)

    async def background(kind: str, work, *args) -> None:  # noqa: ANN001
        try:
            await run_in_threadpool(work, *args)
        except Exception as err:  # noqa: BLE001 - nobody waits for it: recorded, logged, shown in /healthz
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
                    await background("attempt cleanup", store.forget_old_attempts)

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
        description=(
            "The embedded default target of prakerja-sim: the Kartu Prakerja registration flow "
            "(account, email OTP, login, identity against a simulated Dukcapil, profile, phone OTP, "
            "KTP upload, the 18-question test, joining a wave) with its rules and bottlenecks. "
            'Every refusal is `{"error": {"code": REASON, "message": ...}}` with a 4xx status. '
            "POST and PUT accept an `Idempotency-Key` header: the first answer is replayed."
        ),
        lifespan=lifespan,
        default_response_class=JsonResponse,
        responses=ERROR_RESPONSES,
    )
    app.state.store = store
    app.state.settings = settings

    # --- errors --------------------------------------------------------------------------------

    def _mark(request: Request, code: str) -> None:
        request.scope.setdefault("state", {})["error_code"] = code

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

    # --- auth ----------------------------------------------------------------------------------

    bearer = HTTPBearer(auto_error=False, description="token from POST /v1/sessions")

    async def current_account(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiError(
                Reason.UNAUTHENTICATED,
                "log in first: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        account_id = signer.account_of(credentials.credentials)
        if account_id is None:
            raise ApiError(
                Reason.UNAUTHENTICATED,
                "the token is invalid or expired; log in again",
                headers={"WWW-Authenticate": "Bearer"},
            )
        await idempotent(request, account_id)
        return account_id

    Account = Annotated[str, Depends(current_account)]

    async def anonymous_caller(request: Request) -> str:
        # Routes before login: each client address has its own key space.
        caller = f"anonymous@{(request.scope.get('client') or ('', 0))[0]}"
        await idempotent(request, caller)
        return caller

    Anonymous = Depends(anonymous_caller)

    async def progress_of(account_id: str) -> dict[str, Any]:
        return await run_in_threadpool(store.progress, account_id)

    # --- service -------------------------------------------------------------------------------

    @app.get("/healthz", name="healthz", response_model=m.Health, tags=["service"])
    async def healthz():
        return JsonResponse(
            {
                **faults.report(),
                "database": engine.dialect.name,
                "schema_version": SCHEMA_VERSION,
                "worker_pid": os.getpid(),
            }
        )

    @app.get("/hello", name="hello", tags=["service"], include_in_schema=False)
    async def hello():
        # The bare-stack baseline of benchmarks/bench_api.py: routing + JSON, no database.
        return JsonResponse(b'{"hello":"world"}')

    # --- accounts and sessions ------------------------------------------------------------------

    @app.post(
        "/v1/accounts",
        name="create_account",
        status_code=201,
        tags=["accounts"],
        responses={201: {"model": m.AccountOut}},
        dependencies=[Anonymous],
    )
    async def create_account(body: m.AccountCreate):
        # Plain requests without an Idempotency-Key are answered by LeanSignupMiddleware with
        # the same rules (signup.check_signup); this route serves the rest.
        email = check_signup(body.email, body.password, body.password_confirmation)

        # One trip to the threadpool for hashing and the insert (each hop costs a thread wake-up).
        def sign_up() -> Reply:
            return store.create_account(
                body.name, email, hash_password(body.password, settings.password_cost)
            )

        return reply_response(await run_in_threadpool(sign_up))

    @app.post(
        "/v1/accounts/{account_id}/email/verify",
        name="verify_email",
        tags=["accounts"],
        responses={200: {"model": m.EmailVerified}},
        dependencies=[Anonymous],
    )
    async def verify_email(account_id: AccountIdPath, body: m.OtpCode):
        return reply_response(await run_in_threadpool(store.verify_email, account_id, body.code))

    @app.post(
        "/v1/accounts/{account_id}/email/resend",
        name="resend_email",
        status_code=202,
        tags=["accounts"],
        responses={202: {"model": m.Resent}, 200: {"model": m.Resent}},
        dependencies=[Anonymous],
    )
    async def resend_email(account_id: AccountIdPath):
        return reply_response(await run_in_threadpool(store.resend_email, account_id))

    @app.post(
        "/v1/sessions",
        name="login",
        status_code=201,
        tags=["accounts"],
        responses={201: {"model": m.SessionOut}},
    )
    async def login(request: Request, body: m.SessionCreate, caller: Annotated[str, Anonymous]):
        email = body.email.lower()
        client = caller.partition("@")[2]
        wait = client_throttle.locked(client)
        if wait is None:
            wait = await run_in_threadpool(store.login_locked, email)
        if wait is not None:
            raise ApiError(
                Reason.LOGIN_THROTTLED,
                f"too many failed logins; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        row = await run_in_threadpool(store.login_row, email)
        # An unknown email costs the same hash as a known one: the answer time tells nothing.
        stored_hash = row.password_hash if row is not None else dummy_hash
        ok = await run_in_threadpool(verify_password, stored_hash, body.password)
        if not ok or row is None:
            client_throttle.failed(client)
            await run_in_threadpool(store.login_failed, email)
            raise ApiError(Reason.BAD_CREDENTIALS, "wrong email or password")
        if row.email_verified_at is None:
            raise ApiError(Reason.STEP_INCOMPLETE, "confirm your email first (the code we sent)")
        return JsonResponse(
            {
                "token": signer.issue(row.id),
                "token_type": "bearer",
                "account_id": row.id,
                "expires_in": signer.ttl_s,
            },
            status_code=201,
        )

    @app.get("/v1/me", name="me", response_model=m.MeOut, tags=["applicant"])
    async def me(account_id: Account):
        return await progress_of(account_id)

    # --- identity, profile, phone ---------------------------------------------------------------

    @app.put(
        "/v1/me/identity", name="identity", tags=["applicant"], responses={200: {"model": m.IdentityOut}}
    )
    async def identity(body: m.IdentityBody, account_id: Account):
        progress = await progress_of(account_id)
        store.require(progress, "email_verified")
        try:
            nik_info = parse_nik(body.nik)
            parse_kk(body.kk)
        except NikError as err:
            raise ApiError(Reason.NIK_MALFORMED, err.message) from None
        try:
            if upstream_registry is not None:  # serve --registry-url: a registry service of its own
                resident = await upstream_registry.resident(nik_info.nik, body.kk, body.birth_date)
            else:
                await registry.call()
                resident = await run_in_threadpool(store.resident, nik_info.nik)
        except RegistryUnavailable as err:
            raise ApiError(Reason.REGISTRY_UNAVAILABLE, str(err), headers={"Retry-After": "5"}) from None
        if resident is None:
            raise ApiError(Reason.NIK_NOT_FOUND, "the registry (Dukcapil) has no person with this NIK")
        if resident.kk != body.kk:
            raise ApiError(Reason.NIK_KK_MISMATCH, "this KK number is not the family card of this NIK")
        if resident.birth_date != body.birth_date:
            raise ApiError(Reason.NIK_BIRTHDATE_MISMATCH, "the birth date differs from the registry's")
        kk_recipients = await run_in_threadpool(store.kk_recipients, resident.kk, resident.nik) + getattr(
            resident, "kk_recipients", 0  # the upstream registry's count of the family card's recipients
        )
        refusal = resident_eligibility(
            resident._mapping, kk_recipients=kk_recipients, on=settings.reference_date
        )
        if refusal is not None:
            raise ApiError(refusal, _ELIGIBILITY_MESSAGES.get(refusal, "not eligible for the program"))
        return reply_response(
            await run_in_threadpool(
                store.save_identity, account_id, resident.nik, resident.kk, resident.birth_date
            )
        )

    @app.put("/v1/me/profile", name="profile", tags=["applicant"], responses={200: {"model": m.ProfileOut}})
    async def profile(body: m.ProfileBody, account_id: Account):
        store.require(await progress_of(account_id), "identity_verified")
        return reply_response(await run_in_threadpool(store.save_profile, account_id, body.model_dump()))

    @app.post(
        "/v1/me/phone",
        name="phone",
        status_code=202,
        tags=["applicant"],
        responses={202: {"model": m.PhoneOut}, 200: {"model": m.PhoneOut}},
    )
    async def phone(body: m.PhoneBody, account_id: Account):
        number = normalize_phone(body.phone)
        store.require(await progress_of(account_id), "identity_verified")
        return reply_response(await run_in_threadpool(store.set_phone, account_id, number))

    @app.post(
        "/v1/me/phone/verify", name="verify_phone", tags=["applicant"], responses={200: {"model": m.PhoneOut}}
    )
    async def verify_phone(body: m.OtpCode, account_id: Account):
        return reply_response(await run_in_threadpool(store.verify_phone, account_id, body.code))

    # --- KTP upload -----------------------------------------------------------------------------

    @app.post(
        "/v1/me/ktp",
        name="ktp",
        status_code=201,
        tags=["applicant"],
        responses={201: {"model": m.KtpOut}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "JPG/JPEG or PNG photo of the KTP, at most 2 MB",
                                }
                            },
                        }
                    }
                },
            }
        },
    )
    async def upload_ktp(request: Request, account_id: Account):
        store.require(await progress_of(account_id), "identity_verified")
        data, filename, content_type = await read_upload(request)
        verdict = await decoders.validate(data, filename)
        record = {
            "verdict": verdict.verdict,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "width": verdict.width,
            "height": verdict.height,
        }
        if verdict.accepted:
            reply = Reply(
                201,
                {
                    "verdict": ACCEPT,
                    "message": verdict.message or "accepted",
                    "format": verdict.format,
                    "width": verdict.width,
                    "height": verdict.height,
                    "size_bytes": len(data),
                    "sha256": record["sha256"],
                },
            )
        else:
            _mark(request, str(verdict.reason))
            reply = Reply(
                verdict.reason.http_status,
                {"error": {"code": str(verdict.reason), "message": verdict.message}},
            )
        reply = await run_in_threadpool(store.record_ktp, account_id, record, reply)
        if reply.status >= 400:
            reply.body.pop("upload_id", None)
        return reply_response(reply)

    # --- test and waves -------------------------------------------------------------------------

    @app.post("/v1/me/test", name="test", tags=["applicant"], responses={200: {"model": m.TestOut}})
    async def take_test(body: m.TestAnswers, account_id: Account):
        store.require(await progress_of(account_id), "identity_verified")
        answers = "".join(body.answers)
        score = sum(a == k for a, k in zip(answers, TEST_ANSWER_KEY, strict=True))
        return reply_response(await run_in_threadpool(store.save_test, account_id, answers, score))

    @app.post(
        "/v1/waves/{wave}/join",
        name="join_wave",
        status_code=201,
        tags=["waves"],
        responses={201: {"model": m.JoinOut}},
    )
    async def join_wave(wave: Annotated[int, Path(ge=1, le=1_000_000)], account_id: Account):
        progress = await progress_of(account_id)
        if progress["recipient"] is not None:
            raise ApiError(
                Reason.ALREADY_RECIPIENT, f"already selected in wave {progress['recipient']['wave']}"
            )
        store.require(
            progress,
            "email_verified",
            "identity_verified",
            "profile_completed",
            "phone_verified",
            "ktp_accepted",
            "test_completed",
        )
        return reply_response(
            await run_in_threadpool(store.join_wave, account_id, wave, progress["province_code"])
        )

    @app.get("/v1/waves/{wave}", name="wave_status", response_model=m.WaveOut, tags=["waves"])
    async def wave_status(wave: Annotated[int, Path(ge=1, le=1_000_000)]):
        return await run_in_threadpool(store.wave_status, wave)

    # --- admin ----------------------------------------------------------------------------------

    stats = StatsSnapshot(store, counter.flush, faults)
    app.include_router(admin_router(store, admin_token, stats, idempotent))

    @app.get(
        "/v1/sandbox/outbox",
        name="outbox",
        response_model=m.OutboxOut,
        tags=["sandbox"],
        include_in_schema=settings.sandbox,
    )
    async def outbox(to: Annotated[str, Query(min_length=1, max_length=254, description="email or phone")]):
        if not settings.sandbox:
            raise ApiError(Reason.NOT_FOUND, "the outbox exists only in sandbox mode (serve --sandbox)")
        if not _storable(to):
            raise ApiError(Reason.VALIDATION_ERROR, "to: NUL characters and lone surrogates are not allowed")
        address = to.strip()
        address = address.lower() if "@" in address else (_try_phone(address) or address)
        return JsonResponse({"messages": await run_in_threadpool(store.outbox, address)})

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
    app.add_middleware(
        LeanSignupMiddleware,
        batcher=SignupBatcher(store),
        password_cost=settings.password_cost,
        route=signup_route,
    )
    app.add_middleware(IdempotencyMiddleware, store=store)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(AccessLogMiddleware, counter=counter, log=access_log if settings.access_log else None)
    return app


_ELIGIBILITY_MESSAGES = {
    Reason.UNDERAGE: "applicants must be at least 18",
    Reason.STILL_STUDENT: "applicants still in formal education cannot join",
    Reason.EXCLUDED_OCCUPATION: "this occupation is excluded by Perpres 76/2020",
    Reason.ALREADY_RECIPIENT: "already a Kartu Prakerja recipient",
    Reason.RECEIVES_OTHER_AID: "already receives other social aid",
    Reason.KK_RECIPIENT_LIMIT: "this family card already has 2 recipients",
}


def _storable(text: str) -> bool:
    """Text every database can store: no NUL (PostgreSQL refuses it), no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _try_phone(text: str) -> str | None:
    digits = re.sub(r"[\s\-()]", "", text)
    if digits.startswith("+62"):
        digits = "0" + digits[3:]
    elif digits.startswith("62"):
        digits = "0" + digits[2:]
    return digits if PHONE_RE.match(digits) else None


def normalize_phone(text: str) -> str:
    """``08...`` form of an Indonesian mobile number (``+62 8...`` accepted), or PHONE_INVALID."""
    number = _try_phone(text)
    if number is None:
        raise ApiError(
            Reason.PHONE_INVALID, f"{text!r} is not an Indonesian mobile number (08..., 10-13 digits)"
        )
    return number


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
