"""The target of a surge before and after the load: safety, its wave, its counts, who it already knows.

Owns what ``surge`` and a plain ``locust -f loadtests/locustfile.py`` both do around the load itself.

Standard-library HTTP only: the runner stays free of gevent, and inside Locust (monkey-patched)
the same calls simply yield to the event loop.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simulator.api.admin_auth import admin_headers
from simulator.errors import InvalidInputFile, InvalidOption, TargetUnavailable
from simulator.net import http_endpoint, require_local
from simulator.rules.reasons import ACCEPT, Reason
from simulator.surge.applicants import applicant_password, load_applicants, select_applicants
from simulator.surge.scenario import Faults, Scenario
from simulator.surge.schedule import build_schedule

if TYPE_CHECKING:
    from simulator.surge.profile.format import Profile
    from simulator.surge.sources.truth import TruthSource

REGISTERED_PROBES = 3
"""Applicants whose log-in is tried to tell whether the target already holds a run's applicants."""


def check_target(host: str, allow_remote: bool, flag: str = "--allow-remote", option: str = "--host") -> str:
    """The base URL without a trailing slash; raises UnsafeTarget for a non-loopback host.

    ``flag`` is the option that allows one, as the user's command spells it.
    """
    require_local(
        [http_endpoint(host, option)],
        allow_remote=allow_remote,
        what=f"{option} (a surge is real load on a real system)",
        flag=f"{flag} (and have the owner's permission)",
    )
    return host.rstrip("/")


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One JSON request with the standard library; (status, parsed body or None).

    Admin routes get the admin token from PRAKERJA_ADMIN_TOKEN (simulator.api.admin_auth).
    """
    data = None if body is None else json.dumps(body, default=str).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if "/v1/admin/" in url:
        headers.update(admin_headers())
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json_or_none(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _json_or_none(err.read())
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise TargetUnavailable(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from err


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _error_code(body: Any) -> str | None:
    return ((body or {}).get("error") or {}).get("code") if isinstance(body, dict) else None


def fetch_stats(host: str) -> dict[str, Any] | None:
    status, body = http_json("GET", f"{host}/v1/admin/stats?max_age_s=0", timeout=30.0)
    return body if status == 200 and isinstance(body, dict) else None


def open_wave(host: str, scenario: Scenario) -> str:
    """Open the scenario's wave on the target; a wave that is already open is used as it is."""
    wave = scenario.wave
    body = {
        "number": wave.number,
        "quota": scenario.scaled_quota,
        "mode": wave.selection,
        "duration_s": max(scenario.replay.harness_length_s + scenario.replay.drain_s + 3600.0, 60.0),
        "selection_seed": scenario.seed % (2**31),
    }
    status, answer = http_json("POST", f"{host}/v1/admin/waves", body)
    if status == 201:
        return f"opened wave {wave.number} ({wave.selection}, quota {scenario.scaled_quota:,})"
    code = _error_code(answer)
    if status == 409 and code == "WAVE_EXISTS":
        status, current = http_json("GET", f"{host}/v1/waves/{wave.number}")
        if status == 200 and isinstance(current, dict) and current.get("state") == "open":
            return f"wave {wave.number} was already open ({current.get('joined')} joined): joining it"
        raise InvalidOption(
            f"wave {wave.number} exists on {host} and is not open (state "
            f"{(current or {}).get('state')}); use another wave number or a fresh database"
        )
    if status == 404:
        return f"the target has no /v1/admin/waves: wave {wave.number} must already be open"
    raise TargetUnavailable(f"{host}/v1/admin/waves answered {status} {code or ''}".strip())


def fault_serve_options(faults: Faults) -> list[str]:
    """The ``prakerja-sim serve`` options that inject these faults into the reference API."""
    options = []
    for name, value in fault_settings(faults).items():
        options += ["--" + name.replace("_", "-"), f"{value:g}" if isinstance(value, float) else value]
    return options


