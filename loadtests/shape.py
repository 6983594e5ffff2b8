"""The load shape of a wave opening: Locust asks it every second; the surge harness answers.

No looping users: each load generator starts one journey per scheduled arrival (simulator/surge/generator.py).
"""

from __future__ import annotations

from locust import LoadTestShape

from simulator.surge.controller import controller_of


class WaveOpening(LoadTestShape):
    """Runs the scenario's arrival schedule (``--surge-scenario``), then stops the test."""

    def tick(self) -> tuple[int, float] | None:
        controller = controller_of(self.runner.environment)
        return None if controller is None else controller.tick()
