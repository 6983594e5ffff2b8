"""Server-side reconciliation: what the clients were told against what the server committed.

Owns the comparison of journey acknowledgements with ``GET /v1/admin/stats`` before and after a run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Journey step -> the committed-row count of /v1/admin/stats that a success at that step adds one to.
STEP_COMMITS: dict[str, str] = {
    "create_account": "accounts_created",
    "verify_email": "email_verified",
    "identity": "identity_verified",
    "profile": "profile_completed",
    "ktp_upload": "ktp_accepted",
    "verify_phone": "phone_verified",
    "test": "test_completed",
    "join": "wave_joins",
}


@dataclass
class StepCheck:
    step: str
    server_count: str
    acknowledged: int  # journeys the API told "done" at this step
    unknown: int  # requests that timed out or lost their connection: they may have committed
    committed: int  # rows the server added during the run
    missing: int  # acknowledged but not committed: lost writes
    extra: int  # committed beyond acknowledged + unknown: writes nobody was told about
    ok: bool


@dataclass
class Reconciliation:
    available: bool
    reason: str = ""
    steps: list[StepCheck] = field(default_factory=list)
    wave: dict[str, Any] = field(default_factory=dict)
    mismatches: int = 0
    source: str = "/v1/admin/stats"  # where the server's counts were read (a profile's [reconcile])

    @property
    def ok(self) -> bool:
        return self.available and self.mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def reconcile(
    acknowledged: dict[str, int],
    unknown: dict[str, int],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    wave: int,
    quota: int,
    selection: str,
    commits: dict[str, str] | None = None,
    truth: str = "/v1/admin/stats",
) -> Reconciliation:
    """Compare per step; in ``fcfs`` also check that the wave never took more joins than its quota.

    ``before`` / ``after`` are ``/v1/admin/stats`` bodies (None when the target has no such
    endpoint: then nothing can be reconciled, and the report says so), or ``{"steps": {step: n}}``
    from a target profile's truth source (``commits`` then maps each step to itself, ``truth``
    names the source, and the wave's quota is not checked: only the admin stats carry it).
    """
    if before is None or "steps" not in before:
        return Reconciliation(False, f"the target does not offer {truth}")
    if after is None or "steps" not in after:
        return Reconciliation(False, f"the target stopped answering {truth} after the run")
    result = Reconciliation(True, source=truth)
    admin = commits is None
    for step, key in (STEP_COMMITS if admin else commits).items():
        if key not in after["steps"]:
            continue
        acked, maybe = int(acknowledged.get(step, 0)), int(unknown.get(step, 0))
        committed = int(after["steps"][key]) - int(before["steps"].get(key, 0))
        missing = max(0, acked - committed)
        extra = max(0, committed - acked - maybe)
        ok = not missing and not extra
        result.steps.append(StepCheck(step, key, acked, maybe, committed, missing, extra, ok))
        result.mismatches += missing + extra
    if not admin:
        return result
    status = (after.get("waves") or {}).get(str(wave))
    if status is not None:
        joined = int(status.get("joined", 0))
        server_quota = int(status.get("quota", quota))
        over = selection == "fcfs" and joined > server_quota
        result.wave = {
            "number": wave,
            "mode": status.get("mode", selection),
            "quota": server_quota,
            "joined": joined,
            "over_quota": max(0, joined - server_quota) if over else 0,
            "ok": not over,
        }
        if over:
            result.mismatches += joined - server_quota
    elif selection == "fcfs":
        result.wave = {"number": wave, "ok": False, "note": "the wave is missing from /v1/admin/stats"}
        result.mismatches += 1
    return result
