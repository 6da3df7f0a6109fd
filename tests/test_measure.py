"""Per-cell measurements (issue 16): exact truth on synthetic masks, agreement with the library
called directly on a real field, detection-only runs, percent-positive and feature readouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.engine.run import run_plate
from hcs.measure import measure_objects, safe_name
from hcs.readouts import PositiveSpec, choose_threshold, parse_positive
from hcs.synth.fixtures import nuclei_field, write_disc_plate


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcs", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_exact_areas_and_intensities_on_truth_masks() -> None:
    img, truth = nuclei_field((400, 400), n_nuclei=40, seed=3)
    lab = truth.labels
    other = (np.arange(lab.size, dtype=np.uint16) % 997).reshape(lab.shape)  # known pattern
    m = measure_objects(lab, np.stack([img, other]), ["HOECHST 33342", "PH3"],
                        pixel_size_um=0.5, level="basic")
    ids = np.unique(lab)[1:]
    assert m.index.tolist() == ids.tolist() and len(ids) >= 30
    for k in ids:
        mask = lab == k
        row = m.loc[k]
        assert row["Nuclei_AreaShape_Area"] == mask.sum()
        assert row["Nuclei_AreaShape_AreaUm2"] == pytest.approx(mask.sum() * 0.25)
        assert row["Nuclei_Intensity_MeanIntensity_HOECHST_33342"] == pytest.approx(
            img[mask].mean(), rel=1e-12)
        assert row["Nuclei_Intensity_IntegratedIntensity_PH3"] == other[mask].sum()
        assert row["Nuclei_Intensity_MedianIntensity_PH3"] == np.median(other[mask])
        assert row["Nuclei_Intensity_StdIntensity_PH3"] == pytest.approx(other[mask].std())
        assert row["Nuclei_Intensity_MinIntensity_PH3"] == other[mask].min()
        assert row["Nuclei_Intensity_MaxIntensity_PH3"] == other[mask].max()
        ys, xs = np.nonzero(mask)
        assert row["Nuclei_AreaShape_Center_X"] == pytest.approx(xs.mean())
        assert row["Nuclei_AreaShape_Center_Y"] == pytest.approx(ys.mean())


def test_edge_intensity_and_shape_of_a_square() -> None:
    lab = np.zeros((12, 12), np.int32)
    lab[2:8, 3:9] = 5  # a 6 x 6 square: 20 edge pixels, 16 inside
    img = np.zeros((1, 12, 12), np.float32)
    img[0, 2:8, 3:9] = 10.0
    img[0, 3:7, 4:8] = 1.0
    m = measure_objects(lab, img, ["DNA"], level="basic")
    assert m.loc[5, "Nuclei_Intensity_MeanIntensityEdge_DNA"] == 10.0
    assert m.loc[5, "Nuclei_Intensity_MeanIntensity_DNA"] == pytest.approx((20 * 10 + 16) / 36)
    assert m.loc[5, "Nuclei_AreaShape_Solidity"] == 1.0
    assert m.loc[5, "Nuclei_AreaShape_Eccentricity"] == pytest.approx(0.0)
    assert np.isnan(m.loc[5, "Nuclei_AreaShape_AreaUm2"])  # no pixel size given


def test_full_level_adds_texture_and_correlation() -> None:
    img, truth = nuclei_field((300, 300), n_nuclei=15, seed=4)
    planes = np.stack([img, img, img.max() - img])
    m = measure_objects(truth.labels, planes, ["a", "b", "c"], level="full")
    assert m.shape[0] == len(np.unique(truth.labels)) - 1
    corr = m["Nuclei_Correlation_Correlation_a_b"].to_numpy()
    anti = m["Nuclei_Correlation_Correlation_a_c"].to_numpy()
    np.testing.assert_allclose(corr, 1.0)
    np.testing.assert_allclose(anti, -1.0)
    tex = [c for c in m if c.startswith("Nuclei_Texture_")]
    assert len(tex) == 3 * 2 * 6 and m[tex].notna().all().all()
    basic = measure_objects(truth.labels, planes, ["a", "b", "c"], level="basic")
    pd.testing.assert_frame_equal(m[basic.columns], basic)
    rng = np.random.default_rng(0)
    noisy = np.stack([img, img + rng.normal(0, 500, img.shape)])
    m2 = measure_objects(truth.labels, noisy, ["a", "b"], level="full")
    for k in m2.index[:5]:
        mask = truth.labels == k
        assert m2.loc[k, "Nuclei_Correlation_Correlation_a_b"] == pytest.approx(
            np.corrcoef(noisy[0][mask], noisy[1][mask])[0, 1], rel=1e-9)


def _awkward_labels(seed: int) -> np.ndarray:
    """Irregular, touching, split (non-connected) objects cut by the image border, plus
    one-pixel, one-row and one-column objects."""
    from scipy import ndimage as ndi
    from skimage.measure import label

    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random((150, 140)), 3)
    lab = label(smooth > np.quantile(smooth, 0.55)).astype(np.int64)
    quad = (np.arange(150)[:, None] // 23 % 2) + 2 * (np.arange(140)[None] // 19 % 2)
    lab = np.where(lab > 0, lab * 4 + quad, 0)  # neighbours with different ids touch
    lab[0, 0], lab[149, 60:70], lab[70:80, 139], lab[100, 100] = 1, 2, 3, 5
    return np.unique(lab, return_inverse=True)[1].reshape(lab.shape).astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_shape_and_edge_equal_regionprops_exactly(seed: int) -> None:
    """Perimeter, solidity (convex hull image), median and the edge mean are computed for all
    objects at once; they must equal scikit-image's per-object results bit for bit."""
    from skimage.measure import regionprops_table
    from skimage.segmentation import find_boundaries

    lab = _awkward_labels(seed)
    rng = np.random.default_rng(seed)
    ints = rng.integers(-300, 4000, lab.shape).astype(np.int32)  # packed-sort path
    floats = rng.normal(100, 30, lab.shape)  # lexsort path
    m = measure_objects(lab, np.stack([ints, floats]), ["i", "f"])

    def median(mask: np.ndarray, img: np.ndarray) -> float:
        return float(np.median(img[mask]))

    edge = np.where(find_boundaries(lab, mode="inner"), lab, 0)
    for name, img in (("i", ints), ("f", floats)):
        ref = regionprops_table(lab, intensity_image=img.astype(np.float64),
                                properties=("label", "perimeter", "solidity", "intensity_min",
                                            "intensity_max"), extra_properties=(median,))
        edge_ref = regionprops_table(edge, intensity_image=img.astype(np.float64),
                                     properties=("label", "intensity_mean"))
        assert m.index.tolist() == ref["label"].tolist() == edge_ref["label"].tolist()
        pairs = {"perimeter": "Nuclei_AreaShape_Perimeter",
                 "solidity": "Nuclei_AreaShape_Solidity",
                 "intensity_min": f"Nuclei_Intensity_MinIntensity_{name}",
                 "intensity_max": f"Nuclei_Intensity_MaxIntensity_{name}",
                 "median": f"Nuclei_Intensity_MedianIntensity_{name}"}
        for k, col in pairs.items():
            np.testing.assert_array_equal(m[col].to_numpy(), ref[k], err_msg=col)
        np.testing.assert_allclose(m[f"Nuclei_Intensity_MeanIntensityEdge_{name}"],
                                   edge_ref["intensity_mean"], rtol=1e-12)
    # a one-pixel object: perimeter 0 as skimage, convex hull = the pixel
    one = m.loc[lab[0, 0]]
    assert one["Nuclei_AreaShape_Perimeter"] == 0 and one["Nuclei_AreaShape_Solidity"] == 1


