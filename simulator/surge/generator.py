"""The worker side of a run: loads its share of the applicants, starts each arrival on time, reports.

Owns the arrival spawner, the cap on journeys in flight, and what is counted when a run stops early.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import gevent
import numpy as np
from gevent.pool import Group
from geventhttpclient.client import HTTPClientPool

from simulator.surge.applicants import JourneyPlans, build_plans, load_applicants, select_applicants
from simulator.surge.harness import JourneyUser
from simulator.surge.metrics import SurgeMetrics
from simulator.surge.profile.format import Profile, build_otp_sources, parse_profile
from simulator.surge.protocol import (
    MSG_FINAL,
    MSG_FINISH,
    MSG_GO,
    MSG_PREPARE,
    MSG_PROGRESS,
    MSG_READY,
    run_window_s,
)
from simulator.surge.scenario import Scenario, parse_scenario
from simulator.surge.schedule import build_schedule
from simulator.surge.uploads import UploadBody, build_pool

log = logging.getLogger("surge")

RESOLVE_TTL_S = 30.0
"""How long one load-generator process reuses a host name's addresses (its DNS answer)."""


class CachedResolver:
    """gevent's resolver, with ``getaddrinfo`` answers kept for RESOLVE_TTL_S seconds.

    A journey with its own connections opens a new connection pool, which resolves the target's
    host again; gevent's default resolver hands every lookup to a thread, tens of CPU microseconds
    each, even for 127.0.0.1. A person's device resolves a host once and keeps the answer for its
    TTL, so does this. Every other call goes to the wrapped resolver.
    """

    def __init__(self, resolver: Any, ttl_s: float = RESOLVE_TTL_S):
        self.resolver = resolver
        self.ttl_s = ttl_s
        self.answers: dict[tuple, tuple[float, Any]] = {}

    def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        key = (args, tuple(sorted(kwargs.items())))
        now = time.monotonic()
        kept = self.answers.get(key)
        if kept is not None and now - kept[0] < self.ttl_s:
            return kept[1]
        answer = self.resolver.getaddrinfo(*args, **kwargs)  # an error is not kept: asked again next time
        self.answers[key] = (now, answer)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolver, name)


def cache_resolution() -> None:
    """Put a CachedResolver in front of this process's gevent resolver (once)."""
    hub = gevent.get_hub()
    if not isinstance(hub.resolver, CachedResolver):
        hub.resolver = CachedResolver(hub.resolver)


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
        self.profile: Profile | None = None  # the target profile (how the API is driven)
        self.otp_sources: dict[str, Any] = {}  # channel -> simulator.surge.sources.otp.OtpSource
        self.t0_perf = 0.0
        self.journeys = Group()
        self.clock = time.perf_counter  # the spawner's clock and sleep (a test gives virtual ones)
        self.sleep = gevent.sleep
        self.spawner: gevent.Greenlet | None = None
        self.reporter: gevent.Greenlet | None = None
        self.dropped = 0
        self.begun = np.zeros(0, dtype=bool)  # per arrival: its journey started (or was dropped)
        self.finished = False
        self.final_sent = False
        runner = environment.runner
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
        except Exception as err:  # any failure is reported to the master, which stops the run
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
        cache_resolution()
        # What was just loaded (applicants, plans, uploads) lives until the run ends: out of the
        # garbage collector's sight, each full collection during the run has far less to walk.
        gc.collect()
        gc.freeze()
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
        self.profile = parse_profile(data["profile"], data["profile_source"])
        self.otp_sources = build_otp_sources(
            self.profile, data["host"], data.get("upstreams"), bool(data.get("allow_remote"))
        )
        prepare = getattr(self.journey_class, "prepare_run", None)
        if prepare is not None:
            prepare(self)
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
        self.begun = np.zeros(len(self.plans), dtype=bool)
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
        """Start each arrival at its scheduled time: sleep until the next one is due, then start
        every one that is due (a late wake-up starts the ones it overslept at once, in order)."""
        plans, metrics = self.plans, self.metrics
        cap = self.scenario.replay.max_in_flight
        environment, journeys, journey_class = self.environment, self.journeys, self.journey_class
        clock, sleep, t0 = self.clock, self.sleep, self.t0_perf
        scheduled = plans.scheduled_s.tolist()  # Python floats: a numpy scalar per row costs more
        for row, at in enumerate(scheduled):
            delay = at - (clock() - t0)
            if delay > 0:
                sleep(delay)
            if cap and len(journeys) >= cap:
                metrics.record_dropped(at)
                self.dropped += 1
                self.begun[row] = True
                continue
            journeys.spawn(journey_class(environment, self, row).run_journey)

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
        stopped_at = time.perf_counter() - self.t0_perf if self.t0_perf else -1.0
        self._stop_everything()
        # An arrival that had not started when the run was stopped, and could not yet have been
        # counted late, is "not started (interrupted)": the stop came first, not a failure to start.
        never = ~self.begun
        cut_short = never & (self.plans.scheduled_s > stopped_at - self.scenario.replay.late_after_s)
        self.send(
            MSG_FINAL,
            {
                "index": self.index,
                "metrics": self.metrics.to_wire(),
                "not_started": int((never & ~cut_short).sum()),
                "interrupted": int(cut_short.sum()),
                "progress": self.progress(),
            },
        )

    def on_test_stopping(self, environment: Any, **_kw: Any) -> None:
        # Stopped from the web UI or by Ctrl-C: nothing may keep running, and what was measured
        # goes to the master (which waits a little for it) before this process ends.
        if self.metrics is not None and self.t0_perf and not self.final_sent:
            self._finish()
            gevent.sleep(0.5)  # let the message leave before Locust closes this worker's socket
