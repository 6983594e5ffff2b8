"""Reconciliation against /v1/admin/stats and SLO thresholds -> exit codes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simulator.surge.metrics import SurgeMetrics
from simulator.surge.reconcile import reconcile
from simulator.surge.scenario import Threshold, load_scenario
from simulator.surge.thresholds import evaluate, exit_code


def stats(accounts=0, joins=0, joined=0, quota=10, mode="fcfs"):
    return {
        "steps": {
            "accounts_created": accounts,
            "email_verified": 0,
            "identity_verified": 0,
            "profile_completed": 0,
            "phone_verified": 0,
            "ktp_accepted": 0,
            "test_completed": 0,
            "wave_joins": joins,
        },
        "waves": {"1": {"quota": quota, "joined": joined, "mode": mode}},
    }


def test_everything_acknowledged_is_committed():
    result = reconcile(
        {"create_account": 5, "join": 3},
        {},
        stats(accounts=2),
        stats(accounts=7, joins=3, joined=3),
        wave=1,
        quota=10,
        selection="fcfs",
    )
    assert result.ok and result.mismatches == 0
    by_step = {check.step: check for check in result.steps}
    assert by_step["create_account"].committed == 5 and by_step["join"].ok


def test_lost_writes_are_missing():
    result = reconcile(
        {"create_account": 5}, {}, stats(), stats(accounts=4), wave=1, quota=10, selection="lottery"
    )
    check = next(c for c in result.steps if c.step == "create_account")
    assert check.missing == 1 and not check.ok and not result.ok and result.mismatches == 1


def test_timeouts_may_have_committed_but_no_more():
    before = stats()
    # 5 acknowledged, 2 timed out (unknown): 5..7 commits are consistent, 8 is not.
    assert reconcile(
        {"create_account": 5},
        {"create_account": 2},
        before,
        stats(accounts=7),
        wave=1,
        quota=10,
        selection="lottery",
    ).ok
    over = reconcile(
        {"create_account": 5},
        {"create_account": 2},
        before,
        stats(accounts=8),
        wave=1,
        quota=10,
        selection="lottery",
    )
    assert not over.ok and next(c for c in over.steps if c.step == "create_account").extra == 1


def test_fcfs_joins_never_exceed_the_quota():
    over = reconcile(
        {"join": 12}, {}, stats(), stats(joins=12, joined=12, quota=10), wave=1, quota=10, selection="fcfs"
    )
    assert not over.ok and over.wave["over_quota"] == 2
    lottery = reconcile(
        {"join": 12},
        {},
        stats(),
        stats(joins=12, joined=12, quota=10, mode="lottery"),
        wave=1,
        quota=10,
        selection="lottery",
    )
    assert lottery.ok  # a lottery takes more joiners than places, by design


def test_no_stats_endpoint_means_not_reconciled():
    result = reconcile({"join": 1}, {}, None, None, wave=1, quota=10, selection="fcfs")
    assert not result.available and not result.ok and "admin/stats" in result.reason


def run_metrics(latency_s=0.2, errors=0, requests=100):
    metrics = SurgeMetrics(30, 1)
    for i in range(requests):
        bad = i < errors
        metrics.record_request("join", 1.0, 1.0, 1.0 + latency_s, "500 HTTP_ERROR" if bad else "201", bad)
    metrics.record_scheduled(np.full(10, 1.0))
    for _ in range(10):
        metrics.record_arrival(1.0, 1.01, 1.0)
        metrics.record_journey("completed", "join", 1.0, 5.0)
    return metrics


@pytest.mark.parametrize(
    ("threshold", "latency_s", "errors", "code"),
    [
        (Threshold("latency_ms", stat="p99", max=500), 0.2, 0, 0),
        (Threshold("latency_ms", stat="p99", max=500), 0.8, 0, 1),
        (Threshold("latency_ms", step="join", stat="p50", max=100), 0.2, 0, 1),
        (Threshold("error_rate", max=0.01), 0.2, 0, 0),
        (Threshold("error_rate", max=0.01), 0.2, 5, 1),
        (Threshold("completion_rate", min=0.9), 0.2, 0, 0),
        (Threshold("throughput_rps", min=1000), 0.2, 0, 1),
        (Threshold("dropped_arrivals", max=0), 0.2, 0, 0),
    ],
)
def test_thresholds_set_the_exit_code(threshold, latency_s, errors, code):
    metrics = run_metrics(latency_s, errors)
    recon = reconcile({}, {}, stats(), stats(), wave=1, quota=10, selection="fcfs")
    results = evaluate((threshold,), metrics, recon, run_length_s=20)
    assert exit_code(results) == code
    assert results[0].status == ("pass" if code == 0 else "fail")
    assert results[0].value is not None


def test_reconciliation_threshold_fails_on_mismatch_and_skips_without_stats():
    metrics = run_metrics()
    rule = (Threshold("reconciliation", max=0),)
    bad = reconcile({"create_account": 3}, {}, stats(), stats(accounts=1), wave=1, quota=10, selection="fcfs")
    assert exit_code(evaluate(rule, metrics, bad, 20)) == 1
    unknown = reconcile({}, {}, None, None, wave=1, quota=10, selection="fcfs")
    results = evaluate(rule, metrics, unknown, 20)
    assert results[0].status == "skipped" and exit_code(results) == 0


BUILTINS = ("smoke", "wave-11", "dukcapil-slow", "ktp-upload-storm", "soak", "wave-1-opening")
# Thresholds on a step the test run below never makes cannot be measured: skipped, not passed.
UNMEASURED = {
    ("dukcapil-slow", "identity check p99 under 10 s"),
    ("ktp-upload-storm", "KTP upload p99 under 5 s"),
    ("ktp-upload-storm", "no unexpected upload failures"),
}


def test_every_builtin_threshold_judges_a_healthy_and_a_broken_run():
    recon = reconcile({}, {}, stats(), stats(), wave=1, quota=10, selection="fcfs")
    healthy = run_metrics(latency_s=0.2)
    broken = run_metrics(latency_s=12.0, errors=50)  # every latency bound and error budget blown
    for name in BUILTINS:
        scenario = load_scenario(name)
        for good, bad in zip(
            evaluate(scenario.slo, healthy, recon, 20), evaluate(scenario.slo, broken, recon, 20), strict=True
        ):
            if (name, good.label) in UNMEASURED:
                assert good.status == bad.status == "skipped" and good.value is None
                continue
            assert good.status == "pass", (name, good)
            expected = "fail" if good.metric in ("latency_ms", "error_rate") else "pass"
            assert bad.status == expected, (name, bad)


def test_a_threshold_label_names_the_bound_when_the_file_gives_no_name():
    label = dataclasses.replace(Threshold("latency_ms", step="join", stat="p99", max=800)).label
    assert label == "latency_ms p99 [join] <= 800"


def test_arrivals_not_yet_due_at_a_stop_do_not_fail_kept_up():
    metrics = SurgeMetrics(30, 1)
    metrics.record_scheduled(np.arange(10, dtype=float))
    for h in range(4):  # the run was stopped at 4 s: the 6 arrivals after that were never due
        metrics.record_arrival(float(h), h + 0.01, 1.0)
    rule = (Threshold("dropped_arrivals", max=0),)
    recon = reconcile({}, {}, None, None, wave=1, quota=10, selection="fcfs")
    kept_up = evaluate(rule, metrics, recon, 20, not_started=0, interrupted=6)[0]
    assert kept_up.status == "pass" and kept_up.value == 0
    missed = evaluate(rule, metrics, recon, 20, not_started=1, interrupted=5)[0]
    assert missed.status == "fail" and missed.value == pytest.approx(1 / 5)  # 1 of the 5 due


def test_the_console_and_the_report_tell_one_story(tmp_path):
    # A run whose server commits match (reconciliation OK) but whose answers contradict the data:
    # the console must say both, with the very lines report.html shows.
    import html
    import json

    from simulator.surge.report import summary_lines
    from simulator.surge.runner import assemble

    scenario = load_scenario("smoke")
    metrics = run_metrics()
    metrics.mismatches["accepted despite EMAIL_DOMAIN_TYPO"] += 16
    raw = {"status": "complete", "host": "http://127.0.0.1:1", "workers": 1, "workers_reported": [0]}
    raw["metrics"] = metrics.to_wire()
    result = assemble(scenario, raw, stats(), stats(), tmp_path, params={"host": "http://127.0.0.1:1"})
    assert "server    reconciliation OK (0 mismatch(es) against /v1/admin/stats)" in result.summary
    assert (
        "answers   16 contradicted the applicants' data (accepted despite EMAIL_DOMAIN_TYPO 16)"
        in result.summary
    )
    data = json.loads(result.report_json.read_text(encoding="utf-8"))
    assert data["summary"]["answers_contradicting_data"] == 16
    page = result.report_html.read_text(encoding="utf-8")
    for _label, line in summary_lines(data):
        assert html.escape(line) in page and line in result.summary
