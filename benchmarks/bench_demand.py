"""Speed of the demand Monte Carlo: 1,000 runs of a 6-million-joiner wave (goal: under 5 s on
2 cores) against a per-person loop in pure Python, timed on a subsample in the same run and
scaled up to the same work (people x runs).

    python benchmarks/bench_demand.py [--runs 1000] [--workers 2] [--baseline-people 200000]
"""

from __future__ import annotations

import argparse
import bisect
import random
import time

import numpy as np

from simulator.demand.model import TimeGrid, arrival_shape, simulate_wave, solve_decay_minutes
from simulator.demand.params import load_params

# The default wave 9 calibration, with the pool raised so that the P50 wave has ~6M joiners.
SIX_MILLION = {"demand.prior_pool": 7_700_000}


def per_person_run(params: dict, people: int, rng: random.Random) -> dict[str, int]:
    """One run of the same model, one person at a time: what the vectorised code replaces."""
    wave, funnel = params["wave"], params["funnel"]
    grid = TimeGrid.for_wave(
        int(wave["duration_hours"] * 60), params["grid"]["fine_minutes"], params["grid"]["coarse_bin_minutes"]
    )
    shape = arrival_shape(grid, params, np.array([solve_decay_minutes(params)]))[0]
    cumulative = np.cumsum(shape).tolist()
    names = list(params["allocation"]["quota_thousands"])
    weights = [params["allocation"]["quota_thousands"][n] for n in names]
    province_cdf = np.cumsum(np.array(weights) / sum(weights)).tolist()
    share_new = params["demand"]["new_signups"] / (
        params["demand"]["new_signups"] + params["demand"]["prior_pool"]
    )
    join_rate = params["demand"]["join_rate"]
    joins_per_bin = [0] * grid.size
    joiners_by_province: list[list[int]] = [[] for _ in names]
    for person in range(people):
        arrival_bin = min(bisect.bisect_left(cumulative, rng.random()), grid.size - 1)
        if rng.random() < share_new:  # a new registrant goes through every check
            if rng.random() >= funnel["email_verified"] or rng.random() >= funnel["identity_valid"]:
                continue
            if rng.random() >= funnel["phone_verified"]:
                continue
        if rng.random() >= join_rate:
            continue
        joins_per_bin[arrival_bin] += 1
        province = min(bisect.bisect_left(province_cdf, rng.random()), len(names) - 1)
        joiners_by_province[province].append(person)
    quota_scale = people / 8_000_000
    accepted = revoked = 0
    for province, joiners in enumerate(joiners_by_province):
        quota = round(wave["quota"] * quota_scale * weights[province] / sum(weights))
        chosen = rng.sample(joiners, min(quota, len(joiners)))
        for _ in chosen:
            accepted += 1
            revoked += rng.random() < funnel["revoked"]
    return {"joined": sum(joins_per_bin), "accepted": accepted, "revoked": revoked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-people", type=int, default=200_000)
    args = parser.parse_args()

    params = load_params(overrides=SIX_MILLION)
    simulate_wave(params, runs=10, seed=0, workers=args.workers)  # warm-up (imports, caches)

    started = time.perf_counter()
    runs = simulate_wave(params, runs=args.runs, seed=1, workers=args.workers)
    vectorised_s = time.perf_counter() - started
    joined = float(np.median(runs.counts["joined"]))
    people_per_run = float(np.median(runs.counts["accounts"] + runs.counts["prior_pool"]))

    started = time.perf_counter()
    per_person_run(params, args.baseline_people, random.Random(1))
    baseline_sample_s = time.perf_counter() - started
    baseline_s = baseline_sample_s / args.baseline_people * people_per_run * args.runs

    print(
        f"vectorised: {args.runs:,} runs x {people_per_run / 1e6:.2f}M people "
        f"({joined / 1e6:.2f}M joiners, P50) "
        f"in {vectorised_s:.2f} s with {args.workers} worker(s)  [goal < 5 s]"
    )
    print(
        f"per-person Python loop: {args.baseline_people:,} people x 1 run in {baseline_sample_s:.2f} s "
        f"-> {baseline_s / 3600:,.1f} h for the same work"
    )
    print(f"ratio: {baseline_s / vectorised_s:,.0f}x faster")


if __name__ == "__main__":
    main()
