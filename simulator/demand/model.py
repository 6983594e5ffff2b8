"""The Monte Carlo of one wave: arrivals over time, the registration funnel, selection against the
quota, what follows acceptance (revocations, training, incentives), load per endpoint and upstream.

Everything works on aggregate counts (multinomial over time bins, binomial per stage,
hypergeometric for the draw), so a run of a 6-million-joiner wave costs a few array operations,
never a loop over people. Runs are simulated in fixed blocks with their own seeds: the same seed
gives the same forecast whatever the number of worker threads. The selection draws are
:mod:`simulator.demand.selection`.
"""

from __future__ import annotations

import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator import DEFAULT_SEED
from simulator.demand.params import Params, opening_time, per_person_budget_idr
from simulator.demand.selection import fcfs_select, largest_remainder, lottery_select, split_hypergeometric
from simulator.errors import InvalidOption
from simulator.progress import ProgressCallback
from simulator.rules.arrivals import UnreachableShare, decay_for_first_day_share

BLOCK_RUNS = 50  # runs per seeded block; fixed so results do not depend on the worker count

# Funnel stages of the new registrants of one wave, in order.
NEW_STAGES = ("accounts", "email_verified", "identity_valid", "phone_verified", "joined_new")

# Endpoint -> (requests key, [(stream stage, journey minute key)]): who reaches it and when.
ENDPOINTS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "POST /v1/accounts": ("accounts", [("accounts", "")]),
    "POST /v1/accounts/{id}/email/verify": ("email_verify", [("email_verified", "email_verify_minute")]),
    "POST /v1/sessions": (
        "sessions",
        [("email_verified", "email_verify_minute"), ("returning", "")],
    ),
    "PUT /v1/me/identity": ("identity", [("email_verified", "identity_minute")]),
    "PUT /v1/me/profile": ("profile", [("identity_valid", "profile_minute")]),
    "POST /v1/me/ktp": ("ktp", [("identity_valid", "profile_minute")]),
    "POST /v1/me/phone": ("phone", [("identity_valid", "phone_minute")]),
    "POST /v1/me/phone/verify": ("phone_verify", [("phone_verified", "phone_minute")]),
    "POST /v1/me/test": ("test", [("phone_verified", "test_minute")]),
    "POST /v1/waves/{wave}/join": (
        "join",
        [("joined_new", "join_minute"), ("returning", "returning_join_minute")],
    ),
    "GET /v1/waves/{wave}": (
        "wave_status",
        [("joined_new", "join_minute"), ("returning", "returning_join_minute")],
    ),
}

# Upstream -> the endpoint whose requests call it.
UPSTREAMS: dict[str, str] = {
    "identity_registry": "PUT /v1/me/identity",
    "email": "POST /v1/accounts",
    "sms": "POST /v1/me/phone",
    "photo_storage": "POST /v1/me/ktp",
}


@dataclass(frozen=True)
class TimeGrid:
    """Time bins after the opening: 1 minute wide through the rush, coarser to the close."""

    starts: np.ndarray  # minute after T0 at which each bin starts
    widths: np.ndarray  # minutes in each bin
    duration_minutes: int

    @classmethod
    def for_wave(cls, duration_minutes: int, fine_minutes: int, coarse_minutes: int) -> TimeGrid:
        fine = min(fine_minutes, duration_minutes)
        starts = np.concatenate([np.arange(fine), np.arange(fine, duration_minutes, coarse_minutes)])
        widths = np.diff(np.append(starts, duration_minutes))
        return cls(starts.astype(np.int64), widths.astype(np.int64), duration_minutes)

    @property
    def size(self) -> int:
        return int(self.starts.size)

    def bin_of(self, minutes: np.ndarray) -> np.ndarray:
        clipped = np.clip(minutes, 0, self.duration_minutes - 1)
        return np.searchsorted(self.starts, clipped, side="right") - 1

    def shift(self, counts: np.ndarray, lag_minutes: float) -> np.ndarray:
        """Move people counted in each bin ``lag_minutes`` later; past the close they stay in the
        last bin (nobody is lost). Counts in a bin are taken to start at the bin's start."""
        if lag_minutes <= 0:
            return counts
        target = self.bin_of(self.starts + int(round(lag_minutes)))
        # target is non-decreasing, so each output bin takes a contiguous range of input bins.
        bounds = np.searchsorted(target, np.arange(self.size + 1), side="left")
        cumulative = np.concatenate([np.zeros((counts.shape[0], 1), counts.dtype), np.cumsum(counts, 1)], 1)
        return cumulative[:, bounds[1:]] - cumulative[:, bounds[:-1]]


