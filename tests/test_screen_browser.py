"""The screen report in a real headless Chromium, made by the real CLI.

Two simulated live/dead dose-series plates (other seeds) go through ``python -m hcs analyze A B
--out DIR`` (one embedded Dask cluster, the shipped livedead model); the screen report is opened
as a file: every plot is drawn, no console error, the sections come in order (summary and hits
first), the per-plate QC table shows Z' for both plates and the links reach each plate's report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_report_browser import CHROMIUM, _check_figures, _open, browser  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
LAYOUT = REPO / "plate_layouts" / "livedead_dose_series.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed"),
]


def test_screen_report_in_chromium(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from hcs.synth import simulate_plate

    exports = []
    for seed, name in enumerate(["DAY1", "DAY2"]):
        res = simulate_plate(tmp_path / name, LAYOUT, "livedead", fields=1, size=256,
                             seed=seed, progress=False, workers=1, plate_name=name)
        exports.append(str(res.export))
    out = tmp_path / "screen"
    r = subprocess.run([sys.executable, "-m", "hcs", "analyze", *exports, "--assay", "livedead",
                        "--layout", str(LAYOUT), "--out", str(out), "--workers", "1",
                        "--no-gallery", "-q"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "DAY1: stages run: convert, run, aggregate, stats, report" in r.stdout
    assert f"report: {out / 'screen' / 'report.html'}" in r.stdout
    page, problems = _open(browser, out / "screen" / "report.html")
    ids = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
    assert ids == ["summary", "hits", "plate-qc", "heatmaps", "replicates", "statistics"]
    _check_figures(page)
    assert page.locator("#heat-0-n_detected svg.main-svg").count() >= 1
    assert page.locator("#heat-1-n_detected svg.main-svg").count() >= 1
    assert page.locator("#rep-0 svg.main-svg").count() >= 1
    qc = page.locator("section#plate-qc table")
    text = qc.inner_text()
    assert "DAY1" in text and "DAY2" in text and "Z'" in text
    zcol = page.eval_on_selector_all("section#plate-qc thead th",
                                     "ths => ths.map(t => t.textContent)")
    z = [c for c in zcol if c.startswith("Z'")]
    assert z, zcol
    links = page.eval_on_selector_all("section#summary a[data-plate]",
                                      "as => as.map(a => a.href)")
    assert len(links) == 2
    for href in links:
        sub = browser.new_page()
        sub.goto(href)
        sub.wait_for_function("window.hcsReport && window.hcsReport.ready", timeout=120_000)
        assert "hcs report" in sub.title()
        sub.close()
    page.screenshot(path=str(tmp_path / "screen.png"), full_page=True)
    assert problems == []
