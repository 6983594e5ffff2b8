"""The open model on Locust: one journey user per scheduled arrival, on every worker, exactly split.

Owns the master/worker protocol (prepare, go, progress, finish, final), the arrival spawner and raw results.

Locust drives a closed model (N users looping). Here Locust's runner only carries the test's life
cycle and messages: its load shape asks for zero looping users, and each worker starts one
journey user per arrival of its share of the schedule at the arrival's time, whatever the server
does. The protocol, the same for a local runner (messages to itself) and master/workers::

    master: test_start -> PREPARE(index, count, scenario, population) to each worker
    worker: loads its applicants and upload pool -> READY(arrivals)
    master: all ready -> GO(t0 = wall clock a moment ahead)
    worker: spawns arrivals at t0 + schedule[i], PROGRESS every second
    master: past the schedule and the drain (or nothing in flight) -> FINISH
    worker: stops what is still in flight (counted unfinished) -> FINAL(encoded metrics)
    master: merges, writes ``surge-raw.json``, the shape returns None and Locust stops.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from gevent.pool import Group
from geventhttpclient.client import HTTPClientPool
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from simulator.io.atomic import atomic_write_text
from simulator.rules.reasons import Reason
from simulator.surge.applicants import (
    DUPLICATE_REASONS,
    KTP_CHOICES,
    MAX_RETRIES,
    REFUSAL_STEP,
    JourneyPlans,
    build_plans,
    load_applicants,
    select_applicants,
)
from simulator.surge.metrics import OTP_POLL, RAW_RESULTS, SurgeMetrics
from simulator.surge.scenario import STEPS, Scenario, dump_scenario, load_scenario, parse_scenario
from simulator.surge.schedule import Schedule, build_schedule
from simulator.surge.uploads import UploadBody, build_pool

log = logging.getLogger("surge")

MSG_PREPARE = "surge_prepare"
MSG_READY = "surge_ready"
MSG_GO = "surge_go"
MSG_PROGRESS = "surge_progress"
MSG_FINISH = "surge_finish"
MSG_FINAL = "surge_final"

START_MARGIN_S = 1.0  # GO carries a start time this far ahead, so every worker starts together
PREPARE_TIMEOUT_S = 600.0
FINAL_TIMEOUT_S = 60.0
RETRIABLE = (0, 429, 500, 502, 503, 504)
LOCAL_WORKERS_ENV = "PRAKERJA_SURGE_LOCAL_WORKERS"


def add_arguments(parser: Any) -> None:
    """Locust command-line options of the surge (also shown in Locust's web UI)."""
    group = parser.add_argument_group("surge", "open-model replay of a wave opening (prakerja-sim)")
    group.add_argument(
        "--surge-scenario",
        default="smoke",
        help="scenario file or built-in name (smoke, wave-11, ...). Default: smoke",
    )
    group.add_argument(
        "--surge-population",
        default="",
        help="population directory (prakerja-sim population); empty: generate one in memory",
    )
    group.add_argument(
        "--surge-skip",
        type=int,
        default=0,
        help="leave out the first N applicants (used by an earlier run on the same server)",
    )
    group.add_argument("--surge-out", default="", help="directory for surge-raw.json (the runner reads it)")
    group.add_argument(
        "--surge-upstreams", default="", help="base URL of the upstream stand-ins' read API (OTP source)"
    )
    group.add_argument(
        "--surge-progress",
        type=float,
        default=2.0,
        help="seconds between progress lines on stderr; 0 for none",
    )


def run_window_s(scenario: Scenario) -> tuple[float, float]:
    """(metrics length, over-time window) for a scenario: the same on every process of a run."""
    length = scenario.replay.harness_length_s + scenario.replay.drain_s + 30.0
    return length, float(max(1, math.ceil(length / 120)))


def harness_now(t0_perf: float) -> float:
    return time.perf_counter() - t0_perf


# ------------------------------------------------------------------------------------------------
# Journey users: the measuring part of each arrival


@dataclass
class Answer:
    """What one logical request ended with (after retries)."""

    status: int
    code: str | None
    content: bytes | None
    expected: bool  # a refusal the applicant's data predicts
    retry_after: float | None = None  # seconds, from a Retry-After header

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

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

    def __init__(self, environment: Any, generator: ArrivalGenerator | None = None, row: int = 0):
        super().__init__(environment)
        self.generator, self.row = generator, row
        if generator is None:
            return  # Locust itself spawned a looping user: see _not_a_loop
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
        last = int(plans.last_step[row])
        outcome, intended = "completed", scheduled
        try:
            for k in range(last + 1):
                self.current_step = STEPS[k]
                intended += float(plans.think_s[row, k])
                self.sleep_until(intended)
                getattr(self, STEPS[k])(intended)
                metrics.acknowledged[STEPS[k]] += 1
                intended = self.now()
        except JourneyOver as over:
            outcome = over.outcome
        except gevent.GreenletExit:
            outcome = "unfinished"
            if self.pending is not None:  # stopped mid-request: the server may have committed it
                metrics.unknown[self.pending] += 1
            raise
        finally:
            metrics.record_journey(outcome, self.current_step, scheduled, self.now())

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
        if method != "GET":
            headers["Idempotency-Key"] = key or self.idempotency_key(name)
        while True:
            answer, label, sent, end = self._exchange(name, method, path, headers, expect, kwargs)
            unexpected = not answer.ok and not answer.expected
            self.generator.metrics.record_request(name, intended, sent, end, label, unexpected)
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
        sent = self.now()
        self.pending = name
        with self.client.request(
            method, path, name=name, headers=headers, catch_response=True, **kwargs
        ) as response:
            self.pending = None
            end = self.now()
            status = response.status_code or 0
            content = response.content if status else None
            code = None
            retry_after = None
            if not status:
                code = "CONNECTION_ERROR"
            elif status >= 400:
                retry_after = _seconds(response.headers.get("Retry-After") if response.headers else None)
                body = _parse_json(content)
                code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                code = code or "HTTP_ERROR"
            expected = status >= 400 and self._expected_refusal(code, expect)
            if status and (status < 400 or expected):
                response.success()
            else:
                response.failure(f"{status} {code}")
        label = str(status) if code is None else f"{status} {code}"
        return Answer(status, code, content, expected, retry_after), label, sent, end

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
        elif predicted and REFUSAL_STEP.get(predicted) == name:
            self.generator.metrics.mismatches[f"accepted despite {predicted}"] += 1

    def read_otp(self, address: str, channel: str, intended: float) -> str:
        """Poll the sandbox outbox the way a person checks their inbox; the newest code wins."""
        funnel = self.generator.scenario.funnel
        deadline = intended + funnel.otp_wait_s
        while True:
            # The same outbox shape on the target (sandbox mode) or on the upstream stand-ins.
            outbox = self.generator.otp_source + "/v1/sandbox/outbox"
            answer = self.call(OTP_POLL, "GET", outbox, intended, params={"to": address})
            messages = (answer.body or {}).get("messages", []) if isinstance(answer.body, dict) else []
            for message in messages:
                if message.get("channel") == channel and message.get("code"):
                    return str(message["code"])
            if self.now() >= deadline:
                self.generator.metrics.mismatches[
                    f"{channel} OTP not delivered in {funnel.otp_wait_s:g} s"
                ] += 1
                raise JourneyOver("failed")
            intended = self.now() + funnel.otp_poll_s
            self.sleep_until(intended)

    def next_upload(self) -> UploadBody | None:
        """The next KTP upload this applicant makes (None when they have made them all)."""
        choices = self.generator.plans.ktp_uploads[self.row]
        if self.ktp_attempt >= len(choices) or choices[self.ktp_attempt] < 0:
            return None
        code = KTP_CHOICES[int(choices[self.ktp_attempt])]
        bodies = self.generator.upload_pool[code]
        self.ktp_attempt += 1
        return bodies[(self.arrival + self.ktp_attempt) % len(bodies)]


# ------------------------------------------------------------------------------------------------
# Worker side: prepares its share, spawns arrivals, reports


class ArrivalGenerator:
    """Runs one worker's share of the schedule (or all of it, on a local runner)."""

    def __init__(self, environment: Any, journey_class: type[JourneyUser]):
        self.environment = environment
        self.journey_class = journey_class
        self.scenario: Scenario | None = None
        self.plans: JourneyPlans | None = None
        self.metrics: SurgeMetrics | None = None
        self.upload_pool: dict[str, list[UploadBody]] = {}
        self.index = 0
        self.run_id = ""
        self.otp_source = ""  # "": the target's sandbox outbox; else the stand-ins' base URL
        self.t0_perf = 0.0
        self.journeys = Group()
        self.spawner: gevent.Greenlet | None = None
        self.reporter: gevent.Greenlet | None = None
        self.dropped = 0
        self.finished = False
        self.final_sent = False
        runner = environment.runner
        if isinstance(runner, WorkerRunner) and os.environ.get(LOCAL_WORKERS_ENV):
            # Forked by a master on this machine (--processes): Ctrl-C reaches the whole process
            # group, and the master alone must handle it, collecting our measurements first.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        runner.register_message(MSG_PREPARE, self.on_prepare)
        runner.register_message(MSG_GO, self.on_go)
        runner.register_message(MSG_FINISH, self.on_finish)
        environment.events.test_stopping.add_listener(self.on_test_stopping)

    def send(self, msg_type: str, data: dict[str, Any]) -> None:
        self.environment.runner.send_message(msg_type, data)

    def on_prepare(self, environment: Any, msg: Any, **_kw: Any) -> None:
        gevent.spawn(self._prepare, msg.data)

    def _prepare(self, data: dict[str, Any]) -> None:
        self.index = data["index"]
        try:
            # Loading applicants and rendering uploads is CPU work: a real thread keeps this
            # process's gevent loop (and its heartbeats to the master) running meanwhile.
            gevent.get_hub().threadpool.apply(self._load, (data,))
        except Exception as err:  # noqa: BLE001 - any failure is reported to the master, which stops the run
            log.exception("surge worker %s could not prepare", self.index)
            self.send(
                MSG_READY,
                {
                    "index": self.index,
                    "error": f"{type(err).__name__}: {err}"
                    if not getattr(err, "exit_code", None)
                    else str(err),
                },
            )
            return
        self.send(MSG_READY, {"index": self.index, "arrivals": len(self.plans), "error": None})

    def _load(self, data: dict[str, Any]) -> None:
        scenario = parse_scenario(data["scenario"], data["scenario_source"])
        schedule = build_schedule(scenario)
        skip = int(data.get("skip") or 0)
        population = data.get("population") or None
        applicants, label = load_applicants(population, len(schedule) + skip, scenario.seed)
        rows = select_applicants(applicants, len(schedule), scenario, skip, source=label)
        self.plans = build_plans(scenario, schedule, applicants, rows, self.index, data["count"])
        length, window = run_window_s(scenario)
        self.metrics = SurgeMetrics(length, window)
        self.metrics.record_scheduled(self.plans.scheduled_s)
        codes = sorted(scenario.defects.ktp)
        self.upload_pool = build_pool(self.plans.applicants[:8], codes, scenario.seed + self.index)
        self.scenario = scenario
        self.run_id = data["run_id"]
        self.otp_source = data.get("upstreams") or ""
        self.journey_class.host = data["host"]
        self.journey_class.network_timeout = scenario.target.timeout_s
        self.journey_class.connection_timeout = scenario.target.timeout_s
        # None: every journey opens its own connections (Locust's default for a FastHttpUser).
        self.journey_class.client_pool = (
            HTTPClientPool(concurrency=max(scenario.replay.max_in_flight, 1000))
            if scenario.target.reuse_connections
            else None
        )
        self.dropped = 0
        self.finished = False
        self.final_sent = False
        self.t0_perf = 0.0
        self.journeys = Group()

    def on_go(self, environment: Any, msg: Any, **_kw: Any) -> None:
        # The master's wall clock says when the schedule starts; keep time on our monotonic clock.
        self.t0_perf = time.perf_counter() + (msg.data["t0"] - time.time())
        self.spawner = gevent.spawn(self._spawn_arrivals)
        self.reporter = gevent.spawn(self._report_progress)

    def _spawn_arrivals(self) -> None:
        plans, metrics = self.plans, self.metrics
        cap = self.scenario.replay.max_in_flight
        environment = self.environment
        for row in range(len(plans)):
            delay = plans.scheduled_s[row] - (time.perf_counter() - self.t0_perf)
            if delay > 0:
                gevent.sleep(delay)
            if cap and len(self.journeys) >= cap:
                metrics.record_dropped(float(plans.scheduled_s[row]))
                self.dropped += 1
                continue
            user = self.journey_class(environment, self, row)
            self.journeys.spawn(user.run_journey)

    def progress(self) -> dict[str, Any]:
        metrics = self.metrics
        return {
            "index": self.index,
            "at_s": time.perf_counter() - self.t0_perf,
            "started": int(metrics.series["started"].sum()),
            "late": int(metrics.series["late"].sum()),
            "dropped": self.dropped,
            "in_flight": len(self.journeys),
            "assigned": len(self.plans),
            "spawning": bool(self.spawner is not None and not self.spawner.dead),
            "journeys": dict(metrics.journeys),
            "requests": metrics.step_requests(),
            "unexpected": metrics.step_unexpected(),
        }

    def _report_progress(self) -> None:
        while not self.finished:
            self.send(MSG_PROGRESS, self.progress())
            gevent.sleep(1.0)

    def on_finish(self, environment: Any, msg: Any, **_kw: Any) -> None:
        gevent.spawn(self._finish)

    def _stop_everything(self) -> None:
        self.finished = True
        if self.spawner is not None:
            self.spawner.kill(block=True)
        self.journeys.kill(block=True, timeout=15)
        if self.reporter is not None:
            self.reporter.kill(block=False)

    def _finish(self) -> None:
        if self.metrics is None or self.final_sent:
            return
        self.final_sent = True
        self._stop_everything()
        not_started = len(self.plans) - int(self.metrics.series["started"].sum()) - self.dropped
        self.send(
            MSG_FINAL,
            {
                "index": self.index,
                "metrics": self.metrics.to_wire(),
                "not_started": not_started,
                "progress": self.progress(),
            },
        )

    def on_test_stopping(self, environment: Any, **_kw: Any) -> None:
        # Stopped from the web UI or by Ctrl-C: nothing may keep running, and what was measured
        # goes to the master (which waits a little for it) before this process ends.
        if self.metrics is not None and self.t0_perf and not self.final_sent:
            self._finish()
            gevent.sleep(0.5)  # let the message leave before Locust closes this worker's socket


# ------------------------------------------------------------------------------------------------
# Master side: starts, watches and ends the run; merges and writes the raw results


class SurgeController:
    """Drives a run from the master (or the local runner); the load shape asks it what to do."""

    def __init__(self, environment: Any):
        self.environment = environment
        self.state = "idle"
        runner = environment.runner
        runner.register_message(MSG_READY, self.on_ready)
        runner.register_message(MSG_PROGRESS, self.on_progress)
        runner.register_message(MSG_FINAL, self.on_final)
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.test_stopping.add_listener(self.on_test_stopping)
        self.reset()

    def reset(self) -> None:
        self.scenario: Scenario | None = None
        self.schedule: Schedule | None = None
        self.workers: dict[str, int] = {}
        self.ready: dict[int, dict[str, Any]] = {}
        self.progress: dict[int, dict[str, Any]] = {}
        self.finals: dict[int, dict[str, Any]] = {}
        self.error: str | None = None
        self.interrupted = False
        self.t0 = 0.0
        self.deadline = 0.0
        self.last_print = 0.0
        self.results_path: Path | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def on_test_start(self, environment: Any, **_kw: Any) -> None:
        self.reset()
        options = environment.parsed_options
        try:
            self.scenario = load_scenario(options.surge_scenario)
            self.schedule = build_schedule(self.scenario)
        except Exception as err:  # noqa: BLE001 - shown to the user, the run stops
            self._fail(str(err))
            return
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            clients = sorted(
                c.id for c in runner.clients.ready + runner.clients.running + runner.clients.spawning
            )
        else:
            clients = ["local"]
        self.workers = {client: i for i, client in enumerate(clients)}
        message = {
            "count": len(clients),
            "scenario": dump_scenario(self.scenario),
            "scenario_source": self.scenario.source or options.surge_scenario,
            "population": options.surge_population or None,
            "skip": options.surge_skip,
            "run_id": uuid.uuid4().hex[:12],
            "host": environment.host,
            "upstreams": options.surge_upstreams or None,
        }
        self.state = "preparing"
        self.deadline = time.monotonic() + PREPARE_TIMEOUT_S
        _say(
            f"surge: {self.scenario.name}: {len(self.schedule):,} arrivals scheduled over "
            f"{self.schedule.length_s:.0f} s (expected {self.schedule.expected:,.1f}) on {len(clients)} "
            f"load generator(s); preparing applicants and uploads..."
        )
        for client, index in self.workers.items():
            runner.send_message(
                MSG_PREPARE, dict(message, index=index), client_id=None if client == "local" else client
            )

    def on_ready(self, environment: Any, msg: Any, **_kw: Any) -> None:
        data = msg.data
        if data.get("error"):
            self._fail(f"load generator {data['index']}: {data['error']}")
            return
        self.ready[data["index"]] = data

    def on_progress(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.progress[msg.data["index"]] = msg.data

    def on_final(self, environment: Any, msg: Any, **_kw: Any) -> None:
        self.finals[msg.data["index"]] = msg.data

    def on_test_stopping(self, environment: Any, **_kw: Any) -> None:
        """Stopped early (Ctrl-C, the web UI's stop): collect what the workers measured so far."""
        if self.state not in ("preparing", "running", "finishing"):
            return
        was, self.state = self.state, "stopping"  # stop() may fire this again while we wait
        self.interrupted = True
        if was == "running":
            self._send_all(MSG_FINISH, {})
        deadline = time.monotonic() + (0.0 if was == "preparing" else 15.0)
        while len(self.finals) < len(self.workers) and time.monotonic() < deadline:
            gevent.sleep(0.1)
        self._write_results()
        self.state = "done"

    def _fail(self, error: str) -> None:
        self.error = error
        self.state = "failed"
        _say(f"surge: error: {error}")
        self._write_results()

    def _send_all(self, msg_type: str, data: dict[str, Any]) -> None:
        runner = self.environment.runner
        for client in self.workers:
            runner.send_message(msg_type, data, client_id=None if client == "local" else client)

    def tick(self) -> tuple[int, float] | None:
        """Called by the load shape every second: (0 looping users, rate) while running, None at the end."""
        now = time.monotonic()
        if self.state == "idle":
            return 0, 1.0
        if self.state == "preparing":
            if len(self.ready) == len(self.workers):
                self.t0 = time.time() + START_MARGIN_S
                self._send_all(MSG_GO, {"t0": self.t0})
                self.state = "running"
                _say(f"surge: go ({len(self.workers)} load generator(s) ready)")
            elif now > self.deadline:
                self._fail(f"load generators not ready after {PREPARE_TIMEOUT_S:.0f} s")
                return None
            return 0, 1.0
        if self.state == "running":
            elapsed = time.time() - self.t0
            self._print_progress(elapsed)
            replay = self.scenario.replay
            spawned_all = len(self.progress) == len(self.workers) and not any(
                p["spawning"] for p in self.progress.values()
            )
            idle = spawned_all and all(p["in_flight"] == 0 for p in self.progress.values())
            if elapsed >= self.schedule.length_s and (
                idle or elapsed >= self.schedule.length_s + replay.drain_s
            ):
                self._send_all(MSG_FINISH, {})
                self.state = "finishing"
                self.deadline = now + FINAL_TIMEOUT_S
            return 0, 1.0
        if self.state == "finishing":
            if len(self.finals) == len(self.workers) or now > self.deadline:
                self._write_results()
                self.state = "done"
                return None
            return 0, 1.0
        return None

    def _print_progress(self, elapsed: float) -> None:
        interval = self.environment.parsed_options.surge_progress
        if not interval or time.monotonic() - self.last_print < interval:
            return
        self.last_print = time.monotonic()
        total = lambda key: sum(p.get(key, 0) for p in self.progress.values())  # noqa: E731
        journeys: dict[str, int] = {}
        for p in self.progress.values():
            for k, v in p["journeys"].items():
                journeys[k] = journeys.get(k, 0) + v
        # Counts are as of each worker's last report (up to a second old): compare like with like.
        as_of = min((p.get("at_s", elapsed) for p in self.progress.values()), default=elapsed)
        due = int(np.searchsorted(self.schedule.starts_s, as_of, side="right"))
        requests = total("requests")
        _say(
            f"[{max(elapsed, 0):6.1f}s/{self.schedule.length_s:.0f}s] "
            f"arrivals {total('started'):,}/{due:,} due "
            f"(late {total('late'):,}, dropped {total('dropped'):,}), in flight {total('in_flight'):,}, "
            f"done {journeys.get('completed', 0):,} refused {journeys.get('refused', 0):,} "
            f"failed {journeys.get('failed', 0):,}, requests {requests:,} "
            f"({requests / max(elapsed, 1e-9):.1f}/s), unexpected errors {total('unexpected'):,}"
        )

    # -- results -------------------------------------------------------------------------------
    def _write_results(self) -> None:
        options = self.environment.parsed_options
        length, window = run_window_s(self.scenario) if self.scenario else (0.0, 1.0)
        merged = SurgeMetrics(length, window) if self.scenario else None
        for final in self.finals.values():
            merged.merge(final["metrics"])
        complete = self.error is None and len(self.finals) == len(self.workers) and bool(self.workers)
        results = {
            "status": "failed"
            if self.error
            else ("interrupted" if self.interrupted else ("complete" if complete else "partial")),
            "error": self.error,
            "scenario": dump_scenario(self.scenario) if self.scenario else None,
            "scenario_source": self.scenario.source if self.scenario else None,
            "host": self.environment.host,
            "population": options.surge_population or None,
            "skip": options.surge_skip,
            "workers": len(self.workers),
            "workers_reported": sorted(self.finals),
            "t0_epoch": self.t0,
            "ended_epoch": time.time(),
            "schedule": None
            if self.schedule is None
            else {
                "count": len(self.schedule),
                "expected": self.schedule.expected,
                "length_s": self.schedule.length_s,
            },
            "not_started": sum(f.get("not_started", 0) for f in self.finals.values()),
            "metrics": merged.to_wire() if merged else None,
        }
        if options.surge_out:
            self.results_path = Path(options.surge_out) / RAW_RESULTS
            atomic_write_text(self.results_path, json.dumps(results))
        if merged is not None and not self.error:
            journeys = dict(merged.journeys)
            _say(
                f"surge: finished: journeys {journeys}, requests {merged.step_requests():,}, "
                f"unexpected errors {merged.step_unexpected():,}"
                + (f"; raw results in {self.results_path}" if self.results_path else "")
            )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Wiring, called from the locustfile


_CONTROLLERS: dict[int, SurgeController] = {}


def install(environment: Any, journey_class: type[JourneyUser]) -> None:
    """Attach the surge to this Locust process (from an ``init`` event listener)."""
    runner = environment.runner
    if runner is None:
        return
    if not isinstance(runner, WorkerRunner):
        _CONTROLLERS[id(environment)] = SurgeController(environment)
    if not isinstance(runner, MasterRunner):
        ArrivalGenerator(environment, journey_class)


def controller_of(environment: Any) -> SurgeController | None:
    return _CONTROLLERS.get(id(environment))


def register(journey_class_getter: Callable[[], type[JourneyUser]]) -> None:
    """Hook the surge's options and set-up into Locust's events (the locustfile calls this once)."""

    @events.init_command_line_parser.add_listener
    def _options(parser: Any, **_kw: Any) -> None:
        add_arguments(parser)

    @events.init.add_listener
    def _install(environment: Any, **_kw: Any) -> None:
        install(environment, journey_class_getter())


__all__ = ["RAW_RESULTS", "Answer", "JourneyOver", "JourneyUser", "controller_of", "register"]
