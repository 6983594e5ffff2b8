"""``prakerja-sim upstreams``: run the registry, SMS gateway and SMTP stand-ins for one population.

A thin shell over :func:`simulator.upstreams.server.serve_upstreams`.
"""

from __future__ import annotations

from pathlib import Path

import click


def _delay_option(name: str, help_text: str):  # a click decorator
    from simulator.api.cli import _delay  # serve's own parser of latency forms: one spelling

    return click.option(name, callback=_delay(name), default="fixed:0", show_default=True, help=help_text)


def _rate_option(name: str, help_text: str):  # a click decorator
    return click.option(name, type=click.FloatRange(0, 1), default=0.0, show_default=True, help=help_text)


@click.command(
    epilog="""\b
Examples:
  prakerja-sim upstreams --population pop
  prakerja-sim upstreams --population pop --registry-latency lognormal:80,0.5 --registry-slowdown 0-300:x10
  prakerja-sim upstreams --population pop --profile my-staging.toml --sms-loss-rate 0.02
\b
Then point the system under test at them (the reference API: serve --registry-url, --sms-url,
--smtp) and the surge at the read API (surge --upstreams URL). See docs/upstreams.md."""
)
@click.option(
    "--population",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Population directory (prakerja-sim population) whose residents the registry knows.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--allow-remote", is_flag=True, help="Allow a non-loopback --host.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8100,
    show_default=True,
    help="HTTP port: registry, SMS gateway and read API.",
)
@click.option(
    "--smtp-port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help="SMTP port of the email sink.",
)
@click.option("--no-smtp", is_flag=True, help="Do not start the SMTP sink.")
@click.option(
    "--profile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML profile of paths and field names (docs/upstreams.md).",
)
@_delay_option(
    "--registry-latency", "Registry latency (ms): fixed:MS, uniform:LO,HI or lognormal:MEDIAN,SIGMA."
)
@_rate_option("--registry-error-rate", "Share of checks answered 503 REGISTRY_UNAVAILABLE.")
@_rate_option(
    "--registry-timeout-rate", "Share of checks held --registry-timeout seconds, then answered 504."
)
@click.option(
    "--registry-timeout",
    type=click.FloatRange(0, 600, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a timed-out check is held.",
)
@click.option(
    "--registry-slowdown",
    default="",
    metavar="WINDOWS",
    help="Slow-down schedule, seconds since start (or POST /v1/clock): e.g. 0-300:x10,300-900:+40.",
)
@_delay_option("--sms-delay", "SMS delivery delay (ms), same forms as --registry-latency.")
@_rate_option("--sms-loss-rate", "Share of SMS accepted but never delivered.")
@_delay_option("--email-delay", "Email delivery delay (ms).")
@_rate_option("--email-loss-rate", "Share of emails accepted but never delivered.")
@click.option(
    "--ring-size",
    type=click.IntRange(1, 1000),
    default=8,
    show_default=True,
    help="Messages kept per recipient (older ones are dropped).",
)
@click.option(
    "--max-recipients",
    type=click.IntRange(1, 50_000_000),
    default=200_000,
    show_default=True,
    help="Recipients kept (the least recently written are dropped).",
)
@click.option("--seed", type=int, default=None, help="Seed of the fault draws.")
def upstreams(
    population,
    host,
    allow_remote,
    port,
    smtp_port,
    no_smtp,
    profile,
    registry_latency,
    registry_error_rate,
    registry_timeout_rate,
    registry_timeout,
    registry_slowdown,
    sms_delay,
    sms_loss_rate,
    email_delay,
    email_loss_rate,
    ring_size,
    max_recipients,
    seed,
) -> None:
    """Stand-ins for a staging system's upstreams: population registry, SMS gateway, SMTP server."""
    from simulator.progress import progress_bar
    from simulator.upstreams.faults import RegistryFaults, SinkFaults, parse_slowdown
    from simulator.upstreams.server import UpstreamsConfig, serve_upstreams

    config = UpstreamsConfig(
        population=population,
        host=host,
        http_port=port,
        smtp_port=None if no_smtp else smtp_port,
        allow_remote=allow_remote,
        profile=profile,
        registry_faults=RegistryFaults(
            latency=registry_latency,
            error_rate=registry_error_rate,
            timeout_rate=registry_timeout_rate,
            timeout_s=registry_timeout,
            slowdown=parse_slowdown(registry_slowdown),
        ),
        sms_faults=SinkFaults(sms_delay, sms_loss_rate, "sms"),
        email_faults=SinkFaults(email_delay, email_loss_rate, "email"),
        ring_size=ring_size,
        max_recipients=max_recipients,
        seed=seed,
    )
    with progress_bar(None, "registry") as advance:
        serve_upstreams(config, say=lambda line: click.echo(line, err=True), progress=advance)
