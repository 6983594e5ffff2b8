"""``prakerja-sim serve``: run the reference registration API under uvicorn.

Creates the schema and seeds the registry once in this process, then starts the workers.
"""

from __future__ import annotations

import os
import socket

import click

from simulator.api.admin_auth import ADMIN_TOKEN_ENV, new_admin_token
from simulator.api.settings import ENV_VAR, Delay, Settings
from simulator.database.passwords import COST_LEVELS
from simulator.errors import InvalidOption, TargetUnavailable, UnsafeTarget
from simulator.net import check_database, is_loopback


def _delay(option: str):
    def convert(_ctx, _param, value):
        return Delay.parse(value, option) if value is not None else Delay()

    return convert


def prepare(settings: Settings, progress: bool = False) -> int:
    """Create the schema and, with a registry directory, load its residents; returns residents loaded."""
    from sqlalchemy.exc import OperationalError

    from simulator.api.registry import load_residents
    from simulator.database.db import make_engine
    from simulator.database.schema import create_schema

    engine = make_engine(settings.db_url)
    try:
        create_schema(engine)
        if not settings.registry_dir:
            return 0
        from simulator.progress import progress_bar

        if progress:
            with progress_bar(None, "registry") as advance:
                return load_residents(engine, settings.registry_dir, advance)
        return load_residents(engine, settings.registry_dir)
    except OperationalError as err:
        raise TargetUnavailable(f"--db: cannot use the database ({err.orig})") from None
    finally:
        engine.dispose()


UVICORN_OPTIONS = {
    "loop": "uvloop",
    "access_log": False,  # our own structured access log replaces uvicorn's
    "log_level": "warning",
    "timeout_graceful_shutdown": 5,
    "backlog": 4096,
}


def serve_settings(settings: Settings, host: str, port: int, workers: int) -> None:
    """Run the API in this process (blocking): uvicorn itself, or a pre-fork supervisor of ``workers``."""
    import uvicorn

    from simulator.upstreams.client import start_relay

    os.environ[ENV_VAR] = settings.to_json()
    relay = start_relay(settings)  # --sms-url / --smtp: one OTP relay process beside the workers
    try:
        if workers == 1:
            uvicorn.run(
                "simulator.api.app:create_app_from_env",
                factory=True,
                host=host,
                port=port,
                **uvicorn_options(settings),
            )
        else:
            prefork(host, port, workers, settings)
    finally:
        if relay is not None:
            relay.stop()


def uvicorn_options(settings: Settings) -> dict:
    """uvicorn's options for these settings: its HTTP protocol with our read deadlines and connection cap."""
    from simulator.api.connections import guarded_protocol

    protocol = guarded_protocol(settings.header_timeout_s, settings.body_timeout_s, settings.max_connections)
    return {**UVICORN_OPTIONS, "http": protocol}


def prefork(host: str, port: int, workers: int, settings: Settings) -> None:
    """Bind once, import the app once, then fork ``workers`` uvicorn servers sharing the socket.

    Forked workers start in milliseconds (uvicorn's own multi-worker mode spawns fresh
    interpreters that import everything again). A worker that dies is replaced; SIGTERM or
    SIGINT stops them all gracefully. Each worker opens its own database connections.
    """
    import signal
    import time
    import traceback

    import uvicorn

    from simulator.api import app as app_module

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(UVICORN_OPTIONS["backlog"])
    sock.set_inheritable(True)
    children: dict[int, float] = {}
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                config = uvicorn.Config(
                    app_module.create_app_from_env(), host=host, port=port, **uvicorn_options(settings)
                )
                uvicorn.Server(config).run(sockets=[sock])
            except BaseException:  # the worker must never return into the supervisor's code
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        spawn()
    failed_fast = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = children.pop(pid, None)
        if started is None or stopping:
            continue
        # A worker that dies at once (bad database, port trouble) would die again: give up then.
        failed_fast = failed_fast + 1 if time.monotonic() - started < 5 else 0
        if failed_fast >= 3:
            stop(None, None)
            raise TargetUnavailable("the server workers keep exiting at start; see the errors above")
        spawn()
    sock.close()


