"""The report in a real headless Chromium (playwright driving Debian's ``chromium``).

Simulated runs (``hcs simulate`` -> ``hcs convert`` -> a run folder whose classifier is the truth
blurred by noise, then the real aggregation and statistics) are opened as files; the test waits
for every plot, fails on any console error or JavaScript dialog, checks each section and figure,
hovers a heatmap cell and saves screenshots. With ``HCS_DOCS_SCREENSHOTS=1`` the section
screenshots are also written to ``docs/img/report-<section>.png`` (the pictures of docs/report.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hcs.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAYOUTS = Path(__file__).resolve().parents[1] / "plate_layouts"
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed (apt-get install"
                       " chromium); .ci/run installs it"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed"
                                     " (pip install -e '.[test]')")


def _simulated_run(root: Path, layout: str, assay: str, **sim: Any) -> Path:
    from simrun import simulated_run

    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.synth import simulate_plate

    res = simulate_plate(root / "sim", LAYOUTS / layout, assay, progress=False, workers=1, **sim)
    plate = write_plate(open_export(res.export), root / "plate.ome.zarr", workers=1,
                        progress=False)
    return simulated_run(root / "sim", plate, root / "run")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with playwright_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000})
        yield ctx
        ctx.close()


def _open(browser: Any, html: Path) -> tuple[Any, list[str]]:
    """Open a report; collect console errors, page errors and dialogs (none may happen)."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def dialog(d: Any) -> None:
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    page.on("dialog", dialog)
    page.goto(html.resolve().as_uri())
    page.wait_for_function("window.hcsReport && window.hcsReport.ready", timeout=120_000)
    status = page.evaluate("window.hcsReport")
    assert status["errors"] == [] and status["rendered"] == status["figures"] > 0, status
    return page, problems


def _check_figures(page: Any) -> None:
    ids = page.eval_on_selector_all("div.plot[data-figure]", "els => els.map(e => e.id)")
    drawn = page.eval_on_selector_all("div.plot[data-figure] svg.main-svg",
                                      "els => new Set(els.map(e => e.closest('div.plot').id))"
                                      ".size")
    assert drawn == len(ids), "some figure has no plotly SVG"


def _screenshots(page: Any, sections: list[str], out: Path, prefix: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # the sticky navigation bar would be painted over element screenshots
    page.add_style_tag(content="nav, th { position: static !important; }")
    page.screenshot(path=str(out / f"{prefix}-full.png"), full_page=True)
    docs = os.environ.get("HCS_DOCS_SCREENSHOTS") == "1"
    for sid in sections:
        target = out / f"report-{sid}.png"
        page.locator(f"section#{sid}").screenshot(path=str(target))
        assert target.stat().st_size > 5000
        if docs:
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, DOCS_IMG / f"report-{sid}.png")


