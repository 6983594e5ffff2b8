"""The reference API's side of the stand-ins: an async registry client for the identity check, and
the OTP relay that sends each code the API stores to the SMS gateway or the SMTP server.

``serve --registry-url`` / ``--sms-url`` / ``--smtp`` switch the API from its built-in simulation to these.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import os
import queue
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import orjson

from simulator.errors import InvalidOption, UnsafeTarget
from simulator.net import is_loopback

SENDER = "Prakerja (SIMULASI) <noreply@prakerja-sim.invalid>"
POOL_SIZE = 64
"""Keep-alive connections the registry client holds per server process."""


def check_upstream_url(url: str, option: str, allow_remote: bool) -> str:
    """An ``http://`` URL of a loopback host (unless ``allow_remote``); raises a one-line error."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "http" or not parsed.hostname:
        raise InvalidOption(f"{option}: expected a URL like http://127.0.0.1:8100/..., got {url!r}")
    if not allow_remote and not is_loopback(parsed.hostname):
        raise UnsafeTarget(
            f"{option} {url}: not a loopback address; pass --allow-remote-upstreams if you mean it"
        )
    return url


def check_smtp(address: str, allow_remote: bool) -> tuple[str, int]:
    """``HOST:PORT`` of an SMTP server (loopback unless ``allow_remote``)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidOption(f"--smtp: expected HOST:PORT such as 127.0.0.1:8025, got {address!r}")
    if not allow_remote and not is_loopback(host):
        raise UnsafeTarget(
            f"--smtp {address}: not a loopback address; pass --allow-remote-upstreams if you mean it"
        )
    return host, int(port)


# ------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class UpstreamResident:
    """What the registry's answer says about a person, shaped like a ``residents`` row for the API."""

    nik: str
    kk: str | None  # the typed KK when the registry says it matches, else None
    birth_date: dt.date
    kk_recipients: int
    _mapping: dict[str, Any]


class RegistryClient:
    """Identity checks against a registry stand-in over keep-alive HTTP/1.1 (no third-party client)."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        parsed = urllib.parse.urlparse(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.path = parsed.path or "/"
        self.timeout_s = timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def resident(self, nik: str, kk: str, birth_date: dt.date) -> UpstreamResident | None:
        """The registry's person for this NIK (None when unknown); raises RegistryUnavailable."""
        from simulator.api.registry import RegistryUnavailable

        body = orjson.dumps({"nik": nik, "kk": kk, "birth_date": birth_date.isoformat()})
        try:
            status, payload = await asyncio.wait_for(self._post(body), self.timeout_s)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as err:
            raise RegistryUnavailable(
                f"the population registry (Dukcapil) did not answer ({type(err).__name__})"
            ) from None
        if status != 200:
            raise RegistryUnavailable(
                f"the population registry (Dukcapil) answered {status}; try again later"
            )
        answer = orjson.loads(payload)
        if not answer.get("nik_found"):
            return None
        record = answer.get("resident") or {}
        record["birth_date"] = dt.date.fromisoformat(record["birth_date"])
        return UpstreamResident(
            nik=nik,
            kk=kk if answer.get("kk_match") else None,
            birth_date=record["birth_date"],
            kk_recipients=int(record.get("kk_recipients", 0)),
            _mapping=record,
        )

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        reader, writer = (
            self._idle.pop() if self._idle else await asyncio.open_connection(self.host, self.port)
        )
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (self.path.encode(), self.host.encode(), len(body), body)
            )
            status_line = await reader.readline()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise ValueError(f"bad status line {status_line[:60]!r}")
            length, close, chunked = 0, False, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            payload = await _read_chunked(reader) if chunked else await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if close or len(self._idle) >= POOL_SIZE:
            writer.close()
        else:
            self._idle.append((reader, writer))
        return int(parts[1]), payload


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readline()


# ------------------------------------------------------------------------------------------------
# OTP relay: a process of its own beside the server's workers (one per server, whatever the
# worker count), reading the OTPs the API stored and sending them as a real system would.

POLL_S = 0.05
GAP_WAIT_S = 5.0
"""How long a missing OTP id is looked for again (a transaction committing out of id order)."""


def otp_text(code: str) -> str:
    return f"Kode OTP Prakerja Anda: {code}. Berlaku 5 menit. Jangan berikan kepada siapa pun. (SIMULASI)"