@click.command()
@click.option(
    "--db",
    "db_url",
    default="prakerja-api.db",
    show_default=True,
    help="SQLite file path, or postgresql://... / mysql://... / mariadb://... URL.",
)
@click.option(
    "--registry",
    "registry_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Population directory whose residents table seeds the simulated Dukcapil registry.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host (your choice: it exposes admin routes) or a --db on another machine.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes (they share the database).",
)
@click.option("--sandbox", is_flag=True, help="Expose GET /v1/sandbox/outbox?to=... with the OTPs sent.")
@click.option(
    "--password-cost",
    type=click.Choice([str(c) for c in COST_LEVELS]),
    default="1",
    show_default=True,
    help="argon2id cost level: 0 cheapest (load tests), 3 = OWASP minimum, 4 = RFC 9106.",
)
@click.option(
    "--registry-latency",
    callback=_delay("--registry-latency"),
    default="fixed:0",
    show_default=True,
    help="Dukcapil latency (ms): fixed:MS, uniform:LO,HI or lognormal:MEDIAN,SIGMA.",
)
@click.option(
    "--registry-error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of identity checks that get 503 REGISTRY_UNAVAILABLE.",
)
@click.option(
    "--sms-delay",
    callback=_delay("--sms-delay"),
    default="fixed:0",
    show_default=True,
    help="SMS OTP delivery delay (ms), same forms as --registry-latency.",
)
@click.option(
    "--sms-loss-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of SMS OTPs that never arrive.",
)
@click.option(
    "--email-delay",
    callback=_delay("--email-delay"),
    default="fixed:0",
    show_default=True,
    help="Email OTP delivery delay (ms).",
)
@click.option(
    "--otp-resend-interval",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds before a new OTP may be requested.",
)
@click.option("--fault-seed", type=int, default=None, help="Seed of the fault draws (latency, errors, loss).")
@click.option(
    "--registry-url",
    metavar="URL",
    help="Check identities against this registry service "
    "(e.g. prakerja-sim upstreams: http://127.0.0.1:8100/registry/v1/check) instead of --registry.",
)
@click.option("--sms-url", metavar="URL", help="Send SMS OTPs to this gateway (.../sms/v1/send).")
@click.option("--smtp", metavar="HOST:PORT", help="Send email OTPs through this SMTP server.")
@click.option("--allow-remote-upstreams", is_flag=True, help="Allow non-loopback upstream URLs.")
@click.option(
    "--admin-token",
    envvar=ADMIN_TOKEN_ENV,
    show_envvar=True,
    default=None,
    help="Token the admin routes need in X-Admin-Token (16+ characters); made and printed when not given.",
)
@click.option(
    "--login-failures-per-account",
    type=click.IntRange(1, 1_000_000),
    default=10,
    show_default=True,
    help="Failed logins per email in a --login-window before 429 LOGIN_THROTTLED (all workers).",
)
@click.option(
    "--login-failures-per-client",
    type=click.IntRange(1, 1_000_000),
    default=200,
    show_default=True,
    help="Failed logins per client address in a --login-window (per worker).",
)
@click.option(
    "--login-window",
    type=click.FloatRange(1, 86400),
    default=900.0,
    show_default=True,
    help="Seconds of the login throttling window.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(0.1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send a request's headers; then 408 and the connection is closed.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(0.1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds a client has to send a request's body after its headers.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1, 1_000_000),
    default=4096,
    show_default=True,
    help="Open connections per worker; a new one past it gets 503 SERVER_BUSY and is closed.",
)
@click.option("--no-access-log", is_flag=True, help="Do not write the JSON access log to stderr.")
def serve(
    db_url,
    registry_dir,
    host,
    allow_remote,
    port,
    workers,
    sandbox,
    password_cost,
    registry_latency,
    registry_error_rate,
    sms_delay,
    sms_loss_rate,
    email_delay,
    otp_resend_interval,
    fault_seed,
    admin_token,
    login_failures_per_account,
    login_failures_per_client,
    login_window,
    header_timeout,
    body_timeout,
    max_connections,
    no_access_log,
    registry_url=None,
    sms_url=None,
    smtp=None,
    allow_remote_upstreams=False,
) -> None:
    """Run the reference registration API (the embedded default target)."""
    from simulator.upstreams.client import check_smtp, check_upstream_url

    if registry_url:
        check_upstream_url(registry_url, "--registry-url", allow_remote_upstreams)
    if sms_url:
        check_upstream_url(sms_url, "--sms-url", allow_remote_upstreams)
    if smtp:
        check_smtp(smtp, allow_remote_upstreams)
    loopback = is_loopback(host)  # a name is resolved: once
    if not loopback and not allow_remote:
        raise UnsafeTarget(
            f"--host {host} is not a loopback address; pass --allow-remote to serve on it "
            "(it speaks plain HTTP, and the sandbox outbox shows every OTP)"
        )
    # Every host the driver would use (URL, service/option file, PG* variables), pinned.
    db_url = check_database(db_url, allow_remote=allow_remote).url
    settings = Settings(
        db_url=db_url,
        registry_dir=registry_dir,
        password_cost=int(password_cost),
        sandbox=sandbox,
        access_log=not no_access_log,
        registry_latency=registry_latency,
        registry_error_rate=registry_error_rate,
        sms_delay=sms_delay,
        sms_loss_rate=sms_loss_rate,
        email_delay=email_delay,
        otp_resend_interval_s=otp_resend_interval,
        fault_seed=fault_seed,
        registry_url=registry_url,
        sms_url=sms_url,
        smtp=smtp,
        admin_token=admin_token or new_admin_token(),
        login_failures_per_account=login_failures_per_account,
        login_failures_per_client=login_failures_per_client,
        login_window_s=login_window,
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        max_connections=max_connections,
    )
    loaded = prepare(settings, progress=True)
    if registry_dir:
        click.echo(f"registry: {loaded} residents from {registry_dir}", err=True)
    # Registry rows are loaded once here; the workers only read them.
    settings = Settings.from_mapping({**_plain(settings), "registry_dir": None})
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise InvalidOption(f"--host/--port: cannot listen on {host}:{port} ({err.strerror})") from None
    if not loopback:
        click.echo(f"warning: serving on {host}:{port}, reachable from other machines", err=True)
    click.echo(
        f"serving http://{host}:{port} (db {settings.db_url}, {workers} worker(s)); OpenAPI at /openapi.json",
        err=True,
    )
    if not admin_token:
        click.echo(
            f"admin token (X-Admin-Token; set {ADMIN_TOKEN_ENV} to choose one): {settings.admin_token}",
            err=True,
        )
    serve_settings(settings, host, port, workers)


def _plain(settings: Settings) -> dict:
    import json

    return json.loads(settings.to_json())
