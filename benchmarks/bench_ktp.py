"""KTP fixtures per second on N workers against a baseline in the same run, plus the validator's cost.

Baseline: a bare Pillow render of a plain card-sized image (1012x638, the card's 300 dpi canvas) with the
card's lines of text, then a JPEG encode - the floor any card fixture costs - on the same N workers.
Goal: fixtures at >= 50% of the baseline's rate.

Both sides are timed in steady state, each on its own pool of N worker processes started and warmed
before any clock starts: the baseline's with its fonts loaded, the fixtures' (``ktp_fixtures.FixtureWorkers``,
forked after ``photo.warm_caches`` built the per-process caches) with a few chunks rendered, so their
first-touch costs are behind them. The machine may be shared, so the two sides take turns: ``--rounds``
rounds, each a baseline batch then a fixture batch of ``count / rounds``, and each side's rate is its
total count over its total time. CPU per image is measured inside the workers and printed beside.
The one-time costs are printed on their own (cache set-up in the parent; a cold ``render_fixtures``
call, pool start and warm-up included, the CLI's path for one set of ``--count``).
Run: ``python benchmarks/bench_ktp.py [--count 400] [--workers 2] [--rounds 4]``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from simulator.generators.ktp import fixtures, photo
from simulator.generators.ktp.layout import CARD_H, CARD_W, font
from simulator.io import ktp_fixtures
from simulator.rules.upload import validate_upload

SEED = 20201111


def baseline_one(index: int) -> int:
    """A plain card-sized image, the card's text lines, a JPEG encode."""
    image = Image.new("RGB", (CARD_W, CARD_H), (205, 228, 244))
    draw = ImageDraw.Draw(image)
    draw.text((CARD_W / 2, 40), "PROVINSI JAWA BARAT", font=font("bold", 30), fill=(0, 0, 0), anchor="mm")
    draw.text((CARD_W / 2, 80), "KABUPATEN BANDUNG", font=font("bold", 30), fill=(0, 0, 0), anchor="mm")
    draw.text(
        (34, 136),
        f"NIK : 32041231089{index % 100000:05d}",
        font=font("bold", 54),
        fill=(0, 0, 0),
        anchor="lm",
    )
    for row in range(13):
        y = 172 + 29 * row
        draw.text((34, y), f"Label {row}", font=font("regular", 21), fill=(0, 0, 0), anchor="lm")
        draw.text((282, y), f": VALUE {index} {row}", font=font("regular", 21), fill=(0, 0, 0), anchor="lm")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return len(buffer.getvalue())


def baseline_batch(indexes: range) -> float:
    """CPU seconds this worker spent on a batch of baseline images."""
    start = time.process_time()
    for index in indexes:
        baseline_one(index)
    return time.process_time() - start


def fixture_chunk(task: ktp_fixtures.Task) -> float:
    """CPU seconds this worker spent rendering (and writing) one chunk of fixtures."""
    start = time.process_time()
    ktp_fixtures.render_chunk(task)
    return time.process_time() - start


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (a pool's workers, once joined)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def cold_render(people: list[dict], count: int, workers: int) -> tuple[float, float]:
    """(fixtures/s, CPU ms per fixture) of one ``render_fixtures`` call: pool start and warm-up included."""
    with tempfile.TemporaryDirectory(prefix="bench-ktp-cold-") as tmp:
        cpu = cpu_seconds()
        start = time.perf_counter()
        ktp_fixtures.render_fixtures(people, Path(tmp), count=count, seed=SEED + 1, workers=workers)
        rate = count / (time.perf_counter() - start)
        return rate, (cpu_seconds() - cpu) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    load = os.getloadavg()
    people = fixtures.generated_people(min(args.count, 2000), 7)
    setup = time.process_time()
    photo.warm_caches()
    setup = time.process_time() - setup

    per_round = -(-args.count // args.rounds)
    # Each round's work for a side is cut into 5 equal parts per worker, so the workers end together.
    part = -(-per_round // (5 * args.workers))
    variants = fixtures.assign_variants(per_round * args.rounds, fixtures.parse_mix(None), SEED)
    base_time = base_cpu = fix_time = fix_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-ktp-") as tmp:
        out = Path(tmp)
        (out / ktp_fixtures.FILES_DIR).mkdir()
        # Warm-up fixtures: other indexes (and files) than the timed ones, the same default mix.
        warm_count = 4 * ktp_fixtures.CHUNK * args.workers
        warm = ktp_fixtures.plan_tasks(out, variants[:warm_count], SEED, start=10**6)
        fork = multiprocessing.get_context("fork")
        with (
            fork.Pool(args.workers) as base_pool,
            ktp_fixtures.FixtureWorkers(people, args.workers) as fix_pool,
        ):
            base_pool.map(baseline_batch, [range(i, i + 8) for i in range(0, 8 * args.workers * 2, 8)])
            list(fix_pool.imap(warm, fixture_chunk))
            for round_ in range(args.rounds):
                first, last = round_ * per_round, (round_ + 1) * per_round
                start = time.perf_counter()
                batches = [range(i, min(i + part, last)) for i in range(first, last, part)]
                base_cpu += sum(base_pool.map(baseline_batch, batches))
                base_time += time.perf_counter() - start
                mine = ktp_fixtures.plan_tasks(out, variants[first:last], SEED, start=first, chunk=part)
                start = time.perf_counter()
                fix_cpu += sum(fix_pool.imap(mine, fixture_chunk))
                fix_time += time.perf_counter() - start
        valid = [
            path
            for index, variant in enumerate(variants)
            if variant == "valid"
            for path in (out / ktp_fixtures.FILES_DIR).glob(f"ktp_{index + 1:06d}.*")
        ]
        timings = []
        for path in valid:
            data = path.read_bytes()
            start = time.perf_counter()
            validate_upload(data, path.name)
            timings.append((time.perf_counter() - start) * 1000)

    cold_rate, cold_cpu = cold_render(people, args.count, args.workers)
    timed = per_round * args.rounds
    base_rate, fix_rate = timed / base_time, timed / fix_time
    base_ms, fix_ms = base_cpu * 1000 / timed, fix_cpu * 1000 / timed
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in load)}; at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"baseline (plain card + text + JPEG), {args.workers} workers: {base_rate:8.1f} images/s, "
        f"{base_ms:.1f} ms CPU each"
    )
    print(
        f"KTP fixtures (default mix, files written), {args.workers} workers: {fix_rate:8.1f} fixtures/s, "
        f"{fix_ms:.1f} ms CPU each"
    )
    print(
        f"ratio fixtures/baseline: {fix_rate / base_rate:.2f}  (goal >= 0.50); by CPU {base_ms / fix_ms:.2f}"
        f"  [{args.rounds} alternating rounds of {per_round}, both pools warm]"
    )
    print(f"at this rate 400,000 fixtures take {400_000 / fix_rate / 60:.0f} min on {args.workers} workers")
    print(f"one-time per-process caches (photo.warm_caches, run once before forking): {setup:.2f} s CPU")
    print(
        f"cold render_fixtures of {args.count} (pool start, worker warm-up, manifest): {cold_rate:.1f} "
        f"fixtures/s, {cold_cpu:.1f} ms CPU each"
    )
    q = statistics.quantiles(timings, n=20)
    print(
        f"validate_upload on {len(timings)} valid photos: median {statistics.median(timings):.1f} ms, "
        f"p95 {q[18]:.1f} ms (1 process)"
    )


if __name__ == "__main__":
    main()
