"""The profile-driven journey: one applicant through a registration API described by a target profile.

Owns how a profile's steps become requests (templates, bodies, sessions, CSRF), what is kept from
answers, how success and refusals are read, and where OTPs come from. Every surge runs through it:
the reference API is the built-in profile (simulator/surge/profiles/reference.toml), so the reference
journey and a profile's journey are one code path. loadtests/journey.py subclasses it (the
Locust-native escape hatch, docs/journey-subclass.md): a subclass method named like a step of the
profile replaces that step.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

from simulator.surge.applicants import applicant_password
from simulator.surge.harness import JourneyOver, JourneyUser, _parse_json
from simulator.surge.metrics import OTP_POLL
from simulator.surge.profile.format import OTP_ADDRESS, Profile, Step
from simulator.surge.profile.template import Template, render_value
from simulator.surge.scenario import STEPS
from simulator.surge.uploads import UploadBody

TEST_ANSWERS = "ABCD"
TEST_QUESTIONS = 18
HARNESS_OTP_SOURCES = ("outbox", "upstreams")
"""OTP sources read with the journey's own HTTP client (measured as ``otp_outbox`` requests)."""


class ProfileJourney(JourneyUser):
    """A JourneyUser whose steps come from a target profile (``prepare_run`` sets it per process)."""

    abstract = True
    target_profile: Profile | None = None  # not "profile": that is a step name
    _order: tuple[int, ...] = ()
    _python_steps: frozenset[str] = frozenset()
    _plans: dict[int, _StepPlan] = {}  # id(step) -> its plan (ProfileJourney._plan)
    _kept_specs: list[Step] = []

    def __init__(self, environment: Any, generator: Any = None, row: int = 0):
        super().__init__(environment, generator, row)
        self.kept: dict[str, Any] = {}
        self.otp_codes: dict[str, str] = {}
        self.step_spec: Step | None = None  # the profile step whose request is on the wire
        self.python_spec: Step | None = None  # the profile step a subclass's method is doing
        self._parsed: tuple[bytes | None, Any] = (None, None)

    @classmethod
    def prepare_run(cls, generator: Any) -> None:
        """Per load-generator process, before the first arrival: take the run's profile."""
        profile = generator.profile
        cls.target_profile = profile
        cls.idempotency_header = profile.idempotency_header
        cls._order = tuple(STEPS.index(name) for name in profile.order)
        own = set()
        for klass in cls.__mro__:
            if klass is ProfileJourney:
                break
            own.update(
                n
                for n, v in vars(klass).items()
                if callable(v) and (n in STEPS or any(s.name == n for s in profile.steps))
            )
        cls._python_steps = frozenset(own)
        cls._plans, cls._kept_specs = {}, []
        for spec in profile.steps:
            cls._plan(spec)

    # -- the journey -----------------------------------------------------------------------------
    def journey_steps(self, last: int) -> tuple[int, ...]:
        return tuple(k for k in self._order if k <= last)

    def run_step(self, step: str, intended: float) -> None:
        group = self.target_profile.groups[step]
        if step in self._python_steps:  # a subclass's own method for this step
            self._python_step(step, next(s for s in group if s.own), intended)
            return
        for spec in group:
            if not spec.own and spec.name in self._python_steps:
                self._python_step(spec.name, spec, intended)
            else:
                self.send_step(spec, intended)
            intended = self.now()

    def _python_step(self, method: str, spec: Step, intended: float) -> None:
        """Run a subclass's step method; its answers are read as the profile's step says."""
        self.python_spec = spec
        try:
            getattr(self, method)(intended)
        finally:
            self.python_spec = None

    def send_step(self, spec: Step, intended: float) -> None:
        """One step of the profile: read its OTP if it needs one, send every upload if it has them."""
        if spec.upload is not None:
            # Bad photos are refused and retaken; every upload in the plan is sent (double taps too).
            while (upload := self.next_upload()) is not None:
                expect = None if upload.expected == "accept" else upload.expected
                key = self.idempotency_key(spec.name, f"-{self.ktp_attempt}")
                self.request(spec, intended, key=key, expect=expect, upload=upload)
                intended = self.now()
            return
        if spec.otp is not None:
            address = self.value(OTP_ADDRESS[spec.otp])
            if spec.resend is None:
                self.otp_codes[spec.otp] = self.read_otp(address, spec.otp, intended)
            else:
                try:
                    self.otp_codes[spec.otp] = self.read_otp(address, spec.otp, intended)
                except JourneyOver:
                    # The code never came: ask for another one once, as people do.
                    again = next(s for s in self.target_profile.steps if s.name == spec.resend)
                    self.request(again, self.now(), key=self.idempotency_key(again.name, "-again"))
                    self.otp_codes[spec.otp] = self.read_otp(address, spec.otp, self.now())
            intended = self.now()
        self.request(spec, intended)

    def request(
        self,
        spec: Step,
        intended: float,
        *,
        key: str | None = None,
        expect: str | None = None,
        upload: UploadBody | None = None,
    ) -> Any:
        """Send one request of a step (through JourneyUser.call) and keep what the step keeps."""
        plan = self._plans.get(id(spec)) or self._plan(spec)
        value = self.value
        headers = dict(plan.headers)  # the step's literal headers, worked out once
        for name, template in plan.header_templates:
            headers[name] = template.render(value)
        session = self.target_profile.session
        if session.token is not None:
            token = session.token.render(value)
            if token:
                headers[session.header] = f"{session.scheme} {token}" if session.scheme else str(token)
        csrf_token = None
        if session.csrf is not None:
            csrf = session.csrf
            csrf_token = self.cookie(csrf.name) if csrf.source == "cookie" else self.kept.get(csrf.name)
            if csrf_token is not None and csrf.header:
                headers[csrf.header] = str(csrf_token)
        kwargs: dict[str, Any] = {}
        kind = spec.body_kind
        if kind == "json":
            kwargs["json"] = plan.body(value)
        elif kind == "form":
            fields = plan.body(value)
            if csrf_token is not None and session.csrf.field:
                fields[session.csrf.field] = csrf_token
            kwargs["data"] = urllib.parse.urlencode(
                {k: "" if v is None else _form_text(v) for k, v in fields.items()}, doseq=True
            )
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif kind == "multipart":
            fields = plan.body(value)
            if csrf_token is not None and session.csrf.field:
                fields[session.csrf.field] = csrf_token
            body, content_type = multipart_body(fields, upload, spec.upload)
            kwargs["data"] = body
            headers["Content-Type"] = content_type
        if not spec.follow_redirects:
            kwargs["allow_redirects"] = False
        if key is None and plan.keyed and self.idempotency_header:  # none for GETs: not worked out
            key = self.idempotency_key(spec.name)
        self.step_spec = spec
        try:
            answer = self.call(
                spec.planned,
                spec.method,
                plan.path if plan.path is not None else spec.path.render(value),
                intended,
                key=key,
                expect=expect,
                headers=headers,
                **kwargs,
            )
        finally:
            self.step_spec = None
        if spec.keep and answer.ok:
            for name, extractor in spec.keep.items():
                kept = extractor.read(
                    answer.content, lambda a=answer: self._json(a.content), answer.headers, self.cookie
                )
                if kept is None or kept == "":
                    self.generator.metrics.mismatches[f"{spec.name}: no {extractor.text} in the answer"] += 1
                    self.missing_keep(spec, name, extractor.text)
                    raise JourneyOver("failed")
                self.kept[name] = kept
        return answer

    @classmethod
    def _plan(cls, spec: Step) -> _StepPlan:
        """What a step's requests share whoever sends them (worked out once per step and process)."""
        plan = _StepPlan(spec)
        plans = dict(cls._plans)  # a new dict: a subclass never writes into its parent's
        plans[id(spec)] = plan
        cls._plans = plans
        cls._kept_specs = [*cls._kept_specs, spec]  # alive, so its id is not reused
        return plan

    def missing_keep(self, spec: Step, name: str, where: str) -> None:
        """A kept value was not in a successful answer (the check-profile walk says so)."""

    # -- reading answers -------------------------------------------------------------------------
    def answer_code(self, name: str, status: int, headers: Any, content: bytes | None) -> str | None:
        spec = self.step_spec or self.python_spec
        if spec is None or name != spec.planned:
            return super().answer_code(name, status, headers, content)
        success = spec.success
        ok = status in success.status if success.status else 200 <= status < 300
        if ok and success.field is None:
            return None  # the common case: a status says it all, the body is not read
        if ok:
            found = success.field.read(content, lambda: self._json(content), headers, self.cookie)
            if success.equals is None:
                ok = found is not None and found != ""
            else:
                ok = found == success.equals or (found is not None and str(found) == str(success.equals))
        if ok:
            return None
        code = None
        if spec.refusal is not None:
            code = spec.refusal.read(content, lambda: self._json(content), headers, self.cookie)
        if code is None or code == "":
            return "HTTP_ERROR" if status >= 400 or status < 200 else "NOT_SUCCESS"
        code = str(code)
        return spec.refusals.get(code, code)

    def _json(self, content: bytes | None) -> Any:
        if self._parsed[0] is not content:
            self._parsed = (content, _parse_json(content))
        return self._parsed[1]

    def cookie(self, name: str) -> str | None:
        for cookie in self.client.cookiejar:
            if cookie.name == name:
                return cookie.value
        return None

    # -- template values -------------------------------------------------------------------------
    def value(self, name: str) -> Any:
        head, tail = _SPLIT.get(name) or _split(name)  # "applicant.email" -> ("applicant", "email")
        if head == "applicant":
            return self.applicant.get(tail)
        if head == "kept":
            return self.kept.get(tail)
        if name == "password":
            return applicant_password(self.applicant)
        if name.startswith("otp."):
            return self.otp_codes.get(name[4:])
        scenario = self.generator.scenario
        if name == "wave":
            return scenario.wave.number
        if name == "quota":
            return scenario.scaled_quota
        if name == "selection":
            return scenario.wave.selection
        if name == "answers":
            return [TEST_ANSWERS[(self.arrival + i) % 4] for i in range(TEST_QUESTIONS)]
        if name == "arrival":
            return self.arrival
        return None

    # -- OTPs ------------------------------------------------------------------------------------
    def poll_otp(self, address: str, channel: str, intended: float) -> str | None:
        spec = self.target_profile.otp[channel]
        if spec["source"] in HARNESS_OTP_SOURCES and "url" not in spec:
            return super().poll_otp(address, channel, intended)
        # Another source (fixed code, SQL, Redis): not a request to the target, not measured as one.
        return self.generator.otp_sources[channel].code(channel, str(address))


