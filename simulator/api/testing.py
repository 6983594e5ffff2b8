"""Test helpers: start the real server (``prakerja-sim serve``) in a subprocess and stop it afterwards.

Used by the API's own tests and by the surge and seed-db tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from simulator.api.admin_auth import ADMIN_TOKEN_ENV, new_admin_token
from simulator.api.settings import Settings
from simulator.errors import TargetUnavailable

_OPTION_OF = {
    "registry_latency": "--registry-latency",
    "registry_error_rate": "--registry-error-rate",
    "sms_delay": "--sms-delay",
    "sms_loss_rate": "--sms-loss-rate",
    "email_delay": "--email-delay",
    "otp_resend_interval_s": "--otp-resend-interval",
    "password_cost": "--password-cost",
    "fault_seed": "--fault-seed",
    "registry_url": "--registry-url",
    "sms_url": "--sms-url",
    "smtp": "--smtp",
    "login_failures_per_account": "--login-failures-per-account",
    "login_failures_per_client": "--login-failures-per-client",
    "login_window_s": "--login-window",
    "header_timeout_s": "--header-timeout",
    "body_timeout_s": "--body-timeout",
    "max_connections": "--max-connections",
}


def free_port() -> int:
    """A port the OS says is free on 127.0.0.1 right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` different ports free on 127.0.0.1 right now (held together while chosen, so two
    calls in a row cannot hand out the same port twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def wait_healthy(base_url: str, timeout_s: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TargetUnavailable(
                f"the server exited with code {process.returncode} before answering /healthz"
            )
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=2) as response:
                if response.status == 200 and json.load(response).get("status") in ("ok", "degraded"):
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    raise TargetUnavailable(f"{base_url}/healthz did not answer within {timeout_s:.0f} s")


def serve_command(
    db_url: str,
    port: int,
    registry_dir: str | os.PathLike | None = None,
    workers: int = 1,
    sandbox: bool = True,
    access_log: bool = False,
    **settings,
) -> list[str]:
    """The ``prakerja-sim serve`` command line for these settings (checked by `Settings`)."""
    Settings.from_mapping({k: v for k, v in settings.items()})  # unknown or bad settings fail here
    cmd = [
        sys.executable,
        "-m",
        "simulator.cli",
        "serve",
        "--db",
        str(db_url),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if registry_dir is not None:
        cmd += ["--registry", str(registry_dir)]
    if sandbox:
        cmd.append("--sandbox")
    if not access_log:
        cmd.append("--no-access-log")
    for name, value in settings.items():
        if name not in _OPTION_OF:
            raise TypeError(f"running_server: setting {name!r} has no serve option")
        if value is not None:
            cmd += [_OPTION_OF[name], str(value)]
    return cmd


@contextlib.contextmanager
def running_server(
    db_url: str | None = None,
    registry_dir: str | os.PathLike | None = None,
    *,
    workers: int = 1,
    sandbox: bool = True,
    access_log: bool = False,
    log_path: str | os.PathLike | None = None,
    startup_timeout_s: float = 60.0,
    admin_token: str | None = None,
    **settings,
) -> Iterator[ServerUrl]:
    """Start ``prakerja-sim serve`` on 127.0.0.1 at a free port; yield its base URL; stop it on exit.

    ``db_url`` defaults to a fresh SQLite file in a temporary directory (removed afterwards).
    ``settings`` are serve's knobs by their `Settings` names, e.g. ``password_cost=0``,
    ``registry_latency="lognormal:80,0.5"``, ``registry_error_rate=0.05``, ``sms_loss_rate=0.1``.
    The sandbox outbox is on by default so tests can read OTPs. The server's stderr goes to
    ``log_path`` (or is discarded). The yielded string has ``.process`` for tests that kill it
    and ``.admin_token``; the token is also in ``PRAKERJA_ADMIN_TOKEN`` while the server runs, so
    `surge` and `demo` (in this process or started from it) send it on the admin routes.
    """
    token = admin_token or new_admin_token()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environment(ADMIN_TOKEN_ENV, token))
        if db_url is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="prakerja-api-"))
            db_url = str(Path(tmp) / "api.db")
        log = stack.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
        last_error: Exception | None = None
        for _attempt in range(3):  # another process may grab the free port before the server binds it
            port = free_port()
            cmd = serve_command(db_url, port, registry_dir, workers, sandbox, access_log, **settings)
            # The token goes by environment, not argv: other users of the machine can read argv.
            process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
            base_url = ServerUrl(f"http://127.0.0.1:{port}")
            base_url.process = process
            base_url.admin_token = token
            try:
                wait_healthy(base_url, startup_timeout_s, process)
            except TargetUnavailable as err:
                last_error = err
                stop_server(process)
                continue
            try:
                yield base_url
            finally:
                stop_server(process)
            return
        raise TargetUnavailable(f"could not start the reference API: {last_error}")


class ServerUrl(str):
    """The base URL, carrying the server's ``Popen`` as ``.process`` and its ``.admin_token``."""

    process: subprocess.Popen
    admin_token: str


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def stop_server(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM the server's process group (uvicorn and its workers), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def kill_server(process: subprocess.Popen) -> None:
    """kill -9 the server and its workers at once (crash tests)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def make_resident(index: int, **overrides) -> dict:
    """A registry row with a well-formed NIK/KK (Kota Bandung, 327302) for tests; fields overridable.

    ``index`` (0..9998) picks the NIK serial; women get day + 40 in the NIK, as on a real card.
    """
    import datetime as dt

    from simulator.rules.nik import kk_of, nik_of

    gender = overrides.get("gender", "L" if index % 2 == 0 else "P")
    birth_date = overrides.get("birth_date", dt.date(1990 + index % 10, 1 + index % 12, 1 + index % 28))
    nik = nik_of(327302, birth_date, gender == "P", index % 9999 + 1)
    if "kk" in overrides:
        kk = overrides["kk"]
    else:
        kk = kk_of(327302, dt.date(2000 + index // 10000 % 100, 1, 1), index % 9999 + 1)
    row = {
        "nik": nik,
        "kk": kk,
        "birth_date": birth_date,
        "full_name": f"WARGA UJI {index}",
        "gender": gender,
        "province_code": "32",
        "regency_code": "32.73",
        "district_code": "32.73.02",
        "village_code": None,
        "occupation": "BELUM/TIDAK BEKERJA",
        "is_recipient": False,
        "receives_other_aid": False,
        "is_priority": False,
    }
    row.update(overrides)
    return row


def seed_residents(db_url: str, residents: list[dict]) -> None:
    """Create the schema at ``db_url`` and add these registry rows (tests without a population dir)."""
    from sqlalchemy import insert

    from simulator.database.db import make_engine, write_transaction
    from simulator.database.schema import create_schema
    from simulator.database.schema import residents as residents_table

    engine = create_schema(make_engine(db_url))
    try:
        with write_transaction(engine) as conn:
            conn.execute(insert(residents_table), residents)
    finally:
        engine.dispose()


def ktp_like_photo(width: int = 960, height: int = 640, fmt: str = "JPEG") -> bytes:
    """A photo the upload rules accept: a pale-blue card with dark print, whole, on a brown table.

    For API tests that need an accepted KTP without rendering a full specimen card.
    """
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (120, 82, 50))
    draw = ImageDraw.Draw(image)
    left, top = width // 6, height // 6
    right, bottom = width - width // 6, height - height // 6
    draw.rectangle((left, top, right, bottom), fill=(172, 212, 236))
    for row in range(8):
        y = top + 20 + row * (bottom - top - 40) // 8
        draw.rectangle((left + 20, y, left + 20 + (right - left) // 2, y + 6), fill=(20, 20, 30))
    draw.rectangle((right - (right - left) // 4, top + 30, right - 20, bottom - 60), fill=(90, 90, 110))
    buffer = io.BytesIO()
    image.save(buffer, fmt, quality=92) if fmt == "JPEG" else image.save(buffer, fmt)
    return buffer.getvalue()


@contextlib.contextmanager
def scratch_database(server_url: str | None = None, prefix: str = "test_api") -> Iterator[str]:
    """A fresh, empty database for one test session; dropped afterwards.

    ``server_url`` is a PostgreSQL or MariaDB URL (e.g. ``PRAKERJA_TEST_POSTGRES_URL``): a database
    ``<prefix>_<random>`` is created on that server. ``None`` gives a SQLite file in a temp dir.
    """
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from simulator.database.db import dialect_of, normalize_url

    if server_url is None:
        with tempfile.TemporaryDirectory(prefix=prefix + "-") as tmp:
            yield str(Path(tmp) / "api.db")
        return
    normalized = normalize_url(server_url)
    backend = dialect_of(normalized)
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = create_engine(normalized, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        scheme = server_url.split("://", 1)[0]
        url = make_url(normalized).set(database=name)
        yield f"{scheme}://" + url.render_as_string(hide_password=False).split("://", 1)[1]
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def seed_ready_accounts(
    db_url: str,
    count: int,
    *,
    password: str = "rahasia123",
    password_cost: int = 0,
    province_code: str = "32",
    prefix: str = "ready",
    first_index: int = 0,
    stage: str = "ready",
) -> list[dict]:
    """Insert ``count`` applicants and their residents; returns ``[{id, email, password, nik, kk}]``.

    ``stage`` says how far they got: ``email`` (email confirmed, nothing else), ``identity`` (and
    their NIK checked) or ``ready`` (every step up to joining a wave: profile, phone, KTP, test).
    Written straight into the schema, the way seed-db does, so the API must serve them as they are.
    """
    if stage not in ("email", "identity", "ready"):
        raise ValueError(f"stage must be email, identity or ready, not {stage!r}")
    import datetime as dt

    from sqlalchemy import insert

    from simulator.api.store import new_account_id
    from simulator.database import schema as t
    from simulator.database.db import make_engine, write_transaction
    from simulator.database.passwords import hash_password

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    password_hash = hash_password(password, password_cost)
    residents, accounts, identities, profiles, ktps, tests, out = [], [], [], [], [], [], []
    for i in range(first_index, first_index + count):
        resident = make_resident(i)
        account_id = new_account_id()
        email = f"{prefix}{i}@example.co.id"
        residents.append(resident)
        accounts.append(
            {
                "id": account_id,
                "email": email,
                "name": resident["full_name"],
                "password_hash": password_hash,
                "email_verified_at": now,
                "phone": f"0812{i:08d}",
                "phone_verified_at": now,
                "created_at": now,
            }
        )
        identities.append(
            {
                "account_id": account_id,
                "nik": resident["nik"],
                "kk": resident["kk"],
                "birth_date": resident["birth_date"],
                "checked_at": now,
            }
        )
        profiles.append(
            {
                "account_id": account_id,
                "address": "Jl. Uji",
                "province_code": province_code,
                "education": "SMA",
                "employment_status": "tidak bekerja",
                "updated_at": now,
            }
        )
        ktps.append(
            {
                "account_id": account_id,
                "verdict": "accept",
                "size_bytes": 1000,
                "sha256": "0" * 64,
                "created_at": now,
            }
        )
        tests.append({"account_id": account_id, "answers": "A" * 18, "score": 5, "completed_at": now})
        if stage != "ready":
            accounts[-1].update(phone=None, phone_verified_at=None)
            profiles.pop(), ktps.pop(), tests.pop()
        if stage == "email":
            identities.pop()
        out.append(
            {
                "id": account_id,
                "email": email,
                "password": password,
                "nik": resident["nik"],
                "kk": resident["kk"],
            }
        )
    engine = t.create_schema(make_engine(db_url))
    try:
        with write_transaction(engine) as conn:
            for table, rows in (
                (t.residents, residents),
                (t.accounts, accounts),
                (t.identities, identities),
                (t.profiles, profiles),
                (t.ktp_uploads, ktps),
                (t.test_results, tests),
            ):
                if rows:
                    conn.execute(insert(table), rows)
    finally:
        engine.dispose()
    return out
