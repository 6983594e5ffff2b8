"""The measuring part of each arrival: a Locust user that goes through the journey once.

Owns how one request is timed (from its intended start), retried like a person, and judged
(a refusal the applicant's data predicts, or an unexpected error). loadtests/journey.py subclasses it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from locust import task
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS, FastHttpUser
from locust.exception import CatchResponseError, StopUser

from simulator.rules.reasons import Reason
from simulator.surge.applicants import DUPLICATE_REASONS, KTP_CHOICES, MAX_RETRIES, REFUSAL_STEP
from simulator.surge.metrics import OTP_POLL
from simulator.surge.scenario import STEPS
from simulator.surge.uploads import UploadBody
from simulator.surge.wire import LeanCookieJar, Wire

if TYPE_CHECKING:
    from simulator.surge.generator import ArrivalGenerator

log = logging.getLogger("surge")
RETRIABLE = (0, 429, 500, 502, 503, 504)
ACCEPT_ENCODING = "gzip, deflate, br"  # what FastHttpSession.request asks for unless told otherwise
_LEAN_KWARGS = frozenset(("data", "json", "params", "allow_redirects"))
"""What :meth:`JourneyUser._exchange` sends itself; other arguments go through FastHttpSession.request."""
_STATUS_LABELS = {status: str(status) for status in range(100, 600)}
_FIRST_COMER_WINS = frozenset(DUPLICATE_REASONS.values())
TIMEOUT = "TIMEOUT"
"""No answer within ``target.timeout_s``: the request may still be running (and commit) on the server."""
CONNECTION_ERROR = "CONNECTION_ERROR"
"""The connection could not be made or broke (refused, reset, closed mid-answer)."""


def failure_code(error: BaseException | None) -> str:
    """The label of a request that got no HTTP answer: a timeout, or a connection that failed.

    geventhttpclient wraps the socket's timeout (``RetriesExceeded(original=...)``): look inside.
    """
    for _ in range(5):
        if error is None:
            break
        if isinstance(error, TimeoutError | gevent.Timeout):  # socket.timeout is TimeoutError
            return TIMEOUT
        error = getattr(error, "original", None) or error.__cause__ or error.__context__
    return CONNECTION_ERROR


@dataclass
class Answer:
    """What one logical request ended with (after retries)."""

    status: int
    code: str | None
    content: bytes | None
    expected: bool  # a refusal the applicant's data predicts
    retry_after: float | None = None  # seconds, from a Retry-After header
    headers: Any = None  # the answer's headers (what a profile keeps from them)

    @property
    def ok(self) -> bool:
        """Answered, and not a refusal (JourneyUser.answer_code found no code in it)."""
        return self.status != 0 and self.code is None

    @property
    def body(self) -> Any:
        """The JSON body, parsed only when a step needs it (most never look)."""
        return _parse_json(self.content)


def _seconds(header: str | None) -> float | None:
    try:
        return min(float(header), 300.0) if header else None
    except ValueError:
        return None  # an HTTP date: rare from APIs, and a person would not parse it either


def _parse_json(content: bytes | None) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


class JourneyOver(Exception):
    """Ends a journey early: ``outcome`` is refused (predicted) or failed (unexpected)."""

    def __init__(self, outcome: str):
        super().__init__(outcome)
        self.outcome = outcome


class JourneyUser(FastHttpUser):
    """One applicant going through the flow once. Subclasses define one method per step of STEPS.

    Each step method gets the harness time it was meant to start (``intended``) and calls
    :meth:`call`, which measures every attempt from its intended start, retries like a person
    (after a pause, a few times), and tells expected refusals from unexpected errors.
    """

    abstract = True
    generator: ArrivalGenerator | None = None
    idempotency_header: str | None = "Idempotency-Key"  # sent with every write (None: not sent)

    def __init__(self, environment: Any, generator: ArrivalGenerator | None = None, row: int = 0):
        super().__init__(environment)
        self.generator, self.row = generator, row
        if generator is None:
            return  # Locust itself spawned a looping user: see _not_a_loop
        session = self.client
        session.cookiejar = session.client.cookiejar = LeanCookieJar()  # one per applicant
        self.wire = Wire(session, self.default_headers)
        plans = generator.plans
        self.applicant = plans.applicants[row]
        self.arrival = int(plans.arrivals[row])
        self.retries_left = int(plans.retries[row])
        self.retries_used = 0
        self.auth: dict[str, str] = {}
        self.account_id: str | None = None
        self.current_step = STEPS[0]
        self.pending: str | None = None  # the request on the wire, if any
        self.ktp_attempt = 0
        self.crash: BaseException | None = None  # what a step raised that is not a JourneyOver

    @task
    def _not_a_loop(self) -> None:
        # Locust wants a task. Journeys start only from the WaveOpening shape's schedule.
        raise StopUser()

    # -- the journey -----------------------------------------------------------------------------
    def run_journey(self) -> None:
        gen, row = self.generator, self.row
        plans, metrics = gen.plans, gen.metrics
        scheduled = float(plans.scheduled_s[row])
        metrics.record_arrival(scheduled, self.now(), gen.scenario.replay.late_after_s)
        gen.begun[row] = True
        outcome, intended = "completed", scheduled
        try:
            for k in self.journey_steps(int(plans.last_step[row])):
                step = self.current_step = STEPS[k]
                intended += float(plans.think_s[row, k])
                self.sleep_until(intended)
                self.run_step(step, intended)
                metrics.acknowledged[step] += 1
                intended = self.now()
        except JourneyOver as over:
            outcome = over.outcome
        except gevent.GreenletExit:
            outcome = "unfinished"
            if self.pending is not None:  # stopped mid-request: the server may have committed it
                metrics.unknown[self.pending] += 1
            raise
        except Exception as err:  # a bug in a step: counted and shown, never "completed"
            outcome = "failed"
            self.crash = err
            problem = f"{self.current_step}: the journey raised {type(err).__name__}"
            if not metrics.mismatches[problem]:
                log.error("surge: %s: %s (further ones are only counted)", problem, err, exc_info=err)
            metrics.mismatches[problem] += 1
            if self.pending is not None:
                metrics.unknown[self.pending] += 1
        finally:
            metrics.record_journey(outcome, self.current_step, scheduled, self.now())
            self.leave()

    def leave(self) -> None:
        """The person is done: connections of their own close now, as a browser closes a tab's
        (on a shared keep-alive pool they stay open for the next journey)."""
        if type(self).client_pool is None:
            self.client.client.clientpool.close()

    def journey_steps(self, last: int) -> Iterable[int]:
        """Indexes into STEPS of the steps this applicant takes, in order (``last``: their fate's
        last step). A profile may leave steps out or reorder them (simulator/surge/profile)."""
        return range(last + 1)

    def run_step(self, step: str, intended: float) -> None:
        """Do one planned step: by default the method of that name (loadtests/journey.py)."""
        getattr(self, step)(intended)

    # -- helpers for step methods ----------------------------------------------------------------
    def now(self) -> float:
        return time.perf_counter() - self.generator.t0_perf

    def sleep_until(self, h: float) -> None:
        delay = h - self.now()
        if delay > 0:
            gevent.sleep(delay)

    def idempotency_key(self, name: str, extra: str = "") -> str:
        return f"{self.generator.run_id}-{self.arrival}-{name}{extra}"

    def call(
        self,
        name: str,
        method: str,
        path: str,
        intended: float,
        *,
        key: str | None = None,
        expect: str | None = None,
        **kwargs: Any,
    ) -> Answer:
        """Send one logical request (retrying after failures); raise JourneyOver when it must end.

        ``expect`` is a refusal this very request should get (a bad KTP photo); the applicant's
        ``expected_outcome`` and shared email/phone/NIK are checked here too.
        """
        headers = dict(self.auth)
        headers.update(kwargs.pop("headers", {}))
        if method != "GET" and self.idempotency_header:
            headers[self.idempotency_header] = key or self.idempotency_key(name)
        while True:
            answer, label, sent, end = self._exchange(name, method, path, headers, expect, kwargs)
            unexpected = not answer.ok and not answer.expected
            self.generator.metrics.record_request(name, intended, sent, end, label, unexpected)
            if answer.code == TIMEOUT:
                self.generator.metrics.timeouts[name] += 1
            if unexpected and answer.status in RETRIABLE and self.retries_left > 0:
                self.retries_left -= 1
                # A person pauses before trying again; a server that says how long (Retry-After,
                # in real seconds: server policies are not compressed) is listened to.
                pause = float(self.generator.plans.backoff_s[self.row, self.retries_used % MAX_RETRIES])
                intended = end + max(pause, answer.retry_after or 0.0)
                self.retries_used += 1
                self.sleep_until(intended)
                continue
            if answer.status == 0 or answer.status == 504:
                self.generator.metrics.unknown[name] += 1  # it may have been committed anyway
            break
        if answer.ok:
            self._check_missed_refusal(name, expect)
            return answer
        if answer.expected:
            if expect is not None and answer.code == expect:
                return answer  # a bad photo refused as it should be: the caller retakes it
            raise JourneyOver("refused")
        raise JourneyOver("failed")

    def _exchange(
        self,
        name: str,
        method: str,
        path: str,
        headers: dict[str, str],
        expect: str | None,
        kwargs: dict[str, Any],
    ) -> tuple[Answer, str, float, float]:
        """One attempt: send, read the whole answer, judge it, report it to Locust's statistics.

        The same request on the wire as ``FastHttpSession.request`` sends (its headers, JSON
        encoding, basic auth from the host URL, redirects, cookies), without its per-request
        context manager and copies, and through :class:`simulator.surge.wire.Wire` without the
        user agent's per-request layers: a journey request costs the load generator about what a
        bare Locust request does (benchmarks/bench_surge.py).
        """
        session = self.client
        if not _LEAN_KWARGS.issuperset(kwargs):
            return self._exchange_locust(name, method, path, headers, expect, kwargs)
        payload = kwargs.get("data")
        if not payload and kwargs.get("json") is not None:
            payload = json.dumps(kwargs["json"])
            if "Content-Type" not in headers and "content-type" not in headers:
                headers["Content-Type"] = "application/json"
            if "Accept" not in headers and "accept" not in headers:
                headers["Accept"] = "application/json"
        if session.auth_header:
            headers["Authorization"] = session.auth_header
        if "Accept-Encoding" not in headers and "accept-encoding" not in headers:
            headers["Accept-Encoding"] = ACCEPT_ENCODING
        url = session.base_url + path if path[:1] == "/" else session._build_url(path)
        start_time = time.time()
        sent = self.now()
        self.pending = name
        response = self.wire.send(
            method, url, path, payload, headers, kwargs.get("params"), kwargs.get("allow_redirects", True)
        )
        status = response.status_code or 0
        error = getattr(response, "error", None)
        content = None
        if status:
            try:
                content = response.content  # the whole body: what a person waits for
            except FAILURE_EXCEPTIONS as err:  # the body never came in full: no answer
                status, error = 0, err
        self.pending = None
        end = self.now()
        answer_headers = response.headers if status else None
        answer, label = self._judge(name, status, answer_headers, content, error, expect)
        session.request_event.fire(
            request_type=method,
            name=name,
            context=self.context(),
            response=response,
            exception=None if answer.ok or answer.expected else CatchResponseError(label),
            start_time=start_time,
            url=url,
            response_length=len(content) if content else 0,
            response_time=(end - sent) * 1000.0,
        )
        return answer, label, sent, end

    def _judge(
        self,
        name: str,
        status: int,
        headers: Any,
        content: bytes | None,
        error: BaseException | None,
        expect: str | None,
    ) -> tuple[Answer, str]:
        """What an attempt's answer means: its refusal code (None: success), whether the applicant's
        data predicts it, and its label in the outcome counts (``201``, ``409 EMAIL_TAKEN``)."""
        retry_after = None
        if not status:
            code = failure_code(error)
        else:
            code = self.answer_code(name, status, headers, content)
            if status >= 400 and headers:
                retry_after = _seconds(headers.get("Retry-After"))
        expected = bool(status) and code is not None and self._expected_refusal(code, expect)
        label = _STATUS_LABELS.get(status) or str(status) if code is None else f"{status} {code}"
        return Answer(status, code, content, expected, retry_after, headers), label

    def _exchange_locust(
        self,
        name: str,
        method: str,
        path: str,
        headers: dict[str, str],
        expect: str | None,
        kwargs: dict[str, Any],
    ) -> tuple[Answer, str, float, float]:
        """An attempt with arguments only ``FastHttpSession.request`` knows (``files``, ``auth``...)."""
        sent = self.now()
        self.pending = name
        with self.client.request(
            method, path, name=name, headers=headers, catch_response=True, **kwargs
        ) as response:
            self.pending = None
            end = self.now()
            status = response.status_code or 0
            content = response.content if status else None
            error = getattr(response, "error", None)
            answer_headers = response.headers if status else None
            answer, label = self._judge(name, status, answer_headers, content, error, expect)
            if status and (answer.ok or answer.expected):
                response.success()
            else:
                response.failure(label)
        return answer, label, sent, end

    def answer_code(self, name: str, status: int, headers: Any, content: bytes | None) -> str | None:
        """The refusal or error code of an answer, None when the request succeeded.

        The reference API's shape: a status >= 400 with ``{"error": {"code": ...}}``. A target
        profile reads it where its API puts it (and finds errors inside 200 answers).
        """
        if status < 400:
            return None
        body = _parse_json(content)
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        return code or "HTTP_ERROR"

    def _expected_refusal(self, code: str | None, expect: str | None) -> bool:
        if code is None:
            return False
        if expect is not None and code == expect:
            return True
        if code == self.applicant.get("expected_outcome"):
            return True
        if code == Reason.WAVE_FULL and self.generator.scenario.wave.selection == "fcfs":
            return True  # first come, first served: the quota is gone, as designed
        duplicates = self.generator.plans.duplicates
        return any(
            code == reason and duplicates[column][self.row] for column, reason in DUPLICATE_REASONS.items()
        )

    def _check_missed_refusal(self, name: str, expect: str | None) -> None:
        predicted = self.applicant.get("expected_outcome")
        if expect is not None:
            self.generator.metrics.mismatches[f"accepted {expect} upload"] += 1
        elif predicted in _FIRST_COMER_WINS:
            pass  # whoever of two sharers comes first is accepted: the labelled one may be first
        elif predicted and REFUSAL_STEP.get(predicted) == name:
            self.generator.metrics.mismatches[f"accepted despite {predicted}"] += 1

    def read_otp(self, address: str, channel: str, intended: float) -> str:
        """Poll the sandbox outbox the way a person checks their inbox; the newest code wins."""
        funnel = self.generator.scenario.funnel
        deadline = intended + funnel.otp_wait_s
        while True:
            code = self.poll_otp(address, channel, intended)
            if code is not None:
                return code
            if self.now() >= deadline:
                self.generator.metrics.mismatches[
                    f"{channel} OTP not delivered in {funnel.otp_wait_s:g} s"
                ] += 1
                raise JourneyOver("failed")
            intended = self.now() + funnel.otp_poll_s
            self.sleep_until(intended)

    def poll_otp(self, address: str, channel: str, intended: float) -> str | None:
        """One look for the newest code: the sandbox outbox on the target, or on the stand-ins."""
        outbox = self.generator.otp_source + "/v1/sandbox/outbox"
        answer = self.call(OTP_POLL, "GET", outbox, intended, params={"to": address})
        messages = (answer.body or {}).get("messages", []) if isinstance(answer.body, dict) else []
        for message in messages:
            if message.get("channel") == channel and message.get("code"):
                return str(message["code"])
        return None

    def next_upload(self) -> UploadBody | None:
        """The next KTP upload this applicant makes (None when they have made them all)."""
        choices = self.generator.plans.ktp_uploads[self.row]
        if self.ktp_attempt >= len(choices) or choices[self.ktp_attempt] < 0:
            return None
        code = KTP_CHOICES[int(choices[self.ktp_attempt])]
        bodies = self.generator.upload_pool[code]
        self.ktp_attempt += 1
        return bodies[(self.arrival + self.ktp_attempt) % len(bodies)]


__all__ = ["Answer", "JourneyOver", "JourneyUser"]
