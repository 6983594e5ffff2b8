"""KTP fixtures per second on N workers against a baseline in the same run, plus the validator's cost.

Baseline: a bare Pillow render of a plain card-sized image (1012x638, the card's 300 dpi canvas) with the
card's lines of text, then a JPEG encode - the floor any card fixture costs - on the same N workers.
Goal: fixtures at >= 50% of the baseline's rate. Both sides are timed in steady state: the baseline's
pool is started and its fonts loaded before its clock starts, and the fixtures' one-time per-process
caches (card layers, surfaces, noise; ``photo.warm_caches``, which ``render_fixtures`` runs once before
forking) are built before theirs - that set-up is timed and printed on its own. CPU per image (workers
and parent) is printed beside the rates, as the machine may be shared.
Run: ``python benchmarks/bench_ktp.py [--count 400] [--workers 2]``.
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
from simulator.rules.upload import validate_upload


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


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the pool's workers, once joined)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def baseline_rate(count: int, workers: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) of the baseline on ``workers`` processes."""
    cpu = cpu_seconds()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(baseline_one, range(workers * 4))  # start the processes and load the fonts
        start = time.perf_counter()
        pool.map(baseline_one, range(count), chunksize=16)
        rate = count / (time.perf_counter() - start)
        pool.close()
        pool.join()  # reaped, so their CPU shows in RUSAGE_CHILDREN
    return rate, (cpu_seconds() - cpu) * 1000 / (count + workers * 4)


def fixture_rate(people: list[dict], count: int, workers: int, out: Path) -> tuple[float, float, list]:
    """(fixtures/s, CPU ms per fixture, manifest rows); render_fixtures joins its pool before returning."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    rows = fixtures.render_fixtures(people, out, count=count, seed=20201111, workers=workers)
    rate = count / (time.perf_counter() - start)
    return rate, (cpu_seconds() - cpu) * 1000 / count, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    load = os.getloadavg()
    people = fixtures.generated_people(min(args.count, 2000), 7)

    base, base_cpu = baseline_rate(args.count, args.workers)
    setup = time.process_time()
    photo.warm_caches()
    setup = time.process_time() - setup
    with tempfile.TemporaryDirectory(prefix="bench-ktp-") as tmp:
        out = Path(tmp)
        rate, cpu, rows = fixture_rate(people, args.count, args.workers, out)
        valid = [row for row in rows if row.expected == "accept"]
        timings = []
        for row in valid:
            data = (out / row.file).read_bytes()
            start = time.perf_counter()
            validate_upload(data, row.file)
            timings.append((time.perf_counter() - start) * 1000)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in load)}")
    print(
        f"baseline (plain card + text + JPEG), {args.workers} workers: {base:8.1f} images/s, "
        f"{base_cpu:.1f} ms CPU each"
    )
    print(
        f"KTP fixtures (default mix, files + manifest), {args.workers} workers: {rate:8.1f} fixtures/s, "
        f"{cpu:.1f} ms CPU each"
    )
    print(f"one-time per-process caches (photo.warm_caches, run once before forking): {setup:.2f} s CPU")
    print(f"ratio fixtures/baseline: {rate / base:.2f}  (goal >= 0.50); by CPU {base_cpu / cpu:.2f}")
    print(f"at this rate 400,000 fixtures take {400_000 / rate / 60:.0f} min")
    q = statistics.quantiles(timings, n=20)
    print(
        f"validate_upload on {len(timings)} valid photos: median {statistics.median(timings):.1f} ms, "
        f"p95 {q[18]:.1f} ms (1 process)"
    )


if __name__ == "__main__":
    main()
