"""The front door: every subcommand lazily loaded, user errors as one line, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from simulator.cli import COMMANDS, cli
from simulator.io.atomic import atomic_write, atomic_write_text


def test_every_registered_command_imports_and_has_help():
    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        if command is None:
            pytest.fail(f"subcommand {name!r} is registered but its module is missing")
        assert command.get_short_help_str(), f"{name} has no help text"


def test_unknown_command_is_one_line_and_nonzero():
    run = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "no-such-command"], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "No such command" in run.stderr
    assert "Traceback" not in run.stderr


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w", encoding="utf-8") as handle:
            handle.write("half of the new")
            raise RuntimeError("disk went away")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"], "the temporary file was left behind"


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    target = tmp_path / "forecast.html"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "<html></html>")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644
