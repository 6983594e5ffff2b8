"""The upstream side of a surge report: what the stand-ins measured during the run (calls/s, latency,
errors per service) beside what the demand planner's calls-per-request ratios forecast from the API load.

The surge runner reads the stand-ins' read API before and after the run; the report shows the difference.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from simulator.upstreams.stats import window

# service -> (the planner's upstream name in params.toml [upstreams], the surge step that calls it)
SERVICE_STEPS: dict[str, tuple[str, str]] = {
    "registry": ("identity_registry", "identity"),
    "smtp": ("email", "create_account"),
    "sms": ("sms", "phone"),
}
FAILED_OUTCOMES = ("error", "timeout", "bad_request", "lost")


def fetch(url: str, path: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """One JSON document of the read API, or None when the stand-ins do not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def measure(url: str, before: dict[str, Any] | None, t0_epoch: float, ended_epoch: float) -> dict[str, Any]:
    """The stand-ins' load between two moments: per service, calls, outcomes, latency, calls per second."""
    after = fetch(url, "/v1/stats")
    if before is None or after is None:
        return {"url": url, "available": False, "reason": "the stand-ins' read API did not answer"}
    seconds = max(ended_epoch - t0_epoch, 1e-9)
    services = {}
    for name in SERVICE_STEPS:
        load = window(before["services"].get(name), after["services"][name], seconds)
        series = fetch(url, f"/v1/stats/series?service={name}&since={int(t0_epoch)}") or {"per_second": []}
        per_second = [n for second, n in series["per_second"] if second <= ended_epoch]
        load["peak_calls_per_s"] = max(per_second, default=0)
        load["per_second"] = per_second
        load["failed"] = sum(load["outcomes"].get(k, 0) for k in FAILED_OUTCOMES)
        services[name] = load
    return {
        "url": url,
        "available": True,
        "seconds": seconds,
        "services": services,
        "outbox": after.get("outbox"),
        "faults": after.get("faults"),
    }


def with_forecast(measured: dict[str, Any] | None, step_requests: dict[str, int]) -> dict[str, Any] | None:
    """``measured`` plus, per service, the planner's forecast: the run's requests/s of the step that
    calls it times the planner's calls per request (``params.toml [upstreams]``)."""
    if not measured or not measured.get("available"):
        return measured
    from simulator.demand.params import load_params

    ratios = load_params()["upstreams"]
    seconds = measured["seconds"]
    for name, (planner_name, step) in SERVICE_STEPS.items():
        service = measured["services"][name]
        service["forecast"] = {
            "via_step": step,
            "calls_per_request": ratios[planner_name],
            "step_requests_per_s": step_requests.get(step, 0) / seconds,
            "calls_per_s": step_requests.get(step, 0) / seconds * ratios[planner_name],
        }
    return measured


def summary_lines(section: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(label, text) lines of the surge summary, one per upstream (the console and the HTML verdict)."""
    if not section:
        return []
    if not section.get("available"):
        return [("upstreams", f"not measured: {section.get('reason')}")]
    lines = []
    for name, s in section["services"].items():
        latency = s["latency_ms"]
        forecast = s.get("forecast", {}).get("calls_per_s")
        p99 = latency["p99"] if latency["p99"] is not None else "-"
        lines.append(
            (
                "upstream",
                f"{name:<8} {s['calls']:,} calls, {s['calls_per_s']:.1f}/s "
                f"(peak {s['peak_calls_per_s']}/s"
                + (f", forecast {forecast:.1f}/s" if forecast is not None else "")
                + f"), p99 {p99} ms, failed {s['failed']:,}",
            )
        )
    return lines


def html_section(section: dict[str, Any] | None):  # a simulator.report.Section or None
    """The report's "Upstreams" section (None when the run had no stand-ins to read)."""
    if not section:
        return None
    from simulator import report as report_lib

    if not section.get("available"):
        return report_lib.Section("Upstreams", html=f"<p>Not measured: {section.get('reason')}.</p>")
    rows = []
    for name, s in section["services"].items():
        forecast = s.get("forecast", {})
        rows.append(
            {
                "service": name,
                "calls": s["calls"],
                "calls_per_s": s["calls_per_s"],
                "peak": s["peak_calls_per_s"],
                "forecast": forecast.get("calls_per_s"),
                "via": f"{forecast.get('calls_per_request', 0):g} x {forecast.get('via_step', '-')}",
                "p50": s["latency_ms"]["p50"],
                "p99": s["latency_ms"]["p99"],
                "failed": s["failed"],
                "outcomes": ", ".join(f"{k} {v:,}" for k, v in s["outcomes"].items()),
            }
        )
    table = report_lib.html_table(
        rows,
        [
            ("service", "Upstream"),
            ("calls", "Calls"),
            ("calls_per_s", "Calls/s"),
            ("peak", "Peak /s"),
            ("forecast", "Forecast /s"),
            ("via", "Forecast from"),
            ("p50", "p50 ms"),
            ("p99", "p99 ms"),
            ("failed", "Failed"),
            ("outcomes", "Outcomes"),
        ],
        caption=f"Measured by the stand-ins at {section['url']} over {section['seconds']:.0f} s",
    )
    fig = report_lib.new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, s in section["services"].items():
        ax.plot(range(len(s["per_second"])), s["per_second"], label=name)
    ax.set_xlabel("seconds since the start of the run")
    ax.set_ylabel("calls per second")
    ax.legend()
    text = (
        "<p>Calls the system under test made to its upstreams, as the stand-ins counted them, beside the "
        "demand planner's forecast: the run's requests per second of the step that calls each upstream "
        "times the planner's calls per request (<code>[upstreams]</code> of its parameters). Failed: "
        "injected errors and timeouts, refused requests, messages lost on purpose.</p>"
    )
    return report_lib.Section("Upstreams", html=text, tables=[table], figures=[report_lib.figure_svg(fig)])
