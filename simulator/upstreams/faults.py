"""Fault knobs of the stand-ins: latency, errors, timeouts and a slow-down schedule for the registry,
delay and loss for the message sinks; each draw from one seeded stream per service.

Latencies take the reference API's forms: ``fixed:MS``, ``uniform:LO,HI``, ``lognormal:MEDIAN,SIGMA``.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from simulator.api.settings import Delay
from simulator.errors import InvalidOption

MAX_TIMEOUT_S = 600.0
"""The longest a simulated timeout holds a request (a stand-in must never hang a run for ever)."""

_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*:\s*([x+])\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class SlowWindow:
    """From ``start_s`` to ``end_s`` after the clock's start, latency is multiplied or increased."""

    start_s: float
    end_s: float
    factor: float = 1.0
    extra_ms: float = 0.0


def parse_slowdown(text: str | None, option: str = "--registry-slowdown") -> tuple[SlowWindow, ...]:
    """``"0-120:x8,120-600:+50"``: 8 x the latency for two minutes, then 50 ms more until minute 10."""
    if not text or not text.strip():
        return ()
    windows = []
    for part in text.split(","):
        found = _WINDOW.match(part)
        if not found:
            raise InvalidOption(
                f"{option}: expected windows like 0-120:x8 or 120-600:+50 (seconds since the clock's "
                f"start, x = multiply the latency, + = add milliseconds), got {part.strip()!r}"
            )
        start, end, kind, amount = float(found[1]), float(found[2]), found[3], float(found[4])
        if end <= start:
            raise InvalidOption(f"{option}: window {part.strip()!r} ends before it starts")
        windows.append(
            SlowWindow(
                start, end, factor=amount if kind == "x" else 1.0, extra_ms=amount if kind == "+" else 0.0
            )
        )
    return tuple(windows)


def _rate(value: float, option: str) -> float:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise InvalidOption(f"{option}: expected a rate in [0, 1], got {value}")
    return float(value)


@dataclass(frozen=True)
class RegistryFaults:
    """What goes wrong at the registry: each call draws its latency, then maybe an error or a hang."""

    latency: Delay = field(default_factory=Delay)
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 30.0
    slowdown: tuple[SlowWindow, ...] = ()

    def __post_init__(self) -> None:
        _rate(self.error_rate, "--registry-error-rate")
        _rate(self.timeout_rate, "--registry-timeout-rate")
        if self.error_rate + self.timeout_rate > 1.0:
            raise InvalidOption("--registry-error-rate + --registry-timeout-rate: together at most 1")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise InvalidOption(
                f"--registry-timeout: expected seconds in (0, {MAX_TIMEOUT_S:g}], got {self.timeout_s:g}"
            )

    def latency_ms(self, rng: random.Random, clock_s: float) -> float:
        """This call's latency at ``clock_s`` seconds after the clock's start, slow-downs included."""
        delay = self.latency.sample_ms(rng)
        for window in self.slowdown:
            if window.start_s <= clock_s < window.end_s:
                delay = delay * window.factor + window.extra_ms
        return delay

    def fate(self, rng: random.Random) -> str:
        """``ok``, ``error`` (503) or ``timeout`` (held ``timeout_s``, then 504)."""
        if not (self.error_rate or self.timeout_rate):
            return "ok"
        draw = rng.random()
        if draw < self.error_rate:
            return "error"
        if draw < self.error_rate + self.timeout_rate:
            return "timeout"
        return "ok"


@dataclass(frozen=True)
class SinkFaults:
    """What goes wrong on the way to a phone or an inbox: a delivery delay, and messages that never arrive."""

    delay: Delay = field(default_factory=Delay)
    loss_rate: float = 0.0
    name: str = "sms"

    def __post_init__(self) -> None:
        _rate(self.loss_rate, f"--{self.name}-loss-rate")

    def delivery(self, rng: random.Random) -> float | None:
        """Seconds until the message shows up, or None when it is lost."""
        if self.loss_rate and rng.random() < self.loss_rate:
            return None
        return self.delay.sample_ms(rng) / 1000.0
