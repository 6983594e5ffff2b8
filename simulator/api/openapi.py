"""What the OpenAPI document says each route can refuse: every 4xx/5xx status with its reason codes.

`document_refusals` writes them into FastAPI's generated document, from `REFUSALS` (route name -> reasons).
"""

from __future__ import annotations

from typing import Any

from simulator.rules.reasons import UPLOAD_REASONS, Reason

R = Reason

ELIGIBILITY = (
    R.UNDERAGE,
    R.STILL_STUDENT,
    R.EXCLUDED_OCCUPATION,
    R.ALREADY_RECIPIENT,
    R.RECEIVES_OTHER_AID,
    R.KK_RECIPIENT_LIMIT,
)
OTP = (R.OTP_INVALID, R.OTP_EXPIRED, R.OTP_TOO_MANY_ATTEMPTS)

REFUSALS: dict[str, tuple[Reason, ...]] = {
    "healthz": (),
    "create_account": (
        R.EMAIL_INVALID,
        R.EMAIL_DOMAIN_TYPO,
        R.PASSWORD_TOO_SHORT,
        R.PASSWORD_MISMATCH,
        R.EMAIL_TAKEN,
    ),
    "verify_email": (R.NOT_FOUND, *OTP),
    "resend_email": (R.NOT_FOUND, R.OTP_RESEND_TOO_SOON),
    "login": (R.BAD_CREDENTIALS, R.STEP_INCOMPLETE, R.LOGIN_THROTTLED),
    "me": (R.UNAUTHENTICATED,),
    "identity": (
        R.UNAUTHENTICATED,
        R.STEP_INCOMPLETE,
        R.NIK_MALFORMED,
        R.REGISTRY_UNAVAILABLE,
        R.NIK_NOT_FOUND,
        R.NIK_KK_MISMATCH,
        R.NIK_BIRTHDATE_MISMATCH,
        R.NIK_ALREADY_REGISTERED,
        *ELIGIBILITY,
    ),
    "profile": (R.UNAUTHENTICATED, R.STEP_INCOMPLETE),
    "phone": (R.UNAUTHENTICATED, R.STEP_INCOMPLETE, R.PHONE_INVALID, R.PHONE_TAKEN, R.OTP_RESEND_TOO_SOON),
    "verify_phone": (R.UNAUTHENTICATED, R.STEP_INCOMPLETE, *OTP),
    "ktp": (R.UNAUTHENTICATED, R.STEP_INCOMPLETE, *UPLOAD_REASONS),
    "test": (R.UNAUTHENTICATED, R.STEP_INCOMPLETE),
    "join_wave": (
        R.UNAUTHENTICATED,
        R.STEP_INCOMPLETE,
        R.ALREADY_RECIPIENT,
        R.NOT_FOUND,
        R.WAVE_NOT_OPEN,
        R.WAVE_CLOSED,
        R.DOMICILE_MISMATCH,
        R.ALREADY_JOINED,
        R.WAVE_FULL,
    ),
    "wave_status": (R.NOT_FOUND,),
    "open_wave": (R.ADMIN_UNAUTHORIZED, R.WAVE_EXISTS),
    "close_wave": (R.ADMIN_UNAUTHORIZED, R.NOT_FOUND, R.WAVE_CLOSED),
    "stats": (R.ADMIN_UNAUTHORIZED,),
    "outbox": (R.NOT_FOUND,),
}
"""The refusals of each route beyond those every route can give (`EVERY_ROUTE`, `WITH_A_BODY`)."""

EVERY_ROUTE = (R.VALIDATION_ERROR, R.REQUEST_TIMEOUT, R.SERVER_BUSY)
"""A bad parameter or header, a client too slow to send its request, a worker at its connection cap."""

WITH_A_BODY = (R.BODY_TOO_LARGE, R.IDEMPOTENCY_KEY_REUSED)
"""POST and PUT: a body over the route's limit; an Idempotency-Key reused with another request."""

_ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}


def document_refusals(schema: dict[str, Any], routes: list[Any]) -> None:
    """Add to each operation of ``schema`` one response per status its refusals use, codes listed."""
    for route in routes:
        refusals = REFUSALS.get(getattr(route, "name", ""))
        if refusals is None:
            continue
        for method in route.methods:
            operation = schema["paths"].get(route.path, {}).get(method.lower())
            if operation is None:
                continue
            reasons = [*refusals, *EVERY_ROUTE, *(WITH_A_BODY if method in ("POST", "PUT") else ())]
            if route.name == "ktp":
                reasons.remove(R.BODY_TOO_LARGE)  # the upload's limit answers FILE_TOO_LARGE
            by_status: dict[int, list[str]] = {}
            for reason in reasons:
                codes = by_status.setdefault(reason.http_status, [])
                if str(reason) not in codes:
                    codes.append(str(reason))
            responses = operation.setdefault("responses", {})
            responses.pop("4XX", None)
            for status, codes in sorted(by_status.items()):
                responses[str(status)] = {
                    "description": "Refused: " + ", ".join(codes),
                    "content": {"application/json": {"schema": _ERROR_SCHEMA}},
                }