def fault_settings(faults: Faults) -> dict[str, Any]:
    """The same faults as ``running_server(**settings)`` keywords (reference API ``Settings`` names)."""
    settings: dict[str, Any] = {}
    if faults.dukcapil_latency_ms or faults.dukcapil_latency_p99_ms:
        settings["registry_latency"] = registry_latency(faults)
    if faults.dukcapil_error_rate:
        settings["registry_error_rate"] = float(faults.dukcapil_error_rate)
    if faults.sms_delay_s:
        settings["sms_delay"] = f"lognormal:{faults.sms_delay_s * 1000:g},0.5"
    if faults.sms_loss_rate:
        settings["sms_loss_rate"] = float(faults.sms_loss_rate)
    if faults.email_delay_s:
        settings["email_delay"] = f"lognormal:{faults.email_delay_s * 1000:g},0.5"
    return settings


def registry_latency(faults: Faults) -> str:
    """Median and p99 -> a log-normal: sigma = ln(p99 / median) / z(0.99)."""
    median = faults.dukcapil_latency_ms
    p99 = faults.dukcapil_latency_p99_ms
    if p99 is None or median <= 0:
        return f"fixed:{max(median, p99 or 0):g}"
    sigma = 0.0 if p99 <= median else math.log(p99 / median) / 2.3263  # z of the 99th percentile
    return f"lognormal:{median:g},{sigma:.4f}"


# ------------------------------------------------------------------------------------------------
# Who the target already knows


def is_registered(host: str, applicant: dict[str, Any]) -> bool | None:
    """Whether the target has an account for this applicant: a log-in attempt, which writes nothing.

    None when the target's answer does not tell (no such route, another API's error shape).
    """
    status, body = http_json(
        "POST",
        f"{host}/v1/sessions",
        {"email": applicant["email"], "password": applicant_password(applicant)},
    )
    code = _error_code(body)
    if status == 201 or code == Reason.STEP_INCOMPLETE:  # logged in, or known but email unconfirmed
        return True
    if code == Reason.BAD_CREDENTIALS:
        return False
    return None


def fresh_skip(
    host: str,
    scenario: Scenario,
    population: str | None,
    skip: int,
    say: Callable[[str], None],
) -> int:
    """The ``--skip-applicants`` value from which none of this run's applicants is on the target yet.

    A second run against the same server with the same population would sign the same people up
    again (every sign-up an unexpected EMAIL_TAKEN). The first few applicants this run would use
    are tried; while the target knows them, the run moves past every applicant those runs used.
    Raises InvalidInputFile, in one line saying what to do, when the population runs out. Without
    a population directory (each load generator makes ``count + skip`` applicants from the seed),
    a new skip means new people: they are made again and tried.
    """
    stats = fetch_stats(host)
    if stats is not None and stats.get("steps", {}).get("accounts_created") == 0:
        return skip  # a fresh server knows nobody
    count = len(build_schedule(scenario))
    start, applicants = skip, None
    while True:
        if applicants is None or population is None:
            applicants, label = load_applicants(population, count + skip, scenario.seed)
        try:
            rows = select_applicants(applicants, count, scenario, skip, source=label)
        except InvalidInputFile as err:
            raise InvalidInputFile(
                f"{host} already holds the applicants of {label} up to #{skip - 1:,} (earlier runs), and "
                f"the rest are too few for this run's {count:,} arrivals: make a bigger population "
                f"(prakerja-sim population --size {count + skip:,}) or restart the server on a fresh database"
            ) from err
        outcomes = applicants.column("expected_outcome").take(rows).to_pylist()
        probes = [int(rows[i]) for i, outcome in enumerate(outcomes) if outcome == ACCEPT][:REGISTERED_PROBES]
        known = [is_registered(host, row) for row in applicants.take(probes).to_pylist()]
        if not any(known):
            break
        skip = int(rows.max()) + 1
    if skip != start:
        say(
            f"surge: {host} already holds applicants of {label} that earlier runs signed up: this run "
            f"starts at applicant #{skip:,} (as with --skip-applicants {skip})"
        )
    return skip


