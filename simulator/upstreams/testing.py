"""Test helpers: run ``prakerja-sim upstreams`` in a subprocess on free loopback ports and stop it after.

Used by the stand-ins' tests, the end-to-end surge test and the benchmark.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from simulator.api.testing import free_ports
from simulator.errors import TargetUnavailable


@dataclass(frozen=True)
class RunningUpstreams:
    url: str  # http://127.0.0.1:PORT
    smtp_port: int
    pid: int

    @property
    def registry_url(self) -> str:
        return self.url + "/registry/v1/check"

    @property
    def sms_url(self) -> str:
        return self.url + "/sms/v1/send"

    @property
    def smtp(self) -> str:
        return f"127.0.0.1:{self.smtp_port}"


def upstreams_command(population: str | os.PathLike, port: int, smtp_port: int, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "simulator.cli",
        "upstreams",
        "--population",
        str(population),
        "--port",
        str(port),
        "--smtp-port",
        str(smtp_port),
        *options,
    ]


@contextlib.contextmanager
def running_upstreams(
    population: str | os.PathLike, *options: str, log_path: str | Path | None = None, timeout_s: float = 60.0
) -> Iterator[RunningUpstreams]:
    """Start the stand-ins with extra command-line ``options``; yields where they listen.

    Their output goes to ``log_path`` (a temporary file without one: a pipe nobody reads would
    stall a server that logs a lot); it is quoted when they fail to start.
    """
    port, smtp_port = free_ports(2)
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="upstreams-"))) / "log"
        log = stack.enter_context(open(log_path, "wb"))
        process = subprocess.Popen(
            upstreams_command(population, port, smtp_port, *options), stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, timeout_s, Path(log_path))
            yield RunningUpstreams(url, smtp_port, process.pid)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_healthy(
    url: str, process: subprocess.Popen, timeout_s: float, log_path: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = log_path.read_text(errors="replace") if log_path and log_path.is_file() else ""
            raise TargetUnavailable(
                f"the upstreams exited with code {process.returncode}: {err.strip()[-500:]}"
            )
        try:
            with urllib.request.urlopen(url + "/v1/healthz", timeout=2) as response:
                if json.load(response).get("status") == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    raise TargetUnavailable(f"{url}/v1/healthz did not answer within {timeout_s:.0f} s")
