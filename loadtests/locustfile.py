"""Replay a Kartu Prakerja wave opening against a registration API (open model, one user per arrival).

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --surge-scenario smoke
    locust -f loadtests/locustfile.py --headless --processes 2 --host ... --surge-scenario wave-11

The scenario's arrival schedule decides when each applicant arrives (WaveOpening); each one goes
through ApplicantJourney once. `prakerja-sim surge` runs this file and writes the full report.
"""

from loadtests.journey import ApplicantJourney
from loadtests.shape import WaveOpening
from simulator.surge.controller import register

register(lambda: ApplicantJourney)

__all__ = ["ApplicantJourney", "WaveOpening"]
