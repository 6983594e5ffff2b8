"""Population files as every command reads them: one manifest schema, paths confined to the
directory, size and sha256 checked by every reader, rewrites atomic as a whole, the usual file
mode, and what a killed run left removed by the next one."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import simulator
from simulator.cli import main
from simulator.errors import InvalidInputFile
from simulator.io import atomic, leftovers
from simulator.io.manifest import load_manifests
from simulator.io.population import write_population
from simulator.io.reader import read_table

SIZE, CHUNK = 1500, 1000


def _population(directory: Path, seed: int = 1, fmt: str = "csv") -> Path:
    write_population(directory, SIZE, seed, fmt=fmt, chunk_rows=CHUNK)
    return directory


def _edit_manifest(directory: Path, change) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _readers():
    """Every command's way into a population directory."""
    from simulator.api.registry import load_residents
    from simulator.generators.ktp.cli import load_people
    from simulator.seed import seed_database
    from simulator.surge.applicants import load_applicants

    return {
        "ktp": lambda d: load_people(d),
        "serve --registry": lambda d: load_residents(None, d),
        "surge": lambda d: load_applicants(d, 0, 0),
        "seed-db --from": lambda d: seed_database(str(d.parent / "qa.db"), population_dir=d, workers=1),
    }


READERS = ["ktp", "serve --registry", "surge", "seed-db --from"]


@pytest.mark.parametrize("reader", READERS)
def test_every_reader_refuses_a_changed_file(tmp_path, reader):
    population = _population(tmp_path / "pop")
    applicants = population / "applicants.csv"
    lines = applicants.read_bytes().splitlines(keepends=True)
    applicants.write_bytes(lines[0] + lines[2] + lines[1] + b"".join(lines[3:]))  # same size, rows swapped
    residents = population / "residents.csv"
    residents.write_bytes(residents.read_bytes().replace(b"\n", b"\r\n", 1))  # one byte longer
    with pytest.raises(InvalidInputFile, match="sha256 differs|the manifest says"):
        _readers()[reader](population)
    assert not (tmp_path / "qa.db.passwords.csv").exists()


