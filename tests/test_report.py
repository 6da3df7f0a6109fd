"""The HTML report (hcs.report): sections, figures, escaping, plate formats, gallery, CLI."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image
from typer.testing import CliRunner

from hcs.aggregate import well_table, write_table
from hcs.cli import app
from hcs.errors import InputError, OutputExistsError
from hcs.plate import PlateGeometry, well_name
from hcs.report import build_report, load_run
from hcs.report.builder import build_context, render
from hcs.report.gallery import class_examples, composite, crop, cut, overlay, shrink
from hcs.stats import logistic4, run_stats

EVIL = "<script>alert(1)</script>"


def make_run(folder: Path, n_wells: int = 96, layout: bool = True, evil: bool = False,
             seed: int = 0, positive: float = 0.85) -> Path:
    """A run folder of livedead wells on an ``n_wells`` plate: a DMSO control, a positive
    control, a 4-dose series with dead fraction 0.1 + 0.7 / (1 + (1 / dose)^1.5) and (with
    ``evil``) a condition whose name is a script tag; 200 cells per well, binomial counts.
    ``positive``: the dead fraction of the positive control (near 0.1, its Z' is below 0)."""
    rng = np.random.default_rng(seed)
    geom = PlateGeometry.from_format(n_wells)
    rows = []
    for i, well in enumerate(geom.wells()):
        kind = i % 8
        if kind in (0, 1):
            cond, construct, dose, role, p = "DMSO", "DMSO", np.nan, "negative_control", 0.1
        elif kind == 2:
            cond, construct, dose, role, p = "staurosporine", "stauro", np.nan, \
                "positive_control", positive
        elif kind == 7 and evil:
            cond, construct, dose, role, p = EVIL, EVIL, np.nan, "sample", 0.3
        else:
            d = [0.1, 0.5, 2.0, 10.0, 0.3][kind - 3]
            cond, construct, dose, role = f"drug {d} uM", "drug", d, "sample"
            p = 0.1 + 0.7 / (1 + (1 / d) ** 1.5)
        n_dead = rng.binomial(200, p)
        rows.append({"well": well, "n_dead": n_dead, "n_live": 200 - n_dead, "condition": cond,
                     "construct": construct, "dose": dose, "dose_unit": "uM" if dose == dose
                     else None, "role": role})
    df = pd.DataFrame(rows)
    df.loc[5, ["n_dead", "n_live"]] = 0  # one empty well: flagged no_cells
    plate = EVIL if evil else "P1"
    counts = df[["well", "n_dead", "n_live"]].assign(plate=plate)
    lay = None
    if layout:
        lay = df[["well", "condition", "construct", "dose", "dose_unit", "role"]].copy()
        lay.attrs["geometry"] = (geom.rows, geom.columns)
    wells = well_table(counts, "livedead", layout=lay)
    folder.mkdir(parents=True, exist_ok=True)
    write_table(wells, folder / "wells.parquet")
    if layout:
        write_table(run_stats(wells), folder / "stats.parquet")
    run = {"assay": "livedead", "plate_format": n_wells, "plate_name": plate,
           "model": "m" + (EVIL if evil else ""), "parameters": {"note": EVIL}}
    (folder / "run.json").write_text(json.dumps(run))
    return folder


@pytest.fixture(scope="module")
def run96(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("run96"))


def _figures(ctx: dict) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in ctx["figures"].items()}


def test_sections_and_valid_figures(run96: Path) -> None:
    ctx = build_context(load_run(run96), gallery=False)
    ids = [s["id"] for s in ctx["sections"]]
    assert ids == ["findings", "summary", "heatmaps", "conditions", "statistics", "normalised",
                   "dose", "qc", "layout", "provenance"]
    figs = _figures(ctx)
    # heatmaps: cell count + freq_live + freq_dead; boxes per readout; two compositions; one
    # dose series (DMSO and staurosporine have no dose); the count QC figure
    assert {k for k in figs if k.startswith("heat-")} == {
        "heat-0-n_detected", "heat-0-freq_live", "heat-0-freq_dead"}
    assert {"cond-freq_live", "cond-freq_dead", "comp-abs", "comp-rel", "dose-0",
            "qc-counts"} <= set(figs)
    for fig in figs.values():  # plotly's own validator accepts every figure
        go.Figure(fig)


