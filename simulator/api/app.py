"""The reference registration API (docs/architecture.md 3.2): routes, errors, auth, idempotency, access log.

`create_app(settings)` builds the ASGI app; `prakerja-sim serve` runs it under uvicorn.
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
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from simulator import __version__
from simulator.api import models as m
from simulator.api.db import checkpoint, make_engine
from simulator.api.passwords import hash_password, verify_password
from simulator.api.registry import RegistryLink, RegistryUnavailable
from simulator.api.schema import SCHEMA_VERSION, create_schema
from simulator.api.settings import Settings
from simulator.api.signup import LeanSignupMiddleware, SignupBatcher, check_signup, replaying, send_json
from simulator.api.store import (
    ApiError,
    IdempotencyScope,
    IdempotentReplay,
    Reply,
    Store,
    current_idempotency,
    worker_name,
)
from simulator.rules.eligibility import resident_eligibility
from simulator.rules.nik import NikError, parse_kk, parse_nik
from simulator.rules.reasons import ACCEPT, Reason
from simulator.rules.upload import MAX_UPLOAD_BYTES, validate_upload

access_logger = logging.getLogger("prakerja_sim.api.access")
error_logger = logging.getLogger("prakerja_sim.api")

IDEMPOTENCY_HEADER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retry-safe key: the first answer to a request with this key is replayed to every retry",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}

THREADPOOL_SIZE = 32
"""Threads per worker for database work and hashing; the connection pool is sized to match."""

MULTIPART_OVERHEAD = 64 * 1024
"""Room for multipart boundaries and part headers on top of the 2 MB file limit."""

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


class JsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else orjson.dumps(content)


def error_response(
    reason: Reason, message: str, status: int | None = None, headers=None, details=None
) -> Response:
    body: dict[str, Any] = {"error": {"code": str(reason), "message": message}}
    if details:
        body["error"]["details"] = details
    return JsonResponse(body, status_code=status or reason.http_status, headers=headers)


def _reply(reply: Reply) -> Response:
    return JsonResponse(reply.body, status_code=reply.status, headers=reply.headers or None)


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

    def add(self, step: str, outcome: str) -> None:
        self.counts[(step, outcome)] += 1

    def flush(self) -> None:
        with self._flushing:
            counts, self.counts = self.counts, Counter()
            try:
                self.store.flush_outcomes(self.worker, dict(counts))
            except Exception:  # the database is busy or gone: keep the counts for the next flush
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


class IdempotencyMiddleware:
    """``Idempotency-Key`` on POST/PUT: the first answer is stored and replayed to every retry.

    A write stores the key in its own transaction (so an acknowledged write and its key commit
    together); a refusal stores it after. The same key with a different request gets a 409.
    """

    def __init__(self, app, store: Store):  # noqa: ANN001
        self.app = app
        self.store = store

    async def __call__(self, scope, receive, send):  # noqa: ANN001
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        raw_key = headers.get(b"idempotency-key")
        if raw_key is None:
            return await self.app(scope, receive, send)
        key = raw_key.decode("latin-1").strip()
        if not key or len(key) > 200:
            response = error_response(Reason.VALIDATION_ERROR, "Idempotency-Key must be 1 to 200 characters")
            return await response(scope, receive, send)

        # Read the body (bounded) to fingerprint the request; an oversized one goes on unbuffered.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size <= MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        if more:  # too large to be a valid request of this API: no idempotency, the route refuses it
            return await self.app(scope, replaying(chunks, receive, more=True), send)
        auth = headers.get(b"authorization", b"")
        fingerprint = hashlib.sha256(
            b"\0".join(
                [
                    scope["method"].encode(),
                    scope["path"].encode(),
                    scope.get("query_string", b""),
                    auth,
                    *chunks,
                ]
            )
        ).hexdigest()
        holder = IdempotencyScope(
            key=hashlib.sha256(auth).hexdigest()[:16] + ":" + key, fingerprint=lambda: fingerprint
        )
        replay = await run_in_threadpool(self.store.idempotent_lookup, holder)
        if replay is not None:
            return await _send_stored(send, *replay)

        start: dict[str, Any] = {}
        body_parts: list[bytes] = []

        async def capture(message):  # noqa: ANN001
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body_parts.append(message.get("body", b""))

        token = current_idempotency.set(holder)
        try:
            await self.app(scope, replaying(chunks, receive, more=False), capture)
        finally:
            current_idempotency.reset(token)
        status = start.get("status", 500)
        body = b"".join(body_parts)
        if status < 500 and not holder.stored:
            status_stored, stored = await run_in_threadpool(
                self.store.idempotent_store_refusal, holder, status, body
            )
            if (status_stored, stored) != (status, body):
                return await _send_stored(send, status_stored, stored)
        await send(start)
        await send({"type": "http.response.body", "body": body})


async def _send_stored(send, status: int, body: bytes) -> None:  # noqa: ANN001
    await send_json(send, status, body, {"Idempotent-Replayed": "true"})


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

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        async def flush_forever():
            while True:
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await run_in_threadpool(counter.flush)
                with contextlib.suppress(Exception):  # SQLite: the WAL is copied back here, not in commits
                    await run_in_threadpool(checkpoint, engine)

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
            with contextlib.suppress(Exception):
                await run_in_threadpool(counter.flush)
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
        status = err.status_code if 400 <= err.status_code < 500 else 400
        _mark(request, str(reason))
        return error_response(reason, str(err.detail), status, getattr(err, "headers", None))

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
        return account_id

    Account = Annotated[str, Depends(current_account)]

    async def progress_of(account_id: str) -> dict[str, Any]:
        return await run_in_threadpool(store.progress, account_id)

    # --- service -------------------------------------------------------------------------------

    @app.get("/healthz", name="healthz", response_model=m.Health, tags=["service"])
    async def healthz():
        return {
            "status": "ok",
            "database": engine.dialect.name,
            "schema_version": SCHEMA_VERSION,
            "worker_pid": os.getpid(),
        }

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

        return _reply(await run_in_threadpool(sign_up))

    @app.post(
        "/v1/accounts/{account_id}/email/verify",
        name="verify_email",
        tags=["accounts"],
        responses={200: {"model": m.EmailVerified}},
    )
    async def verify_email(account_id: AccountIdPath, body: m.OtpCode):
        return _reply(await run_in_threadpool(store.verify_email, account_id, body.code))

    @app.post(
        "/v1/accounts/{account_id}/email/resend",
        name="resend_email",
        status_code=202,
        tags=["accounts"],
        responses={202: {"model": m.Resent}, 200: {"model": m.Resent}},
    )
    async def resend_email(account_id: AccountIdPath):
        return _reply(await run_in_threadpool(store.resend_email, account_id))

    @app.post(
        "/v1/sessions",
        name="login",
        status_code=201,
        tags=["accounts"],
        responses={201: {"model": m.SessionOut}},
    )
    async def login(body: m.SessionCreate):
        row = await run_in_threadpool(store.login_row, body.email.lower())
        ok = row is not None and await run_in_threadpool(verify_password, row.password_hash, body.password)
        if not ok:
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
        return _reply(
            await run_in_threadpool(
                store.save_identity, account_id, resident.nik, resident.kk, resident.birth_date
            )
        )

    @app.put("/v1/me/profile", name="profile", tags=["applicant"], responses={200: {"model": m.ProfileOut}})
    async def profile(body: m.ProfileBody, account_id: Account):
        store.require(await progress_of(account_id), "identity_verified")
        return _reply(await run_in_threadpool(store.save_profile, account_id, body.model_dump()))

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
        return _reply(await run_in_threadpool(store.set_phone, account_id, number))

    @app.post(
        "/v1/me/phone/verify", name="verify_phone", tags=["applicant"], responses={200: {"model": m.PhoneOut}}
    )
    async def verify_phone(body: m.OtpCode, account_id: Account):
        return _reply(await run_in_threadpool(store.verify_phone, account_id, body.code))

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
        verdict = await run_in_threadpool(validate_upload, data, filename)
        record = {
            "verdict": verdict.verdict,
            "filename": (filename or "")[:255] or None,
            "content_type": (content_type or "")[:100] or None,
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
        return _reply(reply)

    # --- test and waves -------------------------------------------------------------------------

    @app.post("/v1/me/test", name="test", tags=["applicant"], responses={200: {"model": m.TestOut}})
    async def take_test(body: m.TestAnswers, account_id: Account):
        store.require(await progress_of(account_id), "identity_verified")
        answers = "".join(body.answers)
        score = sum(a == k for a, k in zip(answers, TEST_ANSWER_KEY, strict=True))
        return _reply(await run_in_threadpool(store.save_test, account_id, answers, score))

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
        return _reply(await run_in_threadpool(store.join_wave, account_id, wave, progress["province_code"]))

    @app.get("/v1/waves/{wave}", name="wave_status", response_model=m.WaveOut, tags=["waves"])
    async def wave_status(wave: Annotated[int, Path(ge=1, le=1_000_000)]):
        return await run_in_threadpool(store.wave_status, wave)

    # --- admin ----------------------------------------------------------------------------------

    @app.post(
        "/v1/admin/waves",
        name="open_wave",
        status_code=201,
        tags=["admin"],
        responses={201: {"model": m.WaveOut}},
    )
    async def open_wave(body: m.WaveCreate):
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        opens_at = _naive_utc(body.opens_at) or now
        closes_at = _naive_utc(body.closes_at) or opens_at + dt.timedelta(
            seconds=body.duration_s or 4 * 86400
        )
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
        return _reply(await run_in_threadpool(store.create_wave, values))

    @app.post(
        "/v1/admin/waves/{wave}/close",
        name="close_wave",
        tags=["admin"],
        responses={200: {"model": m.WaveOut}},
    )
    async def close_wave(wave: Annotated[int, Path(ge=1, le=1_000_000)], body: m.WaveClose | None = None):
        return _reply(await run_in_threadpool(store.close_wave, wave, body.seed if body else None))

    @app.get("/v1/admin/stats", name="stats", response_model=m.Stats, tags=["admin"])
    async def stats():
        with contextlib.suppress(Exception):
            await run_in_threadpool(counter.flush)
        return JsonResponse(await run_in_threadpool(store.stats))

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
        address = to.strip()
        address = address.lower() if "@" in address else (_try_phone(address) or address)
        return JsonResponse({"messages": await run_in_threadpool(store.outbox, address)})

    def openapi() -> dict[str, Any]:
        # The Idempotency-Key header is handled by middleware, so FastAPI cannot see it: add it.
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
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


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


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


async def read_upload(request: Request) -> tuple[bytes, str | None, str | None]:
    """Stream a multipart body and return the ``file`` part; stop at the size limit without reading on."""
    too_large = ApiError(
        Reason.FILE_TOO_LARGE,
        f"the file is larger than {MAX_UPLOAD_BYTES // 1048576} MB",
        headers={"Connection": "close"},  # the rest of the body is never read: drop the connection
    )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
        raise too_large
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(Reason.VALIDATION_ERROR, "send the photo as multipart/form-data with a 'file' field")

    part: dict[str, Any] = {"headers": {}, "field": b"", "value": b""}
    found: dict[str, Any] = {}
    buffer = bytearray()

    def on_part_begin():
        part.update(headers={}, field=b"", value=b"")

    def on_header_field(data, start, end):
        part["field"] += data[start:end]

    def on_header_value(data, start, end):
        part["value"] += data[start:end]

    def on_header_end():
        part["headers"][part["field"].lower()] = part["value"]
        part.update(field=b"", value=b"")

    def on_headers_finished():
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["is_file"] = disposition.get(b"name") == b"file" and "file" not in found
        if part["is_file"]:
            found["file"] = True
            found["filename"] = disposition.get(b"filename", b"").decode("utf-8", "replace") or None
            found["content_type"] = part["headers"].get(b"content-type", b"").decode("latin-1") or None

    def on_part_data(data, start, end):
        if part.get("is_file"):
            buffer.extend(data[start:end])
            if len(buffer) > MAX_UPLOAD_BYTES:
                raise too_large

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        raise
    except Exception as err:  # the multipart framing is broken
        raise ApiError(Reason.VALIDATION_ERROR, f"the multipart body cannot be read ({err})") from None
    if "file" not in found:
        raise ApiError(Reason.VALIDATION_ERROR, "the multipart body has no 'file' field")
    return bytes(buffer), found.get("filename"), found.get("content_type")


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