def test_ids_absent_from_the_mask_get_nan_and_none_is_empty() -> None:
    lab = np.zeros((8, 8), np.int32)
    lab[1:4, 1:4] = 2
    m = measure_objects(lab, np.ones((1, 8, 8)), ["x"], ids=np.array([2, 7]))
    assert m.loc[2, "Nuclei_AreaShape_Area"] == 9 and m.loc[7].isna().all()
    empty = measure_objects(np.zeros((8, 8), np.int32), np.ones((1, 8, 8)), ["x"],
                            ids=np.array([3]))
    assert empty.shape[0] == 1
    assert measure_objects(lab, np.ones((1, 8, 8)), ["x"], level="none").shape == (1, 0)
    assert safe_name("488 long") == "ch488_long"


def test_real_field_hoechst_nuclei_match_regionprops(phenix_v5: Path) -> None:
    from skimage.measure import regionprops_table

    from hcs.detect import detect
    from hcs.io.acquisition import read_plane
    from hcs.io.harmony import read_harmony

    acq = read_harmony(phenix_v5)
    row = acq.planes[acq.planes["channel"] == 4].iloc[0]
    img = read_plane(row["path"], expect_shape=acq.image_shape)
    det = detect(img, pixel_size_um=acq.pixel_size_um[1])
    assert len(det) >= 3  # a sparse field: three clearly stained nuclei (test_detect_threshold)
    m = measure_objects(det.labels, img[None], ["HOECHST 33342"],
                        pixel_size_um=acq.pixel_size_um[1], ids=det.ids)
    ref = pd.DataFrame(regionprops_table(
        det.labels, intensity_image=img.astype(np.float64),
        properties=("label", "area", "perimeter", "eccentricity", "solidity",
                    "axis_major_length", "axis_minor_length", "centroid", "intensity_mean",
                    "intensity_min", "intensity_max"))).set_index("label")
    assert ref.index.tolist() == m.index.tolist()
    pairs = {"area": "Nuclei_AreaShape_Area", "perimeter": "Nuclei_AreaShape_Perimeter",
             "eccentricity": "Nuclei_AreaShape_Eccentricity",
             "solidity": "Nuclei_AreaShape_Solidity",
             "axis_major_length": "Nuclei_AreaShape_MajorAxisLength",
             "axis_minor_length": "Nuclei_AreaShape_MinorAxisLength",
             "centroid-1": "Nuclei_AreaShape_Center_X",
             "intensity_mean": "Nuclei_Intensity_MeanIntensity_HOECHST_33342",
             "intensity_min": "Nuclei_Intensity_MinIntensity_HOECHST_33342",
             "intensity_max": "Nuclei_Intensity_MaxIntensity_HOECHST_33342"}
    for k, col in pairs.items():
        np.testing.assert_allclose(m[col].to_numpy(), ref[k].to_numpy(), rtol=1e-10,
                                   err_msg=col)
    # the nuclei are bright: their mean Hoechst is far above the field's median
    assert (m["Nuclei_Intensity_MeanIntensity_HOECHST_33342"] > np.median(img)).all()