def test_heatmap_values_and_hover(run96: Path) -> None:
    ctx = build_context(load_run(run96), gallery=False)
    wells = pd.read_parquet(run96 / "wells.parquet")
    heat = _figures(ctx)["heat-0-freq_dead"]["data"][0]
    z = np.array(heat["z"], dtype=float)
    assert z.shape == (8, 12)
    for w in wells.itertuples():
        expect = w.freq_dead
        got = z[w.row, w.col]
        assert (np.isnan(expect) and np.isnan(got)) or got == pytest.approx(expect)
        assert heat["customdata"][w.row][w.col][0] == w.well
        assert heat["customdata"][w.row][w.col][1] == w.condition
    # the empty well F? -> index 5 = A06 has no analysed cell: grey (NaN) and flagged
    assert np.isnan(z[0, 5])
    marks = _figures(ctx)["heat-0-freq_dead"]["data"][1]
    assert list(zip(marks["x"], marks["y"], strict=True)) == [(6, "A")]


def test_stars_follow_the_statistics(run96: Path) -> None:
    ctx = build_context(load_run(run96), gallery=False)
    stats = pd.read_parquet(run96 / "stats.parquet")
    comp = stats[(stats.kind == "comparison") & (stats.readout == "freq_dead")]
    notes = {a["x"]: a["text"] for a in _figures(ctx)["cond-freq_dead"]["layout"]["annotations"]}
    assert notes["DMSO"] == "ref"
    for r in comp.itertuples():
        assert notes[r.condition] == r.stars
    assert notes["staurosporine"] == "***"  # 0.85 vs 0.1 dead on 24 wells each


def test_dose_curve_is_the_fitted_4pl(run96: Path) -> None:
    ctx = build_context(load_run(run96), gallery=False)
    stats = pd.read_parquet(run96 / "stats.parquet")
    fit = stats[(stats.kind == "dose_response") & (stats.readout == "freq_dead")].iloc[0]
    assert fit.status == "ok" and fit.ec50 == pytest.approx(1.0, rel=0.3)
    traces = _figures(ctx)["dose-0"]["data"]
    curve = next(t for t in traces if t.get("mode") == "lines" and t["legendgroup"] ==
                 "freq_dead")
    x = np.array(curve["x"])
    np.testing.assert_allclose(curve["y"], logistic4(x, fit.bottom, fit.top, fit.ec50, fit.hill))
    marker = next(t for t in traces if t.get("marker", {}).get("symbol") == "diamond"
                  and t["legendgroup"] == "freq_dead")
    assert marker["x"] == [pytest.approx(fit.ec50)]
    assert marker["y"] == [pytest.approx((fit.bottom + fit.top) / 2)]
    xaxis = _figures(ctx)["dose-0"]["layout"]["xaxis"]
    assert xaxis["type"] == "log" and "0" not in xaxis["ticktext"]  # no dose-0 well here


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    run = make_run(tmp_path / "evil", evil=True)
    page = render(build_context(load_run(run), gallery=False))
    assert EVIL not in page
    assert "alert(1)" in page  # the name is there, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # in the HTML (tables, run.json)
    # in the figure JSON it is an HTML entity (shown as text by plotly.js), with < and > also
    # JSON-escaped so no string can close the <script> element
    assert "\\u0026lt;script\\u0026gt;alert(1)" in page
    # every <script> in the page is one of ours: plotly.js, one per figure, the page script
    ctx = build_context(load_run(run), gallery=False)
    assert len(re.findall(r"<script[ >]", page)) == 2 + len(ctx["figures"])


def test_plotly_inlined_once_and_offline(run96: Path, tmp_path: Path) -> None:
    import plotly.offline

    out = build_report(run96, tmp_path / "r.html")
    page = out.read_text()
    plotly_js = plotly.offline.get_plotlyjs()
    assert page.count(plotly_js[:200]) == 1 and page.count(plotly_js) == 1
    ours = page.replace(plotly_js, "")  # plotly.js itself names CDN URLs (for geo maps)
    assert "<script src" not in ours and "cdn.plot.ly" not in ours
    assert not re.search(r"""(src|href)=["']?https?://""", ours)


