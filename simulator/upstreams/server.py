"""Running the stand-ins: bind the HTTP and SMTP listeners (loopback unless told otherwise), load the
registry, then serve both from one event loop (uvloop) until interrupted: HTTP through the lean
protocol of :mod:`simulator.upstreams.httpd`, SMTP through aiosmtpd.

The library behind ``prakerja-sim upstreams``; tests start it through :mod:`simulator.upstreams.testing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from simulator.errors import InvalidOption, UnsafeTarget
from simulator.net import is_loopback
from simulator.upstreams.app import Routes, Upstreams
from simulator.upstreams.faults import RegistryFaults, SinkFaults
from simulator.upstreams.httpd import Connections, start_http_server
from simulator.upstreams.messages import Outbox
from simulator.upstreams.profile import load_profile
from simulator.upstreams.registry import load_registry
from simulator.upstreams.smtp import MAX_EMAIL_BYTES, SmtpSink

BACKLOG = 4096
SHUTDOWN_S = 2.0
"""Seconds pending answers get to go out after SIGINT/SIGTERM."""


@dataclass
class UpstreamsConfig:
    """What ``prakerja-sim upstreams`` was asked for (see the command's help for each option)."""

    population: str | Path
    host: str = "127.0.0.1"
    http_port: int = 8100
    smtp_port: int | None = 8025  # None: no SMTP listener
    allow_remote: bool = False
    profile: str | Path | None = None
    registry_faults: RegistryFaults = field(default_factory=RegistryFaults)
    sms_faults: SinkFaults = field(default_factory=lambda: SinkFaults(name="sms"))
    email_faults: SinkFaults = field(default_factory=lambda: SinkFaults(name="email"))
    ring_size: int = 8
    max_recipients: int = 200_000
    seed: int | None = None


def check_bind_host(host: str, allow_remote: bool) -> bool:
    """True when ``host`` is loopback; raises UnsafeTarget for another host without ``allow_remote``."""
    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise UnsafeTarget(
            f"--host {host} is not a loopback address; pass --allow-remote to listen on it "
            "(the stand-ins hold synthetic people's OTP codes and have no authentication)"
        )
    return loopback


def bind(host: str, port: int, option: str) -> socket.socket:
    """A listening TCP socket, or a one-line error naming the option."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise InvalidOption(f"{option}: cannot listen on {host}:{port} ({err.strerror or err})") from None
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def build_upstreams(config: UpstreamsConfig, progress: Callable[[int], None] | None = None) -> Upstreams:
    """Load the registry and set up the sinks (no sockets)."""
    if config.ring_size < 1 or config.max_recipients < 1:
        raise InvalidOption("--ring-size and --max-recipients must be at least 1")
    profile = load_profile(config.profile)
    registry = load_registry(config.population, progress)
    return Upstreams(
        registry=registry,
        profile=profile,
        registry_faults=config.registry_faults,
        sms_faults=config.sms_faults,
        email_faults=config.email_faults,
        outbox=Outbox(config.ring_size, config.max_recipients),
        seed=config.seed,
    )


def serve_upstreams(
    config: UpstreamsConfig,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    progress: Callable[[int], None] | None = None,
) -> None:
    """Bind, load, serve until SIGINT/SIGTERM (blocking)."""
    loopback = check_bind_host(config.host, config.allow_remote)
    http_sock = bind(config.host, config.http_port, "--port")
    smtp_sock = None
    try:
        if config.smtp_port is not None:
            smtp_sock = bind(config.host, config.smtp_port, "--smtp-port")
        upstreams = build_upstreams(config, progress)
        # What was loaded lives as long as the process: the collector need not scan it again.
        gc.collect()
        gc.freeze()
        http_host, http_port = http_sock.getsockname()[:2]
        if not loopback:
            say(f"warning: listening on {config.host}, reachable from other machines")
        say(f"upstreams: registry of {len(upstreams.registry):,} residents from {config.population}")
        say(f"  registry  POST http://{http_host}:{http_port}{upstreams.profile.registry.path}")
        say(f"  sms       POST http://{http_host}:{http_port}{upstreams.profile.sms.path}")
        if smtp_sock is not None:
            say(f"  smtp      {http_host}:{smtp_sock.getsockname()[1]}")
        say(
            f"  read API  http://{http_host}:{http_port}/v1/  (sandbox/outbox, codes, stats, clock; "
            "docs/upstreams.md)"
        )
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(upstreams, http_sock, smtp_sock))
    finally:
        http_sock.close()
        if smtp_sock is not None:
            smtp_sock.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return None
    return uvloop.new_event_loop


async def _serve(upstreams: Upstreams, http_sock: socket.socket, smtp_sock: socket.socket | None) -> None:
    """The HTTP routes (lean protocol, :mod:`simulator.upstreams.httpd`) and the SMTP sink on one loop,
    until SIGINT or SIGTERM; then the listeners close and open connections get ``SHUTDOWN_S`` to finish."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    connections = Connections()
    servers = [await start_http_server(Routes(upstreams), http_sock, connections)]
    if smtp_sock is not None:
        from aiosmtpd.smtp import SMTP

        handler = SmtpSink(upstreams)
        servers.append(
            await loop.create_server(
                lambda: SMTP(
                    handler,
                    data_size_limit=MAX_EMAIL_BYTES,
                    hostname="upstreams.prakerja-sim",
                    ident="prakerja-sim upstreams SMTP sink",
                    enable_SMTPUTF8=True,
                ),
                sock=smtp_sock,
            )
        )
    sweeper = asyncio.ensure_future(connections.sweeper())
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        for server in servers:
            server.close()
        deadline = loop.time() + SHUTDOWN_S
        while connections.open and any(c.pending for c in connections.open) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        connections.close_all()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), SHUTDOWN_S)
