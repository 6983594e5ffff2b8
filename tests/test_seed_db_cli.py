"""``prakerja-sim seed-db`` as a user runs it: the summary, and one clear line for every bad input."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from simulator.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["seed-db", *args])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_seeds_a_sqlite_file_and_prints_the_summary(capsys, tmp_path):
    db = tmp_path / "qa.db"
    options = ["--size", "1500", "--seed", "4", "--as-of", "2026-11-27T22:00", "--chunk-rows", "500"]
    code, out, err = run(capsys, "--db", str(db), *options, "--workers", "1")
    assert code == 0, err
    assert "accounts per state" in out and "joined" in out and "rows/s" in out
    side_file = tmp_path / "qa.db.passwords.csv"
    assert f"plain passwords of the test users: {side_file}" in out
    with open(side_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {"email", "password", "state", "nik"} <= set(rows[0])

    # a second run without --truncate / --append refuses and says what to do
    code, _, err = run(capsys, "--db", str(db), "--size", "100")
    assert code == 2
    assert err.strip().startswith("error:") and "--truncate" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--size", "10", "--states", "registered=0.4"], "add up to 0.4"),
        (["--size", "10", "--states", "bogus=1"], "unknown state 'bogus'"),
        ([], "--size"),
        (["--size", "0"], "--size must be at least 1"),
        (["--from", "/nonexistent/pop"], "no such population directory"),
        (["--size", "10", "--truncate", "--append"], "exclude each other"),
        (["--size", "10", "--wave", "99"], "--wave"),
        (["--size", "10", "--password-cost", "7"], "password cost"),
        (["--size", "10", "--as-of", "yesterday"], "--as-of"),
        (["--size", "10", "--shard", "3/2"], "--shard"),
        # everyone selected: the population's defective and ineligible people cannot be
        (["--size", "400", "--states", "selected=1", "--workers", "1"], "are allowed there"),
    ],
)
def test_bad_options_end_in_one_clear_line(capsys, tmp_path, args, fragment):
    code, _, err = run(capsys, "--db", str(tmp_path / "x.db"), *args)
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.db.passwords.csv").exists()


@pytest.mark.parametrize(
    ("db", "fragment", "code"),
    [
        ("postgresql://postgres@db.invalid:5432/qa", "--allow-remote", 2),
        ("oracle://scott@127.0.0.1/qa", "unsupported database URL scheme", 2),
        ("postgresql://postgres@127.0.0.1:1/qa", "cannot reach the database", 3),
    ],
)
def test_bad_targets_are_refused_before_anything_is_written(capsys, db, fragment, code):
    exit_code, _, err = run(capsys, "--db", db, "--size", "10")
    assert exit_code == code
    assert fragment in err and "Traceback" not in err


def test_a_sqlite_file_in_a_missing_directory_is_refused(capsys, tmp_path):
    missing = tmp_path / "no-such-dir"
    for db in (str(missing / "qa.db"), f"sqlite:///{missing}/qa.db"):
        code, _, err = run(capsys, "--db", db, "--size", "10")
        assert code == 2 and "does not exist" in err and "Traceback" not in err
        assert not missing.exists()  # nothing created, as whoever ran it


def test_the_command_is_on_the_front_door():
    result = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "seed-db", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for option in ("--db", "--size", "--from", "--states", "--truncate", "--append", "--password-cost"):
        assert option in result.stdout


def test_passwords_of_a_server_database_never_land_in_the_current_directory(tmp_path, monkeypatch):
    from simulator.seed.runner import PASSWORDS_DIR_ENV, passwords_file
    from simulator.seed.target import parse_target

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PASSWORDS_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    target = parse_target("postgresql://postgres@127.0.0.1:5432/qa", environ={})
    path = passwords_file(target, None)
    assert path == tmp_path / "data" / "prakerja-sim" / "passwords" / "seed-qa.passwords.csv"
    assert (path.parent.stat().st_mode & 0o077) == 0  # the directory is the user's alone
    monkeypatch.setenv(PASSWORDS_DIR_ENV, str(tmp_path / "vault"))
    assert passwords_file(target, None) == tmp_path / "vault" / "seed-qa.passwords.csv"
    assert passwords_file(target, "mine.csv") == tmp_path / "mine.csv"  # --passwords-out wins


def test_passwords_out_in_a_missing_directory_is_refused(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "--db",
        str(tmp_path / "qa.db"),
        "--size",
        "10",
        "--passwords-out",
        str(tmp_path / "nowhere" / "pw.csv"),
    )
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "qa.db").exists() and not (tmp_path / "nowhere").exists()


def test_passwords_inside_a_git_work_tree_are_announced(capsys, tmp_path):
    repo = tmp_path / "checkout"
    (repo / ".git").mkdir(parents=True)
    code, out, err = run(capsys, "--db", str(repo / "qa.db"), "--size", "300", "--workers", "1")
    assert code == 0, err
    side_file = repo / "qa.db.passwords.csv"
    assert f"plain passwords of the test users: {side_file}" in out
    assert f"warning: the plain passwords are in {side_file}, inside the git work tree {repo}" in err
    code, out, err = run(capsys, "--db", str(tmp_path / "qa.db"), "--size", "300", "--workers", "1")
    assert code == 0 and "warning" not in err
