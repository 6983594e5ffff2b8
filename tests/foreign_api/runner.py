"""Start the Pendaftaran API for a test: its SQLite file prepared (registry, waves), uvicorn in a
subprocess on 127.0.0.1 at a port it picks itself, stopped (SIGTERM, then SIGKILL) afterwards."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from foreign_api.app import SCHEMA, connect

HERE = Path(__file__).resolve().parent
PROFILE = HERE / "profile.toml"


def _date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return dt.date.fromisoformat(str(value)).isoformat()


def prepare_database(
    path: str | os.PathLike,
    *,
    population: str | os.PathLike | None = None,
    residents: Iterable[Mapping[str, Any]] = (),
    waves: Mapping[int, int] | None = None,
) -> Path:
    """Create the schema; fill the registry (``penduduk``) from a population directory's residents
    and/or the given resident rows (population column names); open the waves {number: quota}."""
    rows = list(residents)
    if population is not None:
        from simulator.io.population import read_table

        rows += read_table(population, "residents").to_pylist()
    conn = connect(str(path))
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT OR REPLACE INTO penduduk (nik, no_kk, tgl_lahir, pekerjaan, penerima, bansos_lain) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    str(r["nik"]),
                    str(r["kk"]),
                    _date(r["birth_date"]),
                    str(r.get("occupation") or ""),
                    int(bool(r.get("is_recipient"))),
                    int(bool(r.get("receives_other_aid"))),
                )
                for r in rows
            ],
        )
        for number, quota in (waves or {}).items():
            conn.execute("INSERT OR REPLACE INTO gelombang (nomor, kuota) VALUES (?, ?)", (number, quota))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Path(path)


class ForeignUrl(str):
    """The base URL, with ``.db`` (the SQLite file) and ``.process``."""

    db: Path
    process: subprocess.Popen


@contextlib.contextmanager
def running_foreign(
    db: str | os.PathLike, *, admin_key: str | None = None, startup_timeout_s: float = 60.0
) -> Iterator[ForeignUrl]:
    """Serve a prepared database; yield the base URL (http://127.0.0.1:PORT)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "foreign_api.serve", "--db", str(db)]
    if admin_key:
        cmd += ["--admin-key", admin_key]
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=None, text=True, env=env, start_new_session=True
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"the Pendaftaran API did not start (exit {process.poll()}, said {line!r})")
        url = ForeignUrl(f"http://127.0.0.1:{int(line.split()[1])}")
        url.db, url.process = Path(db), process
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                with urllib.request.urlopen(url + "/sehat", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{url}/sehat did not answer") from None
                time.sleep(0.05)
        yield url
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process.stdout:
            process.stdout.close()
