"""What the server says it committed, per journey step: the other side of reconciliation.

A profile's ``[reconcile]`` table names the source (docs/target-profile-sources.md):

- ``admin-stats``: the reference API's ``GET /v1/admin/stats`` (read exactly as
  simulator/surge/reconcile.py always has: ``steps`` by STEP_COMMITS, ``waves`` by number).
- ``sql``: one count query per step against the user's database over a read-only connection
  (``[reconcile.counts]``), and optionally the wave's joins and quota (``[reconcile.wave]``).
- ``off``: nothing is read; the report says "not reconciled", never OK.

``counts()`` returns the committed count per step name (None = unavailable); ``wave(number)`` the
wave's ``joined`` / ``quota`` (None when the source does not know). :func:`reconcile_truth` turns
counts before and after a run into the report's Reconciliation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from simulator.errors import InvalidInputFile, InvalidOption, TargetUnavailable
from simulator.surge.reconcile import STEP_COMMITS, Reconciliation, reconcile
from simulator.surge.sources._common import ReadOnlyDatabase, Spec, select_query

SOURCES = ("admin-stats", "sql", "off")
OFF_REASON = 'reconciliation is off in the target profile ([reconcile] source = "off")'


class TruthSource(Protocol):
    def counts(self) -> dict[str, int] | None: ...  # committed count per step name, None = unavailable


class AdminStatsTruth:
    """``GET {target}/v1/admin/stats?max_age_s=0`` (with the admin token), as the surge read it before."""

    kind = "admin-stats"

    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.reason = ""
        self.last: dict[str, Any] | None = None

    def stats(self) -> dict[str, Any] | None:
        from simulator.surge.target import fetch_stats

        try:
            self.last = fetch_stats(self.target)
        except TargetUnavailable as err:
            self.last, self.reason = None, str(err)
            return None
        if self.last is None or "steps" not in self.last:
            self.reason = "the target does not offer /v1/admin/stats"
            return None
        return self.last

    def counts(self) -> dict[str, int] | None:
        body = self.stats()
        if body is None:
            return None
        return {step: int(body["steps"][key]) for step, key in STEP_COMMITS.items() if key in body["steps"]}

    def wave(self, number: int) -> dict[str, Any] | None:
        """The wave as the last stats read saw it (call counts() first)."""
        status = ((self.last or {}).get("waves") or {}).get(str(number))
        return dict(status) if isinstance(status, dict) else None


class SqlTruth:
    """``SELECT COUNT(*) ...`` per step, and the wave's joins and quota (``:wave`` = its number)."""

    kind = "sql"

    def __init__(self, db: ReadOnlyDatabase, queries: dict[str, str], wave_queries: dict[str, str]):
        self.db, self.queries, self.wave_queries = db, queries, wave_queries
        self.reason = ""

    def counts(self) -> dict[str, int] | None:
        result = {}
        try:
            for step, query in self.queries.items():
                value = self.db.scalar(query, {})
                result[step] = int(value or 0)
        except (TargetUnavailable, TypeError, ValueError) as err:
            self.reason = f"the count query of step {step!r} failed: {err}"
            return None
        return result

    def wave(self, number: int) -> dict[str, Any] | None:
        if not self.wave_queries:
            return None
        status: dict[str, Any] = {}
        try:
            for name, query in self.wave_queries.items():
                params = {"wave": number} if ":wave" in query else {}
                value = self.db.scalar(query, params)
                if value is not None:
                    status[name] = int(value)
        except (TargetUnavailable, TypeError, ValueError) as err:
            self.reason = f"the wave query {name!r} failed: {err}"
            return None
        return status if "joined" in status else None


class OffTruth:
    kind = "off"
    reason = OFF_REASON

    def counts(self) -> None:
        return None

    def wave(self, number: int) -> None:
        return None


