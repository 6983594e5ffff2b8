"""Selection against the quota on aggregate counts: the 2020 lottery (the priority list first, then a
draw without replacement among the other joiners), first come first served (the quota fills in
arrival order, the last places drawn among the filling bin's joiners), and whole-number splits.
"""

from __future__ import annotations

import numpy as np


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split a whole number by weights so the parts are whole and add up exactly."""
    if total == 0 or weights.sum() == 0:
        return np.zeros(weights.shape, dtype=np.int64)
    exact = total * weights / weights.sum()
    parts = np.floor(exact).astype(np.int64)
    short = total - int(parts.sum())
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[:short]] += 1
    return parts


def lottery_select(
    rng: np.random.Generator,
    joined_by_group: np.ndarray,
    quota: int | np.ndarray,
    priority: int | np.ndarray = 0,
) -> np.ndarray:
    """The 2020 selection: the priority list (ministries' NIKs) first, then a random draw among
    the other verified joiners. ``joined_by_group`` is (runs, groups), e.g. rolled-over vs new
    joiners; returns the accepted per group. Who is on the priority list is independent of the
    group, so the whole accepted set is a uniform draw without replacement (hypergeometric)."""
    joined_by_group = np.asarray(joined_by_group, dtype=np.int64)
    joined = joined_by_group.sum(axis=1)
    accepted = np.minimum(np.asarray(quota, dtype=np.int64), joined)
    accepted = np.maximum(accepted, np.minimum(np.asarray(priority, dtype=np.int64), joined))
    return split_hypergeometric(rng, joined_by_group, accepted)


def split_hypergeometric(rng: np.random.Generator, counts: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """Draw ``sample`` people without replacement from groups of ``counts`` (runs, groups)."""
    counts = np.asarray(counts, dtype=np.int64)
    taken = np.zeros_like(counts)
    remaining_sample = np.asarray(sample, dtype=np.int64).copy()
    remaining_people = counts.sum(axis=1)
    for g in range(counts.shape[1] - 1):  # a loop over groups (a handful), not people
        others = remaining_people - counts[:, g]
        draw = np.where(
            remaining_sample > 0,
            rng.hypergeometric(counts[:, g], np.maximum(others, 0), np.maximum(remaining_sample, 0)),
            0,
        )
        taken[:, g] = draw
        remaining_sample -= draw
        remaining_people = others
    taken[:, -1] = remaining_sample
    return taken


def fcfs_select(
    rng: np.random.Generator, joins_by_stream: list[np.ndarray], quota: int
) -> tuple[np.ndarray, np.ndarray]:
    """First come, first served: the quota fills in arrival order and the wave refuses the rest.

    ``joins_by_stream`` holds (runs, bins) join counts per stream. In the bin in which the quota
    fills, the last places go to a uniform draw among that bin's joiners. Returns the accepted
    per stream (runs, streams) and the fill bin per run (-1 where the quota never filled).
    """
    stacked = np.stack(joins_by_stream, axis=-1).astype(np.int64)  # runs, bins, streams
    cumulative = np.cumsum(stacked.sum(axis=-1), axis=1)
    full = cumulative[:, -1] >= quota
    fill_bin = np.where(full, np.argmax(cumulative >= quota, axis=1), -1)
    bins = stacked.shape[1]
    before = np.arange(bins)[None, :] < np.where(full, fill_bin, bins)[:, None]
    accepted = np.where(before[..., None], stacked, 0).sum(axis=1)
    rows = np.nonzero(full)[0]
    if rows.size:
        places = quota - accepted[rows].sum(axis=1)
        accepted[rows] += split_hypergeometric(rng, stacked[rows, fill_bin[rows], :], places)
    return accepted, fill_bin
