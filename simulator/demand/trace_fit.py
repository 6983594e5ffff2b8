"""Fitting the planner's arrival curve to recorded traffic: the crowd waiting at the opening, how fast
it gets in, the decay of the rush and the steady trickle, by Poisson maximum likelihood on binned counts.

``prakerja-sim demand --fit-trace FILE`` prints the fit and forecasts the next wave with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.errors import InvalidInputFile

BIN_S = 10.0
"""Width of the count bins the likelihood is taken over (the crowd's release is often ~1 minute)."""


@dataclass(frozen=True)
class ArrivalFit:
    """The arrival curve a trace implies, in the planner's terms (``params.toml [arrivals]``)."""

    events: int
    duration_hours: float
    crowd_share: float
    crowd_release_minutes: float
    decay_hours: float
    baseline_share: float
    first_24h_share: float
    log_likelihood: float

    def overrides(self) -> list[str]:
        """``--param`` overrides that make the planner use this curve."""
        return [
            f"arrivals.crowd_share={self.crowd_share:.6g}",
            f"arrivals.crowd_release_minutes={self.crowd_release_minutes:.6g}",
            f"arrivals.decay_hours={self.decay_hours:.6g}",
            f"arrivals.baseline_share={self.baseline_share:.6g}",
        ]

    def table(self) -> str:
        return "\n".join(
            [
                f"Arrival curve fitted to {self.events:,} arrivals over {self.duration_hours:.2f} h "
                f"(Poisson likelihood on {BIN_S:g} s bins):",
                f"  crowd at the opening      {self.crowd_share:8.2%} of arrivals",
                f"  crowd release             {self.crowd_release_minutes:8.2f} min (time constant)",
                f"  decay of the rush         {self.decay_hours:8.2f} h (time constant), "
                f"{self.decay_hours * math.log(2):.2f} h half-life",
                f"  steady trickle            {self.baseline_share:8.2%} of arrivals",
                f"  first 24 h                {self.first_24h_share:8.2%} of arrivals (implied)",
                "  as parameters: " + " ".join(f"--param {o}" for o in self.overrides()),
            ]
        )


def _truncated_mass(edges: np.ndarray, tau: float, duration: float) -> np.ndarray:
    """Share of a truncated exponential (time constant ``tau``) in each bin between ``edges``."""
    return np.diff(-np.expm1(-edges / tau)) / -math.expm1(-duration / tau)


def _shares(z: np.ndarray) -> tuple[float, float, float]:
    e = np.exp(np.array([z[0], z[1], 0.0]) - max(z[0], z[1], 0.0))
    crowd, baseline, decay = e / e.sum()
    return float(crowd), float(baseline), float(decay)


def _nelder_mead(f, x0: np.ndarray, steps: np.ndarray, iterations: int = 2000) -> np.ndarray:
    simplex = [x0] + [x0 + np.eye(len(x0))[i] * steps[i] for i in range(len(x0))]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if abs(values[-1] - values[0]) < 1e-9 * (1 + abs(values[0])):
            break
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:  # shrink towards the best point
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (x - simplex[0]) for x in simplex[1:]]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    return simplex[int(np.argmin(values))]


def fit_counts(counts: np.ndarray, bin_s: float = BIN_S) -> ArrivalFit:
    """Fit crowd + decaying rush + baseline to arrivals counted in consecutive bins from the opening."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total < 50:
        raise InvalidInputFile(f"the trace holds {int(total)} arrivals; a fit needs at least 50")
    duration = len(counts) * bin_s
    edges = np.arange(len(counts) + 1) * bin_s
    uniform = np.diff(edges) / duration

    def expected(x: np.ndarray) -> np.ndarray:
        crowd, baseline, decay = _shares(x[:2])
        tau_crowd, tau_decay = math.exp(x[2]), math.exp(x[3])
        return total * (
            crowd * _truncated_mass(edges, tau_crowd, duration)
            + decay * _truncated_mass(edges, tau_decay, duration)
            + baseline * uniform
        )

    def nll(x: np.ndarray) -> float:
        if not (math.log(1.0) < x[2] < x[3] < math.log(duration * 100)):
            return 1e300  # the crowd is the faster of the two exponentials
        mu = np.maximum(expected(x), 1e-12)
        return float((mu - counts * np.log(mu)).sum())

    best = None
    # A few starts: the likelihood has shallow valleys when one component is small.
    for crowd_tau in (30.0, 120.0, 600.0):
        for decay_tau in (duration / 20, duration / 5):
            if decay_tau <= crowd_tau:
                continue
            x0 = np.array([0.0, -1.0, math.log(crowd_tau), math.log(decay_tau)])
            x = _nelder_mead(nll, x0, np.array([1.0, 1.0, 0.7, 0.7]))
            if best is None or nll(x) < nll(best):
                best = x
    crowd, baseline, decay = _shares(best[:2])
    tau_crowd, tau_decay = math.exp(best[2]), math.exp(best[3])
    day = min(86_400.0, duration)
    in_day = (
        crowd * -math.expm1(-day / tau_crowd) / -math.expm1(-duration / tau_crowd)
        + decay * -math.expm1(-day / tau_decay) / -math.expm1(-duration / tau_decay)
        + baseline * day / duration
    )
    return ArrivalFit(
        events=int(total),
        duration_hours=duration / 3600,
        crowd_share=crowd,
        crowd_release_minutes=tau_crowd / 60,
        decay_hours=tau_decay / 3600,
        baseline_share=baseline,
        first_24h_share=in_day,
        log_likelihood=-nll(best),
    )


def fit_trace(spec: Any, duration_hours: float | None = None) -> ArrivalFit:
    """Stream a trace (:class:`simulator.surge.trace.TraceSpec`) into bins from its opening and fit it."""
    from simulator.surge.trace import iter_epochs, summarise

    summary = summarise(spec)
    span = summary.last_epoch - summary.opening_epoch
    duration = duration_hours * 3600 if duration_hours else max(span, BIN_S)
    bins = np.zeros(max(1, math.ceil(duration / BIN_S)))
    for epoch in iter_epochs(spec):
        k = int((epoch - summary.opening_epoch) // BIN_S)
        if 0 <= k < len(bins):
            bins[k] += 1
    return fit_counts(bins)
