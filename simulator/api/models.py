"""Request and response bodies of the reference API: what its OpenAPI document promises.

Domain checks with their own reason codes (password length, email shape, NIK structure) happen in
the routes, so a bad value gets its specific code instead of a generic VALIDATION_ERROR.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simulator.rules import scoring

EARLIEST_WAVE_TIME = dt.datetime(2000, 1, 1)
LATEST_WAVE_TIME = dt.datetime(2100, 1, 1)
"""Wave times are taken between these (naive UTC): outside them date arithmetic would overflow."""


def _check_text(value: object, where: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: NUL characters are not allowed")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: not valid Unicode text (lone surrogate)") from None
    elif isinstance(value, list):
        for item in value:
            _check_text(item, where)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    @model_validator(mode="after")
    def _storable_text(self):
        # Text that no database can store (NUL for PostgreSQL, lone surrogates for every UTF-8
        # driver) is refused here as a VALIDATION_ERROR instead of failing at INSERT time.
        for name in type(self).model_fields:
            _check_text(getattr(self, name), name)
        return self


# --- requests -----------------------------------------------------------------------------------


class AccountCreate(_Body):
    name: str = Field(min_length=1, max_length=200, examples=["Siti Rahayu"])
    email: str = Field(
        max_length=254, examples=["siti.rahayu@example.co.id"], json_schema_extra={"format": "email"}
    )
    password: str = Field(max_length=128, examples=["rahasia123"], description="at least 6 characters")
    password_confirmation: str | None = Field(
        default=None, max_length=128, description="when given, must equal password"
    )


class OtpCode(_Body):
    code: str = Field(max_length=12, examples=["123456"])


class SessionCreate(_Body):
    email: str = Field(max_length=254)
    password: str = Field(max_length=128)


class IdentityBody(_Body):
    nik: str = Field(
        max_length=32, examples=["3273024507950003"], json_schema_extra={"pattern": "^[0-9]{16}$"}
    )
    kk: str = Field(
        max_length=32, examples=["3273021203120007"], json_schema_extra={"pattern": "^[0-9]{16}$"}
    )
    birth_date: dt.date = Field(examples=["1995-07-05"])


class ProfileBody(_Body):
    address: str = Field(min_length=1, max_length=300)
    province_code: str = Field(min_length=1, max_length=16, description="domicile province, Kemendagri code")
    regency_code: str | None = Field(default=None, max_length=16)
    district_code: str | None = Field(default=None, max_length=16)
    village_code: str | None = Field(default=None, max_length=16)
    postal_code: str | None = Field(default=None, max_length=10)
    education: str = Field(min_length=1, max_length=50)
    employment_status: str = Field(min_length=1, max_length=50)


class PhoneBody(_Body):
    phone: str = Field(
        max_length=20,
        examples=["081234567890"],
        json_schema_extra={"pattern": "^(\\+62|62|0)8[1-9][0-9]{7,10}$"},
    )


TEST_QUESTIONS = scoring.QUESTIONS
"""The 2020 basic-skills / motivation test: 18 questions, one at a time (docs/domain.md)."""


class TestAnswers(_Body):
    answers: list[Literal["A", "B", "C", "D"]] = Field(min_length=TEST_QUESTIONS, max_length=TEST_QUESTIONS)


class WaveCreate(_Body):
    number: int | None = Field(default=None, ge=1, le=1_000_000, description="next number when omitted")
    quota: int = Field(ge=0, le=100_000_000)
    mode: Literal["lottery", "fcfs"] = "lottery"
    opens_at: dt.datetime | None = Field(default=None, description="UTC; now when omitted")
    closes_at: dt.datetime | None = Field(default=None, description="UTC; opens_at + duration_s when omitted")
    duration_s: float | None = Field(default=None, gt=0, le=365 * 86400, description="default 4 days")
    province_codes: list[Annotated[str, Field(min_length=1, max_length=16)]] | None = Field(
        default=None, max_length=100, description="domiciles taken (Kemendagri province codes)"
    )
    selection_seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _naive_utc_in_range(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        try:
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:
            raise ValueError("the time is out of range") from None
        if not EARLIEST_WAVE_TIME <= value < LATEST_WAVE_TIME:
            raise ValueError(f"must be from {EARLIEST_WAVE_TIME:%Y} to before {LATEST_WAVE_TIME:%Y} (UTC)")
        return value


class WaveClose(_Body):
    seed: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="overrides the wave's lottery seed"
    )


# --- responses ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="a reason code from simulator/rules/reasons.py")
    message: str
    details: list[dict] | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class AccountOut(BaseModel):
    id: str
    email: str
    name: str
    email_verified: bool
    created_at: str


class EmailVerified(BaseModel):
    id: str
    email_verified: bool
    email_verified_at: str


class Resent(BaseModel):
    id: str
    sent: bool
    email_verified: bool


class SessionOut(BaseModel):
    token: str
    token_type: Literal["bearer"]
    account_id: str
    expires_in: int


class Steps(BaseModel):
    email_verified: bool
    identity_verified: bool
    profile_completed: bool
    phone_verified: bool
    ktp_accepted: bool
    test_completed: bool


class RecipientOut(BaseModel):
    wave: int
    state: str


class MeOut(BaseModel):
    id: str
    email: str
    name: str
    steps: Steps
    nik: str | None
    kk: str | None
    phone: str | None
    province_code: str | None
    recipient: RecipientOut | None


class IdentityOut(BaseModel):
    nik: str
    kk: str
    verified: bool
    checked_at: str | None = None


class ProfileOut(BaseModel):
    address: str
    province_code: str
    regency_code: str | None
    district_code: str | None
    village_code: str | None
    postal_code: str | None
    education: str
    employment_status: str
    updated_at: str


class PhoneOut(BaseModel):
    phone: str
    phone_verified: bool
    sent: bool | None = None


class KtpOut(BaseModel):
    verdict: Literal["accept"]
    message: str
    format: str | None
    width: int | None
    height: int | None
    size_bytes: int
    sha256: str
    upload_id: int


class TestOut(BaseModel):
    score: int
    questions: int
    completed_at: str


class JoinOut(BaseModel):
    wave: int
    join_order: int
    joined_at: str
    mode: str
    selected: bool | None


class SelectionOut(BaseModel):
    mode: str
    seed: int | None
    candidates: int
    selected: int
    selected_priority: int
    carried_over_to: int | None
    carried_over: int


class WaveOut(BaseModel):
    number: int
    quota: int
    mode: Literal["lottery", "fcfs"]
    state: Literal["scheduled", "open", "ended", "closed"]
    opens_at: str
    closes_at: str
    province_codes: list[str] | None
    joined: int
    selected: int
    remaining: int
    selection: SelectionOut | None = None


class OutboxMessage(BaseModel):
    to: str
    channel: Literal["email", "sms"]
    code: str
    sent_at: str
    delivered_at: str
    expires_at: str


class OutboxOut(BaseModel):
    messages: list[OutboxMessage]


class BackgroundFault(BaseModel):
    count: int
    last_error: str
    at: str
    failing: bool = Field(description="true until the work succeeds again")


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded: background work failed in the last minute"
    )
    database: str
    schema_version: int
    worker_pid: int
    faults: dict[str, BackgroundFault] = Field(
        default_factory=dict,
        description="background work that failed in this worker (outcome flush, WAL checkpoint)",
    )


class StatsSteps(BaseModel):
    """Committed rows per step of the flow (each counts people, not requests)."""

    accounts_created: int
    email_verified: int
    identity_verified: int
    profile_completed: int
    phone_verified: int
    ktp_accepted: int
    test_completed: int
    wave_joins: int
    selected: int


class StatsWave(WaveOut):
    carried_over: int


class OtpStats(BaseModel):
    sent: int
    lost: int
    used: int


class Stats(BaseModel):
    """``GET /v1/admin/stats``: server-side truth for a load test to reconcile against.

    ``steps`` are exact committed counts. ``outcomes[step][outcome]`` counts the answers given per
    route (``accept`` or a reason code), summed over every server process; each process adds its
    counts to the database about once a second, so the last second can lag (and a killed process
    loses its last second). ``waves`` gives each wave's quota, joins and selected.
    """

    generated_at: str
    steps: StatsSteps
    outcomes: dict[str, dict[str, int]]
    waves: dict[str, StatsWave]
    ktp_uploads: dict[str, int]
    recipients: dict[str, int]
    otps: dict[str, OtpStats]
    registry_residents: int
    snapshot_age_s: float = Field(description="seconds since this snapshot was taken (see ?max_age_s)")