_SPLIT: dict[str, tuple[str, str]] = {}


def _split(name: str) -> tuple[str, str]:
    """A template name split at its first dot, once per name (names come from the profile)."""
    head, _, tail = name.partition(".")
    _SPLIT[name] = parts = (head, tail)
    return parts


class _StepPlan:
    """The parts of a step's request that do not depend on the applicant, worked out once: literal
    headers and path, whether an idempotency key is sent, and a body builder for its shape."""

    __slots__ = ("body", "header_templates", "headers", "keyed", "path")

    def __init__(self, spec: Step):
        headers: dict[str, str] = {}
        templates: list[tuple[str, Template]] = []
        for name, template in spec.headers.items():
            if template.names():
                templates.append((name, template))
            else:
                headers[name] = template.render(_no_values)
        self.headers = headers
        self.header_templates = tuple(templates)
        self.path = None if spec.path.names() else spec.path.render(_no_values)
        self.keyed = spec.method != "GET"  # JourneyUser.call sends a key with every write
        self.body = _body_builder(spec.body)


def _no_values(name: str) -> Any:
    return None


def _body_builder(body: Any) -> Callable[[Callable[[str], Any]], Any]:
    """A function of the template values giving a fresh body (a table of templates is the usual
    shape: rendered field by field, without walking the value's type at every request)."""
    if isinstance(body, dict) and all(isinstance(v, Template) for v in body.values()):
        items = tuple(body.items())
        return lambda value: {k: t.render(value) for k, t in items}
    return lambda value: render_value(body, value)


def _form_text(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def multipart_body(fields: dict[str, Any], upload: UploadBody | None, field: str | None) -> tuple[bytes, str]:
    """A multipart/form-data body: text fields, then the KTP photo (from the upload pool) as ``field``."""
    if upload is not None:
        boundary = upload.content_type.split("boundary=", 1)[1]
        photo = upload.body
        if field != "file":  # the pool's bodies name their one part "file" (simulator/surge/uploads.py)
            photo = photo.replace(b'name="file"', f'name="{field}"'.encode(), 1)
        if not fields:
            return photo, upload.content_type
    else:
        boundary = "prakerja-" + secrets.token_hex(12)
        photo = f"--{boundary}--\r\n".encode()
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
        f"{'' if v is None else v}\r\n".encode()
        for k, v in fields.items()
    )
    return head + photo, f"multipart/form-data; boundary={boundary}"


__all__ = ["HARNESS_OTP_SOURCES", "OTP_POLL", "ProfileJourney", "multipart_body"]
