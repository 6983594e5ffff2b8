"""The master side of a run: starts, watches and ends it, merges what the workers measured.

Owns ``surge-raw.json`` and, for a plain ``locust -f loadtests/locustfile.py``, the same before and
after steps as ``prakerja-sim surge`` (the wave opened, the target's counts, the report).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import numpy as np
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from simulator.errors import InvalidOption
from simulator.io.atomic import atomic_write_text
from simulator.surge.generator import ArrivalGenerator
from simulator.surge.harness import JourneyUser
from simulator.surge.locust_process import PARENT_ENV
from simulator.surge.metrics import RAW_RESULTS, SurgeMetrics
from simulator.surge.profile.format import Profile, parse_profile, profile_text
from simulator.surge.protocol import (
    FINAL_TIMEOUT_S,
    MSG_FINAL,
    MSG_FINISH,
    MSG_GO,
    MSG_PREPARE,
    MSG_PROGRESS,
    MSG_READY,
    PREPARE_TIMEOUT_S,
    START_MARGIN_S,
    add_arguments,
    run_window_s,
    say,
)
from simulator.surge.scenario import Scenario, dump_scenario, load_scenario
from simulator.surge.schedule import Schedule, build_schedule


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
        self.profile: Profile | None = None
        self.profile_source: tuple[str, str] = ("", "")
        self.truth: Any = None  # the profile's [reconcile] source (None: /v1/admin/stats)
        self.schedule: Schedule | None = None
        self.workers: dict[str, int] = {}
        self.ready: dict[int, dict[str, Any]] = {}
        self.progress: dict[int, dict[str, Any]] = {}
        self.finals: dict[int, dict[str, Any]] = {}
        self.error: str | None = None
        self.interrupted = False
        self.before: dict[str, Any] | None = None  # the target's counts before the run (plain Locust)
        self.skip = 0
        self.started = time.time()
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
            self.profile_source = profile_text(
                options.surge_target_profile or self.scenario.target.target_profile
            )
            self.profile = parse_profile(*self.profile_source)
            self.schedule = build_schedule(self.scenario)
            self.skip = options.surge_skip
            if not options.surge_managed:
                self._prepare_target()
        except Exception as err:  # shown to the user, the run stops
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
            "skip": self.skip,
            "run_id": uuid.uuid4().hex[:12],
            "host": environment.host,
            "upstreams": options.surge_upstreams or None,
            "profile": self.profile_source[0],
            "profile_source": self.profile_source[1],
            "allow_remote": bool(options.surge_allow_remote),
        }
        self.state = "preparing"
        self.deadline = time.monotonic() + PREPARE_TIMEOUT_S
        say(
            f"surge: {self.scenario.name}: {len(self.schedule):,} arrivals scheduled over "
            f"{self.schedule.length_s:.0f} s (expected {self.schedule.expected:,.1f}) on {len(clients)} "
            f"load generator(s); preparing applicants and uploads..."
        )
        for client, index in self.workers.items():
            runner.send_message(
                MSG_PREPARE, dict(message, index=index), client_id=None if client == "local" else client
            )

    def _prepare_target(self) -> None:
        """What ``prakerja-sim surge`` does before starting Locust, for a plain ``locust -f`` run."""
        from simulator.surge.target import check_target, fresh_skip, prepare_target, truth_of

        options = self.environment.parsed_options
        if not self.environment.host:
            raise InvalidOption(
                "no --host (or Host in the web UI): the API to load, e.g. http://127.0.0.1:8000"
            )
        host = check_target(self.environment.host, options.surge_allow_remote, "--surge-allow-remote")
        if self.profile.reference_admin:
            self.skip = fresh_skip(host, self.scenario, options.surge_population or None, self.skip, say)
        self.truth = truth_of(host, self.profile, options.surge_allow_remote)
        self.before = prepare_target(host, self.scenario, say, self.profile, self.truth)

    def _write_report(self, raw: dict[str, Any]) -> None:
        """What ``prakerja-sim surge`` does after Locust: reconcile, judge and write the report."""
        from simulator.surge.runner import finish_run

        options = self.environment.parsed_options
        params = {
            "host": self.environment.host.rstrip("/"),
            "population": options.surge_population or None,
            "population_generated": not options.surge_population,
            "skip_applicants": self.skip,
            "launched_by": "locust",
            "master": isinstance(self.environment.runner, MasterRunner),
            "wall_time_s": round(time.time() - self.started, 1),
            "interrupted_by": "locust (web UI stop or Ctrl-C)" if self.interrupted else None,
        }
        try:
            result = finish_run(
                self.scenario,
                raw,
                self.before,
                Path(options.surge_out),
                params,
                say,
                profile=self.profile,
                truth=self.truth,
            )
        except Exception as err:  # the raw results are written: say why there is no report
            say(f"surge: error: no report ({type(err).__name__}: {err}); raw results in {self.results_path}")
            self.environment.process_exit_code = 2
            return
        say(result.summary)
        self.environment.process_exit_code = result.exit_code  # Locust exits like `surge` would

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
        say(f"surge: error: {error}")
        self._write_results()
        self.environment.process_exit_code = 2  # bad input, as `prakerja-sim surge` exits

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
                say(f"surge: go ({len(self.workers)} load generator(s) ready)")
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
        say(
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
            "interrupted": sum(f.get("interrupted", 0) for f in self.finals.values()),
            "metrics": merged.to_wire() if merged else None,
        }
        if options.surge_out:
            self.results_path = Path(options.surge_out) / RAW_RESULTS
            atomic_write_text(self.results_path, json.dumps(results))
        if merged is not None and not self.error:
            journeys = dict(merged.journeys)
            say(
                f"surge: finished: journeys {journeys}, requests {merged.step_requests():,}, "
                f"unexpected errors {merged.step_unexpected():,}"
                + (f"; raw results in {self.results_path}" if self.results_path else "")
            )
            if not options.surge_managed:
                self._write_report(results)


_CONTROLLERS: dict[int, SurgeController] = {}


def install(environment: Any, journey_class: type[JourneyUser]) -> None:
    """Attach the surge to this Locust process (from an ``init`` event listener)."""
    runner = environment.runner
    if runner is None:
        return
    _stop_signals_as_ctrl_c()
    if os.environ.get(PARENT_ENV):
        gevent.spawn(_stop_when_orphaned, os.getppid())
    if not isinstance(runner, WorkerRunner):
        _CONTROLLERS[id(environment)] = SurgeController(environment)
    if not isinstance(runner, MasterRunner):
        ArrivalGenerator(environment, journey_class)


def _stop_signals_as_ctrl_c() -> None:
    """SIGTERM and SIGHUP stop the run the way Ctrl-C does: measurements collected, results written.

    (Locust's own SIGTERM handling does not reach a gevent hub here: the process just died.) A
    Ctrl-C that the hub sees is a clean stop, not an error to print as a bare ``KeyboardInterrupt``.
    """

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    hub = gevent.get_hub()
    hub.NOT_ERROR = (*hub.NOT_ERROR, KeyboardInterrupt)


def _stop_when_orphaned(parent: int) -> None:
    """Started by ``surge`` (or a local master) that is now gone, e.g. ``kill -9``: stop the run."""
    while os.getppid() == parent:
        gevent.sleep(1.0)
    say("surge: the process that started this load generator is gone: stopping the run")
    os.kill(os.getpid(), signal.SIGTERM)  # Locust's own clean shutdown


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