def prepare_target(
    host: str,
    scenario: Scenario,
    say: Callable[[str], None],
    profile: Profile | None = None,
    truth: TruthSource | None = None,
) -> dict[str, Any] | None:
    """Before the first arrival: say which faults to start the server with, read its counts, open the wave.

    Returns the server's counts as they were before the run (:func:`server_counts`; None when the
    target has none). ``profile``: the target profile (default: the reference API's); ``truth``:
    its ``[reconcile]`` source (:func:`truth_of`).
    """
    if scenario.faults.any and scenario.target.apply_faults:
        say(
            "this scenario injects upstream faults; the reference API takes them at start: "
            "prakerja-sim serve " + " ".join(fault_serve_options(scenario.faults))
        )
    before = server_counts(host, truth, scenario.wave.number)
    if scenario.target.open_wave:
        say(open_profile_wave(host, scenario, profile))
    return before


def truth_of(host: str, profile: Profile | None, allow_remote: bool = False) -> TruthSource | None:
    """The profile's ``[reconcile]`` source (simulator/surge/sources/truth.py), made once per run
    (a bad spec or a wrong query is one line before any load); None: the reference API's
    ``/v1/admin/stats``, read as it always was."""
    if profile is None or profile.reference_admin:
        return None
    from simulator.surge.sources.truth import truth_source

    return truth_source(
        profile.reconcile,
        target=host,
        where=profile.where("reconcile"),
        steps=profile.order,
        allow_remote=allow_remote,
    )


def server_counts(host: str, truth: TruthSource | None = None, wave: int = 0) -> dict[str, Any] | None:
    """The server's committed rows now, as reconcile() reads them: the ``/v1/admin/stats`` body
    (``truth`` None), or the truth source's snapshot (``{"steps": {step: n}, "waves": ...}``);
    None when unavailable (and always for ``off``)."""
    if truth is None:
        return fetch_stats(host)
    from simulator.surge.sources.truth import snapshot

    return snapshot(truth, wave)


def open_profile_wave(host: str, scenario: Scenario, profile: Profile | None) -> str:
    """Open the wave as the profile says: the reference admin API, one request, or not at all."""
    how = None if profile is None else profile.wave_open
    if profile is None or (how is not None and how.kind == "reference"):
        return open_wave(host, scenario)
    if how is None:
        return f"{profile.source} has no [wave] open: wave {scenario.wave.number} must already be open"
    from simulator.surge.profile.template import render_value

    values = {
        "wave": scenario.wave.number,
        "quota": scenario.scaled_quota,
        "selection": scenario.wave.selection,
    }.get
    url = host + how.path.render(values)
    body = render_value(how.body, values) if how.body is not None else None
    status, answer = http_form_or_json(how.method, url, body, how.body_kind)
    ok = status in how.success.status if how.success.status else 200 <= status < 300
    if not ok:
        raise TargetUnavailable(
            f"{profile.where('wave')}: {how.method} {how.path.source} answered {status}: expected "
            f"{how.success.describe()}"
        )
    return f"opened wave {scenario.wave.number} ({how.method} {how.path.source} answered {status})"


def http_form_or_json(
    method: str, url: str, body: Any, kind: str | None, timeout: float = 10.0
) -> tuple[int, Any]:
    """One request with a JSON or form-encoded body (standard library)."""
    if kind != "form":
        return http_json(method, url, body, timeout=timeout)
    data = urllib.parse.urlencode({k: "" if v is None else str(v) for k, v in (body or {}).items()}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json_or_none(response.read())
    except urllib.error.HTTPError as err:
        return err.code, _json_or_none(err.read())
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise TargetUnavailable(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from err
