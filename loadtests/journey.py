"""One applicant's registration, step by step, as the reference API (docs/architecture.md 3.2) expects it.

Each method is one step of simulator.surge.scenario.STEPS; the harness calls them in order with think times.
"""

from __future__ import annotations

from simulator.surge.applicants import applicant_password
from simulator.surge.harness import JourneyOver, JourneyUser

TEST_ANSWERS = "ABCD"


class ApplicantJourney(JourneyUser):
    """Create an account, confirm the email, log in, pass the identity check, fill the profile,
    upload the KTP, confirm the phone, take the test and join the wave."""

    def create_account(self, intended: float) -> None:
        a = self.applicant
        password = applicant_password(a)
        answer = self.call(
            "create_account",
            "POST",
            "/v1/accounts",
            intended,
            json={
                "name": a["full_name"],
                "email": a["email"],
                "password": password,
                "password_confirmation": password,
            },
        )
        self.account_id = answer.body["id"]

    def verify_email(self, intended: float) -> None:
        code = self.read_otp(self.applicant["email"], "email", intended)
        self.call(
            "verify_email",
            "POST",
            f"/v1/accounts/{self.account_id}/email/verify",
            self.now(),
            json={"code": code},
        )

    def login(self, intended: float) -> None:
        a = self.applicant
        answer = self.call(
            "login",
            "POST",
            "/v1/sessions",
            intended,
            json={
                "email": a["email"],
                "password": applicant_password(a),
            },
        )
        self.auth = {"Authorization": f"Bearer {answer.body['token']}"}

    def identity(self, intended: float) -> None:
        a = self.applicant
        self.call(
            "identity",
            "PUT",
            "/v1/me/identity",
            intended,
            json={
                "nik": a["nik"],
                "kk": a["kk"],
                "birth_date": str(a["birth_date"]),
            },
        )

    def profile(self, intended: float) -> None:
        a = self.applicant
        # Where the person lives now (domicile) decides which waves they may join, not the KTP.
        region = {
            f: a.get(f"domicile_{f}") or a.get(f)
            for f in ("province_code", "regency_code", "district_code", "village_code")
        }
        self.call(
            "profile",
            "PUT",
            "/v1/me/profile",
            intended,
            json={
                "address": a.get("address") or "-",
                **region,
                "postal_code": a.get("postal_code"),
                "education": a.get("education") or "SMA/SMK",
                "employment_status": a.get("employment_status") or "BELUM BEKERJA",
            },
        )

    def ktp_upload(self, intended: float) -> None:
        # Bad photos are refused and retaken; every upload in the plan is sent (double taps too).
        while (upload := self.next_upload()) is not None:
            expect = None if upload.expected == "accept" else upload.expected
            self.call(
                "ktp_upload",
                "POST",
                "/v1/me/ktp",
                intended,
                data=upload.body,
                headers={"Content-Type": upload.content_type},
                expect=expect,
                key=self.idempotency_key("ktp_upload", f"-{self.ktp_attempt}"),
            )
            intended = self.now()

    def phone(self, intended: float) -> None:
        self.call("phone", "POST", "/v1/me/phone", intended, json={"phone": self.applicant["phone"]})

    def verify_phone(self, intended: float) -> None:
        try:
            code = self.read_otp(self.applicant["phone"], "sms", intended)
        except JourneyOver:
            # The SMS never came: ask for another one once, as people do.
            self.call(
                "phone",
                "POST",
                "/v1/me/phone",
                self.now(),
                json={"phone": self.applicant["phone"]},
                key=self.idempotency_key("phone", "-again"),
            )
            code = self.read_otp(self.applicant["phone"], "sms", self.now())
        self.call("verify_phone", "POST", "/v1/me/phone/verify", self.now(), json={"code": code})

    def test(self, intended: float) -> None:
        answers = [TEST_ANSWERS[(self.arrival + i) % 4] for i in range(18)]
        self.call("test", "POST", "/v1/me/test", intended, json={"answers": answers})

    def join(self, intended: float) -> None:
        self.call("join", "POST", f"/v1/waves/{self.generator.scenario.wave.number}/join", intended)
