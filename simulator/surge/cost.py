"""What a scenario costs before it runs: how long, how many arrivals and requests, how many cores.

Owns the estimate ``surge --plan`` prints and every run checks against this machine's CPUs.

Requests over time: each arrival makes the steps its funnel reaches, each step a mean think time
after the previous one (compressed by ``time_scale``), so the request rate is the arrival rate
shifted by each step's cumulative think time, weighted by the share who get that far. Cores: that
peak rate times the CPU one request of the journey costs the load generator and the reference API
(``CPU_MS_PER_REQUEST``, measured with ``python benchmarks/bench_surge.py --cost``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from simulator.surge.scenario import STEPS, Scenario
from simulator.surge.schedule import ArrivalCurve

CPU_MS_PER_REQUEST = {"load_generator": 1.5, "reference_api": 8.0}
"""CPU milliseconds per journey request (OTP polls included), on the development machine's cores:
the load generator (Locust, one user per arrival, own connections) and the reference API on
SQLite with ``--password-cost 0``. Measured with ``python benchmarks/bench_surge.py --cost``
(the smoke journey mix); a real API's cost is its own, so only the load generator's part is
certain for it."""
HEADROOM = 0.7
"""Share of a core a process can use before queueing shows in its latencies."""
OTP_POLLS_PER_CODE = 2.0
"""Outbox reads per OTP (the first poll often comes before the code)."""
# Share of arrivals who reach each step, from the scenario's funnel rates (the population's fate
# columns follow the same published funnel).
_REACH = {
    "create_account": (),
    "verify_email": ("email_verify",),
    "login": ("email_verify",),
    "identity": ("email_verify", "identity_submit"),
    "profile": ("email_verify", "identity_submit"),
    "ktp_upload": ("email_verify", "identity_submit"),
    "phone": ("email_verify", "identity_submit"),
    "verify_phone": ("email_verify", "identity_submit", "phone_verify"),
    "test": ("email_verify", "identity_submit", "phone_verify"),
    "join": ("email_verify", "identity_submit", "phone_verify", "test_finish", "join"),
}


@dataclass(frozen=True)
class ScenarioCost:
    name: str
    run_s: float  # arrivals plus the drain, harness seconds
    arrivals: float  # expected
    peak_arrivals_per_s: float
    requests: float  # expected journey requests, OTP polls included
    peak_requests_per_s: float
    cores_load_generator: float
    cores_reference_api: float

    @property
    def cores(self) -> float:
        return self.cores_load_generator + self.cores_reference_api

    def line(self) -> str:
        return (
            f"{self.name}: {_duration(self.run_s)} ({self.arrivals:,.0f} arrivals, peak "
            f"{self.peak_arrivals_per_s:,.1f}/s; ~{self.requests:,.0f} requests, "
            f"peak ~{self.peak_requests_per_s:,.0f}/s) "
            f"needs ~{self.cores:.1f} cores at its peak ({self.cores_load_generator:.1f} load generator + "
            f"{self.cores_reference_api:.1f} reference API)"
        )

    def fits(self, cpus: int | None = None) -> str | None:
        """None when this machine carries the run with the reference API on it; else why not."""
        cpus = cpus or os.cpu_count() or 1
        if self.cores <= cpus:
            return None
        return (
            f"this machine has {cpus} CPU(s), so the load generator and a reference API on it would "
            f"queue at the peak and the SLOs measure the machine, not the API: run the API elsewhere "
            f"and the load on --processes / --master workers with {math.ceil(self.cores_load_generator):d}+ "
            f"cores, or lower replay.population_scale"
        )


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min" if hours else (f"{m} min {s:02d} s" if m else f"{s} s")


def requests_per_journey_step(scenario: Scenario) -> dict[str, float]:
    """Expected requests per arrival at each step (the funnel's reach; OTP steps poll the outbox)."""
    funnel = scenario.funnel
    per_step = {}
    for step in STEPS:
        reach = float(np.prod([getattr(funnel, rate) for rate in _REACH[step]]))
        uploads = funnel.ktp_uploads_mean / max(1e-9, 1 - sum(scenario.defects.ktp.values()))
        calls = {"ktp_upload": uploads, "verify_email": 1 + OTP_POLLS_PER_CODE}
        calls["verify_phone"] = 1 + OTP_POLLS_PER_CODE
        per_step[step] = reach * calls.get(step, 1.0)
    return per_step


def scenario_cost(scenario: Scenario, step_s: float = 0.5) -> ScenarioCost:
    """The estimate for one scenario (pure arithmetic on its curve: no run, no population)."""
    replay = scenario.replay
    length = replay.harness_length_s
    grid = np.arange(0.0, length + replay.drain_s + step_s, step_s)
    if scenario.arrivals.trace is not None:  # a recorded opening: its own rate, no fitted curve
        from simulator.surge import trace

        arrivals = trace.harness_rate(scenario, np.minimum(grid, length)) * (grid <= length)
        expected = float(arrivals.sum() * step_s)
    else:
        curve = ArrivalCurve(scenario)
        arrivals = curve.harness_rate(np.minimum(grid, length)) * (grid <= length)
        expected = float(curve.harness_cumulative(length))
    per_step = requests_per_journey_step(scenario)
    rate = np.zeros_like(grid)
    shift = 0.0
    for step in STEPS:
        shift += scenario.funnel.think_s[step] / replay.time_scale
        rate += per_step[step] * np.interp(grid - shift, grid, arrivals, left=0.0, right=0.0)
    peak_rps = float(rate.max())
    cores = {side: peak_rps * ms / 1000.0 / HEADROOM for side, ms in CPU_MS_PER_REQUEST.items()}
    return ScenarioCost(
        name=scenario.name,
        run_s=length + replay.drain_s,
        arrivals=expected,
        peak_arrivals_per_s=float(arrivals.max()),
        requests=expected * sum(per_step.values()),
        peak_requests_per_s=peak_rps,
        cores_load_generator=cores["load_generator"],
        cores_reference_api=cores["reference_api"],
    )


def plan_text(scenario: str | None = None, cpus: int | None = None) -> str:
    """What ``surge --plan`` prints: one scenario's cost (or every built-in's) against this machine."""
    from simulator.surge.scenario import builtin_scenarios, load_scenario

    cpus = cpus or os.cpu_count() or 1
    lines = [f"on this machine ({cpus} CPUs), with the reference API beside the load generator:"]
    for name in [scenario] if scenario else builtin_scenarios():
        cost = scenario_cost(load_scenario(name))
        why = cost.fits(cpus)
        lines.append(f"  {cost.line()}: {'fits' if why is None else 'too big: ' + why}")
    return "\n".join(lines)