def test_cic_report_in_chromium(browser: Any, tmp_path: Path) -> None:
    run = _simulated_run(tmp_path, "arhgap36_truncations.csv", "cic", fields=2, size=320,
                         wells_per_condition=6)
    html = build_report(run, tmp_path / "cic.html")
    page, problems = _open(browser, html)
    expected = ["findings", "summary", "heatmaps", "conditions", "statistics", "normalised",
                "qc", "montage", "layout", "gallery", "provenance"]
    assert page.eval_on_selector_all("section", "els => els.map(e => e.id)") == expected
    _check_figures(page)
    for fig in ("heat-0-n_detected", "heat-0-freq_completed_cic", "cond-freq_completed_cic",
                "comp-abs", "comp-rel", "comp-all_cic", "qc-counts"):
        assert page.locator(f"#{fig} svg.main-svg").count() >= 1, fig

    # hover the heatmap cell of a well with data: the hover label names it and its condition
    wells = pd.read_parquet(run / "wells.parquet")
    w = wells[wells["n_detected"] > 0].iloc[len(wells) // 2]
    page.locator("#heat-0-n_detected").scroll_into_view_if_needed()  # below the findings
    box = page.locator("#heat-0-n_detected .nsewdrag").first.bounding_box()
    x = box["x"] + (w["col"] + 0.5) * box["width"] / 12
    y = box["y"] + (w["row"] + 0.5) * box["height"] / 8
    page.mouse.move(x, y)
    hover = page.locator("#heat-0-n_detected .hoverlayer .hovertext")
    hover.wait_for(timeout=10_000)
    text = hover.text_content()
    assert w["well"] in text and str(w["condition"]) in text
    assert f"detected: {int(w['n_detected'])}" in text

    # the statistics table sorts by p when its header is clicked
    table = page.locator("section#statistics table")
    table.locator("th", has_text="p adj").click()
    col = page.eval_on_selector_all("section#statistics thead th", "ths => ths.map(t =>"
                                    " t.textContent)").index("p adj")
    values = page.eval_on_selector_all(
        "section#statistics tbody tr", f"rows => rows.map(r => r.cells[{col}]"
        ".getAttribute('data-sort'))")
    nums = [float(v) for v in values if v not in (None, "")]
    assert nums == sorted(nums) and len(nums) > 0

    # gallery: every crop decoded (96 px), and the field overlay is there
    sizes = page.eval_on_selector_all("figure.crop img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(sizes) >= 10 and set(sizes) == {96}
    assert page.locator("figure.overlay img").evaluate("i => i.naturalWidth") > 100
    page.mouse.move(0, 0)
    _screenshots(page, expected[:-1], tmp_path / "shots", "cic")
    assert problems == []


def test_dose_report_in_chromium(browser: Any, tmp_path: Path) -> None:
    run = _simulated_run(tmp_path, "livedead_dose_series.csv", "livedead", fields=1, size=320)
    html = build_report(run, tmp_path / "dose.html")
    page, problems = _open(browser, html)
    sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
    assert sections == ["findings", "summary", "heatmaps", "conditions", "statistics",
                        "normalised", "dose", "qc", "montage", "layout", "gallery", "provenance"]
    _check_figures(page)
    assert page.locator("#dose-0 svg.main-svg").count() >= 1
    assert "doxorubicin" in page.locator("#dose-0").inner_text()
    qc = page.locator("section#qc table").inner_text()
    assert "Z'" in qc and "controls_missing" not in qc  # the layout has both control roles
    _screenshots(page, ["dose", "qc"], tmp_path / "shots", "dose")
    assert problems == []


def test_escaped_names_in_chromium(browser: Any, tmp_path: Path) -> None:
    from test_report import EVIL, make_run

    run = make_run(tmp_path / "evil", evil=True)
    html = build_report(run, tmp_path / "evil.html")
    page, problems = _open(browser, html)  # fails on the alert dialog if the script ran
    assert problems == []
    assert EVIL in page.locator("section#statistics").inner_text()  # shown as text
    svg_text = page.eval_on_selector_all("#cond-freq_dead text", "ts => ts.map(t =>"
                                         " t.textContent)")
    assert EVIL in svg_text  # the plotly tick label shows the name literally
    assert page.eval_on_selector_all("script", "s => s.length") == \
        2 + page.eval_on_selector_all("div.plot", "d => d.length")


def test_report_of_a_real_engine_run_in_chromium(browser: Any, tmp_path: Path) -> None:
    """The whole chain on real code: simulate -> convert -> hcs run (classical detector +
    the shipped livedead-ldc model on 2 Dask workers) -> aggregate -> stats -> report."""
    from hcs.aggregate import write_table
    from hcs.engine import aggregate_run, run_plate
    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.layouts import read_layout
    from hcs.stats import run_stats
    from hcs.synth import simulate_plate

    layout_path = LAYOUTS / "livedead_dose_series.csv"
    res = simulate_plate(tmp_path / "sim", layout_path, "livedead", fields=1, size=320,
                         progress=False, workers=1)
    plate = write_plate(open_export(res.export), tmp_path / "plate.ome.zarr", workers=1,
                        progress=False)
    model = Path(__file__).resolve().parents[1] / "models" / "livedead-ldc"
    run = tmp_path / "run"
    summary = run_plate(plate, "livedead", model, run, workers=2, progress=False)
    assert summary.ok and summary.fields_failed == 0
    wells, _ = aggregate_run(run, layout=layout_path)
    assert len(wells) == len(read_layout(layout_path)) and "condition" in wells
    write_table(run_stats(wells, reference="DMSO"), run / "stats.parquet")
    html = build_report(run, tmp_path / "engine.html")
    page, problems = _open(browser, html)
    sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
    # a run with a model writes domain.json: its section follows the run summary
    assert sections[:6] == ["findings", "summary", "domain", "heatmaps", "conditions",
                            "statistics"]
    assert "gallery" in sections and "dose" in sections
    _check_figures(page)
    assert "livedead-ldc" in page.locator("section#findings").inner_text()
    assert "threshold" in page.locator("section#provenance").text_content()  # collapsed
    _screenshots(page, ["findings", "summary", "gallery"], tmp_path / "shots", "engine")
    assert problems == []


def test_findings_first_screen_in_chromium(browser: Any, tmp_path: Path) -> None:
    """At 1400 x 900 the first screen shows the plate verdict and the hit list; every chart
    draws a class in one colour (read from the figure JSON of the page); the CSV button
    downloads the hit list; the provenance is collapsed at the end; failing controls give the
    verdict 'unusable'."""
    import io

    from test_report import make_run

    from hcs.report.findings import csv_text, hit_table

    run = make_run(tmp_path / "good")
    html = build_report(run, tmp_path / "good.html")
    page, problems = _open(browser, html)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.evaluate("window.scrollTo(0, 0)")
    verdict = page.locator("section#findings .verdict").first
    assert verdict.get_attribute("data-verdict") == "good"
    box = verdict.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 900, box
    table = page.locator("section#findings table.hits")
    head = table.locator("thead").bounding_box()
    first_rows = table.locator("tbody tr").nth(4).bounding_box()  # the top five hits
    assert head["y"] < 900 and first_rows["y"] + first_rows["height"] <= 900, first_rows
    assert page.locator("#effect-map svg.main-svg").count() >= 1
    assert page.locator("#effect-map").bounding_box()["y"] < 900
    top = table.locator("tbody tr").first.inner_text()
    assert "staurosporine" in top and "***" in top

    # one colour per class over every figure of the page (the JSON plotly drew)
    colours = page.evaluate("""() => {
        const out = {};
        document.querySelectorAll('script[type="application/json"]').forEach(s => {
            JSON.parse(s.textContent).data.forEach(t => {
                const c = (t.marker && t.marker.color) || (t.line && t.line.color);
                if ((t.name === 'live' || t.name === 'dead') && typeof c === 'string') {
                    (out[t.name] = out[t.name] || []).push(c);
                }
            });
        });
        return out;
    }""")
    assert set(colours) == {"live", "dead"}
    assert all(len(set(v)) == 1 and len(v) >= 3 for v in colours.values()), colours
    assert colours["live"][0] != colours["dead"][0]

    # the CSV button makes a file (a Blob, offline) holding the hit list
    with page.expect_download() as dl:
        page.locator("section#findings button[data-csv='hits']").first.click()
    got = Path(dl.value.path()).read_text(encoding="utf-8")
    assert dl.value.suggested_filename == "hits.csv"
    assert got == csv_text(hit_table(pd.read_parquet(run / "stats.parquet")))
    assert len(pd.read_csv(io.StringIO(got))) == 12
    with page.expect_download() as dl:
        page.locator("button[data-csv='wells']").first.click()
    wells = pd.read_csv(dl.value.path())
    assert len(wells) == 96 and list(wells["well"][:2]) == ["A01", "A02"]

    # provenance: the last section, collapsed (its rows are not rendered until opened)
    assert page.eval_on_selector_all("section", "els => els.map(e => e.id)")[-1] == "provenance"
    details = page.locator("section#provenance details")
    assert details.evaluate("d => d.open") is False
    assert not page.locator("section#provenance dl.kv").is_visible()
    details.locator("summary").click()
    assert page.locator("section#provenance dl.kv").is_visible()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(tmp_path / "first-screen.png"))
    if os.environ.get("HCS_DOCS_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "first-screen.png", DOCS_IMG / "report-first-screen.png")
    assert problems == []

    bad = make_run(tmp_path / "bad", positive=0.12)  # controls that overlap: Z' < 0
    page, problems = _open(browser, build_report(bad, tmp_path / "bad.html"))
    page.set_viewport_size({"width": 1400, "height": 900})
    verdict = page.locator("section#findings .verdict").first
    assert verdict.get_attribute("data-verdict") == "unusable"
    assert "UNUSABLE" in verdict.inner_text().upper() and "Z' = -" in verdict.inner_text()
    box = verdict.bounding_box()
    assert box["y"] + box["height"] <= 900
    assert problems == []
