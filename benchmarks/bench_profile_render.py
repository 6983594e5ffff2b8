"""Benchmark: the client CPU a target profile adds per request (templates, session, keeps).

Builds each request of the reference profile (simulator/surge/profiles/reference.toml) through
ProfileJourney.request with the network call stubbed out, against the hand-written bodies of the
journey it replaced (loadtests/journey.py before target profiles), in the same run. Prints CPU-us
per request for both and the difference: compare it with a whole request's client CPU
(benchmarks/bench_surge.py) to see its share. No server, no network; a few seconds.

    python benchmarks/bench_profile_render.py
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import time  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from simulator.surge.applicants import FORM_COLUMNS, applicant_password, load_applicants  # noqa: E402
from simulator.surge.harness import Answer  # noqa: E402
from simulator.surge.profile.format import load_profile  # noqa: E402
from simulator.surge.profile.journey import ProfileJourney  # noqa: E402
from simulator.surge.scenario import load_scenario  # noqa: E402

N = 20_000
ROUNDS = 5


def main() -> None:
    profile = load_profile()
    scenario = load_scenario("smoke")
    table, _ = load_applicants(None, 20, 1)
    a = table.select([c for c in FORM_COLUMNS if c in table.column_names]).to_pylist()[0]
    ok = Answer(200, None, b'{"id": "x", "token": "t"}', False, None, {})

    class Stubbed(ProfileJourney):
        host = "http://127.0.0.1:1"

        def call(self, name, method, path, intended, *, key=None, expect=None, **kwargs):
            return ok

    generator = SimpleNamespace(profile=profile, scenario=scenario, otp_sources={}, run_id="r", metrics=None)
    Stubbed.prepare_run(generator)
    user = Stubbed.__new__(Stubbed)  # no Locust environment: only the request building is measured
    user.generator, user.applicant, user.arrival = generator, a, 7
    user.kept, user.otp_codes = {"token": "t", "account_id": "x"}, {"email": "123456", "sms": "654321"}
    user.step_spec = user.python_spec = None
    user._parsed = (None, None)

    def hand_written(name: str) -> dict:
        password = applicant_password(a)
        bodies = {
            "create_account": lambda: {
                "name": a["full_name"],
                "email": a["email"],
                "password": password,
                "password_confirmation": password,
            },
            "identity": lambda: {"nik": a["nik"], "kk": a["kk"], "birth_date": str(a["birth_date"])},
            "profile": lambda: {
                "address": a.get("address") or "-",
                **{
                    f: a.get(f"domicile_{f}") or a.get(f)
                    for f in ("province_code", "regency_code", "district_code", "village_code")
                },
                "postal_code": a.get("postal_code"),
                "education": a.get("education") or "SMA/SMK",
                "employment_status": a.get("employment_status") or "BELUM BEKERJA",
            },
        }
        return {"headers": {"Authorization": "Bearer t"}, "json": bodies.get(name, lambda: {"code": "1"})()}

    def cpu_us(fn) -> float:
        best = []
        for _ in range(ROUNDS):
            start = time.process_time()
            for _ in range(N):
                fn()
            best.append((time.process_time() - start) / N * 1e6)
        return min(best)

    print(f"load average {os.getloadavg()[0]:.1f} (best of {ROUNDS} rounds of {N:,}; CPU time)")
    total_profile = total_hand = 0.0
    steps = [s for s in profile.steps if s.upload is None]
    for spec in steps:
        profiled = cpu_us(lambda spec=spec: user.request(spec, 0.0))
        hand = cpu_us(lambda spec=spec: hand_written(spec.name))
        total_profile += profiled
        total_hand += hand
        print(f"  {spec.name:<15} profile {profiled:5.1f} CPU-us   hand-written {hand:4.1f} CPU-us")
    n = len(steps)
    print(
        f"mean per request: profile {total_profile / n:.1f} CPU-us, hand-written {total_hand / n:.1f} "
        f"CPU-us: the profile adds {(total_profile - total_hand) / n:.1f} CPU-us"
    )


if __name__ == "__main__":
    main()
