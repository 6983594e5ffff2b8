"""Replay a Kartu Prakerja wave opening against a registration API (open model, one user per arrival).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --surge-scenario smoke
    locust -f loadtests/locustfile.py --headless --processes 2 --host ... --surge-scenario wave-11

The scenario's arrival schedule decides when each applicant arrives (WaveOpening), so the web UI's
"Number of users" and "Ramp up" stay at 0; each applicant goes through ApplicantJourney once.
Like `prakerja-sim surge`, a run opens the scenario's wave first and writes report.json and
report.html into --surge-out (default surge-report) at the end; the exit code is the SLO verdict.
"""

from loadtests.journey import ApplicantJourney
from loadtests.shape import WaveOpening
from simulator.surge.controller import register

register(lambda: ApplicantJourney)

__all__ = ["ApplicantJourney", "WaveOpening"]
