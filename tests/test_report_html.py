"""The shared report library: self-contained HTML, stable JSON, atomic writes."""

from __future__ import annotations

import json
import re

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
    assert report.rupiah(amount) == text


def test_a_column_can_be_formatted_by_a_function_and_text_columns_aligned_as_numbers():
    table = report.html_table(
        [{"month": "2020-10", "total": 699_286_562_466, "band": "1.2 M-1.3 M"}],
        ["month", "total", "band"],
        formats={"total": report.rupiah},
        numeric=["band"],
    )
    assert "Rp 699 B" in table and "699,286" not in table
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
