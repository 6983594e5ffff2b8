"""Truth sources: how many rows the server committed per journey step (for reconciliation).

Interface (agreed in /work/tasks/profile.md)::

    class TruthSource(Protocol):
        def counts(self) -> dict[str, int] | None: ...  # committed count per step name, None = unavailable
    def truth_source(spec, *, target, where) -> TruthSource   # "off" -> None counts

``admin-stats`` reads GET /v1/admin/stats (the reference API); ``off`` never has counts, and the
report says "not reconciled" (never OK).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from simulator.errors import InvalidInputFile

SOURCES = ("admin-stats", "sql", "off")


class TruthSource(Protocol):
    def counts(self) -> dict[str, int] | None: ...


class AdminStats:
    """``GET /v1/admin/stats``: its ``steps`` counts, renamed to journey steps (reconcile.STEP_COMMITS)."""

    def __init__(self, target: str):
        self.target = target.rstrip("/")

    def stats(self) -> dict[str, Any] | None:
        from simulator.surge.target import fetch_stats

        return fetch_stats(self.target)

    def counts(self) -> dict[str, int] | None:
        from simulator.surge.reconcile import STEP_COMMITS

        stats = self.stats()
        if stats is None or "steps" not in stats:
            return None
        steps = stats["steps"]
        return {step: int(steps[key]) for step, key in STEP_COMMITS.items() if key in steps}


class Off:
    def counts(self) -> dict[str, int] | None:
        return None


def truth_source(spec: Mapping[str, Any], *, target: str, where: str) -> TruthSource:
    source = spec.get("source", "off")
    unknown = sorted(set(spec) - {"source"})
    if source in ("admin-stats", "off") and unknown:
        raise InvalidInputFile(f"{where}: unknown key '{unknown[0]}' (expected one of: source)")
    if source == "admin-stats":
        return AdminStats(target)
    if source == "off":
        return Off()
    if source == "sql":
        raise InvalidInputFile(f"{where}: key 'source': source 'sql' is not in this build yet (simulator/surge/sources)")
    raise InvalidInputFile(f"{where}: key 'source': expected one of {', '.join(SOURCES)}, got {source!r}")


__all__ = ["AdminStats", "Off", "TruthSource", "truth_source"]
