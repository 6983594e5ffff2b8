"""The surge report: ``report.json`` (stable keys) and a self-contained ``report.html`` with charts.

Owns what a reader sees: arrivals scheduled vs achieved, per-step throughput and latency, funnel, errors.
"""

from __future__ import annotations

import html as html_lib
from pathlib import Path
from typing import Any

import numpy as np

from simulator import report as report_lib
from simulator.surge import trace
from simulator.surge.metrics import REQUEST_NAMES, SurgeMetrics, histogram_summary
from simulator.surge.reconcile import Reconciliation
from simulator.surge.scenario import STEPS, Scenario, scenario_to_dict
from simulator.surge.schedule import ArrivalCurve
from simulator.surge.thresholds import ThresholdResult, arrival_counts
from simulator.upstreams import report as upstream_report

REPORT_VERSION = 1


def build_data(
    scenario: Scenario,
    raw: dict[str, Any],
    metrics: SurgeMetrics,
    reconciliation: Reconciliation,
    thresholds: list[ThresholdResult],
    exit_code: int,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Everything the run measured, as plain data with stable keys (the JSON report)."""
    length = scenario.replay.harness_length_s
    seconds = np.arange(metrics.seconds)
    if scenario.arrivals.trace is not None:
        expected_rate = trace.harness_rate(scenario, np.minimum(seconds + 0.5, length))
    else:
        expected_rate = ArrivalCurve(scenario).harness_rate(np.minimum(seconds + 0.5, length))
    expected_rate[seconds >= length] = 0.0
    last = _last_active_second(metrics)
    counts = arrival_counts(metrics, raw.get("not_started", 0), raw.get("interrupted", 0))
    steps = metrics.step_table()
    journeys = dict(metrics.journeys)
    started_journeys = sum(n for outcome, n in journeys.items() if outcome != "dropped")
    time_to_complete = histogram_summary(metrics.journey_time)
    errors = {
        name: {
            outcome: n for outcome, n in sorted(metrics.outcomes[name].items()) if not outcome.startswith("2")
        }
        for name in REQUEST_NAMES
    }
    stopped_at: dict[str, dict[str, int]] = {}
    for key, n in metrics.stopped_at.items():
        outcome, _, step = key.partition(":")
        stopped_at.setdefault(step, {})[outcome] = n
    overall = histogram_summary(metrics.overall_latency())
    return {
        "report_version": REPORT_VERSION,
        "meta": report_lib.report_meta(
            seed=scenario.seed, scenario=scenario_to_dict(scenario), params=params
        ),
        "status": raw.get("status"),
        "exit_code": exit_code,
        "summary": {
            "scenario": scenario.name,
            "host": raw.get("host"),
            "workers": raw.get("workers"),
            "arrivals_scheduled": counts["scheduled"],
            "arrivals_expected": (raw.get("schedule") or {}).get("expected"),
            "journeys_started": started_journeys,
            "journeys": journeys,
            "requests": metrics.step_requests(),
            "unexpected_errors": metrics.step_unexpected(),
            "error_rate": metrics.step_unexpected() / metrics.step_requests()
            if metrics.step_requests()
            else None,
            "latency_ms": overall,
            "timeouts": sum(metrics.timeouts.values()),
            "answers_contradicting_data": sum(metrics.mismatches.values()),
            "reconciliation_ok": reconciliation.ok if reconciliation.available else None,
            "thresholds_failed": sum(t.status == "fail" for t in thresholds),
            "interrupted_by": params.get("interrupted_by"),
        },
        "arrivals": {
            **counts,
            "lag_ms": histogram_summary(metrics.arrival_lag),
            "late_after_s": scenario.replay.late_after_s,
            "trace": trace.report_summary(scenario),
            "per_second": {
                "expected": np.round(expected_rate[: last + 1], 4).tolist(),
                "scheduled": metrics.series["scheduled"][: last + 1].tolist(),
                "started": metrics.series["started"][: last + 1].tolist(),
                "late": metrics.series["late"][: last + 1].tolist(),
                "dropped": metrics.series["dropped"][: last + 1].tolist(),
            },
        },
        "steps": steps,
        "throughput_per_second": {
            name: metrics.step_series[i][: last + 1].tolist()
            for i, name in enumerate(REQUEST_NAMES)
            if metrics.requests[name]
        },
        "latency_over_time": metrics.latency_over_time()[: int(last // metrics.window_s) + 1],
        "journeys": {
            "outcomes": journeys,
            "started": started_journeys,
            "time_to_complete_ms": time_to_complete,
            "completed_per_second": metrics.series["finished"][: last + 1].tolist(),
            "stopped_at": stopped_at,
            "funnel": {step: int(metrics.acknowledged[step]) for step in STEPS},
        },
        "errors": {name: e for name, e in errors.items() if e},
        "mismatches": dict(metrics.mismatches),
        "reconciliation": reconciliation.to_dict(),
        "thresholds": [t.to_dict() for t in thresholds],
        "upstreams": upstream_report.with_forecast(raw.get("upstream_stats"), dict(metrics.requests)),
    }


def _last_active_second(metrics: SurgeMetrics) -> int:
    active = np.flatnonzero(
        metrics.series["scheduled"] + metrics.series["started"] + metrics.step_series.sum(axis=0)
    )
    return int(active[-1]) if len(active) else 0


# ------------------------------------------------------------------------------------------------
# HTML


def _fmt(value: Any, unit: str = "") -> str:
    # The reports' one number format, for the terminal lines and the HTML text alike.
    return "-" if value is None else report_lib.number(value) + unit


def summary_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The verdict as (label, text) lines: the terminal prints them, the HTML report shows them.

    Read from the report's own data only, so the console and report.json / report.html can never
    tell different stories (e.g. reconciliation OK beside mismatches listed in the report).
    """
    s = data["summary"]
    a = data["arrivals"]
    lat = s["latency_ms"]
    j = s["journeys"]
    never = [f"late {a['late']:,}", f"dropped {a['dropped']:,}"]
    if a["not_started"]:
        never.append(f"not started {a['not_started']:,}")
    if a.get("interrupted"):
        never.append(f"not started (interrupted) {a['interrupted']:,}")
    lines = [
        (
            "arrivals",
            f"{a['started']:,} of {a['scheduled']:,} started ({', '.join(never)}); "
            f"start lag p99 {_fmt(a['lag_ms']['p99'], ' ms')}",
        ),
        (
            "journeys",
            f"completed {j.get('completed', 0):,}, refused as predicted {j.get('refused', 0):,}, "
            f"failed {j.get('failed', 0):,}, unfinished {j.get('unfinished', 0):,}",
        ),
        (
            "requests",
            f"{s['requests']:,}, unexpected errors {s['unexpected_errors']:,}"
            + (f" ({s['error_rate']:.2%})" if s["error_rate"] is not None else "")
            + (f", timeouts {s['timeouts']:,}" if s.get("timeouts") else ""),
        ),
        (
            "latency",
            f"p50 {_fmt(lat['p50'], ' ms')}  p90 {_fmt(lat['p90'], ' ms')}  p99 {_fmt(lat['p99'], ' ms')}"
            f"  p99.9 {_fmt(lat['p99.9'], ' ms')}  max {_fmt(lat['max'], ' ms')}",
        ),
    ]
    mismatches = data["mismatches"]
    if mismatches:
        worst = ", ".join(
            f"{what} {n:,}" for what, n in sorted(mismatches.items(), key=lambda kv: -kv[1])[:3]
        )
        lines.append(("answers", f"{sum(mismatches.values()):,} contradicted the applicants' data ({worst})"))
    else:
        lines.append(("answers", "every answer agreed with the applicants' data"))
    rec = data["reconciliation"]
    if rec["available"]:
        lines.append(
            (
                "server",
                f"reconciliation {'OK' if rec['ok'] else 'MISMATCH'} "
                f"({rec['mismatches']} mismatch(es) against {rec.get('source') or '/v1/admin/stats'})",
            )
        )
    else:
        lines.append(("server", f"not reconciled: {rec['reason']}"))
    lines += upstream_report.summary_lines(data.get("upstreams"))
    for t in data["thresholds"]:
        lines.append(("SLO", f"{t['status'].upper():7s} {t['label']} (measured {_fmt(t['value'])})"))
    return lines


def summary_text(data: dict[str, Any], report_path: Path | None = None) -> str:
    """A few lines for the terminal: what happened, and whether the run passed."""
    s = data["summary"]
    status = data["status"]
    if s.get("interrupted_by"):
        status += f" ({s['interrupted_by']})"
    lines = [f"surge {s['scenario']} against {s['host']} ({s['workers']} load generator(s)): {status}"]
    lines += [
        f"  {label:9s} {text}" if label != "SLO" else f"  SLO {text}" for label, text in summary_lines(data)
    ]
    if report_path is not None:
        lines.append(f"  report    {report_path}")
    return "\n".join(lines)


def render(data: dict[str, Any]) -> str:
    s = data["summary"]
    sections = [
        _verdict_section(data),
        _arrivals_section(data),
        _throughput_section(data),
        _latency_section(data),
        _funnel_section(data),
        _errors_section(data),
        _reconciliation_section(data),
        upstream_report.html_section(data.get("upstreams")),
    ]
    sections = [section for section in sections if section is not None]
    title = f"Surge report: {s['scenario']}"
    return report_lib.render_html(title, data["meta"], sections)


def _verdict_section(data: dict[str, Any]) -> report_lib.Section:
    s = data["summary"]
    passed = data["exit_code"] == 0
    word = "passed" if passed else "failed its thresholds"
    text = (
        f"<p><strong>The run {word}</strong> (exit code {data['exit_code']}, "
        f"status {html_lib.escape(str(data['status']))}). "
        f"{s['journeys_started']:,} applicants arrived and made {s['requests']:,} requests; "
        f"{s['unexpected_errors']:,} of them ended in an error their data did not predict. "
        "Latency is measured from each request's intended start (no coordinated omission).</p>"
        + "<dl>"
        + "".join(
            f"<dt>{html_lib.escape(label)}</dt><dd>{html_lib.escape(line)}</dd>"
            for label, line in summary_lines(data)
        )
        + "</dl>"
    )
    rows = [
        {
            "threshold": t["label"],
            "status": t["status"],
            "measured": t["value"],
            "min": t["min"],
            "max": t["max"],
        }
        for t in data["thresholds"]
    ]
    tables = (
        [
            report_lib.html_table(
                rows,
                [
                    ("threshold", "Threshold"),
                    ("status", "Status"),
                    ("measured", "Measured"),
                    ("min", "Min"),
                    ("max", "Max"),
                ],
                caption="SLO thresholds from the scenario",
            )
        ]
        if rows
        else []
    )
    return report_lib.Section("Verdict", html=text, tables=tables)


def _in_flow_order(by_name: dict[str, Any]) -> list[tuple[str, Any]]:
    """Items keyed by step / request name in the order of the flow (report.json sorts its keys)."""
    return [(name, by_name[name]) for name in REQUEST_NAMES if name in by_name]


def _seconds_axis(values: list) -> np.ndarray:
    return np.arange(len(values))


def _arrivals_section(data: dict[str, Any]) -> report_lib.Section:
    a = data["arrivals"]
    per = a["per_second"]
    fig = report_lib.new_figure()
    ax = fig.add_subplot()
    x = _seconds_axis(per["started"])
    ax.plot(x, per["expected"], color="#888", linestyle="--", label="expected (curve)")
    ax.step(x, per["scheduled"], where="post", label="scheduled", color="#1f77b4")
    ax.step(x, per["started"], where="post", label="started", color="#2ca02c")
    if any(per["late"]) or any(per["dropped"]):
        ax.step(x, np.add(per["late"], per["dropped"]), where="post", label="late + dropped", color="#d62728")
    ax.set_xlabel("harness seconds")
    ax.set_ylabel("arrivals per second")
    ax.legend(loc="upper right", fontsize="small")
    text = (
        f"<p>Open model: each applicant arrives at a time drawn from the scenario's curve, whatever the "
        f"server does. {a['started']:,} of {a['scheduled']:,} arrivals started; {a['late']:,} started more "
        f"than {a['late_after_s']:g} s late, {a['dropped'] + a['not_started']:,} never started although "
        f"due, {a.get('interrupted', 0):,} were not yet due when the run was stopped. Start lag "
        f"p50 {_fmt(a['lag_ms']['p50'], ' ms')}, p99 {_fmt(a['lag_ms']['p99'], ' ms')}.</p>"
    )
    return report_lib.Section(
        "Arrivals: scheduled vs achieved", html=text, figures=[report_lib.figure_svg(fig)]
    )


def _throughput_section(data: dict[str, Any]) -> report_lib.Section:
    """One small chart per step, in flow order, on a shared time axis: each its own scale, so a
    step with a few responses a second is as readable as one with hundreds."""
    throughput = data["throughput_per_second"]
    steps = [(name, throughput[name]) for name in STEPS if name in throughput]
    if not steps:
        return report_lib.Section("Throughput per step", html="<p>No responses were recorded.</p>")
    columns = 2
    rows = -(-len(steps) // columns)
    fig = report_lib.new_figure(figsize=(7.5, 1.25 * rows + 0.6))
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(steps):
            ax.set_visible(False)
            continue
        name, series = steps[index]
        x = _seconds_axis(series)
        ax.fill_between(x, series, step="post", color="#9cc0e8", alpha=0.7, linewidth=0)
        ax.step(x, series, where="post", color="#1f5fa8", linewidth=1.0)
        ax.set_title(
            f"{name}: {report_lib.number(sum(series))} responses, peak {report_lib.number(max(series))}/s",
            fontsize=8,
            loc="left",
        )
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("harness seconds", fontsize=8)
    fig.supylabel("responses per second", fontsize=8)
    text = "<p>Responses per second for each step of the journey, one chart each (scales differ).</p>"
    return report_lib.Section("Throughput per step", html=text, figures=[report_lib.figure_svg(fig)])


def _latency_section(data: dict[str, Any]) -> report_lib.Section:
    rows = []
    for name, step in _in_flow_order(data["steps"]):
        lat, svc = step["latency_ms"], step["service_ms"]
        rows.append(
            {
                "step": name,
                "requests": step["requests"],
                "rps": step["throughput_rps"],
                "p50": lat["p50"],
                "p90": lat["p90"],
                "p99": lat["p99"],
                "p999": lat["p99.9"],
                "max": lat["max"],
                "svc_p99": svc["p99"],
                "errors": step["unexpected_errors"],
            }
        )
    table = report_lib.html_table(
        rows,
        [
            ("step", "Step"),
            ("requests", "Requests"),
            ("rps", "Req/s"),
            ("p50", "p50 ms"),
            ("p90", "p90 ms"),
            ("p99", "p99 ms"),
            ("p999", "p99.9 ms"),
            ("max", "max ms"),
            ("svc_p99", "service p99 ms"),
            ("errors", "Unexpected errors"),
        ],
        formats={"rps": "{:.2f}"},
        caption="Latency from the intended start (HDR histograms, exact to 0.1%); service = from the send",
    )
    over = data["latency_over_time"]
    fig = report_lib.new_figure()
    ax = fig.add_subplot()
    x = [row["start_s"] for row in over]
    # max is dotted and drawn first: where it equals p99 (few requests a window) p99 stays visible.
    for key, color, style in (
        ("max", "#999", ":"),
        ("p50", "#2ca02c", "-"),
        ("p90", "#ff7f0e", "-"),
        ("p99", "#d62728", "-"),
    ):
        values = [row[key] if row[key] is not None else np.nan for row in over]
        ax.plot(x, values, label=key, color=color, linestyle=style)
    ax.set_yscale("log")
    ax.set_xlabel("harness seconds (by intended start)")
    ax.set_ylabel("latency, ms")
    ax.legend(loc="upper right", fontsize="small")
    return report_lib.Section("Latency", figures=[report_lib.figure_svg(fig)], tables=[table])


def _funnel_section(data: dict[str, Any]) -> report_lib.Section:
    j = data["journeys"]
    steps = [step for step in STEPS if step in j["funnel"]]  # flow order (report.json sorts keys)
    fig = report_lib.new_figure()
    ax = fig.add_subplot()
    ax.barh(steps[::-1], [j["funnel"][step] for step in steps[::-1]], color="#1f77b4")
    ax.set_xlabel("applicants who got past the step")
    rows = [
        {"step": step, **{k: v for k, v in outcomes.items()}}
        for step, outcomes in _in_flow_order(j["stopped_at"])
    ]
    outcome_columns = sorted({k for row in rows for k in row if k != "step"})
    table = report_lib.html_table(
        rows, ["step", *outcome_columns], caption="Where journeys ended, by outcome"
    )
    ttc = j["time_to_complete_ms"]
    text = (
        f"<p>Journeys: {', '.join(f'{k} {v:,}' for k, v in sorted(j['outcomes'].items()))}. Time from "
        f"arrival to the end of the journey: p50 {_fmt(ttc['p50'], ' ms')}, p99 {_fmt(ttc['p99'], ' ms')}. "
        "Drop-offs follow each applicant's fate; refusals follow their data (defects).</p>"
    )
    return report_lib.Section(
        "Funnel and journeys", html=text, figures=[report_lib.figure_svg(fig)], tables=[table]
    )


def _errors_section(data: dict[str, Any]) -> report_lib.Section:
    rows = [
        {"step": step, "answer": outcome, "count": n}
        for step, outcomes in _in_flow_order(data["errors"])
        for outcome, n in outcomes.items()
    ]
    tables = (
        [
            report_lib.html_table(
                rows,
                [("step", "Step"), ("answer", "Status and reason code"), ("count", "Count")],
                caption="Non-2xx answers (expected refusals included)",
            )
        ]
        if rows
        else []
    )
    mismatch_rows = [{"what": k, "count": v} for k, v in sorted(data["mismatches"].items())]
    if mismatch_rows:
        tables.append(
            report_lib.html_table(
                mismatch_rows,
                [("what", "The API answered otherwise than the data predicts"), ("count", "Count")],
            )
        )
    text = "<p>No errors.</p>" if not rows else ""
    return report_lib.Section("Errors by status and reason code", html=text, tables=tables)


def _reconciliation_section(data: dict[str, Any]) -> report_lib.Section:
    rec = data["reconciliation"]
    if not rec["available"]:
        return report_lib.Section(
            "Server reconciliation", html=f"<p>Not reconciled: {html_lib.escape(rec['reason'])}.</p>"
        )
    table = report_lib.html_table(
        rec["steps"],
        [
            ("step", "Step"),
            ("server_count", "Server count"),
            ("acknowledged", "Client acknowledged"),
            ("unknown", "Unknown outcome"),
            ("committed", "Server committed"),
            ("missing", "Missing"),
            ("extra", "Extra"),
            ("ok", "OK"),
        ],
        caption="Client-seen successes vs rows the server committed during the run",
    )
    wave = rec.get("wave") or {}
    text = (
        f"<p>{'Everything acknowledged was committed.' if rec['ok'] else 'MISMATCH: see the table.'} "
        + (
            f"Wave {wave.get('number')} ({html_lib.escape(str(wave.get('mode')))}): "
            f"{wave.get('joined')} joined, "
            f"quota {wave.get('quota')}."
            if wave.get("joined") is not None
            else ""
        )
        + "</p>"
    )
    return report_lib.Section("Server reconciliation", html=text, tables=[table])
