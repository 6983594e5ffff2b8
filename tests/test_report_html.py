"""The shared report library: self-contained HTML, stable JSON, atomic writes."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from simulator import report


def _chart(values: list[float]) -> str:
    fig = report.new_figure(figsize=(4, 2.5))
    ax = fig.add_subplot()
    ax.plot(range(len(values)), values)
    ax.set_title("arrivals per minute")
    return report.figure_svg(fig)


def test_figure_svg_is_an_inline_svg_element_without_prologue_or_metadata():
    svg = _chart([1, 4, 2])
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata>" not in svg


def test_figure_svg_is_stable_across_calls_and_ids_differ_between_charts():
    assert _chart([1, 4, 2]) == _chart([1, 4, 2])
    ids_a = set(re.findall(r'id="([^"]+)"', _chart([1, 4, 2])))
    ids_b = set(re.findall(r'id="([^"]+)"', _chart([3, 1, 5])))
    assert ids_a and ids_b and not ids_a & ids_b


def test_figure_svg_closes_pyplot_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.add_subplot().plot([1, 2])
    report.figure_svg(fig)
    assert not plt.fignum_exists(fig.number)


def test_html_table_escapes_cells_formats_numbers_and_accepts_sequences():
    table = report.html_table(
        [{"stage": "<joined>", "people": 5_800_000, "share": 0.1451}, ["accepted", np.int64(800_000), None]],
        [("stage", "Stage"), ("people", "People"), "share"],
        formats={"share": "{:.1%}"},
        caption="Funnel & odds",
    )
    assert "&lt;joined&gt;" in table and "<joined>" not in table
    assert "5,800,000" in table and "800,000" in table and "14.5%" in table
    assert "Funnel &amp; odds" in table
    # Number columns are right-aligned, headings included; the empty share cell lines up with them.
    assert table.count('<td class="num">') == 4 and table.count('<th class="num">') == 2


def test_html_table_rejects_rows_of_the_wrong_width():
    with pytest.raises(ValueError):
        report.html_table([[1, 2, 3]], ["a", "b"])


def test_render_html_is_self_contained_and_carries_seed_params_and_versions():
    meta = report.report_meta(seed=42, params={"wave": 9, "quota": 800_000})
    sections = [
        report.Section(
            "Arrivals <curve>",
            html="<p>why</p>",
            figures=[_chart([1, 2])],
            tables=[report.html_table([[1]], ["x"])],
        )
    ]
    page = report.render_html("Wave 9 forecast", meta, sections)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "Arrivals &lt;curve&gt;" in page and "<svg" in page
    # Nothing to fetch: no scripts, stylesheets, fonts or images from elsewhere.
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert not re.search(r"url\((['\"]?)(https?:)?//", page)
    assert "<tr><th>seed</th><td>42</td></tr>" in page
    assert "<tr><th>quota</th><td>800,000</td></tr>" in page
    assert "numpy" in page and meta["versions"]["prakerja-sim"] in page


def test_the_run_block_is_a_table_of_values_not_json():
    scenario = {
        "scenario": {"name": "smoke", "seed": 20201102},
        "wave": {"quota": 50, "duration_h": 96.0},
        "slo": [{"metric": "error_rate", "max": 0.01}, {"metric": "latency_ms", "max": 2000.0}],
    }
    params = {"wave.quota": 800_000, "arrivals.crowd_share": 0.08, "budget.survey_month_offsets": [1, 2, 4]}
    page = report.render_html("t", report.report_meta(seed=20201102, scenario=scenario, params=params), [])
    run = page[page.index('<section id="run">') :]
    assert "<pre>" not in run and "{" not in run  # no JSON dump, one value per line
    assert "<tr><th>seed</th><td>20201102</td></tr>" in run  # a seed as typed, no separators
    assert "<caption>wave</caption>" in run and "<tr><th>quota</th><td>800,000</td></tr>" in run
    assert "<tr><th>crowd_share</th><td>0.08</td></tr>" in run
    assert "<tr><th>survey_month_offsets</th><td>1, 2, 4</td></tr>" in run
    assert "<tr><th>1.metric</th><td>error_rate</td></tr>" in run
    assert "<tr><th>2.max</th><td>2000</td></tr>" in run


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (6136.0, "6,136"),
        (10_650, "10,650"),
        (10_649.6, "10,650"),
        (123.4, "123"),
        (96.0, "96"),
        (9.999, "10"),
        (42.46, "42.5"),
        (3.14159, "3.14"),
        (0.012345, "0.0123"),
        (0.0, "0"),
        (np.float64(2_493.1), "2,493"),
        (float("nan"), "-"),
        (None, "-"),
    ],
)
def test_one_number_format_for_every_report(value, text):
    assert report.number(value) == text


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (1_234_000_000_000, "Rp 1.23 T"),
        (5_700_000_000_000, "Rp 5.70 T"),
        (12_345_000_000_000, "Rp 12.3 T"),
        (340_000_000_000, "Rp 340 B"),
        (999_999_999_999, "Rp 1.00 T"),
        (2_840_000_000, "Rp 2.84 B"),
        (3_550_000, "Rp 3.55 M"),
        (600_000, "Rp 600,000"),
        (0, "Rp 0"),
    ],
)
def test_rupiah_reads_in_the_published_short_scale(amount, text):
    assert report.rupiah(amount) == text.replace(" ", "\u00a0")  # never wraps inside an amount


def test_a_column_can_be_formatted_by_a_function_and_text_columns_aligned_as_numbers():
    table = report.html_table(
        [{"month": "2020-10", "total": 699_286_562_466, "band": "1.2 M-1.3 M"}],
        ["month", "total", "band"],
        formats={"total": report.rupiah},
        numeric=["band"],
    )
    assert "Rp\u00a0699\u00a0B" in table and "699,286" not in table
    assert '<td class="num">1.2 M-1.3 M</td>' in table and '<th class="num">band</th>' in table


def test_render_html_accepts_a_figure_object_and_converts_it():
    fig = report.new_figure()
    fig.add_subplot().bar(["a", "b"], [1, 2])
    page = report.render_html("t", report.report_meta(seed=None), [report.Section("s", figures=[fig])])
    assert "<svg" in page


def test_write_report_writes_sorted_json_and_html_atomically(tmp_path):
    data = {"b": np.float64(1.5), "a": {"z": np.arange(3), "y": (1, 2)}, "path": tmp_path}
    json_path, html_path = report.write_report(
        tmp_path / "out", data, "<html></html>", json_name="forecast.json", html_name="forecast.html"
    )
    assert json_path.name == "forecast.json" and html_path.read_text() == "<html></html>"
    text = json_path.read_text()
    loaded = json.loads(text)
    assert loaded == {"a": {"y": [1, 2], "z": [0, 1, 2]}, "b": 1.5, "path": str(tmp_path)}
    assert text.index('"a"') < text.index('"b"') < text.index('"path"')
    assert not [p for p in json_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_report_refuses_what_json_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        report.write_report(tmp_path, {"x": object()}, "")
    assert not (tmp_path / "report.json").exists()


def test_write_report_into_an_unwritable_place_names_the_path(tmp_path):
    from simulator.errors import SimulatorError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(SimulatorError, match=r"cannot write .*a-file/out/report\.json"):
        report.write_report(blocker / "out", {"x": 1}, "<html></html>")


# ------------------------------------------------------------------------------------------------
# The reports as a person sees them: rendered by headless Chromium, measured in the page.

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian: apt-get install chromium): reports not rendered in a browser",
)

# Runs in the rendered page (a copy of the report: the report itself has no script) and writes
# what it measured into the DOM that --dump-dom prints.
_MEASURE = """<script>
(() => {
  const width = window.innerWidth;
  const out = {viewport: width, page: document.documentElement.scrollWidth, clipped: [], outside: []};
  document.querySelectorAll('.table-wrap').forEach((wrap) => {
    if (wrap.scrollWidth > wrap.clientWidth + 1) {
      const cells = wrap.querySelectorAll('thead th');
      out.clipped.push(cells.length ? cells[cells.length - 1].textContent : wrap.textContent.slice(0, 40));
    }
  });
  document.querySelectorAll('svg, table, p, h2').forEach((el) => {
    if (el.getBoundingClientRect().right > width + 1) out.outside.push(el.tagName);
  });
  const pre = document.createElement('pre');
  pre.id = 'layout';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def _browser(tmp_path, html_path, width: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--window-size={width},1000",
            *args,
            html_path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _layout(tmp_path, html_path, width: int) -> dict:
    probe = html_path.with_name(html_path.stem + "-probe.html")
    probe.write_text(html_path.read_text().replace("</body>", _MEASURE + "</body>"))
    done = _browser(tmp_path, probe, width, "--dump-dom")
    found = re.search(r'<pre id="layout">(.*?)</pre>', done.stdout)
    assert found, f"chromium printed no layout (exit {done.returncode}): {done.stderr[-500:]}"
    return json.loads(html_lib.unescape(found.group(1)))


def _surge_data() -> dict:
    """A surge report.json as ``simulator.surge.report.render`` reads it: a short run of every step."""
    from simulator.surge.scenario import STEPS

    rng = np.random.default_rng(3)
    seconds = 30
    latency = {"count": 40, "mean": 20.0, "p50": 12.5, "p90": 31.0, "p99": 87.0, "p99.9": 380.0, "max": 380.0}
    per_step = {name: rng.integers(0, 9 - i // 2, seconds).tolist() for i, name in enumerate(STEPS)}
    scheduled = rng.integers(1, 9, seconds).tolist()
    return {
        "report_version": 1,
        "meta": report.report_meta(
            seed=20201102,
            scenario={
                "scenario": {"name": "smoke", "seed": 20201102},
                "wave": {"quota": 50, "duration_h": 96.0},
            },
            params={"host": "http://127.0.0.1:8000", "processes": 0},
        ),
        "status": "complete",
        "exit_code": 0,
        "summary": {
            "scenario": "smoke",
            "host": "http://127.0.0.1:8000",
            "workers": 1,
            "journeys_started": 71,
            "journeys": {"completed": 62, "refused": 9, "failed": 0, "unfinished": 0},
            "requests": 338,
            "unexpected_errors": 0,
            "error_rate": 0.0,
            "latency_ms": latency,
        },
        "thresholds": [
            {"label": "join p99 under 2 s", "status": "pass", "value": 87.0, "min": None, "max": 2000.0},
            {"label": "under 1% unexpected errors", "status": "pass", "value": 0.0, "min": None, "max": 0.01},
        ],
        "arrivals": {
            "scheduled": 71,
            "started": 71,
            "late": 0,
            "dropped": 0,
            "not_started": 0,
            "late_after_s": 1.0,
            "lag_ms": latency,
            "per_second": {
                "expected": np.linspace(9, 2, seconds).round(3).tolist(),
                "scheduled": scheduled,
                "started": scheduled,
                "late": [0] * seconds,
                "dropped": [0] * seconds,
            },
        },
        "throughput_per_second": per_step,
        "steps": {
            name: {
                "requests": int(sum(series)),
                "throughput_rps": sum(series) / seconds,
                "latency_ms": latency,
                "service_ms": latency,
                "unexpected_errors": 0,
            }
            for name, series in per_step.items()
        },
        "latency_over_time": [
            {"start_s": float(s), "count": 10, "p50": 12.0, "p90": 30.0, "p99": 80.0 + s, "max": 90.0 + s}
            for s in range(0, seconds, 5)
        ],
        "journeys": {
            "outcomes": {"completed": 62, "refused": 9},
            "started": 71,
            "time_to_complete_ms": latency,
            "funnel": {name: 70 - 5 * i for i, name in enumerate(STEPS)},
            "stopped_at": {
                "create_account": {"refused": 1},
                "identity": {"refused": 8},
                "join": {"completed": 62},
            },
        },
        "errors": {"identity": {"404 NIK_NOT_FOUND": 4, "422 NIK_MALFORMED": 4}},
        "mismatches": {},
        "reconciliation": {"available": False, "reason": "the target has no /v1/admin/stats"},
    }


@pytest.fixture(scope="module")
def rendered_reports(tmp_path_factory):
    """Every HTML report the project writes: demand forecast, backtest and season, surge report."""
    from simulator.demand.backtest import run_backtest, write_backtest
    from simulator.demand.forecast import summarise
    from simulator.demand.forecast_report import write_forecast
    from simulator.demand.model import simulate_wave
    from simulator.demand.params import load_params
    from simulator.demand.season import load_season, run_season, write_season
    from simulator.surge.report import render

    out = tmp_path_factory.mktemp("reports")
    params = load_params()
    _, forecast = write_forecast(out, summarise(simulate_wave(params, runs=20, seed=1)), params)
    _, backtest = write_backtest(out, run_backtest(runs=5, seed=1))
    season = load_season()
    season_params, waves = run_season(season, runs=5, seed=1)
    _, season_html = write_season(out, season, season_params, waves, runs=5, seed=1)
    surge = out / "report.html"
    surge.write_text(render(_surge_data()))
    return {"forecast": forecast, "backtest": backtest, "season": season_html, "surge": surge}


@needs_chromium
@pytest.mark.parametrize("width", [1024, 1280, 2200])
@pytest.mark.parametrize("name", ["forecast", "backtest", "season", "surge"])
def test_a_report_fits_the_browser_window_no_table_clipped(rendered_reports, name, width, tmp_path):
    layout = _layout(tmp_path, rendered_reports[name], width)
    assert layout["viewport"] == width
    assert layout["page"] <= width, f"{name} is {layout['page']} px wide in a {width} px window"
    assert layout["clipped"] == [], f"{name}: tables cut off at {width} px, last heading: {layout['clipped']}"
    assert layout["outside"] == [], f"{name}: elements past the right edge at {width} px: {layout['outside']}"


@needs_chromium
def test_a_screenshot_of_the_backtest_shows_its_chart_and_legend(rendered_reports, tmp_path):
    from PIL import Image

    shot = tmp_path / "backtest.png"
    done = _browser(tmp_path, rendered_reports["backtest"], 1280, f"--screenshot={shot}")
    assert shot.exists(), f"no screenshot (exit {done.returncode}): {done.stderr[-500:]}"
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # The chart's bars are drawn in the basis colours its legend names: both must be on screen.
    for colour in ("#1f5fa8", "#b5651d"):
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=2) < 12).sum() > 200, f"no {colour} on the first screen"
    html = rendered_reports["backtest"].read_text()
    assert "held out: not used to fit anything" in html  # the legend, as text in the SVG
    # Labels are whole: no group name cut to 18 characters any more.
    assert "funnel to 15 Sep 2:" not in html


def test_every_chart_with_several_series_has_a_legend(rendered_reports):
    # A legend in matplotlib's SVG is a group with id legend_N; multi-series charts must carry one.
    page = rendered_reports["forecast"].read_text()
    assert len(re.findall(r'id="f[0-9a-f]{8}-legend_\d+"', page)) >= 4
    backtest = rendered_reports["backtest"].read_text()
    assert len(re.findall(r'id="f[0-9a-f]{8}-legend_\d+"', backtest)) == 1


def test_throughput_is_one_small_chart_per_step(rendered_reports):
    from simulator.surge.scenario import STEPS

    page = rendered_reports["surge"].read_text()
    section = page[page.index("Throughput per step</h2>") : page.index("Latency</h2>")]
    assert len(re.findall(r'id="f[0-9a-f]{8}-axes_\d+"', section)) == len(STEPS)
