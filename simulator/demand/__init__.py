"""Demand planning: a calibrated Monte Carlo of a Kartu Prakerja wave (arrivals, funnel, selection,
load per endpoint and upstream, budget), a season of waves, its backtest, and the scenario it emits.

    from simulator.demand import load_params, simulate_wave, summarise
    params = load_params(overrides={"wave.quota": 600_000, "wave.mode": "fcfs"})
    forecast = summarise(simulate_wave(params, runs=1000, seed=7))
    forecast["peaks_per_second"]["POST /v1/waves/{wave}/join"]   # {"p50": ..., "p95": ...}
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names -> the module that defines them; imported on first use so that loading the
# command line stays cheap.
_EXPORTS = {
    "load_params": "simulator.demand.params",
    "simulate_wave": "simulator.demand.model",
    "summarise": "simulator.demand.forecast",
    "write_forecast": "simulator.demand.forecast_report",
    "run_season": "simulator.demand.season",
    "run_backtest": "simulator.demand.backtest",
    "load_season": "simulator.demand.season",
    "scenario_from_forecast": "simulator.demand.scenario",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'simulator.demand' has no attribute {name!r}")