def truth_source(
    spec: Mapping[str, Any],
    *,
    target: str,
    where: str,
    steps: Collection[str] | None = None,
    allow_remote: bool = False,
) -> TruthSource:
    """The source a profile's ``[reconcile]`` table describes; ``steps`` (the profile's step names),
    when given, is what ``[reconcile.counts]`` keys must be among. One line per bad key."""
    s = Spec(spec, where)
    source = s.data.get("source")
    if source not in SOURCES:
        raise s.error("source", "one of " + ", ".join(f'"{x}"' for x in SOURCES), source)
    if source == "off":
        s.only("source")
        return OffTruth()
    if source == "admin-stats":
        s.only("source")
        return AdminStatsTruth(target)
    s.only("source", "url", "url_env", "counts", "wave")
    url, url_key = s.url("a read-only database URL (sqlite:///FILE, postgresql://, mysql://)")
    counts = s.data.get("counts")
    if not isinstance(counts, Mapping) or not counts:
        raise s.error("counts", 'a table of step = "SELECT COUNT(*) ..." (at least one step)', counts)
    sub = Spec(counts, f"{s.file} [{s.key('counts')}]")
    queries = {}
    for step, query in counts.items():
        if steps is not None and step not in steps:
            raise InvalidInputFile(
                f"{s.file}: key '{sub.key(step)}': expected a step of the profile ({', '.join(steps)})"
            )
        queries[step] = select_query(sub, step, query, frozenset())
    wave_queries: dict[str, str] = {}
    if "wave" in s.data:
        wave = s.data["wave"]
        wsub = Spec(wave, f"{s.file} [{s.key('wave')}]")
        wsub.only("joined", "quota")
        if "joined" not in wave:
            raise InvalidInputFile(
                f"{s.file}: key '{wsub.key('joined')}' is required "
                "(a query counting the wave's joins, :wave = its number)"
            )
        for name, query in wave.items():
            wave_queries[name] = select_query(wsub, name, query, frozenset({"wave"}))
    try:
        db = ReadOnlyDatabase(url, option=f"{s.file}: key '{s.key(url_key)}'", allow_remote=allow_remote)
    except InvalidOption as err:
        raise InvalidInputFile(str(err)) from None
    # Each query once now, so a wrong table or column is one line before any load.
    for step, query in queries.items():
        _probe(db, query, {}, f"{s.file}: key '{sub.key(step)}'")
    for name, query in wave_queries.items():
        _probe(db, query, {"wave": 1} if ":wave" in query else {}, f"{s.file}: key '{s.key('wave')}.{name}'")
    return SqlTruth(db, queries, wave_queries)


def _probe(db: ReadOnlyDatabase, query: str, params: dict[str, Any], label: str) -> None:
    try:
        value = db.scalar(query, params)
    except TargetUnavailable as err:
        raise InvalidInputFile(f"{label}: expected a query the database can run: {err}") from None
    if value is not None and not isinstance(value, int | float | str):
        raise InvalidInputFile(f"{label}: expected a query giving a number, got {value!r}")


def snapshot(source: TruthSource, wave: int) -> dict[str, Any] | None:
    """Counts and the wave, read now, in the shape reconcile() compares (None = unavailable)."""
    counts = source.counts()
    if counts is None:
        return None
    body: dict[str, Any] = {"steps": dict(counts), "waves": {}}
    status = source.wave(wave) if hasattr(source, "wave") else None
    if status is not None:
        body["waves"][str(wave)] = status
    return body


def reconcile_truth(
    source: TruthSource,
    acknowledged: dict[str, int],
    unknown: dict[str, int],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    wave: int,
    quota: int,
    selection: str,
) -> Reconciliation:
    """What the clients were told against what the source says was committed.

    ``before`` / ``after`` are :func:`snapshot` results (or, for admin-stats, the stats bodies).
    ``off`` is never OK: it is reported as not reconciled, with the reason.
    """
    reason = getattr(source, "reason", "") or ""
    if isinstance(source, OffTruth):
        return Reconciliation(False, OFF_REASON)
    if isinstance(source, AdminStatsTruth):
        return reconcile(acknowledged, unknown, before, after, wave=wave, quota=quota, selection=selection)
    if before is None:
        return Reconciliation(False, reason or "the count queries gave nothing before the run")
    if after is None:
        return Reconciliation(False, reason or "the count queries gave nothing after the run")
    # The steps are the profile's own names: compare them one to one.
    label = f"{source.kind} counts"
    result = reconcile(
        acknowledged,
        unknown,
        before,
        after,
        wave=wave,
        quota=quota,
        selection=selection,
        commits={step: step for step in after["steps"]},
        truth=label,
    )
    status = (after.get("waves") or {}).get(str(wave))
    if status is None:
        result.wave = {"number": wave, "ok": True, "note": "no [reconcile.wave] queries: quota not checked"}
        return result
    joined = int(status.get("joined", 0))
    server_quota = int(status.get("quota", quota))
    over = max(0, joined - server_quota) if selection == "fcfs" else 0
    result.wave = {
        "number": wave,
        "mode": selection,
        "quota": server_quota,
        "joined": joined,
        "over_quota": over,
        "ok": not over,
    }
    result.mismatches += over
    return result


__all__ = ["SOURCES", "TruthSource", "reconcile_truth", "snapshot", "truth_source"]
