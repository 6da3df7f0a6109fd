"""Plate montage, layout map and image QC in the report (issue 18 items 3-4), in headless
Chromium like tests/test_report_browser.py: the montage shows one thumbnail per imaged well, a
click on a well opens its fields with the cells outlined in their class colours, a readout can
be laid over the wells, and the layout maps are there; ``--no-montage`` leaves it out."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hcs.report import build_report

LAYOUTS = Path(__file__).resolve().parents[1] / "plate_layouts"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A simulated cic plate (2 fields of 320 px in each of 12 wells) and its run folder."""
    from simrun import simulated_run

    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.synth import simulate_plate

    root = tmp_path_factory.mktemp("montage")
    res = simulate_plate(root / "sim", LAYOUTS / "arhgap36_truncations.csv", "cic", fields=2,
                         size=320, wells_per_condition=3, progress=False, workers=1)
    plate = write_plate(open_export(res.export), root / "plate.ome.zarr", workers=1,
                        progress=False)
    return simulated_run(root / "sim", plate, root / "run")


def _field_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="montage-field-data">(.*?)</script>',
                  html, re.S)
    assert m
    return json.loads(m.group(1))


def _image(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_montage_fields_show_cells_outlined_by_class(run, tmp_path):
    from hcs.report.builder import build_context, load_run

    html = build_report(run, tmp_path / "r.html").read_text()
    wells = pd.read_parquet(run / "wells.parquet")
    imaged = sorted({p.parent.name for p in (run / "cells").glob("*/*.parquet")})
    data = _field_data(html)
    assert sorted(data) == sorted(w for w in wells["well"] if w in imaged) or \
        set(imaged) <= set(data)
    assert html.count('class="mwell" data-well=') == len(data)
    well = imaged[0]
    cells = pd.concat([pd.read_parquet(run / "cells" / well / f"{f}.parquet")
                       for f in (0, 1)])
    views = data[well]
    assert [v["field"] for v in views] == [0, 1]
    assert [v["n"] for v in views] == [int((cells["field"] == f).sum()) for f in (0, 1)]
    # the outlines: pixels of the class colours of the cells of that field
    colours = {c["name"]: c["colour"] for c in build_context(load_run(run),
                                                             gallery=False)["classes"]}
    img = _image(views[0]["uri"]).astype(int)
    assert max(img.shape[:2]) <= 200
    labels = cells.loc[cells["field"] == 0, "label"].value_counts()
    top = colours[labels.index[0]].lstrip("#")
    rgb = np.array([int(top[i:i + 2], 16) for i in (0, 2, 4)])
    near = (np.abs(img - rgb).sum(axis=2) < 60).sum()
    assert near > 40 * labels.iloc[0]  # outline pixels of each cell of the commonest class


def test_no_montage_option(run, tmp_path):
    out = tmp_path / "plain.html"
    res = subprocess.run([sys.executable, "-m", "hcs", "report", str(run), "-o", str(out),
                          "--no-montage", "--no-gallery"], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    assert 'id="montage"' not in html and 'id="layout"' in html


def _shot(page: Any, sid: str, out: Path) -> None:
    """Screenshot of a section; with ``HCS_DOCS_SCREENSHOTS=1`` also ``docs/img/report-<sid>.png``
    (the pictures of docs/report.md)."""
    import os
    import shutil

    page.add_style_tag(content="nav, th { position: static !important; }")
    target = out / f"report-{sid}.png"
    page.locator(f"section#{sid}").screenshot(path=str(target))
    assert target.stat().st_size > 5000
    if os.environ.get("HCS_DOCS_SCREENSHOTS") == "1":
        docs = Path(__file__).resolve().parents[1] / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, docs / f"report-{sid}.png")


@pytest.mark.slow
def test_montage_click_opens_fields_in_chromium(run, tmp_path):
    """Headless Chromium (as tests/test_report_browser.py, whose helpers it uses)."""
    pw = pytest.importorskip("playwright.sync_api")
    from test_report_browser import ARGS, CHROMIUM, _check_figures, _open

    if CHROMIUM is None:
        pytest.skip("no chromium browser installed (apt-get install chromium)")
    html = build_report(run, tmp_path / "m.html", gallery=False)
    with pw.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            page, problems = _open(ctx, html)
            sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
            assert "montage" in sections and "layout" in sections
            _check_figures(page)
            for fig in ("layout-0-condition", "layout-0-role"):
                assert page.locator(f"#{fig} svg.main-svg").count() >= 1, fig
            tiles = page.locator("#montage .mwell[data-well]")
            n = tiles.count()
            assert n > 0
            sizes = page.eval_on_selector_all("#montage .mwell img",
                                              "imgs => imgs.map(i => i.naturalWidth)")
            assert len(sizes) == n and min(sizes) > 20  # every thumbnail decoded
            fields = page.locator("#montage-fields")
            assert not fields.is_visible()
            well = tiles.nth(1).get_attribute("data-well")
            tiles.nth(1).click()
            fields.wait_for(state="visible", timeout=10_000)
            imgs = page.locator("#montage-fields-images img")
            assert imgs.count() == 2
            page.wait_for_function("Array.from(document.querySelectorAll("
                                   "'#montage-fields-images img')).every(i => i.complete && "
                                   "i.naturalWidth > 100)", timeout=10_000)
            assert well in page.locator("#montage-fields-title").inner_text()
            # the heatmap overlay: choosing a readout colours the wells
            page.select_option("#montage-mode", "n_detected")
            bg = page.eval_on_selector_all(
                "#montage .mwell[data-well] .mheat", "s => s.map(e => e.style.background)")
            assert sum(b.startswith("rgb(") for b in bg) == n
            assert page.locator("#montage.heat").count() == 1
            page.select_option("#montage-mode", "")
            for sid in ("montage", "layout"):
                _shot(page, sid, tmp_path)
            assert problems == []
        finally:
            ctx.close()


def test_damaged_field_costs_its_image_not_the_report(run, tmp_path):
    """A field whose array metadata is garbage: its field view is named unreadable, the rest of
    the montage is drawn."""
    import shutil

    meta = json.loads((run / "run.json").read_text())
    plate = tmp_path / "plate.ome.zarr"
    shutil.copytree(meta["plate"], plate)
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "run.json").write_text(json.dumps({**meta, "plate": str(plate)}))
    well = sorted(p.parent.name for p in (copy / "cells").glob("*/0.parquet"))[0]
    (plate / well[0] / str(int(well[1:])) / "0" / "0" / "zarr.json").write_text("{not json")
    html = build_report(copy, tmp_path / "r.html", gallery=False).read_text()
    data = _field_data(html)
    assert data[well][0]["error"].startswith("not readable")
    assert "uri" in data[well][1]  # the well's other field is drawn
    assert sum("uri" in v for views in data.values() for v in views) == 2 * len(data) - 1
