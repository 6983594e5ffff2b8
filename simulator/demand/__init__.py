"""Demand planning: a calibrated Monte Carlo of a Kartu Prakerja wave (arrivals, funnel, selection,
load per endpoint and upstream, budget), its backtest against 2020, and the scenario it emits.

    from simulator.demand import load_params, simulate_wave, summarise
    params = load_params(overrides={"wave.quota": 600_000, "wave.mode": "fcfs"})
    forecast = summarise(simulate_wave(params, runs=1000, seed=7))
"""
