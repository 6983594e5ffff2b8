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
    assert table.count('class="num"') == 3


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
    assert "42" in page and "&quot;quota&quot;: 800000" in page
    assert "numpy" in page and meta["versions"]["prakerja-sim"] in page


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