def exponential_bin_mass(grid: TimeGrid, time_constant_minutes: np.ndarray) -> np.ndarray:
    """Share of an exponential arrival (truncated at the close) falling in each bin, per run."""
    tau = np.asarray(time_constant_minutes, dtype=float).reshape(-1, 1)
    edges = np.append(grid.starts, grid.duration_minutes).astype(float)
    survival = np.exp(-edges[None, :] / tau)
    mass = survival[:, :-1] - survival[:, 1:]
    return mass / mass.sum(axis=1, keepdims=True)


def solve_decay_minutes(params: Params) -> float:
    """The decay time constant that makes the first 24 h hold ``arrivals.first_24h_share``.

    Calibrated on wave 9 (3.5M of 5.8M joined in the first 24 h; docs/domain.md), re-solved for the
    wave's own duration so the published share holds whatever the length of the wave.
    """
    arrivals = params["arrivals"]
    if arrivals["decay_hours"] > 0:
        return arrivals["decay_hours"] * 60.0
    duration = params["wave"]["duration_hours"] * 60.0
    day = 24 * 60.0
    if duration <= day:
        raise InvalidOption(
            "arrivals.first_24h_share cannot set the decay of a wave of 24 h or less: "
            "give arrivals.decay_hours (hours, > 0) instead"
        )
    try:
        decay_s = decay_for_first_day_share(
            arrivals["first_24h_share"],
            duration * 60.0,
            crowd_share=arrivals["crowd_share"],
            crowd_release_s=arrivals["crowd_release_minutes"] * 60.0,
            baseline_share=arrivals["baseline_share"],
        )
    except UnreachableShare as err:
        raise InvalidOption(
            f"arrivals.first_24h_share: expected a share between {err.low:.3f} and {err.high:.3f} for a "
            f"{duration / 60:g} h wave with these crowd/baseline shares, got {arrivals['first_24h_share']}"
        ) from err
    if math.isinf(decay_s):
        raise InvalidOption(
            "arrivals.first_24h_share: the crowd and baseline shares leave no rush to decay; "
            "lower arrivals.crowd_share or arrivals.baseline_share"
        )
    return decay_s / 60.0


def arrival_shape(grid: TimeGrid, params: Params, decay_minutes: np.ndarray) -> np.ndarray:
    """Probability that one arrival falls in each bin, per run: crowd + decaying rush + baseline."""
    arrivals = params["arrivals"]
    runs = decay_minutes.shape[0]
    crowd = exponential_bin_mass(grid, np.full(runs, arrivals["crowd_release_minutes"]))
    decay = exponential_bin_mass(grid, decay_minutes)
    baseline = (grid.widths / grid.duration_minutes)[None, :]
    decay_share = 1.0 - arrivals["crowd_share"] - arrivals["baseline_share"]
    shape = arrivals["crowd_share"] * crowd + decay_share * decay + arrivals["baseline_share"] * baseline
    return shape / shape.sum(axis=1, keepdims=True)


def _lognormal_multiplier(rng: np.random.Generator, cv: float, size: int) -> np.ndarray:
    if cv <= 0:
        return np.ones(size)
    sigma = math.sqrt(math.log(1 + cv * cv))
    return rng.lognormal(-sigma * sigma / 2, sigma, size)


def lag_cdf_days(params: Params, horizon_days: int = 730) -> dict[str, np.ndarray]:
    """Daily cumulative shares of the accepted who have bought, finished, been paid by day d.

    Buying is an exponential wait truncated at the 30-day window (after it the place is revoked);
    training and the first payment follow as further exponential waits.
    """
    lags = params["lags"]
    days = np.arange(horizon_days + 1, dtype=float)

    def pmf(mean: float, window: float | None = None) -> np.ndarray:
        cdf = 1 - np.exp(-days / mean)
        if window is not None:
            cdf = np.where(days >= window, 1.0, cdf / (1 - math.exp(-window / mean)))
        return np.diff(np.concatenate([[0.0], cdf]))

    buy = pmf(lags["buy_days"], lags["buy_window_days"])
    finish = np.convolve(buy, pmf(lags["training_days"]))[: days.size]
    paid = np.convolve(finish, pmf(lags["payment_days"]))[: days.size]
    return {
        "bought": np.cumsum(buy),
        "finished_training": np.cumsum(finish),
        "incentive_paid": np.cumsum(paid),
    }


