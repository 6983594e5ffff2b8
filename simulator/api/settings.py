"""Settings of one reference-API server: database, registry seed, upstream faults, OTP policy.

A `Settings` travels to uvicorn's worker processes as JSON in an environment variable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import random
from dataclasses import dataclass, field

from simulator.errors import InvalidOption
from simulator.rules.eligibility import REFERENCE_DATE

ENV_VAR = "PRAKERJA_API_SETTINGS"


@dataclass(frozen=True)
class Delay:
    """A latency distribution in milliseconds: ``fixed:MS``, ``uniform:LO,HI`` or ``lognormal:MEDIAN,SIGMA``.

    Log-normal is the usual shape of an upstream service's latency: most calls near the median,
    a long right tail (sigma 0.5 puts p99 at about 3.2 x the median).
    """

    kind: str = "fixed"
    a: float = 0.0
    b: float = 0.0

    @classmethod
    def parse(cls, text: str, option: str = "delay") -> Delay:
        text = str(text).strip()
        kind, _, args = text.partition(":")
        if not args and kind.replace(".", "", 1).isdigit():
            kind, args = "fixed", kind
        try:
            values = [float(v) for v in args.split(",")] if args else []
        except ValueError:
            values = None
        shapes = {"fixed": 1, "uniform": 2, "lognormal": 2}
        if (
            kind not in shapes
            or values is None
            or len(values) != shapes[kind]
            or any(v < 0 or not math.isfinite(v) for v in values)
        ):
            raise InvalidOption(
                f"{option}: expected fixed:MS, uniform:LO,HI or lognormal:MEDIAN_MS,SIGMA (ms, >= 0); "
                f"got {text!r}"
            )
        if kind == "uniform" and values[0] > values[1]:
            raise InvalidOption(f"{option}: uniform:LO,HI needs LO <= HI; got {text!r}")
        return cls(kind, values[0], values[1] if len(values) > 1 else 0.0)

    def sample_ms(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return self.a * math.exp(rng.gauss(0.0, self.b)) if self.a > 0 else 0.0

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.a:g}"
        return f"{self.kind}:{self.a:g},{self.b:g}"


@dataclass(frozen=True)
class Settings:
    """Everything that changes how the server behaves. Defaults: zero-setup embedded SQLite."""

    db_url: str = "prakerja-api.db"
    registry_dir: str | None = None
    # Real upstreams (e.g. `prakerja-sim upstreams`) instead of the built-in simulation.
    registry_url: str | None = None
    sms_url: str | None = None
    smtp: str | None = None  # HOST:PORT
    password_cost: int = 1
    sandbox: bool = False
    access_log: bool = True
    # Upstream faults: the simulated Dukcapil, the SMS gateway, the email provider.
    registry_latency: Delay = field(default_factory=Delay)
    registry_error_rate: float = 0.0
    sms_delay: Delay = field(default_factory=Delay)
    sms_loss_rate: float = 0.0
    email_delay: Delay = field(default_factory=Delay)
    # OTP policy.
    otp_digits: int = 6
    otp_ttl_s: float = 300.0
    otp_resend_interval_s: float = 30.0
    otp_max_attempts: int = 5  # wrong codes per OTP (per account and channel)
    otp_max_attempts_per_phone: int = 10  # wrong codes per phone number per hour, across accounts
    otp_max_attempts_per_account: int = (
        10  # wrong codes per account and channel per hour; resends do not refill
    )
    token_ttl_s: float = 24 * 3600.0
    # Defences (docs/security.md): the admin token, login throttling, slow clients, image decodes.
    admin_token: str | None = None  # X-Admin-Token of the admin routes; serve makes one when not given
    login_failures_per_account: int = 10  # failed logins per email per login_window_s, across workers
    login_failures_per_client: int = 200  # failed logins per client address per login_window_s, per worker
    login_window_s: float = 900.0
    header_timeout_s: float = 10.0  # from connection (or the end of the last answer) to a request's headers
    body_timeout_s: float = 60.0  # from the headers to the end of the body (a 2 MB photo on a slow phone)
    max_connections: int = 4096  # open connections per worker; more are answered 503 SERVER_BUSY and closed
    image_decoders: int = 2  # KTP photos decoded at once per worker (each may take ~50 MB)
    reference_date: dt.date = REFERENCE_DATE  # the date ages are computed on (eligibility)
    fault_seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("registry_error_rate", "sms_loss_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidOption(f"{name.replace('_', '-')}: expected a rate in [0, 1], got {value}")
        if self.otp_digits not in (4, 6):
            raise InvalidOption(f"otp-digits: expected 4 or 6, got {self.otp_digits}")
        if self.admin_token is not None and (len(self.admin_token) < 16 or not self.admin_token.isascii()):
            raise InvalidOption("admin-token: expected at least 16 ASCII characters")
        for name in (
            "login_failures_per_account",
            "login_failures_per_client",
            "max_connections",
            "image_decoders",
        ):
            if getattr(self, name) < 1:
                raise InvalidOption(
                    f"{name.replace('_', '-')}: expected at least 1, got {getattr(self, name)}"
                )
        for name in ("login_window_s", "header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidOption(
                    f"{name.replace('_', '-')}: expected seconds > 0, got {getattr(self, name)}"
                )

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for name in ("registry_latency", "sms_delay", "email_delay"):
            data[name] = str(getattr(self, name))
        data["reference_date"] = self.reference_date.isoformat()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls.from_mapping(json.loads(text))

    @classmethod
    def from_mapping(cls, data: dict) -> Settings:
        """Build from plain values (as the CLI or `running_server(**settings)` give them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidOption(f"unknown server setting(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        for name in ("registry_latency", "sms_delay", "email_delay"):
            if name in values and not isinstance(values[name], Delay):
                values[name] = Delay.parse(str(values[name]), name.replace("_", "-"))
        if isinstance(values.get("reference_date"), str):
            values["reference_date"] = dt.date.fromisoformat(values["reference_date"])
        # Numbers may come as text (CLI strings, environment, scenario files): convert them here
        # so a rate of "0.1" is checked like 0.1 instead of failing in a comparison later.
        for name, kind in _NUMBERS.items():
            value = values.get(name)
            if isinstance(value, str):
                try:
                    values[name] = kind(value.strip())
                except ValueError:
                    raise InvalidOption(
                        f"{name.replace('_', '-')}: expected a {kind.__name__}, got {value!r}"
                    ) from None
        return cls(**values)

    @classmethod
    def from_env(cls) -> Settings:
        text = os.environ.get(ENV_VAR)
        return cls.from_json(text) if text else cls()


_NUMBERS: dict[str, type] = {
    f.name: int if "int" in str(f.type) else float
    for f in dataclasses.fields(Settings)
    if str(f.type).split(" ")[0] in ("float", "int")
}
"""Numeric settings by name and type, for converting text values in `Settings.from_mapping`."""
