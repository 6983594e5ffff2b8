"""``surge --check-profile``: one applicant through the whole journey once, every request printed.

Run as its own process (``python -m simulator.surge.profile.check``, started by
simulator.surge.runner.run_profile_check): the journey runs on Locust's HTTP client, and gevent's
monkey-patching must not leak into the process that started it. No load: one person, no think
times, no retries. Exit code 0 when every step did what the profile says, 1 with one line naming
the first step that did not, 2 for bad input, 3 when the target does not answer.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
import numpy as np  # noqa: E402

from simulator.errors import SimulatorError  # noqa: E402
from simulator.rules.reasons import ACCEPT  # noqa: E402
from simulator.surge.applicants import (  # noqa: E402
    DUPLICATE_REASONS,
    MAX_KTP_UPLOADS,
    MAX_RETRIES,
    JourneyPlans,
    load_applicants,
)
from simulator.surge.metrics import OTP_POLL, SurgeMetrics  # noqa: E402
from simulator.surge.profile.format import Profile, Step, load_profile  # noqa: E402
from simulator.surge.profile.journey import ProfileJourney  # noqa: E402
from simulator.surge.scenario import STEPS, Scenario, load_scenario  # noqa: E402

SHOWN = 60  # characters of a kept value shown


def pick_applicant(
    scenario: Scenario,
    population: str | None,
    skip: int,
    count: int,
    probe: Callable[[dict], Any] | None = None,
) -> dict[str, Any]:
    """An applicant whose data should pass every step: the last such one of the population, which
    the surge itself uses last (or not at all), so the check's account rarely collides with it.
    ``probe`` (reference admin API: a log-in attempt) moves past those the target already holds."""
    from simulator.surge.applicants import FORM_COLUMNS

    applicants, _label = load_applicants(population, count + skip + 64, scenario.seed)
    outcomes = applicants.column("expected_outcome").to_pylist()
    rows = [i for i in range(skip, len(outcomes)) if outcomes[i] == ACCEPT]
    if not rows:
        raise SimulatorError(
            "no applicant in the population whose data passes every step (expected_outcome accept)"
        )
    columns = [c for c in FORM_COLUMNS if c in applicants.column_names]
    table = applicants.select(columns)
    for row in reversed(rows[-20:]):
        applicant = table.slice(row, 1).to_pylist()[0]
        if probe is None or not probe(applicant):
            return applicant
    raise SimulatorError(
        "the target already holds the last 20 applicants of the population that pass every "
        "step (earlier checks): use a fresh database or a bigger population"
    )


class _Walk:
    """Stands in for the ArrivalGenerator: one applicant, no think times, no retries."""

    def __init__(
        self,
        scenario: Scenario,
        profile: Profile,
        applicant: dict[str, Any],
        upstreams: str | None,
        host: str,
        allow_remote: bool = False,
    ):
        from simulator.surge.profile.format import build_otp_sources
        from simulator.surge.uploads import build_pool

        n = len(STEPS)
        self.scenario, self.profile = scenario, profile
        self.plans = JourneyPlans(
            arrivals=np.array([int(time.time()) % 1_000_000], dtype=np.int64),
            scheduled_s=np.zeros(1),
            applicants=[applicant],
            last_step=np.array([n - 1], dtype=np.int64),
            retries=np.zeros(1, dtype=np.int64),
            think_s=np.zeros((1, n)),
            backoff_s=np.zeros((1, MAX_RETRIES)),
            ktp_uploads=np.array([[0] + [-1] * (MAX_KTP_UPLOADS - 1)], dtype=np.int8),
            duplicates={column: np.zeros(1, dtype=bool) for column in DUPLICATE_REASONS},
        )
        self.metrics = SurgeMetrics(3600.0, 30.0)
        self.upload_pool = build_pool([applicant], [], scenario.seed, valid_count=1)
        self.run_id = "check-" + uuid.uuid4().hex[:8]
        self.otp_source = upstreams or ""
        self.otp_sources = build_otp_sources(profile, host, upstreams, allow_remote=allow_remote)
        self.begun = np.zeros(1, dtype=bool)
        self.t0_perf = time.perf_counter()


class CheckJourney(ProfileJourney):
    """The profile journey, printing each request and answer, remembering the first failure."""

    abstract = True
    say: Callable[[str], None] = print

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.exchanges = 0
        self.last: tuple[Step | None, str, str, Any] | None = None
        self.failure: str | None = None

    def _exchange(self, name, method, path, headers, expect, kwargs):
        result = super()._exchange(name, method, path, headers, expect, kwargs)
        answer = result[0]
        self.exchanges += 1
        spec = self.step_spec
        label = spec.name if spec is not None else ("otp" if name == OTP_POLL else name)
        shown = f"{answer.status}" if answer.status else "no answer"
        if answer.code is not None:
            shown += f", refusal code {answer.code}"
        self.say(f"  {self.exchanges:>2}. {label:<16} {method:<6} {path} -> {shown}")
        self.last = (spec, method, path, answer)
        return result

    def request(self, spec, intended, **kwargs):
        before = dict(self.kept)
        answer = super().request(spec, intended, **kwargs)
        for name, value in self.kept.items():
            if before.get(name) != value:
                text = str(value)
                self.say(f"      kept {name} = {text[:SHOWN]}{'...' if len(text) > SHOWN else ''}")
        return answer

    def missing_keep(self, spec: Step, name: str, where: str) -> None:
        self.failure = (
            f"{self.target_profile.source} [step '{spec.name}']: kept value '{name}' ({where}) "
            "is not in the answer"
        )


def explain(user: CheckJourney, profile: Profile, scenario: Scenario) -> str:
    """One line: the first step that did not do what the profile says."""
    if user.failure:
        return user.failure
    for problem in user.generator.metrics.mismatches:
        if "OTP not delivered" in problem:
            channel = problem.split()[0]
            return (
                f"{profile.where('otp.' + channel)}: no {channel} code arrived within "
                f"{scenario.funnel.otp_wait_s:g} s (funnel.otp_wait_s)"
            )
    if user.last is None:
        return f"{profile.source}: the journey sent nothing"
    spec, method, path, answer = user.last
    name = f"step '{spec.name}'" if spec is not None else "OTP poll"
    got = f"{answer.status} {answer.code or ''}".strip() if answer.status else f"no answer ({answer.code})"
    expected = spec.success.describe() if spec is not None else "a 2xx status"
    return f"{profile.source} [{name}]: {method} {path} answered {got}: expected {expected}"


def walk(
    host: str,
    scenario: Scenario,
    profile: Profile,
    applicant: dict[str, Any],
    upstreams: str | None,
    say: Callable[[str], None] = print,
    allow_remote: bool = False,
) -> tuple[int, str | None]:
    """Walk one applicant through the profile: (0, None) or (1, the line saying what went wrong)."""
    from locust import events
    from locust.env import Environment

    class Walker(CheckJourney):
        pass

    Walker.say = staticmethod(say)
    Walker.host = host
    Walker.network_timeout = Walker.connection_timeout = scenario.target.timeout_s
    Walker.client_pool = None
    environment = Environment(user_classes=[Walker], events=events, host=host)
    generator = _Walk(scenario, profile, applicant, upstreams, host, allow_remote)
    Walker.prepare_run(generator)
    user = Walker(environment, generator, 0)
    journey = gevent.spawn(user.run_journey)
    journey.join()
    error = user.crash or journey.exception
    if error is not None:  # not an answer of the API: say where the journey broke
        return 1, (
            f"{profile.source} [step '{user.current_step}']: the journey raised "
            f"{type(error).__name__}: {error}"
        )
    journeys = dict(generator.metrics.journeys)
    if journeys.get("completed") == 1 and user.failure is None:
        missing = [s for s in profile.order if generator.metrics.acknowledged[s] != 1]
        if not missing:
            return 0, None
    return 1, explain(user, profile, scenario)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prakerja-sim surge --check-profile")
    parser.add_argument("--host", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--population", default=None)
    parser.add_argument("--upstreams", default=None)
    parser.add_argument("--skip", type=int, default=0)
    parser.add_argument("--allow-remote", action="store_true")
    args = parser.parse_args(argv)
    say = lambda line: print(line, flush=True)  # noqa: E731
    try:
        from simulator.surge.schedule import build_schedule
        from simulator.surge.target import open_profile_wave

        scenario = load_scenario(args.scenario)
        profile = load_profile(args.profile)
        host = args.host.rstrip("/")
        count = len(build_schedule(scenario))
        probe = None
        if profile.reference_admin:
            from simulator.surge.target import is_registered

            probe = lambda applicant: is_registered(host, applicant)  # noqa: E731
        applicant = pick_applicant(scenario, args.population, args.skip, count, probe)
        say(
            f"check-profile: {profile.source} ({profile.name}) against {host}, one applicant "
            f"({applicant.get('email')}), every step once, no load"
        )
        if scenario.target.open_wave:
            say("  " + open_profile_wave(host, scenario, profile))
        code, line = walk(host, scenario, profile, applicant, args.upstreams, say, args.allow_remote)
    except SimulatorError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    if code:
        print(f"check-profile: failed: {line}", file=sys.stderr, flush=True)
        return code
    say(
        f"check-profile: ok: {len(profile.order)} planned steps ({', '.join(profile.order)}) did what "
        f"{profile.source} says"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
