"""One applicant's registration, driven by a target profile: the Locust-native escape hatch.

ApplicantJourney is the journey every surge runs (``prakerja-sim surge``, ``demo`` and
``locust -f loadtests/locustfile.py``). Its steps come from the run's target profile: the reference
API's (simulator/surge/profiles/reference.toml) unless ``--target-profile`` or the scenario's
``target_profile`` names another (docs/target-profile.md).

For what a profile cannot say, subclass it here (docs/journey-subclass.md): a method named like a
step (one of simulator.surge.scenario.STEPS, or a step the profile adds) replaces that step. It gets
the harness time it was meant to start and sends its requests with ``self.call``, which measures each
from that time, retries like a person, and tells predicted refusals from unexpected errors::

    class MyJourney(ApplicantJourney):
        def login(self, intended: float) -> None:
            answer = self.call("login", "POST", "/auth/token", intended,
                               json={"user": self.applicant["email"], "pin": self.applicant["nik"][-6:]})
            self.kept["token"] = answer.body["access"]      # the profile's session reads {kept.token}

then point the locustfile's ``register(...)`` at MyJourney.
"""

from __future__ import annotations

from simulator.surge.profile.journey import ProfileJourney


class ApplicantJourney(ProfileJourney):
    """Create an account, confirm the email, log in, pass the identity check, fill the profile,
    upload the KTP, confirm the phone, take the test and join the wave: as the profile says."""


__all__ = ["ApplicantJourney"]
