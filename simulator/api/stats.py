"""What the server knows it did: the stats a load test reconciles against, and the answer counts behind them.

Owns `StatsStore` (one scan of every table for ``GET /v1/admin/stats``, and ``outcome_counts``), the
per-process `OutcomeCounter` flushed about once a second, and `StatsSnapshot`, which lets callers
share one scan (the route itself is in simulator/api/admin.py).
"""

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, case, func, insert, select, update

from simulator.api.health import BackgroundFaults
from simulator.api.store import Store, worker_name
from simulator.api.waves import wave_json
from simulator.database import schema as t
from simulator.database.db import run_write
from simulator.database.schema import utcnow
from simulator.rules.reasons import ACCEPT


class StatsStore:
    """The server-side counts of every step, wave, upload verdict, recipient state and OTP."""

    def __init__(self, store: Store):
        self.engine = store.engine

    def stats(self) -> dict[str, Any]:
        """The server-side truth a load test reconciles against (committed rows, not answers sent)."""
        with self.engine.connect() as conn:
            scalar = lambda q: int(conn.execute(q).scalar_one() or 0)  # noqa: E731
            count = lambda table, *where: scalar(select(func.count()).select_from(table).where(*where))  # noqa: E731
            steps = {
                "accounts_created": count(t.accounts),
                "email_verified": count(t.accounts, t.accounts.c.email_verified_at.is_not(None)),
                "identity_verified": count(t.identities),
                "profile_completed": count(t.profiles),
                "phone_verified": count(t.accounts, t.accounts.c.phone_verified_at.is_not(None)),
                "ktp_accepted": scalar(
                    select(func.count(func.distinct(t.ktp_uploads.c.account_id))).where(
                        t.ktp_uploads.c.verdict == ACCEPT
                    )
                ),
                "test_completed": count(t.test_results),
                "wave_joins": count(t.wave_joins),
                "selected": count(t.recipients),
            }
            outcomes: dict[str, dict[str, int]] = {}
            for step, outcome, n in conn.execute(
                select(
                    t.outcome_counts.c.step, t.outcome_counts.c.outcome, func.sum(t.outcome_counts.c["count"])
                ).group_by(t.outcome_counts.c.step, t.outcome_counts.c.outcome)
            ):
                outcomes.setdefault(step, {})[outcome] = int(n)
            carried = dict(
                conn.execute(
                    select(t.wave_joins.c.wave_number, func.count())
                    .where(t.wave_joins.c.carried_over_from.is_not(None))
                    .group_by(t.wave_joins.c.wave_number)
                ).all()
            )
            now = utcnow()
            waves = {}
            for row in conn.execute(select(t.waves).order_by(t.waves.c.number)):
                body = wave_json(row, now)
                body["carried_over"] = int(carried.get(row.number, 0))
                waves[str(row.number)] = body
            ktp = {
                v: int(n)
                for v, n in conn.execute(
                    select(t.ktp_uploads.c.verdict, func.count()).group_by(t.ktp_uploads.c.verdict)
                )
            }
            recipients = {
                s: int(n)
                for s, n in conn.execute(
                    select(t.recipients.c.state, func.count()).group_by(t.recipients.c.state)
                )
            }
            otp_rows = conn.execute(
                select(
                    t.otps.c.channel,
                    func.count(),
                    func.sum(case((t.otps.c.lost.is_(True), 1), else_=0)),
                    func.sum(case((t.otps.c.consumed_at.is_not(None), 1), else_=0)),
                ).group_by(t.otps.c.channel)
            ).all()
            registry = count(t.residents)
        otps = {
            ch: {"sent": int(n), "lost": int(lost or 0), "used": int(used or 0)}
            for ch, n, lost, used in otp_rows
        }
        return {
            "generated_at": now.isoformat() + "Z",
            "steps": steps,
            "outcomes": outcomes,
            "waves": waves,
            "ktp_uploads": ktp,
            "recipients": recipients,
            "otps": otps,
            "registry_residents": registry,
        }

    def flush_outcomes(self, worker: str, counts: dict[tuple[str, str], int]) -> None:
        """Add this process's answer counts to ``outcome_counts`` (one row per worker/step/outcome)."""
        if not counts:
            return

        def work(conn: Connection) -> None:
            c = t.outcome_counts.c
            for (step, outcome), n in counts.items():
                done = conn.execute(
                    update(t.outcome_counts)
                    .where(c.worker == worker, c.step == step, c.outcome == outcome)
                    .values(count=c["count"] + n)
                ).rowcount
                if not done:
                    conn.execute(
                        insert(t.outcome_counts).values(worker=worker, step=step, outcome=outcome, count=n)
                    )

        run_write(self.engine, work)


class OutcomeCounter:
    """Answers per (step, outcome) in this process, added to the database about once a second."""

    def __init__(self, stats):  # anything with flush_outcomes(worker, counts)
        self.store = stats
        self.worker = worker_name()
        self.counts: Counter[tuple[str, str]] = Counter()
        # One flush at a time: a flush (GET /v1/admin/stats) that starts while the periodic one is
        # still writing waits for it, so the stats it reads include every count taken so far.
        self._flushing = threading.Lock()
        # `add` runs on the event loop, `flush` in the thread pool: the swap and the counting
        # must not interleave (a count added between reading and replacing would be lost).
        self._counting = threading.Lock()

    def add(self, step: str, outcome: str) -> None:
        with self._counting:
            self.counts[(step, outcome)] += 1

    def flush(self) -> None:
        with self._flushing:
            with self._counting:
                counts, self.counts = self.counts, Counter()
            try:
                self.store.flush_outcomes(self.worker, dict(counts))
            except Exception:  # the database is busy or gone: keep the counts for the next flush
                with self._counting:
                    self.counts.update(counts)
                raise


STATS_MAX_AGE_S = 2.0
"""Default age of the stats snapshot an answer may give (``?max_age_s=0`` asks for a fresh one)."""


class StatsSnapshot:
    """``Store.stats`` computed by one caller at a time; callers who waited share its answer.

    On a million accounts a scan takes about a second: eight admins polling at once would
    otherwise run eight scans side by side and slow every applicant's request down.
    """

    def __init__(self, store: "StatsStore", flush: Callable[[], None], faults: BackgroundFaults):
        self.store = store
        self.flush = flush
        self.faults = faults
        self._lock = threading.Lock()
        self._taken_at = 0.0  # monotonic start of the scan behind `_body`
        self._body: dict[str, Any] | None = None

    def get(self, max_age_s: float) -> dict[str, Any]:
        """A snapshot begun at most ``max_age_s`` ago (0: begun after this call), with its age."""
        asked = time.monotonic()
        with self._lock:
            fresh_enough = self._body is not None and self._taken_at >= asked - max_age_s
            if not fresh_enough:
                started = time.monotonic()
                try:
                    self.flush()  # this process's outcome counts, so the answer includes them
                    self.faults.succeeded("outcome flush")
                except Exception as err:  # counted next time; the stats still answer
                    self.faults.failed("outcome flush", err)
                self._body, self._taken_at = self.store.stats(), started
            body, taken_at = self._body, self._taken_at
        return dict(body, snapshot_age_s=round(max(0.0, time.monotonic() - taken_at), 3))
