"""Population files: determinism (seed, workers, shards), the three formats, the manifest, atomic
writes, and readers that name the file, row and column of anything wrong."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from simulator import cli as front_door
from simulator.errors import InvalidInputFile, InvalidOption
from simulator.generators import population as population_module
from simulator.generators.faker_provider import PrakerjaProvider
from simulator.generators.population import generate, generate_tables
from simulator.generators.schema import RESIDENT_SCHEMA, SCHEMAS
from simulator.io.population import write_population
from simulator.io.reader import iter_batches, read_table
from simulator.rules.nik import parse_nik

SIZE = 3_000
CHUNK = 1_000


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference():
    return generate_tables(SIZE, 9, chunk_rows=CHUNK)


def test_same_seed_same_population_other_seed_other_population(reference):
    again = generate_tables(SIZE, 9, chunk_rows=CHUNK)
    assert again[0].equals(reference[0]) and again[1].equals(reference[1])
    other = generate_tables(SIZE, 10, chunk_rows=CHUNK)
    assert not other[0].column("nik").equals(reference[0].column("nik"))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_format_round_trips_to_the_same_tables(tmp_path, reference, fmt):
    manifest = write_population(tmp_path, SIZE, 9, fmt=fmt, chunk_rows=CHUNK)
    assert sorted(os.listdir(tmp_path)) == sorted(["manifest.json", f"residents.{fmt}", f"applicants.{fmt}"])
    assert read_table(tmp_path, "residents").equals(reference[0])
    assert read_table(tmp_path, "applicants").equals(reference[1])
    for name in ("residents", "applicants"):
        entry = manifest["files"][name]
        assert entry["rows"] == SIZE and entry["sha256"] == sha(tmp_path / entry["path"])
        assert [c["name"] for c in entry["columns"]] == SCHEMAS[name].names
    assert (
        manifest["seed"] == 9 and manifest["size"] == SIZE and manifest["shard"] == {"index": 0, "count": 1}
    )
    assert manifest["generator_version"] == population_module.GENERATOR_VERSION
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_strings_keep_their_leading_zeros_in_text_formats(tmp_path):
    write_population(tmp_path / "c", 1_500, 4, fmt="csv", chunk_rows=CHUNK)
    write_population(tmp_path / "j", 1_500, 4, fmt="jsonl", chunk_rows=CHUNK)
    csv_text = (tmp_path / "c" / "applicants.csv").read_text()
    assert ',"08' in csv_text  # phones are quoted strings, never numbers
    first = json.loads((tmp_path / "j" / "applicants.jsonl").read_text().splitlines()[0])
    assert isinstance(first["phone"], str) and first["phone"].startswith("08")
    assert isinstance(first["nik"], str) and isinstance(first["postal_code"], str)
    assert isinstance(first["fate_email_verified"], bool) and isinstance(first["applicant_id"], int)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_are_byte_identical_whatever_the_number_of_workers(tmp_path, fmt):
    one = write_population(tmp_path / "one", SIZE, 9, fmt=fmt, workers=1, chunk_rows=CHUNK)
    two = write_population(tmp_path / "two", SIZE, 9, fmt=fmt, workers=2, chunk_rows=CHUNK)
    assert one == two
    for name in (f"residents.{fmt}", f"applicants.{fmt}", "manifest.json"):
        assert sha(tmp_path / "one" / name) == sha(tmp_path / "two" / name)
    # Workers hand chunks over in shared memory; nothing is left behind.
    if os.path.isdir("/dev/shm"):
        assert not _own_segments()


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_chunks_too_big_for_their_slot_travel_in_blocks_of_their_own(tmp_path, fmt, monkeypatch):
    from simulator.io import population as io

    one = write_population(tmp_path / "one", SIZE, 9, fmt=fmt, workers=1, chunk_rows=CHUNK)
    # Slots of ~1 byte per row: every table overflows its slot and takes the fallback path.
    monkeypatch.setitem(io._SLOT_BYTES_PER_ROW, fmt, 1)
    two = write_population(tmp_path / "two", SIZE, 9, fmt=fmt, workers=2, chunk_rows=CHUNK)
    assert one == two
    for name in (f"residents.{fmt}", f"applicants.{fmt}"):
        assert sha(tmp_path / "one" / name) == sha(tmp_path / "two" / name)
    if os.path.isdir("/dev/shm"):
        assert not _own_segments()


def test_shards_together_are_exactly_the_unsharded_population(tmp_path, reference):
    for index in range(3):
        write_population(tmp_path, SIZE, 9, fmt="parquet", shard=f"{index}/3", chunk_rows=CHUNK)
    assert "residents.shard-1-of-3.parquet" in os.listdir(tmp_path)
    assert read_table(tmp_path, "residents").equals(reference[0])
    assert read_table(tmp_path, "applicants").equals(reference[1])
    chunks = list(generate(SIZE, 9, shard_index=2, shard_count=3, chunk_rows=CHUNK))
    assert [c.index for c in chunks] == [2] and chunks[0].applicants.column("applicant_id")[
        0
    ].as_py() == 2_001


def test_niks_emails_and_phones_stay_unique_across_many_chunks():
    residents, applicants = generate_tables(40_000, 3, defects="none", chunk_rows=1_000)
    for table, column in (
        (residents, "nik"),
        (residents, "kk"),
        (applicants, "email"),
        (applicants, "phone"),
    ):
        values = table.column(column)
        if column == "kk":
            continue  # family members share one
        assert pc.count_distinct(values).as_py() == len(values), column
    # A family card number is never reused by two families.
    pairs = pa.table({"kk": residents.column("kk"), "village": residents.column("village_code")})
    assert pairs.group_by("kk").aggregate([("village", "count_distinct")]).column(1).to_pylist() == [1] * len(
        set(residents.column("kk").to_pylist())
    )
    for nik in residents.column("nik").to_pylist()[::997]:
        parse_nik(nik)


def test_a_failed_write_leaves_no_partial_files(tmp_path, monkeypatch):
    real = population_module.generate_chunk

    def broken(plan, k, **kwargs):
        if k == 2:
            raise RuntimeError("disk full, say")
        return real(plan, k, **kwargs)

    monkeypatch.setattr("simulator.io.population.generate_chunk", broken)
    with pytest.raises(RuntimeError):
        write_population(tmp_path, SIZE, 9, fmt="csv", chunk_rows=CHUNK)
    assert os.listdir(tmp_path) == []


def test_readers_name_the_file_row_and_column_of_bad_input(tmp_path):
    write_population(tmp_path, 1_200, 2, fmt="csv", chunk_rows=CHUNK)
    residents = tmp_path / "residents.csv"
    lines = residents.read_text().splitlines(keepends=True)
    # A NIK that lost its leading digits (a spreadsheet round trip) on data row 5.
    fields = lines[5].split(",")
    fields[0] = '"12345"'
    lines[5] = ",".join(fields)
    residents.write_text("".join(lines))
    with pytest.raises(InvalidInputFile, match="changed"):
        read_table(tmp_path, "residents")
    with pytest.raises(
        InvalidInputFile, match=r"residents\.csv: row 5, column nik: '12345' is not 16 digits"
    ):
        read_table(tmp_path, "residents", verify=False)
    # A missing column.
    header, *rest = lines
    residents.write_text(header.replace('"kk",', "").replace(',"kk"', "") + "".join(rest[:3]))
    with pytest.raises(InvalidInputFile, match="missing column.*kk"):
        read_table(residents, "residents")
    # A value of the wrong type.
    lines = (tmp_path / "applicants.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",true,", ",maybe,", 1).replace(",false,", ",maybe,", 1)
    (tmp_path / "applicants.csv").write_text("".join(lines))
    with pytest.raises(InvalidInputFile, match="applicants.csv"):
        read_table(tmp_path, "applicants", verify=False)
    with pytest.raises(InvalidInputFile, match="no manifest"):
        read_table(_empty_dir(tmp_path), "residents")
    with pytest.raises(InvalidOption):
        read_table(tmp_path, "people")


def _empty_dir(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_a_missing_file_and_a_jsonl_without_a_column_are_reported(tmp_path):
    write_population(tmp_path, 1_100, 2, fmt="jsonl", chunk_rows=CHUNK)
    text = (tmp_path / "residents.jsonl").read_text().replace('"religion":', '"agama":')
    (tmp_path / "residents.jsonl").write_text(text)
    with pytest.raises(InvalidInputFile, match="missing column.*religion"):
        read_table(tmp_path, "residents", verify=False)
    (tmp_path / "applicants.jsonl").unlink()
    with pytest.raises(InvalidInputFile, match="applicants.jsonl: missing"):
        read_table(tmp_path, "applicants")


def test_iter_batches_streams_bounded_batches_with_the_contract_schema(tmp_path):
    write_population(tmp_path, 2_500, 6, fmt="parquet", chunk_rows=CHUNK)
    batches = list(iter_batches(tmp_path, "residents", batch_rows=400))
    assert all(b.num_rows <= 400 for b in batches) and sum(b.num_rows for b in batches) == 2_500
    assert all(b.schema == RESIDENT_SCHEMA for b in batches)


def test_bad_options_are_refused_with_a_reason(tmp_path):
    with pytest.raises(InvalidOption, match="format"):
        write_population(tmp_path, 10, 1, fmt="xlsx")
    with pytest.raises(InvalidOption, match="I/N"):
        write_population(tmp_path, 10, 1, shard="3/2")
    with pytest.raises(InvalidOption, match="only 1 chunk"):
        write_population(tmp_path, 10, 1, shard="1/2")
    with pytest.raises(InvalidOption, match="size"):
        write_population(tmp_path, 0, 1)
    with pytest.raises(InvalidOption, match="shard"):
        generate(10, 1, shard_index=2, shard_count=2)  # checked at once, not at the first chunk
    with pytest.raises(InvalidOption, match="female_share"):
        generate(10, 1, female_share=1.5)
    with pytest.raises(InvalidOption, match="unknown province"):
        write_population(tmp_path, 10, 1, province="Atlantis")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InvalidOption, match="not a directory"):
        write_population(tmp_path / "afile", 10, 1)


def test_population_command_writes_files_and_user_errors_are_one_line(tmp_path, capsys):
    front_door.main(
        [
            "population",
            "--size",
            "1500",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "p"),
            "--format",
            "jsonl",
            "--chunk-rows",
            "1000",
        ]
    )  # success: returns, no exit
    assert "wrote 1,500 residents and 1,500 applicants" in capsys.readouterr().out
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["format"] == "jsonl"
    with pytest.raises(SystemExit) as done:
        front_door.main(["population", "--size", "10", "--out", str(tmp_path / "q"), "--defects", "bogus"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --defects") and "Traceback" not in err


def test_faker_provider_gives_valid_niks_kks_and_whole_ktp_records():
    from faker import Faker

    fake = Faker("id_ID")
    fake.add_provider(PrakerjaProvider)
    Faker.seed(5)
    woman = parse_nik(fake.nik(gender="P", district_code="51.71.01"))
    assert woman.gender == "P" and woman.district == "DENPASAR SELATAN"
    assert parse_nik(fake.nik()).serial >= 1
    kk = fake.kk(district_code="32.73.02")
    assert kk.startswith("327302") and len(kk) == 16
    person = fake.ktp_person()
    assert list(person) == RESIDENT_SCHEMA.names
    assert parse_nik(person["nik"]).birth_date == person["birth_date"]
    Faker.seed(5)
    fake.nik(gender="P", district_code="51.71.01"), fake.nik(), fake.kk(district_code="32.73.02")
    assert fake.ktp_person() == person  # seeded like any Faker provider


def test_a_directory_holds_one_population_but_may_hold_all_its_shards(tmp_path):
    write_population(tmp_path, 2_000, 1, fmt="csv", shard="0/2", chunk_rows=CHUNK)
    write_population(tmp_path, 2_000, 1, fmt="csv", shard="1/2", chunk_rows=CHUNK)
    write_population(tmp_path, 2_000, 1, fmt="csv", shard="1/2", chunk_rows=CHUNK)  # rerun: replaced
    assert read_table(tmp_path, "residents").num_rows == 2_000
    with pytest.raises(InvalidOption, match="another population"):
        write_population(tmp_path, 2_000, 2, fmt="csv", chunk_rows=CHUNK)


def test_nik_serials_stay_unique_where_districts_and_birth_dates_collide_often():
    # Kalimantan Utara has few districts: many people share a (district, birth date) across chunks.
    residents, _ = generate_tables(30_000, 8, province="65", defects="none", chunk_rows=1_000)
    niks = residents.column("nik").to_pylist()
    assert len(set(niks)) == len(niks)
    prefixes = collections.Counter(n[:12] for n in niks)  # district + birth date
    assert prefixes.most_common(1)[0][1] >= 2  # the case that needs serials really occurs
    serials = [int(n[12:]) for n in niks]
    assert min(serials) == 1 and max(serials) < 9000


def test_a_failed_parallel_write_leaves_no_files_and_no_shared_memory(tmp_path, monkeypatch):
    from simulator.io.files import StreamFile

    real = StreamFile.write
    calls = []

    def failing(self, data):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(StreamFile, "write", failing)
    with pytest.raises(OSError, match="No space"):
        write_population(tmp_path, 6_000, 1, fmt="csv", workers=2, chunk_rows=CHUNK)
    assert os.listdir(tmp_path) == []
    if os.path.isdir("/dev/shm"):
        assert not _own_segments()


def _own_segments() -> list[str]:
    """Shared-memory segments of writers run by this test process (others may run beside it)."""
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"psim-{os.getpid()}-")]


def test_a_segment_made_for_another_process_outlives_its_maker():
    """The adapter over multiprocessing's resource tracker (simulator/io/segments.py): if a new
    Python unlinks such a segment when its maker exits, the parallel writer loses chunks."""
    from multiprocessing import shared_memory

    name = f"psim-{os.getpid()}-adapter-test"
    code = (
        "from simulator.io.segments import create_for_owner\n"
        f"block = create_for_owner({name!r}, 4096)\n"
        "block.buf[:5] = b'chunk'\n"
        "block.close()\n"
    )
    made = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "leaked" not in made.stderr  # the tracker was told the segment is not its maker's
    block = shared_memory.SharedMemory(name=name)
    try:
        assert bytes(block.buf[:5]) == b"chunk"
    finally:
        block.close()
        block.unlink()
