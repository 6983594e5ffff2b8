"""KTP fixtures per second on N workers against a baseline in the same run, plus the validator's cost.

Baseline: a bare Pillow render of a plain card-sized image (1012x638, the card's 300 dpi canvas) with the
card's lines of text, then a JPEG encode - the floor any card fixture costs. Goal: fixtures at >= 50%
of the baseline's rate. Run: ``python benchmarks/bench_ktp.py [--count 400] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from simulator.generators.ktp import fixtures
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


def baseline_rate(count: int, workers: int) -> float:
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(baseline_one, range(workers * 4))  # start the processes and load the fonts
        start = time.perf_counter()
        pool.map(baseline_one, range(count), chunksize=16)
        return count / (time.perf_counter() - start)


def fixture_rate(people: list[dict], count: int, workers: int, out: Path) -> tuple[float, list]:
    start = time.perf_counter()
    rows = fixtures.render_fixtures(people, out, count=count, seed=20201111, workers=workers)
    return count / (time.perf_counter() - start), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    people = fixtures.generated_people(min(args.count, 2000), 7)

    base = baseline_rate(args.count, args.workers)
    with tempfile.TemporaryDirectory(prefix="bench-ktp-") as tmp:
        out = Path(tmp)
        rate, rows = fixture_rate(people, args.count, args.workers, out)
        valid = [row for row in rows if row.expected == "accept"]
        timings = []
        for row in valid:
            data = (out / row.file).read_bytes()
            start = time.perf_counter()
            validate_upload(data, row.file)
            timings.append((time.perf_counter() - start) * 1000)
    print(f"baseline (plain card + text + JPEG), {args.workers} workers: {base:8.1f} images/s")
    print(f"KTP fixtures (default mix, files + manifest), {args.workers} workers: {rate:8.1f} fixtures/s")
    print(f"ratio fixtures/baseline: {rate / base:.2f}  (goal >= 0.50)")
    print(f"at this rate 400,000 fixtures take {400_000 / rate / 60:.0f} min")
    q = statistics.quantiles(timings, n=20)
    print(
        f"validate_upload on {len(timings)} valid photos: median {statistics.median(timings):.1f} ms, "
        f"p95 {q[18]:.1f} ms (1 process)"
    )


if __name__ == "__main__":
    main()