@dataclass
class WaveRuns:
    """Per-run results of one wave (arrays over runs), plus the time grid and curves."""

    params: Params
    runs: int
    seed: int
    grid: TimeGrid
    decay_minutes: float
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # stage -> (runs,)
    peaks_per_second: dict[str, np.ndarray] = field(default_factory=dict)  # endpoint/upstream -> (runs,)
    requests_total: dict[str, np.ndarray] = field(default_factory=dict)  # endpoint/upstream -> (runs,)
    completions_peak_per_minute: dict[str, np.ndarray] = field(default_factory=dict)  # step -> (runs,)
    joins_per_bin: np.ndarray | None = None  # (runs, bins)
    province_names: tuple[str, ...] = ()
    province_quota: np.ndarray | None = None  # (provinces,)
    province_joined: np.ndarray | None = None  # (runs, provinces)
    province_accepted: np.ndarray | None = None  # (runs, provinces)
    fill_minute: np.ndarray | None = None  # fcfs: minute the quota filled, NaN if it never did

    @property
    def closes_at(self) -> dt.datetime:
        return opening_time(self.params) + dt.timedelta(hours=self.params["wave"]["duration_hours"])

    @property
    def results_at(self) -> dt.datetime:
        return self.closes_at + dt.timedelta(days=self.params["wave"]["results_delay_days"])


def simulate_wave(
    params: Params,
    *,
    runs: int = 1000,
    seed: int = DEFAULT_SEED,
    prior_pool: np.ndarray | None = None,
    workers: int = 1,
    progress: ProgressCallback | None = None,
) -> WaveRuns:
    """Simulate ``runs`` independent outcomes of one wave.

    ``prior_pool`` (one count per run) replaces ``demand.prior_pool`` when a season carries the
    verified-but-not-accepted people from wave to wave.
    """
    if runs < 1:
        raise InvalidOption(f"--runs: expected at least 1 run, got {runs}")
    if workers < 1:
        raise InvalidOption(f"workers: expected at least 1, got {workers}")
    wave = params["wave"]
    grid = TimeGrid.for_wave(
        int(round(wave["duration_hours"] * 60)),
        params["grid"]["fine_minutes"],
        params["grid"]["coarse_bin_minutes"],
    )
    decay_minutes = solve_decay_minutes(params)
    blocks = [(start, min(BLOCK_RUNS, runs - start)) for start in range(0, runs, BLOCK_RUNS)]
    seeds = np.random.SeedSequence(seed).spawn(len(blocks))

    def run_block(index: int) -> dict[str, Any]:
        start, size = blocks[index]
        pool = None if prior_pool is None else np.asarray(prior_pool[start : start + size], dtype=np.int64)
        out = _simulate_block(params, grid, decay_minutes, size, np.random.default_rng(seeds[index]), pool)
        if progress is not None:
            progress(size)
        return out

    if workers == 1 or len(blocks) == 1:
        results = [run_block(i) for i in range(len(blocks))]
    else:
        # numpy's samplers release the GIL, so threads share the two cores without pickling.
        with ThreadPoolExecutor(max_workers=workers) as pool_executor:
            results = list(pool_executor.map(run_block, range(len(blocks))))

    merged = WaveRuns(params=params, runs=runs, seed=seed, grid=grid, decay_minutes=decay_minutes)
    for name in ("counts", "peaks_per_second", "requests_total", "completions_peak_per_minute"):
        setattr(merged, name, {k: np.concatenate([r[name][k] for r in results]) for k in results[0][name]})
    for name in ("joins_per_bin", "province_joined", "province_accepted", "fill_minute"):
        setattr(merged, name, np.concatenate([r[name] for r in results]))
    merged.province_names = results[0]["province_names"]
    merged.province_quota = results[0]["province_quota"]
    return merged