class Relay:
    """Polls the ``otps`` table and hands each new code to its channel's sender thread."""

    def __init__(self, db_url: str, sms_url: str | None, smtp: str | None):
        from simulator.database.db import make_engine

        self.engine = make_engine(db_url, pool_size=2)
        self.sms_url, self.smtp = sms_url, smtp
        self.queues: dict[str, queue.Queue] = {}
        self.sent: dict[str, int] = {"sms": 0, "email": 0}
        self.failed: dict[str, int] = {"sms": 0, "email": 0}
        self.stopping = threading.Event()
        if sms_url:
            self.queues["sms"] = queue.Queue()
            threading.Thread(target=self._send_sms, daemon=True).start()
        if smtp:
            self.queues["email"] = queue.Queue()
            threading.Thread(target=self._send_email, daemon=True).start()

    def run(self) -> None:
        from sqlalchemy import select

        from simulator.database import schema as t

        columns = (
            t.otps.c.id,
            t.otps.c.channel,
            t.otps.c.destination,
            t.otps.c.code,
            t.otps.c.deliver_at,
            t.otps.c.lost,
        )
        with self.engine.connect() as conn:
            cursor = conn.execute(select(t.otps.c.id).order_by(t.otps.c.id.desc()).limit(1)).scalar() or 0
        gaps: dict[int, float] = {}
        waiting: list[tuple] = []  # rows whose simulated delivery time has not come
        while not self.stopping.is_set():
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(*columns).where(t.otps.c.id > cursor).order_by(t.otps.c.id).limit(5000)
                ).all()
                if gaps:
                    rows += conn.execute(select(*columns).where(t.otps.c.id.in_(list(gaps)[:500]))).all()
            now = time.monotonic()
            for row in rows:
                gaps.pop(row.id, None)
                if row.id > cursor:
                    for missing in range(cursor + 1, min(row.id, cursor + 10_000)):
                        gaps.setdefault(missing, now + GAP_WAIT_S)
                    cursor = row.id
                if not row.lost and row.channel in self.queues:
                    waiting.append(row)
            for missing in [i for i, deadline in gaps.items() if deadline < now]:
                del gaps[missing]  # rolled back: never committed
            utc_now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            due = [r for r in waiting if r.deliver_at <= utc_now]
            waiting = [r for r in waiting if r.deliver_at > utc_now]
            for row in due:
                self.queues[row.channel].put((row.destination, row.code))
            self.stopping.wait(POLL_S)

    def _send_sms(self) -> None:
        parsed = urllib.parse.urlparse(self.sms_url)
        connection: http.client.HTTPConnection | None = None
        while True:
            destination, code = self.queues["sms"].get()
            body = orjson.dumps({"to": destination, "text": otp_text(code)})
            ok = False
            for _attempt in range(2):
                try:
                    if connection is None:
                        connection = http.client.HTTPConnection(
                            parsed.hostname, parsed.port or 80, timeout=10
                        )
                    connection.request("POST", parsed.path or "/", body, {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    response.read()
                    ok = 200 <= response.status < 300
                    break
                except (OSError, http.client.HTTPException):
                    with contextlib.suppress(Exception):
                        connection.close()
                    connection = None
            self.sent["sms"] += ok
            self.failed["sms"] += not ok

    def _send_email(self) -> None:
        host, _, port = self.smtp.rpartition(":")
        client: smtplib.SMTP | None = None
        while True:
            destination, code = self.queues["email"].get()
            message = EmailMessage()
            message["From"], message["To"] = SENDER, destination
            message["Subject"] = "Kode verifikasi email Prakerja (SIMULASI)"
            message.set_content(otp_text(code))
            ok = False
            for _attempt in range(2):
                try:
                    if client is None:
                        client = smtplib.SMTP(host, int(port), timeout=10)
                    client.send_message(message)
                    ok = True
                    break
                except (OSError, smtplib.SMTPException):
                    with contextlib.suppress(Exception):
                        client.close()
                    client = None
            self.sent["email"] += ok
            self.failed["email"] += not ok


class RelayProcess:
    """The relay running as ``python -m simulator.upstreams.client`` (settings from the environment)."""

    def __init__(self, env: dict[str, str]):
        self.process = subprocess.Popen([sys.executable, "-m", "simulator.upstreams.client"], env=env)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_relay(settings: Any) -> RelayProcess | None:
    """The OTP relay for a server whose settings name an SMS gateway or an SMTP server, else None."""
    if not (getattr(settings, "sms_url", None) or getattr(settings, "smtp", None)):
        return None
    from simulator.api.settings import ENV_VAR

    return RelayProcess(dict(os.environ, **{ENV_VAR: settings.to_json()}))


def _main() -> None:
    from simulator.api.settings import Settings

    settings = Settings.from_env()
    relay = Relay(settings.db_url, settings.sms_url, settings.smtp)
    signal.signal(signal.SIGTERM, lambda *_: relay.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: relay.stopping.set())
    relay.run()
    deadline = time.monotonic() + 3.0  # codes already due still go out
    while any(q.qsize() for q in relay.queues.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"otp relay: sent {relay.sent}, failed {relay.failed}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    _main()