def test_positive_spec_and_thresholds() -> None:
    assert parse_positive("PH3") == PositiveSpec("PH3", "otsu")
    assert parse_positive("PI:gmm").method == "gmm"
    from hcs.errors import InputError

    for bad in ("PH3:mean", ":otsu", "PI:>x"):
        with pytest.raises(InputError):
            parse_positive(bad)
    # a tight negative population: the threshold separates it exactly (no histogram bins)
    v = np.array([299.0, 300, 300, 300.5, 301, 4646, 5000, 5266])
    for method in ("otsu", "gmm"):
        t = choose_threshold(v, PositiveSpec("PI", method))
        assert 301 < t < 4646, method
    with pytest.raises(InputError, match="too few"):
        choose_threshold(np.array([5.0]), PositiveSpec("PI", "otsu"))


@pytest.fixture(scope="module")
def disc_plate(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    return write_disc_plate(tmp_path_factory.mktemp("discs"), ["A01", "B02"], fields=2,
                            size=200, nuclei=6, seed=5)


def test_detection_only_run_aggregate_and_positive(disc_plate, tmp_path, scheduler) -> None:
    from hcs.io.omezarr import open_plate

    plate, truth = disc_plate
    run = tmp_path / "run"
    summary = run_plate(plate, None, None, run, scheduler=scheduler, progress=False)
    assert summary.ok and summary.fields_done == 4
    pl = open_plate(plate)
    names = [safe_name(c) for c in pl.channels]
    truth_pos = {}
    for (well, field), t in truth.groupby(["well", "field"]):
        cells = pd.read_parquet(run / "cells" / well / f"{field}.parquet")
        assert not {"label", "assay", "model", "confidence"} & set(cells.columns)
        assert not any(c.startswith("p_") for c in cells.columns)
        assert len(cells) == len(t)
        # the measured area is the mask's pixel count of the detection
        np.testing.assert_array_equal(cells["Nuclei_AreaShape_Area"], cells["area"])
        np.testing.assert_allclose(cells["Nuclei_AreaShape_Center_X"], cells["x"])
        # intensities: the library on the plate's own pixels and the run's masks
        img = np.asarray(pl.field(well, field).isel(t=0).data.compute())[:, 0]
        from hcs.detect import detect

        det = detect(img[1], pixel_size_um=pl.pixel_size_um[1])
        direct = measure_objects(det.labels, img, list(pl.channels),
                                 pixel_size_um=pl.pixel_size_um[1], ids=det.ids)
        for n in names:
            col = f"Nuclei_Intensity_MeanIntensity_{n}"
            np.testing.assert_allclose(cells[col], direct[col].to_numpy())
        # PI truth: is the disc centre bright in the PI plane?
        pos = [img[2, int(round(y)), int(round(x))] > 3000 for x, y in t[["x", "y"]].to_numpy()]
        truth_pos[well] = truth_pos.get(well, 0) + int(np.sum(pos))
    res = _run("aggregate", str(run), "--positive", "PI", "--positive", "PI:>2000")
    assert res.returncode == 0, res.stderr
    wells = pd.read_parquet(run / "wells.parquet")
    assert wells["n_detected"].tolist() == truth.groupby("well").size().tolist()
    assert wells["n_PI_positive"].tolist() == [truth_pos["A01"], truth_pos["B02"]]
    assert 0 < truth_pos["A01"] < wells["n_detected"].iloc[0]
    np.testing.assert_allclose(wells["freq_PI_positive"],
                               wells["n_PI_positive"] / wells["n_detected"])
    assert wells.attrs["positive"][0]["method"] == "otsu"
    assert 400 < wells.attrs["positive"][0]["threshold"] < 6000
    assert wells.attrs["positive"][1]["threshold"] == 2000.0
    all_cells = pd.concat([pd.read_parquet(f) for f in sorted((run / "cells").glob("A01/*"))])
    assert wells.loc[0, "median_Nuclei_AreaShape_Area"] == all_cells[
        "Nuclei_AreaShape_Area"].median()
    res = _run("aggregate", str(run), "--positive", "GFP", "--overwrite")
    assert res.returncode == 2 and "Nuclei_Intensity_MeanIntensity_GFP" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    # stats and the report take the new readouts like class frequencies
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,ctrl,negative_control\nB02,drug,sample\n")
    res = _run("aggregate", str(run), "--positive", "PI", "-l", str(layout), "--overwrite")
    assert res.returncode == 0, res.stderr
    res = _run("stats", str(run), "--readout", "PI_positive,median_Nuclei_AreaShape_Area")
    assert res.returncode == 0, res.stderr
    stats = pd.read_parquet(run / "stats.parquet")
    comp = stats[stats["kind"] == "comparison"]
    assert set(comp["readout"]) == {"freq_PI_positive", "median_Nuclei_AreaShape_Area"}
    drug = comp[(comp["condition"] == "drug") & (comp["readout"] == "freq_PI_positive")]
    assert drug["mean"].iloc[0] == pytest.approx(wells["freq_PI_positive"].iloc[1])
    res = _run("stats", str(run), "--readout", "median_Nope", "--overwrite")
    assert res.returncode == 2 and "median_Nope" in res.stderr
    res = _run("report", str(run), "--out", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "r.html").read_text()
    thr = wells.attrs["positive"][0]["threshold"]
    assert f"nuclear mean intensity &gt; {thr:.6g} (otsu" in html
    assert "heat-0-median_Nuclei_AreaShape_Area" in html and "cond-freq_PI_positive" in html
    assert "comp-abs" not in html  # a stain's positive fraction is not a class


def test_measure_none_and_bad_options(disc_plate, tmp_path, scheduler) -> None:
    plate, truth = disc_plate
    run = tmp_path / "run"
    summary = run_plate(plate, None, None, run, scheduler=scheduler, progress=False,
                        measure="none", wells=["A01"])
    assert summary.ok
    cells = pd.read_parquet(run / "cells" / "A01" / "0.parquet")
    assert not any(c.startswith("Nuclei_") for c in cells.columns)
    res = _run("aggregate", str(run))
    assert res.returncode == 0, res.stderr
    wells = pd.read_parquet(run / "wells.parquet")
    assert wells["n_detected"].tolist() == [len(truth[truth.well == "A01"])]
    bad = _run("run", str(plate), "--out", str(tmp_path / "x"), "--measure", "most")
    assert bad.returncode == 2 and "--measure" in bad.stderr
    bad = _run("run", str(plate), "--out", str(tmp_path / "x"), "--assay", "cic")
    assert bad.returncode == 2 and "--model" in bad.stderr
    assert not (tmp_path / "x" / "cells").exists()


def test_analyze_without_an_assay(disc_plate, tmp_path, scheduler) -> None:
    from typer.testing import CliRunner

    from hcs.cli import app

    plate, truth = disc_plate
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,ctrl,negative_control\nB02,drug,sample\n")
    out = tmp_path / "an"
    r = CliRunner().invoke(app, ["analyze", str(plate), "--layout", str(layout), "--out",
                                 str(out), "--scheduler", scheduler, "--positive", "PI",
                                 "--no-labels", "-q"])
    assert r.exit_code == 0, r.output
    wells = pd.read_parquet(out / "run" / "wells.parquet")
    assert wells["n_detected"].tolist() == truth.groupby("well").size().tolist()
    assert "freq_PI_positive" in wells and wells.attrs["positive"][0]["channel"] == "PI"
    stats = pd.read_parquet(out / "run" / "stats.parquet")
    tested = set(stats.loc[stats["kind"] == "comparison", "readout"])
    assert {"freq_PI_positive", "n_detected", "median_Nuclei_AreaShape_Area"} <= tested
    assert "PI positive" in (out / "report.html").read_text()
    r = CliRunner().invoke(app, ["analyze", str(plate), "--layout", str(layout), "--out",
                                 str(tmp_path / "x"), "--model", "models/livedead-sim"])
    # --model without --assay: the assay is the card's (livedead), as hcs run does
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "x" / "run" / "run.json").read_text())["assay"] == "livedead"


def test_classifier_vs_stain_in_the_report(disc_plate, tmp_path, scheduler) -> None:
    from hcs.synth.fixtures import save_random_model

    plate, truth = disc_plate
    model = save_random_model(tmp_path / "m", "livedead", ["brightfield"])
    run = tmp_path / "run"
    assert run_plate(plate, "livedead", model, run, scheduler=scheduler, progress=False,
                     labels=False).ok
    cells = pd.read_parquet(run / "cells" / "A01" / "0.parquet")
    assert {"label", "p_live", "Nuclei_Intensity_MeanIntensity_PI"} <= set(cells.columns)
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,ctrl,negative_control\nB02,drug,sample\n")
    r = _run("aggregate", str(run), "--positive", "PI", "-l", str(layout))
    assert r.returncode == 0, r.stderr
    wells = pd.read_parquet(run / "wells.parquet")
    assert {"freq_dead", "freq_PI_positive", "n_live"} <= set(wells.columns)
    r = _run("report", str(run), "--out", str(tmp_path / "r.html"), "--no-gallery")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "r.html").read_text()
    assert "Classifier vs stain" in html and "stain-freq_PI_positive" in html