def test_seed_db_from_a_mixed_population_loads_nothing(tmp_path, capsys):
    population = _population(tmp_path / "pop", seed=1)
    other = _population(tmp_path / "other", seed=2)
    os.replace(other / "residents.csv", population / "residents.csv")  # new residents, old manifest
    with pytest.raises(SystemExit) as exit_:
        main(["seed-db", "--db", str(tmp_path / "qa.db"), "--from", str(population), "--workers", "1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "residents.csv" in err and "Traceback" not in err
    assert not (tmp_path / "qa.db.passwords.csv").exists()


def test_a_rewrite_killed_half_way_leaves_no_readable_population(tmp_path, monkeypatch):
    population = _population(tmp_path / "pop", seed=1)
    commit = atomic.AtomicFile.commit

    def killed_after_residents(self):
        if self.target.name == "applicants.csv":
            raise KeyboardInterrupt  # as if killed between two renames
        commit(self)

    monkeypatch.setattr(atomic.AtomicFile, "commit", killed_after_residents)
    with pytest.raises(KeyboardInterrupt):
        write_population(population, SIZE, 2, chunk_rows=CHUNK)
    monkeypatch.undo()
    # New residents beside old applicants: no manifest claims them as a whole.
    with pytest.raises(InvalidInputFile, match="no manifest.json"):
        load_manifests(population)
    write_population(population, SIZE, 2, chunk_rows=CHUNK)  # the rerun completes it
    assert load_manifests(population)[0]["seed"] == 2
    assert read_table(population, "applicants").num_rows == SIZE


def test_a_failed_rewrite_keeps_the_old_population(tmp_path):
    population = _population(tmp_path / "pop", seed=1)

    def disk_full(_persons: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_population(population, SIZE, 2, chunk_rows=CHUNK, progress=disk_full)
    assert load_manifests(population)[0]["seed"] == 1  # nothing was replaced, nothing withdrawn
    assert read_table(population, "residents").num_rows > 0
    assert not [p for p in population.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m: m.update(shard=3), "'shard' must be an object"),
        (lambda m: m["shard"].update(index="0"), "'shard.index' must be an integer"),
        (lambda m: m["shard"].update(index=2), "needs 0 <= index < count"),
        (lambda m: m.update(size=True), "'size' must be an integer"),
        (lambda m: m.update(format="xlsx"), "'format' must be one of"),
        (lambda m: m.pop("files"), "no 'files' key"),
        (lambda m: m["files"]["residents"].update(bytes="12"), "'files.residents.bytes' must be an integer"),
        (lambda m: m["files"]["residents"].update(sha256="abc"), "not 64 hex digits"),
        (lambda m: m["files"]["residents"].update(path="/etc/hostname"), "paths outside the population"),
        (lambda m: m["files"]["applicants"].update(path="../applicants.csv"), "paths outside the population"),
        (lambda m: m.update(manifest_version=7), "manifest_version 7"),
    ],
)
def test_one_manifest_schema_for_every_reader(tmp_path, change, fragment):
    population = _population(tmp_path / "pop")
    _edit_manifest(population, change)
    for reader in READERS:
        with pytest.raises(InvalidInputFile, match=re.escape(fragment)):
            _readers()[reader](population)


def test_a_symlink_out_of_the_directory_is_refused(tmp_path):
    population = _population(tmp_path / "pop")
    outside = tmp_path / "elsewhere.csv"
    os.replace(population / "residents.csv", outside)
    (population / "residents.csv").symlink_to(outside)
    with pytest.raises(InvalidInputFile, match="paths outside the population"):
        read_table(population, "residents")


def test_a_bad_manifest_is_one_line_on_the_command_line(tmp_path, capsys):
    population = _population(tmp_path / "pop")
    _edit_manifest(population, lambda m: m.update(shard=3))
    for args in (
        ["seed-db", "--db", str(tmp_path / "qa.db"), "--from", str(population)],
        ["ktp", "--population", str(population), "--count", "2", "--out", str(tmp_path / "ktp")],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "'shard' must be an object" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_files_get_the_usual_mode_and_passwords_stay_private(tmp_path):
    from simulator.seed import seed_database

    previous = os.umask(0o022)
    try:
        population = _population(tmp_path / "pop", fmt="parquet")
        seed_database(str(tmp_path / "qa.db"), population_dir=population, workers=1)
    finally:
        os.umask(previous)
    for path in population.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name
    assert stat.S_IMODE((tmp_path / "qa.db.passwords.csv").stat().st_mode) == 0o600


def test_one_atomic_write_helper():
    """No module renames a temporary file into place but io/atomic.py."""
    root = Path(simulator.__file__).parent
    others = [
        p.relative_to(root)
        for p in root.rglob("*.py")
        if p.name != "atomic.py" and re.search(r"os\.replace\(|mkstemp\(|os\.rename\(", p.read_text())
    ]
    assert others == []


# --- what a killed run leaves -------------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def _segments(pid: int) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if name.startswith(f"psim-{pid}-")]


def _temp_files(directory: Path, pid: int) -> list[str]:
    return [name for name in os.listdir(directory) if f".{pid}@" in name and name.endswith(".tmp")]


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm on this system")
def test_the_next_population_run_removes_what_a_killed_one_left(tmp_path):
    out = tmp_path / "pop"
    semaphores_before = {n for n in os.listdir("/dev/shm") if n.startswith("sem.mp-")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator.cli",
            "population",
            "--size",
            "2000000",
            "--workers",
            "2",
            "--chunk-rows",
            "20000",
            "--out",
            str(out),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (_segments(process.pid) and out.is_dir() and _temp_files(out, process.pid)):
            assert process.poll() is None and time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the whole run: its workers and resource tracker too
        process.wait()
    time.sleep(0.5)  # the killed workers' last writes
    assert _segments(process.pid) and _temp_files(out, process.pid)  # what the issue saw
    semaphores = {n for n in os.listdir("/dev/shm") if n.startswith("sem.mp-")} - semaphores_before
    old = time.time() - 2 * leftovers.SEMAPHORE_GRACE_S
    for name in semaphores:  # as a run an hour later would find them
        os.utime(f"/dev/shm/{name}", (old, old))

    write_population(out, SIZE, 1, chunk_rows=CHUNK)
    assert _segments(process.pid) == [] and _temp_files(out, process.pid) == []
    mapped = leftovers.mapped_shared_memory() or set()
    assert all(f"/dev/shm/{name}" in mapped or not os.path.exists(f"/dev/shm/{name}") for name in semaphores)


def test_seed_db_removes_its_own_and_the_generators_leftovers(tmp_path):
    from simulator.seed import seed_database

    dead, alive = _dead_pid(), os.getpid()
    host = leftovers.HOST
    dead_side = tmp_path / f".qa.db.passwords.csv.{dead}@{host}.0badf00d.tmp"
    live_side = tmp_path / f".qa.db.passwords.csv.{alive}@{host}.0badf00d.tmp"
    other_host = tmp_path / f".qa.db.passwords.csv.{dead}@elsewhere-invalid.0badf00d.tmp"
    handover = Path("/dev/shm") / f"{leftovers.SEGMENT_PREFIX}{dead}-test-slot0"  # a chunk's hand-over
    for path in (dead_side, live_side, other_host):
        path.write_text("email,password\n", encoding="utf-8")
    handover.write_bytes(b"x" * 1024)
    seed_database(str(tmp_path / "qa.db"), size=300, seed=3, workers=1, chunk_rows=100, block_rows=100)
    assert not dead_side.exists() and not handover.exists()
    assert live_side.exists()  # a running seed's
    assert other_host.exists()  # another machine's, on a shared disk: its pid means nothing here