def test_run_without_layout(tmp_path: Path) -> None:
    run = make_run(tmp_path / "nolayout", layout=False)
    out = build_report(run, tmp_path / "r.html")
    ctx = build_context(load_run(run), gallery=False)
    assert [s["id"] for s in ctx["sections"]] == ["findings", "summary", "heatmaps", "qc",
                                                  "provenance"]
    page = out.read_text()
    assert 'id="heatmaps"' in page and 'id="conditions"' not in page
    assert 'id="statistics"' not in page and 'id="dose"' not in page


@pytest.mark.parametrize("n_wells", [384, 1536])
def test_large_plates(tmp_path: Path, n_wells: int) -> None:
    run = make_run(tmp_path / f"p{n_wells}", n_wells=n_wells)
    t0 = time.perf_counter()
    out = build_report(run, tmp_path / "r.html")
    seconds = time.perf_counter() - t0
    geom = PlateGeometry.from_format(n_wells)
    ctx = build_context(load_run(run), gallery=False)
    heat = json.loads(ctx["figures"]["heat-0-n_detected"])["data"][0]
    assert np.array(heat["z"], dtype=float).shape == (geom.rows, geom.columns)
    assert heat["customdata"][-1][-1][0] == well_name(geom.rows - 1, geom.columns - 1)
    assert heat["y"][-1] == ("P" if n_wells == 384 else "AF")
    assert seconds < 30, f"{n_wells}-well report took {seconds:.1f} s"
    assert out.stat().st_size < 12e6


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a run folder"):
        build_report(tmp_path, tmp_path / "r.html")
    (tmp_path / "wells.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="wells.parquet: cannot read as Parquet"):
        build_report(tmp_path, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli(run96: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", str(run96), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output and out.stat().st_size > 4e6
    res = CliRunner().invoke(app, ["report", str(run96), "--out", str(out)])
    assert res.exit_code == 2 and "exists" in res.output
    with pytest.raises(OutputExistsError):
        build_report(run96, out)


def test_composite_crop_and_overlay() -> None:
    planes = np.zeros((2, 40, 60))
    planes[0, 10:20, 30:40] = 100.0  # a red square
    planes[1] = 50.0  # uniform blue at half its window
    colours, windows = [(1, 0, 0), (0, 0, 1)], [(0, 100), (0, 100)]
    rgb = composite(planes, colours, windows)
    assert rgb[15, 35].tolist() == [255, 0, 127] and rgb[0, 0].tolist() == [0, 0, 127]
    # a crop centred on the square: 1.5 x 10 px = 15 px side, upscaled to 96 px
    thumb = np.asarray(crop(planes, (30, 10, 40, 20), colours, windows, size=96))
    assert thumb.shape == (96, 96, 3)
    assert thumb[48, 48].tolist() == [255, 0, 127]  # the centre is the square
    assert thumb[2, 2, 0] == 0  # the corner is outside it
    # a box at the field corner is zero-padded, not shifted: 15 px square centred on (5, 5)
    region = cut(planes, (0, 0, 10, 10))
    assert region.shape == (2, 15, 15)
    assert (region[1, :2, :] == 0).all() and (region[1, 2:, 2:] == 50).all()
    # block-mean shrinking for the overlay: 60 px -> 30 px with factor 2
    small, factor = shrink(planes, size=30)
    assert factor == 2 and small.shape == (2, 20, 30)
    assert small[0, 5:10, 15:20].tolist() == [[100.0] * 5] * 5
    cells = pd.DataFrame({"bbox_x0": [30], "bbox_y0": [10], "bbox_x1": [40], "bbox_y1": [20],
                          "label": ["dead"]})
    img = np.asarray(overlay(rgb, cells, {"dead": "#00ff00"}))
    assert img[10, 35].tolist() == [0, 255, 0] and img[15, 30].tolist() == [0, 255, 0]
    assert img[15, 35].tolist() == [255, 0, 127]  # inside the box untouched
    half = np.asarray(overlay(composite(small, colours, windows), cells, {"dead": "#00ff00"}, 2))
    assert half[5, 17].tolist() == [0, 255, 0]  # the same box at half scale


def test_class_examples_best_and_borderline() -> None:
    rng = np.random.default_rng(1)
    p = rng.dirichlet([1, 1], 200)
    cells = pd.DataFrame({"cell_id": np.arange(200), "p_live": p[:, 0], "p_dead": p[:, 1]})
    cells["label"] = np.where(p[:, 0] > p[:, 1], "live", "dead")
    cells["confidence"] = p.max(axis=1)
    ex = class_examples(cells, ["live", "dead"], n=5)
    for label in ("live", "dead"):
        mine = cells[cells.label == label]
        best = ex[(ex.label == label) & (ex.kind == "best")]
        border = ex[(ex.label == label) & (ex.kind == "borderline")]
        assert sorted(best.cell_id) == sorted(mine.nlargest(5, "confidence").cell_id)
        margin = (mine.p_live - mine.p_dead).abs()
        assert sorted(border.cell_id) == sorted(mine.loc[margin.nsmallest(5).index, "cell_id"])
        assert best.confidence.min() > border.confidence.max()


def test_gallery_thumbnails_are_small_jpegs(tmp_path: Path) -> None:
    import base64
    import io

    from hcs.report.gallery import to_data_uri

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), np.uint8))
    uri = to_data_uri(img)
    assert uri.startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert Image.open(io.BytesIO(raw)).size == (96, 96) and len(raw) < 20_000


