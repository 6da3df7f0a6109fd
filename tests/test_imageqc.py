"""Image QC per field (issue 18 item 3): a defocused and an over-exposed simulated field are
flagged by ``hcs run`` + ``hcs aggregate``; ``--exclude-qc`` removes exactly their cells."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from hcs.engine import run_plate
from hcs.engine.imageqc import field_qc, flag_fields, power_loglog_slope
from hcs.synth.fixtures import write_disc_plate

WELLS = ["A01", "A02", "A03", "B01", "B02", "B03"]
BLURRED = ("A02", 1)
SATURATED = ("B03", 0)


def _blur(planes: list[np.ndarray]) -> list[np.ndarray]:
    return [ndi.gaussian_filter(p.astype(np.float32), 3) for p in planes]


def _saturate(planes: list[np.ndarray]) -> list[np.ndarray]:  # Hoechst gain x5: nuclei clip
    return [np.clip(p * (5.0 if i == 1 else 1.0), 0, 65535) for i, p in enumerate(planes)]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imageqc")
    plate, _ = write_disc_plate(root, WELLS, fields=2, size=256,
                                alter={BLURRED: _blur, SATURATED: _saturate})
    run_plate(plate, None, None, root / "run", workers=1, progress=False, measure="none",
              labels=False)
    return root / "run"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcs", *args], capture_output=True, text=True,
                          check=False)


def test_defocused_and_saturated_fields_are_flagged(run):
    res = _cli("aggregate", str(run))
    assert res.returncode == 0, res.stderr
    assert "image QC: 2 field(s) flagged" in res.stdout and "kept" in res.stdout
    fields = pd.read_parquet(run / "fields.parquet")
    assert len(fields) == len(WELLS) * 2  # one row per field, every field has its QC
    assert fields["qc_focus"].notna().all()
    flagged = {(w, int(f)): r for w, f, r in
               fields.loc[fields.qc_flag, ["well", "field", "qc_reason"]].itertuples(index=False)}
    assert set(flagged) == {BLURRED, SATURATED}
    assert flagged[BLURRED].startswith("out_of_focus")
    assert flagged[SATURATED].startswith("saturated")
    sharp = fields.loc[~fields.qc_flag, "qc_focus"]
    blurred = fields.set_index(["well", "field"]).loc[BLURRED]
    assert blurred.qc_focus < sharp.min() - 2  # the blur makes the spectrum much steeper
    sat = fields.set_index(["well", "field"]).loc[SATURATED]
    assert 1.0 < sat.qc_saturation_pct < 10 and sat.qc_saturation_channel == "HOECHST 33342"
    assert (fields.loc[~fields.qc_flag, "qc_saturation_pct"] == 0).all()
    wells = pd.read_parquet(run / "wells.parquet").set_index("well")
    assert wells.loc["A02", "n_fields_qc_flagged"] == 1 and wells.loc["A01",
                                                                      "n_fields_qc_flagged"] == 0
    assert wells["usable"].all()  # shown, never silently excluded


def test_exclude_qc_removes_exactly_the_flagged_fields(run, tmp_path):
    keep, drop = tmp_path / "keep.parquet", tmp_path / "drop.parquet"
    assert _cli("aggregate", str(run), "--out", str(keep)).returncode == 0
    res = _cli("aggregate", str(run), "--out", str(drop), "--exclude-qc")
    assert res.returncode == 0, res.stderr
    assert "excluded (--exclude-qc)" in res.stdout
    a, b = pd.read_parquet(keep).set_index("well"), pd.read_parquet(drop).set_index("well")
    for well, field in (BLURRED, SATURATED):
        n = len(pd.read_parquet(run / "cells" / well / f"{field}.parquet"))
        assert n > 0
        assert a.loc[well, "n_detected"] - b.loc[well, "n_detected"] == n
        assert b.loc[well, "n_fields"] == a.loc[well, "n_fields"] - 1 == 1
        assert b.loc[well, "n_fields_qc_excluded"] == 1
        assert b.loc[well, "image_qc_excluded"].startswith(f"field {field}: ")
    others = [w for w in WELLS if w not in (BLURRED[0], SATURATED[0])]
    assert (a.loc[others, "n_detected"] == b.loc[others, "n_detected"]).all()
    assert (b.loc[others, "n_fields_qc_excluded"] == 0).all()
    fields = pd.read_parquet(tmp_path / "drop.fields.parquet")
    assert fields["excluded"].sum() == 2


def test_qc_measures_and_thresholds():
    rng = np.random.default_rng(1)
    img = np.zeros((256, 256))
    img[rng.integers(0, 256, 40), rng.integers(0, 256, 40)] = 5000
    img = ndi.gaussian_filter(img, 1.5) + rng.normal(400, 5, img.shape)
    # gain and cell count do not move the slope much; a blur does
    few = img.copy()
    few[:, 128:] = rng.normal(400, 5, (256, 128))
    s = power_loglog_slope(img)
    assert abs(power_loglog_slope(img * 7) - s) < 1e-3
    assert abs(power_loglog_slope(few) - s) < 0.6
    assert power_loglog_slope(ndi.gaussian_filter(img, 3)) < s - 2
    q = field_qc(np.stack([img.astype(np.uint16), np.full((256, 256), 255, np.uint8)
                           .astype(np.uint16)]), ["dapi", "gfp"], 0)
    assert q["saturation_pct"] == {"dapi": 0.0, "gfp": 0.0}
    assert q["background"]["gfp"] == 255.0 and 380 < q["background"]["dapi"] < 400
    f = pd.DataFrame({"plate": ["p"] * 4 + ["q"] * 4,
                      "qc_focus": [-3.0, -3.1, -3.2, -4.0, -4.0, -4.1, -3.9, -4.0],
                      "qc_saturation_pct": [0, 0.5, 0, 0, 0, 0, 0, 1.5]})
    out = flag_fields(f)  # per plate: -4.0 is an outlier on p, the median on q
    assert out["qc_flag"].tolist() == [False, False, False, True, False, False, False, True]
    assert not flag_fields(f, focus_mad=3, saturation_pct=2)["qc_flag"].iloc[7]


def test_report_shows_image_qc_and_flagged_fields(run, tmp_path):
    from hcs.engine import aggregate_run
    from hcs.report.builder import build_context, load_run

    aggregate_run(run, overwrite=True)
    ctx = build_context(load_run(run), gallery=False, montage=False)
    sec = next(s for s in ctx["sections"] if s["id"] == "imageqc")
    assert {"imageqc-0-0", "imageqc-0-1", "imageqc-0-2"} <= set(ctx["figures"])
    table = next(b for b in sec["blocks"] if b["type"] == "table")
    rows = {(r[0]["text"], r[1]["text"]): r[6]["text"] for r in table["rows"]}
    assert set(rows) == {("A02", "1"), ("B03", "0")}
    assert rows[("A02", "1")].startswith("out_of_focus") and rows[("B03", "0")].startswith(
        "saturated")
    assert "2 of 12 fields flagged; they are kept" in sec["blocks"][0]["text"]
    # per well the worst field: A02's focus map value is its blurred field's slope
    import json

    fig = json.loads(ctx["figures"]["imageqc-0-0"])
    z = np.array(fig["data"][0]["z"], dtype=float)
    fields = pd.read_parquet(run / "fields.parquet").set_index(["well", "field"])
    assert z[0, 1] == pytest.approx(fields.loc[BLURRED, "qc_focus"])
    assert np.nanargmin(z) == 1  # A02 is the worst well of the plate


@pytest.mark.slow
def test_image_qc_in_chromium(run, tmp_path):
    """The image QC section in headless Chromium: its maps drawn, the flagged fields listed, the
    blurred field visible in the montage (``HCS_DOCS_SCREENSHOTS=1``: docs/img/report-imageqc.png).
    """
    pw = pytest.importorskip("playwright.sync_api")
    from test_report_browser import ARGS, CHROMIUM, _check_figures, _open
    from test_report_montage import _shot

    from hcs.engine import aggregate_run
    from hcs.report import build_report

    if CHROMIUM is None:
        pytest.skip("no chromium browser installed (apt-get install chromium)")
    aggregate_run(run, overwrite=True)
    html = build_report(run, tmp_path / "qc.html", gallery=False)
    with pw.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000})
        try:
            page, problems = _open(ctx, html)
            _check_figures(page)
            for i in range(3):
                assert page.locator(f"#imageqc-0-{i} svg.main-svg").count() >= 1
            text = page.locator("section#imageqc table").inner_text()
            assert "out_of_focus" in text and "saturated" in text and "A02" in text
            page.locator('#montage .mwell[data-well="A02"]').click()
            page.locator("#montage-fields").wait_for(state="visible", timeout=10_000)
            assert page.locator("#montage-fields-images img").count() == 2
            _shot(page, "imageqc", tmp_path)
            assert problems == []
        finally:
            ctx.close()


def test_field_without_cells_keeps_its_qc(tmp_path):
    from hcs.engine import process_field
    from hcs.engine.imageqc import field_table, read_field_qc
    from hcs.engine.processor import EngineParams

    plate, truth = write_disc_plate(tmp_path, ["A01"], fields=1, size=128, nuclei=0)
    assert len(truth) == 0
    process_field(EngineParams(plate=str(plate), measure="none"), str(tmp_path / "run"),
                  "A01", 0)
    path = tmp_path / "run" / "cells" / "A01" / "0.parquet"
    assert len(pd.read_parquet(path)) == 0
    qc = read_field_qc(path)
    assert qc is not None and qc["focus_channel"] == "HOECHST 33342"
    row = field_table([path], "P").iloc[0]
    assert row["n_cells"] == 0 and np.isfinite(row["qc_focus"])
