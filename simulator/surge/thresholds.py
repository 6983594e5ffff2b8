"""SLO thresholds: each ``[[slo]]`` of the scenario checked against the run; any breach -> exit code 1.

Owns how each metric is computed from the merged measurements (the same numbers the report shows).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from simulator.surge.metrics import OTP_POLL, SurgeMetrics, histogram_summary
from simulator.surge.reconcile import Reconciliation
from simulator.surge.scenario import Threshold

EXIT_SLO_BREACHED = 1


@dataclass
class ThresholdResult:
    label: str
    metric: str
    step: str
    stat: str | None
    min: float | None
    max: float | None
    value: float | None
    status: str  # "pass", "fail" or "skipped" (nothing to measure, e.g. no stats endpoint)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def arrival_counts(metrics: SurgeMetrics, not_started: int = 0, interrupted: int = 0) -> dict[str, int]:
    """Scheduled arrivals by what became of them: started (on time or late), dropped at the cap,
    not started although due, or ``interrupted``: not yet due when the run was stopped."""
    scheduled = int(metrics.series["scheduled"].sum())
    started = int(metrics.series["started"].sum())
    late = int(metrics.series["late"].sum())
    dropped = int(metrics.series["dropped"].sum())
    return {
        "scheduled": scheduled,
        "started": started,
        "on_time": started - late,
        "late": late,
        "dropped": dropped,
        "not_started": not_started,
        "interrupted": interrupted,
        "due": scheduled - interrupted,
    }


def measure(
    threshold: Threshold,
    metrics: SurgeMetrics,
    reconciliation: Reconciliation,
    run_length_s: float,
    not_started: int = 0,
    interrupted: int = 0,
) -> float | None:
    """The value of a threshold's metric in this run (None when it cannot be measured)."""
    step = threshold.step
    if threshold.metric == "latency_ms":
        hist = metrics.overall_latency() if step == "all" else metrics.latency[step]
        return histogram_summary(hist)[threshold.stat or "p99"]
    if threshold.metric == "error_rate":
        requests = metrics.step_requests() if step == "all" else metrics.requests[step]
        errors = metrics.step_unexpected() if step == "all" else metrics.unexpected[step]
        return errors / requests if requests else None
    if threshold.metric == "throughput_rps":
        requests = metrics.step_requests() if step == "all" else metrics.requests[step]
        return requests / run_length_s if run_length_s > 0 else None
    if threshold.metric == "dropped_arrivals":
        # Kept up with the arrivals that were due: those a stop came before are no one's failure.
        counts = arrival_counts(metrics, not_started, interrupted)
        if not counts["due"]:
            return None
        return (counts["late"] + counts["dropped"] + counts["not_started"]) / counts["due"]
    if threshold.metric == "completion_rate":
        started = sum(n for outcome, n in metrics.journeys.items() if outcome != "dropped")
        done = metrics.journeys["completed"] + metrics.journeys["refused"]
        return done / started if started else None
    if threshold.metric == "reconciliation":
        return float(reconciliation.mismatches) if reconciliation.available else None
    raise ValueError(f"unknown SLO metric {threshold.metric!r}")


def evaluate(
    thresholds: tuple[Threshold, ...],
    metrics: SurgeMetrics,
    reconciliation: Reconciliation,
    run_length_s: float,
    not_started: int = 0,
    interrupted: int = 0,
) -> list[ThresholdResult]:
    results = []
    for threshold in thresholds:
        value = measure(threshold, metrics, reconciliation, run_length_s, not_started, interrupted)
        if value is None:
            status = "skipped"
        else:
            low_ok = threshold.min is None or value >= threshold.min
            high_ok = threshold.max is None or value <= threshold.max
            status = "pass" if low_ok and high_ok else "fail"
        results.append(
            ThresholdResult(
                threshold.label,
                threshold.metric,
                threshold.step,
                threshold.stat,
                threshold.min,
                threshold.max,
                value,
                status,
            )
        )
    return results


def exit_code(results: list[ThresholdResult]) -> int:
    """0 when every threshold holds (skipped ones do not fail the run), else 1."""
    return EXIT_SLO_BREACHED if any(r.status == "fail" for r in results) else 0


__all__ = [
    "EXIT_SLO_BREACHED",
    "OTP_POLL",
    "ThresholdResult",
    "arrival_counts",
    "evaluate",
    "exit_code",
    "measure",
]