def _simulate_block(
    params: Params,
    grid: TimeGrid,
    decay_minutes: float,
    runs: int,
    rng: np.random.Generator,
    prior_pool: np.ndarray | None,
) -> dict[str, Any]:
    wave, demand, funnel = params["wave"], params["demand"], params["funnel"]
    journey, requests, uncertainty = params["journey"], params["requests"], params["uncertainty"]

    # What a planner cannot know in advance varies from run to run.
    demand_level = _lognormal_multiplier(rng, uncertainty["demand_cv"], runs)
    join_rate = np.clip(
        rng.normal(demand["join_rate"], uncertainty["join_rate_sd"], runs)
        if uncertainty["join_rate_sd"] > 0
        else np.full(runs, demand["join_rate"]),
        0.0,
        1.0,
    )
    decay = decay_minutes * _lognormal_multiplier(rng, uncertainty["decay_cv"], runs)
    shape = arrival_shape(grid, params, decay)

    if prior_pool is None:
        pool = np.rint(demand["prior_pool"] * demand_level).astype(np.int64)
    else:
        pool = prior_pool
    signups = np.rint(demand["new_signups"] * demand_level).astype(np.int64)

    # New registrants: accounts per bin, then each stage a binomial share of the one before.
    stream: dict[str, np.ndarray] = {"accounts": rng.multinomial(signups, shape)}
    stream["email_verified"] = rng.binomial(stream["accounts"], funnel["email_verified"])
    stream["identity_valid"] = rng.binomial(stream["email_verified"], funnel["identity_valid"])
    stream["phone_verified"] = rng.binomial(stream["identity_valid"], funnel["phone_verified"])
    stream["joined_new"] = rng.binomial(stream["phone_verified"], join_rate[:, None])
    # Rolled-over, already verified people who come back to join this wave.
    returning_total = rng.binomial(pool, join_rate)
    stream["returning"] = rng.multinomial(returning_total, shape)

    shifted: dict[tuple[str, str], np.ndarray] = {}

    def at(stage: str, minute_key: str) -> np.ndarray:
        # Several endpoints see the same people at the same step: shift each stream once.
        if (stage, minute_key) not in shifted:
            shifted[stage, minute_key] = grid.shift(stream[stage], journey[minute_key] if minute_key else 0)
        return shifted[stage, minute_key]

    peaks: dict[str, np.ndarray] = {}
    totals: dict[str, np.ndarray] = {}
    seconds = (grid.widths * 60.0)[None, :]
    per_bin_requests: dict[str, np.ndarray] = {}
    for endpoint, (request_key, reaches) in ENDPOINTS.items():
        people = sum(at(stage, minute_key) for stage, minute_key in reaches)
        per_bin_requests[endpoint] = people * requests[request_key]
    for upstream, endpoint in UPSTREAMS.items():
        per_bin_requests[upstream] = per_bin_requests[endpoint] * params["upstreams"][upstream]
    all_requests = sum(per_bin_requests[e] for e in ENDPOINTS)
    per_bin_requests["all endpoints"] = all_requests
    for name, per_bin in per_bin_requests.items():
        peaks[name] = (per_bin / seconds).max(axis=1)
        totals[name] = per_bin.sum(axis=1)
    photo = params["photo"]
    peaks["photo_upload_bytes"] = peaks["photo_storage"] * photo["mean_bytes"]

    joins_new = at("joined_new", "join_minute")
    joins_returning = at("returning", "returning_join_minute")
    joins = joins_new + joins_returning

    # People completing each step per minute, at the moment they complete it.
    minutes = grid.widths[None, :].astype(float)
    step_times = {
        "accounts": at("accounts", ""),
        "email_verified": at("email_verified", "email_verify_minute"),
        "identity_valid": at("identity_valid", "identity_minute"),
        "phone_verified": at("phone_verified", "phone_minute"),
        "joined": joins,
    }
    completion_peaks = {step: (people / minutes).max(axis=1) for step, people in step_times.items()}

    # Selection, province by province (quota shares published for 2020; kompas, Feb 2021).
    allocation = params["allocation"]
    names = tuple(allocation["quota_thousands"])
    quota_weights = np.array([allocation["quota_thousands"][n] for n in names], dtype=float)
    applicant_table = allocation["applicant_thousands"] or allocation["quota_thousands"]
    applicant_weights = np.array([applicant_table[n] for n in names], dtype=float)
    applicant_p = applicant_weights / applicant_weights.sum()
    province_quota = largest_remainder(wave["quota"], quota_weights)
    province_priority = largest_remainder(wave["priority_list"], quota_weights)
    new_total = joins_new.sum(axis=1)
    ret_total = joins_returning.sum(axis=1)
    new_by_province = rng.multinomial(new_total, applicant_p)
    ret_by_province = rng.multinomial(ret_total, applicant_p)
    joined_by_province = new_by_province + ret_by_province

    fill_minute = np.full(runs, np.nan)
    if wave["mode"] == "lottery":
        accepted_ret = np.zeros(runs, dtype=np.int64)
        accepted_by_province = np.zeros_like(joined_by_province)
        for p in range(len(names)):  # a loop over provinces (ten groups), vectorised over runs
            groups = np.stack([ret_by_province[:, p], new_by_province[:, p]], axis=1)
            taken = lottery_select(rng, groups, province_quota[p], province_priority[p])
            accepted_ret += taken[:, 0]
            accepted_by_province[:, p] = taken.sum(axis=1)
        accepted = accepted_by_province.sum(axis=1)
    else:
        by_stream, fill_bin = fcfs_select(rng, [joins_returning, joins_new], wave["quota"])
        accepted_ret = by_stream[:, 0]
        accepted = by_stream.sum(axis=1)
        accepted_by_province = split_hypergeometric(rng, joined_by_province, accepted)
        fill_minute = np.where(fill_bin >= 0, grid.starts[np.maximum(fill_bin, 0)], np.nan)

    joined = new_total + ret_total
    revoked = rng.binomial(accepted, funnel["revoked"])
    bought = accepted - revoked
    finished = rng.binomial(bought, funnel["finished_training"])
    paid = rng.binomial(finished, funnel["incentive_paid"])
    counts = {stage: stream[stage].sum(axis=1) for stage in NEW_STAGES}
    phone_total = counts["phone_verified"]
    counts.update(
        {
            "prior_pool": pool,
            "returning": ret_total,
            "pool_not_joining": pool - ret_total,
            "verified_not_joining": phone_total - new_total,
            "joined": joined,
            "accepted": accepted,
            "accepted_returning": accepted_ret,
            "accepted_new": accepted - accepted_ret,
            "not_selected": joined - accepted,
            "pool_after": pool + phone_total - accepted,
            "revoked": revoked,
            "bought": bought,
            "finished_training": finished,
            "incentive_paid": paid,
        }
    )
    counts["photo_bytes_transferred"] = _sum_of_sizes(rng, totals["photo_storage"], photo)
    counts["photo_bytes_stored"] = _sum_of_sizes(
        rng, counts["identity_valid"] * params["upstreams"]["photo_storage"], photo
    )
    first_day_bins = grid.starts < 24 * 60
    counts["first_24h_share"] = joins[:, first_day_bins].sum(axis=1) / np.maximum(joined, 1)
    counts["decay_minutes"] = decay
    counts["join_rate"] = join_rate
    counts["budget_committed_idr"] = accepted * per_person_budget_idr(params)
    return {
        "counts": counts,
        "peaks_per_second": peaks,
        "requests_total": totals,
        "completions_peak_per_minute": completion_peaks,
        "joins_per_bin": joins.astype(np.float32),
        "province_names": names,
        "province_quota": province_quota,
        "province_joined": joined_by_province,
        "province_accepted": accepted_by_province,
        "fill_minute": fill_minute,
    }


def _sum_of_sizes(rng: np.random.Generator, photos: np.ndarray, photo: dict[str, Any]) -> np.ndarray:
    # The sum of many independent photo sizes is normal (central limit), so draw it directly.
    photos = np.asarray(photos, dtype=float)
    return rng.normal(photos * photo["mean_bytes"], np.sqrt(photos) * photo["sd_bytes"]).clip(min=0)


def oversize_share(params: Params) -> float:
    """Share of photos over the 2 MB limit if sizes are normal(mean, sd): rejected, re-uploaded."""
    photo = params["photo"]
    if photo["sd_bytes"] <= 0:
        return float(photo["mean_bytes"] > photo["max_bytes"])
    z = (photo["max_bytes"] - photo["mean_bytes"]) / photo["sd_bytes"]
    return 0.5 * math.erfc(z / math.sqrt(2))