def test_embedding_section_separates_classes(run96: Path, tmp_path: Path) -> None:
    run = tmp_path / "emb"
    shutil.copytree(run96, run)
    rng = np.random.default_rng(3)
    label = np.repeat(["live", "dead"], 100)
    feats = rng.normal(size=(200, 6)) + np.where(label == "live", 4.0, 0.0)[:, None]
    emb = pd.DataFrame(feats, columns=[f"emb_{i}" for i in range(6)]).assign(label=label)
    emb.to_parquet(run / "embeddings.parquet")
    ctx = build_context(load_run(run), gallery=False)
    assert [s["id"] for s in ctx["sections"]][-2:] == ["embedding", "provenance"]
    traces = {t["name"]: np.column_stack([t["x"], t["y"]])
              for t in json.loads(ctx["figures"]["embedding"])["data"]}
    live, dead = traces["live"], traces["dead"]
    gap = np.linalg.norm(live.mean(axis=0) - dead.mean(axis=0))
    spread = max(live.std(axis=0).max(), dead.std(axis=0).max())
    assert gap > 2 * spread  # two separated groups in the features stay separated in 2-D
    # precomputed coordinates are plotted as they are
    emb.assign(umap_1=np.arange(200.0), umap_2=-np.arange(200.0)).to_parquet(
        run / "embeddings.parquet")
    fig = json.loads(build_context(load_run(run), gallery=False)["figures"]["embedding"])
    live = next(t for t in fig["data"] if t["name"] == "live")
    assert live["x"] == list(np.arange(100.0)) and live["y"] == list(-np.arange(100.0))
    assert "UMAP, precomputed" in fig["layout"]["title"]["text"]


def test_failures_and_provenance_shown_escaped(run96: Path, tmp_path: Path) -> None:
    run = tmp_path / "fail"
    shutil.copytree(run96, run)
    pd.DataFrame({"well": ["B02", "C07"], "field": [0, 3], "error_type": ["OSError", "Err"],
                  "error": ["disk gone", EVIL]}).to_parquet(run / "failures.parquet")
    ctx = build_context(load_run(run), gallery=False)
    summary = next(s for s in ctx["sections"] if s["id"] == "summary")
    facts = dict(summary["blocks"][0]["items"])
    assert facts["failed fields"] == "2"
    assert facts["wells imaged"] == "96 of the 96 wells of the plate"
    assert facts["cells detected"] == f"{95 * 200:,}"  # one well has no cells
    page = render(ctx)
    assert "disk gone" in page and EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
