"""Reason codes: what the registration system answers when it refuses something.

One list for everybody: the population generator labels ``expected_outcome`` with these, the KTP
manifest labels bad files with them, the reference API returns them in
``{"error": {"code": ..., "message": ...}}``, and the load-test report counts errors by them.
Append new codes; never rename one (files and reports already carry them).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """A refusal the system gives, with the HTTP status the reference API uses for it."""

    # --- identity check against the population registry (Dukcapil) -----------------------------
    NIK_MALFORMED = "NIK_MALFORMED"  # not 16 digits, impossible date, unknown region code
    NIK_NOT_FOUND = "NIK_NOT_FOUND"  # well-formed, but the registry has no such person
    NIK_BIRTHDATE_MISMATCH = "NIK_BIRTHDATE_MISMATCH"  # birth date typed differs from the registry
    NIK_KK_MISMATCH = "NIK_KK_MISMATCH"  # the KK number typed is not the person's family card
    NIK_ALREADY_REGISTERED = "NIK_ALREADY_REGISTERED"  # another account already holds this NIK
    REGISTRY_UNAVAILABLE = "REGISTRY_UNAVAILABLE"  # the registry timed out or failed (upstream fault)

    # --- account, email, phone ------------------------------------------------------------------
    EMAIL_TAKEN = "EMAIL_TAKEN"
    EMAIL_INVALID = "EMAIL_INVALID"
    EMAIL_DOMAIN_TYPO = "EMAIL_DOMAIN_TYPO"  # gmial.com and friends: the OTP can never arrive
    PHONE_TAKEN = "PHONE_TAKEN"
    PHONE_INVALID = "PHONE_INVALID"
    PASSWORD_TOO_SHORT = "PASSWORD_TOO_SHORT"
    PASSWORD_MISMATCH = "PASSWORD_MISMATCH"
    BAD_CREDENTIALS = "BAD_CREDENTIALS"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    OTP_INVALID = "OTP_INVALID"
    OTP_EXPIRED = "OTP_EXPIRED"
    OTP_TOO_MANY_ATTEMPTS = "OTP_TOO_MANY_ATTEMPTS"
    OTP_RESEND_TOO_SOON = "OTP_RESEND_TOO_SOON"

    # --- eligibility (Perpres 76/2020 and the program's rules) ----------------------------------
    UNDERAGE = "UNDERAGE"  # younger than 18
    STILL_STUDENT = "STILL_STUDENT"  # still in formal education
    EXCLUDED_OCCUPATION = "EXCLUDED_OCCUPATION"  # civil servant, TNI, Polri, village official, ...
    ALREADY_RECIPIENT = "ALREADY_RECIPIENT"
    RECEIVES_OTHER_AID = "RECEIVES_OTHER_AID"  # DTKS/PKH/BPNT, BSU, BPUM
    KK_RECIPIENT_LIMIT = "KK_RECIPIENT_LIMIT"  # more than 2 recipients in one family card

    # --- KTP photo upload -------------------------------------------------------------------------
    FILE_EMPTY = "FILE_EMPTY"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"  # over 2 MB
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"  # not JPEG or PNG by its magic bytes
    EXTENSION_MISMATCH = "EXTENSION_MISMATCH"  # the name says .jpg, the bytes say otherwise
    CORRUPT_IMAGE = "CORRUPT_IMAGE"  # truncated or undecodable
    IMAGE_DIMENSIONS = "IMAGE_DIMENSIONS"  # declared size absurd (decompression-bomb shape) or too small
    CARD_NOT_WHOLE = "CARD_NOT_WHOLE"  # the card is cut off at the frame
    PHOTOCOPY = "PHOTOCOPY"
    TOO_BLURRY = "TOO_BLURRY"
    NOT_A_KTP = "NOT_A_KTP"  # a picture of something else (another document, a screenshot)

    # --- flow and waves -----------------------------------------------------------------------------
    VALIDATION_ERROR = "VALIDATION_ERROR"  # a request body or parameter breaks the API schema
    NOT_FOUND = "NOT_FOUND"
    STEP_INCOMPLETE = "STEP_INCOMPLETE"  # an earlier step of the flow is not done yet
    WAVE_NOT_OPEN = "WAVE_NOT_OPEN"
    WAVE_CLOSED = "WAVE_CLOSED"
    WAVE_FULL = "WAVE_FULL"  # fcfs only: the quota is taken
    ALREADY_JOINED = "ALREADY_JOINED"
    DOMICILE_MISMATCH = "DOMICILE_MISMATCH"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"  # same key, different request body
    RATE_LIMITED = "RATE_LIMITED"
    WAVE_EXISTS = "WAVE_EXISTS"  # admin: a wave with this number was opened before
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    INTERNAL_ERROR = "INTERNAL_ERROR"  # a bug of the server; never expected
    BODY_TOO_LARGE = "BODY_TOO_LARGE"  # the request body is over the route's limit (413)
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"  # the client sent its request too slowly (408)
    ADMIN_UNAUTHORIZED = "ADMIN_UNAUTHORIZED"  # an admin route without the admin token (401)
    LOGIN_THROTTLED = "LOGIN_THROTTLED"  # too many failed logins for this account or client (429)
    SERVER_BUSY = "SERVER_BUSY"  # the worker's connection cap is reached (503, Retry-After)

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self, 422)


UPLOAD_REASONS: tuple[Reason, ...] = (
    Reason.FILE_EMPTY,
    Reason.FILE_TOO_LARGE,
    Reason.UNSUPPORTED_FORMAT,
    Reason.EXTENSION_MISMATCH,
    Reason.CORRUPT_IMAGE,
    Reason.IMAGE_DIMENSIONS,
    Reason.CARD_NOT_WHOLE,
    Reason.PHOTOCOPY,
    Reason.TOO_BLURRY,
    Reason.NOT_A_KTP,
)
"""Every refusal of a KTP photo upload, in the order the validator checks for them."""

ACCEPT = "accept"
"""The ``expected_outcome`` / verdict value meaning: the system should take it."""

_HTTP_STATUS: dict[Reason, int] = {
    Reason.NIK_ALREADY_REGISTERED: 409,
    Reason.EMAIL_TAKEN: 409,
    Reason.PHONE_TAKEN: 409,
    Reason.ALREADY_JOINED: 409,
    Reason.IDEMPOTENCY_KEY_REUSED: 409,
    Reason.WAVE_FULL: 409,
    Reason.WAVE_CLOSED: 409,
    Reason.WAVE_NOT_OPEN: 409,
    Reason.STEP_INCOMPLETE: 409,
    Reason.NIK_NOT_FOUND: 404,
    Reason.NOT_FOUND: 404,
    Reason.BAD_CREDENTIALS: 401,
    Reason.UNAUTHENTICATED: 401,
    Reason.FILE_TOO_LARGE: 413,
    Reason.UNSUPPORTED_FORMAT: 415,
    Reason.EXTENSION_MISMATCH: 415,
    Reason.OTP_TOO_MANY_ATTEMPTS: 429,
    Reason.OTP_RESEND_TOO_SOON: 429,
    Reason.RATE_LIMITED: 429,
    Reason.WAVE_EXISTS: 409,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.INTERNAL_ERROR: 500,
    Reason.BODY_TOO_LARGE: 413,
    Reason.REQUEST_TIMEOUT: 408,
    Reason.ADMIN_UNAUTHORIZED: 401,
    Reason.LOGIN_THROTTLED: 429,
    Reason.SERVER_BUSY: 503,
    Reason.REGISTRY_UNAVAILABLE: 503,  # an injected upstream fault, not a bug of ours
}
