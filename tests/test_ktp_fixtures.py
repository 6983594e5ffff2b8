"""KTP fixture sets: every variant labelled right, the validator agrees with the manifest, OCR reads the
NIK back, same seed same bytes whatever the workers, the CLI, population input, manifest contents.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from simulator.cli import main
from simulator.errors import InvalidInputFile, InvalidOption
from simulator.generators.ktp import fixtures, photo, warp
from simulator.generators.ktp.card import render_card
from simulator.generators.ktp.layout import card_text
from simulator.generators.ktp.variants import VARIANTS, render_upload, render_variant
from simulator.io import ktp_fixtures
from simulator.rules.reasons import ACCEPT, UPLOAD_REASONS
from simulator.rules.upload import MAX_UPLOAD_BYTES, validate_upload

# A seed never used while tuning the renderer or the validator's thresholds.
FRESH_SEED = 90_417_331
AGREEMENT_COUNT = 180
OCR_SAMPLE = 36


@pytest.fixture(scope="module")
def people() -> list[dict]:
    return fixtures.generated_people(120, FRESH_SEED)


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory: pytest.TempPathFactory, people: list[dict]) -> tuple[Path, list[dict]]:
    """A fresh set: every variant at least several times, the rest valid; rendered on 2 workers."""
    out = tmp_path_factory.mktemp("ktp-set")
    bad_share = 5 / AGREEMENT_COUNT  # five of each bad variant
    mix = {name: bad_share for name in VARIANTS if name != "valid"}
    ktp_fixtures.render_fixtures(people, out, count=AGREEMENT_COUNT, seed=FRESH_SEED, mix=mix, workers=2)
    return out, ktp_fixtures.read_manifest(out)


def test_every_variant_and_every_upload_reason_is_in_the_set(fixture_set) -> None:
    _, rows = fixture_set
    variants = collections.Counter(row["variant"] for row in rows)
    assert set(variants) == set(VARIANTS)
    assert all(n >= 5 for n in variants.values()), variants
    verdicts = {row["expected"] for row in rows}
    assert verdicts == {ACCEPT} | {str(r) for r in UPLOAD_REASONS}


def test_validator_agrees_with_the_manifest(fixture_set) -> None:
    out, rows = fixture_set
    confusion: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    disagreements = []
    for row in rows:
        data = (out / row["file"]).read_bytes()
        verdict = validate_upload(data, Path(row["file"]).name)
        confusion[row["expected"]][verdict.verdict] += 1
        if verdict.verdict != row["expected"]:
            disagreements.append(
                (row["file"], row["variant"], row["expected"], verdict.verdict, verdict.measures)
            )
    labels = sorted({v for counter in confusion.values() for v in counter} | set(confusion))
    width = max(len(label) for label in labels)
    print(f"\nconfusion (rows: manifest says, columns: validator says), seed {FRESH_SEED}")
    print(" " * (width + 1) + " ".join(label[:8].rjust(8) for label in labels))
    for expected in labels:
        print(expected.ljust(width + 1) + " ".join(str(confusion[expected][got]).rjust(8) for got in labels))
    agreement = 1 - len(disagreements) / len(rows)
    print(f"agreement {agreement:.1%} on {len(rows)} files")
    for item in disagreements:
        print("  disagrees:", item)
    assert agreement >= 0.99


def test_manifest_describes_the_files(fixture_set) -> None:
    out, rows = fixture_set
    with open(out / "manifest.csv", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert list(csv_rows[0]) == list(ktp_fixtures.MANIFEST_COLUMNS)
    assert [r["file"] for r in csv_rows] == [r["file"] for r in rows]
    for row in rows:
        data = (out / row["file"]).read_bytes()
        assert len(data) == row["bytes"]
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert re.fullmatch(r"\d{16}", row["nik"])
        if row["expected"] == ACCEPT:
            assert row["bytes"] <= MAX_UPLOAD_BYTES
            image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
            assert image.size == (row["width"], row["height"])
            assert image.format in ("JPEG", "PNG") or Path(row["file"]).suffix in (".jpg", ".png")
        if row["variant"] == "too_large":
            assert row["bytes"] > MAX_UPLOAD_BYTES
        if row["variant"] == "empty":
            assert row["bytes"] == 0 and row["width"] is None


def test_valid_fixtures_vary_like_real_uploads(fixture_set) -> None:
    out, rows = fixture_set
    valid = [r for r in rows if r["expected"] == ACCEPT]
    sizes = {(r["width"], r["height"]) for r in valid}
    suffixes = collections.Counter(Path(r["file"]).suffix for r in valid)
    assert len(sizes) >= 5
    assert any(w < h for w, h in sizes) and any(w > h for w, h in sizes)  # portrait and landscape
    assert suffixes[".png"] >= 1 and suffixes[".jpg"] >= len(valid) // 2
    oriented = 0
    for row in valid:
        if row["file"].endswith(".jpg"):
            oriented += Image.open(out / row["file"]).getexif().get(0x0112, 1) != 1
    assert oriented >= 3  # some phones store the pixels turned and tag the orientation


def _nik_band(image: Image.Image) -> Image.Image:
    """An OCR front end knowing only the e-KTP layout: find the pale-blue card, level it, take the NIK band.

    Reads the red channel, where the red SPECIMEN mark and the blue ground are equally light.
    """
    small = image.copy()
    small.thumbnail((400, 400))
    hsv = np.asarray(small.convert("HSV")).astype(int)
    mask = (hsv[..., 0] >= 134) & (hsv[..., 0] <= 162) & (hsv[..., 1] >= 22) & (hsv[..., 2] >= 105)
    ys, xs = np.nonzero(mask)
    points = np.stack([xs, ys], 1).astype(float)
    values, vectors = np.linalg.eigh(np.cov((points - points.mean(0)).T))
    axis = vectors[:, np.argmax(values)]
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    angle = (angle + 90) % 180 - 90
    level = image.getchannel("R").rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    card = Image.fromarray((mask * 255).astype(np.uint8)).resize(image.size).rotate(angle, expand=True)
    crop = level.crop(card.getbbox())
    w, h = crop.size
    band = crop.crop((0, int(h * 0.12), int(w * 0.77), int(h * 0.32)))
    band = band.resize((1100, round(band.height * 1100 / band.width)), Image.Resampling.BICUBIC)
    pixels = np.asarray(band, dtype=np.uint8)
    return Image.fromarray(np.where(pixels > _otsu(pixels), 255, 0).astype(np.uint8))


def _otsu(pixels: np.ndarray) -> int:
    p = np.bincount(pixels.ravel(), minlength=256) / pixels.size
    omega, mu = np.cumsum(p), np.cumsum(p * np.arange(256))
    between = (mu[-1] * omega - mu) ** 2 / np.maximum(omega * (1 - omega), 1e-12)
    return int(np.argmax(between))


def test_tesseract_reads_the_nik_back(fixture_set) -> None:
    pytesseract = pytest.importorskip("pytesseract")
    if shutil.which("tesseract") is None:
        pytest.skip("the tesseract binary is not installed (apt-get install tesseract-ocr)")
    out, rows = fixture_set
    valid = [r for r in rows if r["expected"] == ACCEPT][:OCR_SAMPLE]
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    def read(row: dict) -> tuple[str, str]:
        image = ImageOps.exif_transpose(Image.open(out / row["file"])).convert("RGB")
        band = _nik_band(image)
        digits = ""
        # Block layout first; only when that finds no 16-digit run at all, sparse text (a second
        # segmentation, as OCR front ends do) - a wrong 16-digit read is never retried.
        for psm in (6, 11):
            text = pytesseract.image_to_string(
                band, config=f"--psm {psm} -c tessedit_char_whitelist=0123456789NIK:"
            )
            digits = re.sub(r"[^0-9]", "", text)
            if re.search(r"\d{16}", re.sub(r"[^0-9\n]", "", text)):
                break
        return row["nik"], digits

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(read, valid))
    hits = sum(nik in digits for nik, digits in results)
    rate = hits / len(results)
    print(f"\nTesseract read the NIK exactly from {hits}/{len(results)} valid fixtures ({rate:.1%})")
    for nik, digits in results:
        if nik not in digits:
            print(f"  {nik} read as {digits or '(nothing)'}")
    assert rate >= 0.9


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path, people: list[dict]) -> None:
    mix = "valid=0.5,cropped=0.1,blurry=0.1,photocopy=0.1,wrong_document=0.1,bomb=0.1"
    one = ktp_fixtures.render_fixtures(people, tmp_path / "one", count=12, seed=5, mix=mix, workers=1)
    two = ktp_fixtures.render_fixtures(people, tmp_path / "two", count=12, seed=5, mix=mix, workers=2)
    assert [r.sha256 for r in one] == [r.sha256 for r in two]
    assert (tmp_path / "one" / "manifest.csv").read_bytes() == (
        tmp_path / "two" / "manifest.csv"
    ).read_bytes()
    other = ktp_fixtures.render_fixtures(people, tmp_path / "other", count=12, seed=6, mix=mix, workers=1)
    assert [r.sha256 for r in one] != [r.sha256 for r in other]


def test_the_warp_writes_a_numpy_backed_frame_in_place_as_it_writes_a_plain_one() -> None:
    # paste_card writes through images mapped over the frame's own array (Pillow's fixed-point affine
    # warp cannot start at a column other than 0): pinned against the copying path.
    rng = np.random.default_rng(3)
    shot = photo.plan_shot(rng, (640, 480))
    card = Image.fromarray(rng.integers(0, 256, (290, 460, 3), dtype=np.uint8)).convert("RGBX")
    backing = np.full((481, 640, 4), 90, dtype=np.uint8)
    mapped = Image.frombuffer("RGBX", (640, 480), backing, "raw", "RGBX", 0, 1)
    plain = Image.new("RGBX", (640, 480), (90, 90, 90))
    warp.paste_card(mapped, card, shot.quad, backing=backing)
    warp.paste_card(plain, card, shot.quad)
    assert np.array_equal(backing[:480, :, :3], np.asarray(plain.convert("RGB")))
    assert (backing[:480] != 90).any(axis=-1).mean() > 0.2  # the card is there


def test_pdf_bytes_do_not_depend_on_the_clock(people: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    first = render_upload(people[0], 5, "pdf")[0]
    later = time.struct_time((2031, 1, 2, 3, 4, 5, 3, 2, 0))
    monkeypatch.setattr(time, "gmtime", lambda *_: later)  # what Pillow dates a PDF with by default
    assert render_upload(people[0], 5, "pdf")[0] == first


def test_render_upload_gives_a_post_body(people: list[dict]) -> None:
    data, filename, content_type = render_upload(people[0], 123)
    assert filename.endswith((".jpg", ".png")) and content_type in ("image/jpeg", "image/png")
    assert validate_upload(data, filename).accepted
    assert render_upload(people[0], 123) == (data, filename, content_type)
    bad, name, ctype = render_upload(people[0], 123, "pdf")
    assert name.endswith(".pdf") and ctype == "application/pdf" and bad.startswith(b"%PDF")
    with pytest.raises(InvalidOption, match="unknown KTP variant"):
        render_upload(people[0], 1, "selfie")


def test_card_prints_the_residents_fields(people: list[dict]) -> None:
    person = people[0]
    text = card_text(person, fixtures_issue := __import__("datetime").date(2015, 3, 2))
    printed = dict(text.rows)
    assert text.nik == person["nik"]
    assert text.province == f"PROVINSI {person['province']}"
    assert printed["Nama"] == person["full_name"].upper()
    assert printed["Jenis Kelamin"] == {"L": "LAKI-LAKI", "P": "PEREMPUAN"}[person["gender"]]
    assert printed["Tempat/Tgl Lahir"].endswith(person["birth_date"].strftime("%d-%m-%Y"))
    assert printed["RT/RW"] == person["rt_rw"] and printed["Kecamatan"] == person["district"]
    assert printed["Kewarganegaraan"] == "WNI" and printed["Berlaku Hingga"] == "SEUMUR HIDUP"
    assert text.issue_date == f"{fixtures_issue:%d-%m-%Y}"
    with pytest.raises(InvalidInputFile, match="16 digits"):
        card_text({**person, "nik": "12345"}, fixtures_issue)


def test_cards_differ_per_person_and_carry_the_specimen_mark(people: list[dict]) -> None:
    a = np.asarray(render_card(people[0]), dtype=np.int16)
    b = np.asarray(render_card(people[1]), dtype=np.int16)
    box = (slice(140, 400), slice(770, 978))  # the portrait box
    assert np.abs(a[box] - b[box]).mean() > 5
    # One person, one card: every upload of theirs shows the same face and signature.
    assert np.array_equal(a, np.asarray(render_card(people[0]), dtype=np.int16))
    # The SPECIMEN red shows in every corner region of the card, so no crop of a field escapes it.
    for rows, cols in (
        (slice(0, 200), slice(0, 330)),
        (slice(200, 420), slice(330, 660)),
        (slice(420, 560), slice(0, 330)),
    ):
        patch = a[rows, cols]
        reddish = (patch[..., 0] - patch[..., 2] > 10) & (patch[..., 0] > 150)
        assert reddish.mean() > 0.01


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ("valid=0.8,selfie=0.2", "unknown variant"),
        ("valid=abc", "must be a number"),
        ("valid", "not name=share"),
        ("valid=0.9,cropped=0.3", "more than 1"),
        ("valid=-0.1", "not negative"),
    ],
)
def test_bad_mix_is_refused_clearly(mix: str, message: str) -> None:
    with pytest.raises(InvalidOption, match=message):
        fixtures.parse_mix(mix)


def test_mix_shares_are_exact() -> None:
    weights = fixtures.parse_mix("valid=0.5,cropped=0.25")
    assert weights["valid"] == 0.5 and weights["cropped"] == 0.25
    assert sum(weights.values()) == pytest.approx(1)
    counts = collections.Counter(fixtures.assign_variants(100, weights, seed=1))
    assert counts["valid"] == 50 and counts["cropped"] == 25


def _exit_code(args: list[str]) -> int:
    """Run the front door as the shell would; 0 when it returns normally."""
    try:
        main(args)
    except SystemExit as done:
        return done.code or 0
    return 0


def test_cli_renders_from_a_population_dir_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from simulator.io.population import write_population

    pop = tmp_path / "pop"
    write_population(pop, 30, 3)
    out = tmp_path / "ktp"
    args = ["ktp", "--population", str(pop), "--count", "12", "--mix", "valid=0.75,pdf=0.25"]
    assert _exit_code([*args, "--seed", "9", "--out", str(out), "--workers", "2"]) == 0
    rows = ktp_fixtures.read_manifest(out)
    assert len(rows) == 12 and collections.Counter(r["variant"] for r in rows) == {"valid": 9, "pdf": 3}
    assert all(r["applicant_id"] for r in rows)

    valid = [str(out / r["file"]) for r in rows if r["variant"] == "valid"]
    pdfs = [str(out / r["file"]) for r in rows if r["variant"] == "pdf"]
    capsys.readouterr()
    assert _exit_code(["ktp", "check", *valid]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(valid) and all(line.startswith("accept ") for line in lines)
    assert _exit_code(["ktp", "check", valid[0], pdfs[0]]) == 1
    assert "UNSUPPORTED_FORMAT" in capsys.readouterr().out
    assert _exit_code(["ktp", "check", "--json", pdfs[0]]) == 1
    assert '"verdict":"UNSUPPORTED_FORMAT"' in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _exit_code(["ktp", "--count", "3", "--mix", "valid=2", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --mix") and err.count("\n") == 1
    assert _exit_code(["ktp", "--population", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert "not a population directory" in capsys.readouterr().err
    assert _exit_code(["ktp", "check", str(tmp_path / "nope.jpg")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_renders_with_its_label(variant: str, people: list[dict]) -> None:
    upload = render_variant(people[3], 2024, variant)
    assert upload.variant == variant
    assert upload.expected == str(VARIANTS[variant].expected)
    assert validate_upload(upload.data, upload.filename).verdict == upload.expected
