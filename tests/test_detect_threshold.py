"""Classical nucleus/cell detection: exact behaviour on synthetic images, bad input, real data."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from hcs.detect import Detections, available_methods, detect
from hcs.detect.cells import detect_cells
from hcs.detect.evaluate import evaluate_detections
from hcs.detect.threshold import detect_nuclei, noise_sigma
from hcs.errors import InputError
from hcs.synth.fixtures import nuclei_field


def discs(shape, centres, radius, level=800.0, background=200.0, noise=20.0, seed=0):
    """Image of bright discs on a noisy background, and the true label mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        truth[inside & (truth == 0)] = k
    img = background + level * (truth > 0) + rng.normal(0, noise, shape)
    return img, truth


# --- exact behaviour on small synthetic images -------------------------------------------------


@pytest.mark.parametrize("separation", [16, 18, 20, 24])
def test_touching_discs_are_split_into_two_at_the_true_centres(separation):
    c1, c2 = (50.0, 70.0 - separation / 2), (50.0, 70.0 + separation / 2)
    img, _ = discs((100, 140), [c1, c2], radius=10)
    det = detect_nuclei(img)
    assert len(det) == 2
    frame = det.to_frame().sort_values("x")
    found = frame[["y", "x"]].to_numpy()
    assert np.abs(found - np.array([c1, c2])).max() < 1.5
    # each half gets about one disc area (pi r^2 = 314; the blur and threshold move it a bit)
    assert frame["area"].between(260, 400).all()


def test_isolated_disc_box_and_area():
    img, truth = discs((80, 80), [(40, 30)], radius=12)
    det = detect_nuclei(img)
    assert len(det) == 1
    x0, y0, x1, y1 = det.boxes[0]
    # truth box is [18, 28) x [28, 53) in (x, y) -> 18..43, 28..53; within a pixel or two
    assert abs(x0 - 18) <= 2 and abs(x1 - 43) <= 2 and abs(y0 - 28) <= 2 and abs(y1 - 53) <= 2
    assert abs(det.to_frame()["area"][0] - (truth > 0).sum()) / (truth > 0).sum() < 0.15


def test_three_in_a_row_and_a_separate_one():
    centres = [(40, 30), (40, 48), (40, 66), (90, 100)]
    img, _ = discs((130, 140), centres, radius=10, seed=3)
    det = detect_nuclei(img)
    assert len(det) == 4
    found = det.to_frame()[["y", "x"]].to_numpy()
    for c in centres:
        assert np.hypot(*(found - c).T).min() < 1.5


def test_elongated_single_nucleus_is_not_split():
    yy, xx = np.mgrid[:100, :100]
    ellipse = ((xx - 50) / 22.0) ** 2 + ((yy - 50) / 10.0) ** 2 <= 1
    rng = np.random.default_rng(1)
    img = 300 + 900 * ellipse + rng.normal(0, 25, ellipse.shape)
    assert len(detect_nuclei(img)) == 1


def test_no_splitting_when_disabled():
    img, _ = discs((100, 140), [(50, 61), (50, 79)], radius=10)
    assert len(detect_nuclei(img, split_touching=False)) == 1


def test_size_limits_in_micrometres():
    # 0.5 um/px: radius 3 px = 3 um diameter (below the 4 um minimum), radius 10 px = 10 um
    img, _ = discs((100, 120), [(30, 30), (60, 80)], radius=3)
    img2, _ = discs((100, 120), [(60, 80)], radius=10, seed=1)
    both = np.maximum(img, img2)
    det = detect_nuclei(both, pixel_size_um=0.5)
    assert len(det) == 1
    assert abs(det.to_frame()["x"][0] - 80) < 1.5
    # the same image without a pixel size keeps the small one (default minimum 16 px)
    assert len(detect_nuclei(both)) == 2
    # an explicit maximum drops the big one
    assert len(detect_nuclei(both, pixel_size_um=0.5, max_diameter_um=8)) == 0


def test_exclude_border():
    img, _ = discs((80, 80), [(40, 40), (40, 3)], radius=8)
    assert len(detect_nuclei(img)) == 2
    kept = detect_nuclei(img, exclude_border=True)
    assert len(kept) == 1 and abs(kept.to_frame()["x"][0] - 40) < 1.5


def test_scores_rank_by_contrast():
    img, _ = discs((80, 140), [(40, 30)], radius=10, level=100, seed=2)
    bright, _ = discs((80, 140), [(40, 100)], radius=10, level=300, background=0, noise=0)
    det = detect_nuclei(img + bright)
    frame = det.to_frame().sort_values("x")
    assert len(det) == 2
    dim_score, bright_score = frame["det_score"]
    assert 0.5 < dim_score < bright_score <= 1.0


def test_tenfold_dimmer_nucleus_needs_the_local_threshold():
    img, _ = discs((80, 140), [(40, 30)], radius=10, level=300, seed=2)
    bright, _ = discs((80, 140), [(40, 100)], radius=10, level=3000, background=0, noise=0)
    # a global threshold between the two brightness classes loses the dim one (documented) ...
    assert len(detect_nuclei(img + bright)) == 1
    # ... a local threshold keeps both
    assert len(detect_nuclei(img + bright, threshold="local")) == 2


def test_noise_sigma_is_robust_to_objects():
    rng = np.random.default_rng(0)
    img, _ = discs((256, 256), [(60, 60), (60, 180), (180, 120)], radius=30, noise=0)
    noisy = img + rng.normal(0, 7.0, img.shape)
    assert noise_sigma(noisy) == pytest.approx(7.0, rel=0.05)


# --- bad input: clear errors or empty detections -----------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 64), np.uint16),
        np.full((64, 64), 65535, np.uint16),  # fully saturated
        np.full((64, 64), 3.5, np.float32),
    ],
    ids=["all-zero", "saturated", "constant-float"],
)
def test_blank_fields_give_zero_detections(image):
    det = detect_nuclei(image)
    assert len(det) == 0
    assert det.labels.shape == image.shape and not det.labels.any()
    assert det.to_frame().empty


def test_noise_only_field_gives_zero_detections():
    rng = np.random.default_rng(4)
    img = rng.normal(500, 20, (512, 512))
    for method in ("otsu", "li", "triangle", "local"):
        assert len(detect_nuclei(img, threshold=method)) == 0, method


def test_partly_saturated_nucleus_is_detected_once():
    img, _ = discs((80, 80), [(40, 40)], radius=12, level=60000, noise=30)
    img = np.clip(img, 0, 65535).astype(np.uint16)
    assert len(detect_nuclei(img)) == 1


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((8, 8), np.nan), "NaN"),
        (np.where(np.eye(16) > 0, np.nan, 1.0), "16 of 256 pixels"),
        (np.zeros((2, 8, 8)), "2-D"),
        (np.zeros((0, 8)), "empty"),
        (np.array([["a", "b"], ["c", "d"]]), "pixel type"),
    ],
)
def test_bad_images_raise_input_error(image, message):
    with pytest.raises(InputError, match=message):
        detect_nuclei(image)


def test_bad_parameters_raise_input_error():
    img, _ = discs((40, 40), [(20, 20)], radius=6)
    with pytest.raises(InputError, match="pixel_size_um"):
        detect_nuclei(img, pixel_size_um=0)
    with pytest.raises(InputError, match="pixel_size_um"):
        detect_nuclei(img, pixel_size_um="big")
    # NaN is how the acquisition metadata says "unknown": the pixel defaults apply
    np.testing.assert_array_equal(detect_nuclei(img, pixel_size_um=float("nan")).labels,
                                  detect_nuclei(img).labels)
    with pytest.raises(InputError, match="threshold must be"):
        detect_nuclei(img, threshold="magic")
    with pytest.raises(InputError, match="unknown detection method 'nope'"):
        detect(img, method="nope")


def test_detect_dispatch_matches_direct_call():
    img, _ = discs((100, 140), [(50, 61), (50, 79)], radius=10)
    assert "threshold" in available_methods()
    a, b = detect(img, method="threshold"), detect_nuclei(img)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.labels, b.labels)


# --- Detections container ----------------------------------------------------------------------


def test_detections_frame_and_validation():
    lab = np.zeros((20, 30), np.int32)
    lab[2:6, 3:9] = 4  # 4 x 6 block
    lab[10:13, 20:21] = 7
    d = Detections.from_labels(lab, {4: 0.9, 7: 0.3})
    f = d.to_frame()
    assert f["cell_id"].tolist() == [4, 7]
    assert f[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].values.tolist() == [
        [3, 2, 9, 6], [20, 10, 21, 13]]
    assert f["area"].tolist() == [24.0, 3.0]
    assert f["x"].tolist() == [5.5, 20.0] and f["y"].tolist() == [3.5, 11.0]
    assert f["det_score"].round(3).tolist() == [0.9, 0.3]
    boxes_only = Detections(d.boxes, d.scores).to_frame()
    assert boxes_only[["x", "y", "area"]].values.tolist() == [[5.5, 3.5, 24.0], [20.0, 11.0, 3.0]]
    with pytest.raises(InputError, match="shape"):
        Detections(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(InputError, match="3 boxes but 2 scores"):
        Detections(np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(InputError, match="x1 >= x0"):
        Detections(np.array([[5, 0, 1, 3]]), np.ones(1))


# --- cells grown from nuclei -------------------------------------------------------------------


def test_detect_cells_grows_one_cell_per_nucleus():
    yy, xx = np.mgrid[:80, :160]
    centres = [(40, 50), (40, 100)]  # cells of radius 24 touch and overlap between x=74 and 76
    nuc = np.zeros(yy.shape)
    cyto = np.zeros(yy.shape)
    for cy, cx in centres:
        nuc += 1000 * ((yy - cy) ** 2 + (xx - cx) ** 2 <= 8**2)
        cyto = np.maximum(cyto, 400 * ((yy - cy) ** 2 + (xx - cx) ** 2 <= 26**2))
    rng = np.random.default_rng(0)
    nuc += rng.normal(100, 10, nuc.shape)
    cyto += rng.normal(100, 10, cyto.shape)
    nuclei = detect_nuclei(nuc)
    cells = detect_cells(nuc, cyto, nuclei=nuclei)
    assert len(cells) == 2
    np.testing.assert_array_equal(cells.ids, nuclei.ids)
    # every nucleus lies inside the cell with its id
    for k in nuclei.ids:
        assert (cells.labels[nuclei.labels == k] == k).all()
    f = cells.to_frame().sort_values("x")
    assert f["x"].round().tolist() == pytest.approx([49, 101], abs=2)
    # the border between the two cells runs through the middle (x = 75)
    left = cells.labels == f["cell_id"].iloc[0]
    assert abs(np.nonzero(left[40])[0].max() - 74.5) <= 2
    # each cell is about a disc of radius 26 minus the shared overlap
    assert f["area"].between(1700, 2300).all()
    # the cell scores are the nucleus scores
    np.testing.assert_allclose(cells.scores, nuclei.scores)


def test_detect_cells_membrane_and_limits():
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    nuc = 100 + 1000 * (r <= 7)
    membrane = 100 + 800 * (np.abs(r - 25) <= 1.5)
    cells = detect_cells(nuc, membrane, stain="membrane")
    assert len(cells) == 1
    area = cells.to_frame()["area"][0]
    # the cell runs to the outer edge of its membrane (radius 26.5)
    assert abs(area - np.pi * 26.5**2) / (np.pi * 26.5**2) < 0.05
    capped = detect_cells(nuc, membrane, stain="membrane", max_distance_um=5)
    # nucleus radius ~7.5 px after smoothing, plus at most 5 px
    assert np.pi * 11**2 < capped.to_frame()["area"][0] < np.pi * 13.5**2
    with pytest.raises(InputError, match="stain"):
        detect_cells(nuc, membrane, stain="nucleus")
    with pytest.raises(InputError, match="differ in shape"):
        detect_cells(nuc, membrane[:40])
    assert len(detect_cells(np.zeros((30, 30)), np.zeros((30, 30)))) == 0


# --- simulated fields --------------------------------------------------------------------------


def test_f1_on_simulated_fluorescence_field():
    img, truth = nuclei_field((540, 540), 60, touching_fraction=0.3, seed=7)
    det = detect_nuclei(img, pixel_size_um=0.598)
    m = evaluate_detections([det], [truth])
    assert m["f1_iou50_basis"] == "mask"
    assert m["f1_iou50"] >= 0.95
    assert m["precision_iou10"] >= 0.98 and m["recall_iou10"] >= 0.95
    assert abs(len(det) - len(truth)) <= 0.05 * len(truth)


def test_background_flattening_handles_vignetting():
    # dim nuclei (300-600 counts over 1500) under 50 % corner vignetting: the corners' background
    # is darker than the centre's nuclei, so no global threshold works without flattening
    img, truth = nuclei_field((540, 540), 40, vignetting=0.5, signal=(300, 600), background=1500,
                              seed=5)
    flat = evaluate_detections([detect_nuclei(img, 0.598)], [truth])
    raw = evaluate_detections([detect_nuclei(img, 0.598, background_block_um=None)], [truth])
    assert flat["f1_iou50"] >= 0.95
    assert raw["f1_iou50"] < 0.5


@pytest.mark.parametrize("pixel_size", [None, 0.598])
def test_vignetted_empty_field_gives_zero_detections(pixel_size):
    img, truth = nuclei_field((540, 540), 0, vignetting=0.35, seed=1)
    assert len(truth) == 0
    for method in ("li", "otsu", "triangle", "local"):
        assert len(detect_nuclei(img, pixel_size, threshold=method)) == 0, method


# --- real fields -------------------------------------------------------------------------------


def test_real_hoechst_field(phenix_v5):
    img = tifffile.imread(phenix_v5 / "r01c01f01p01-ch5sk1fk1fl1.tiff")  # HOECHST 33342
    assert img.shape == (1080, 1080) and img.dtype == np.uint16
    det = detect_nuclei(img, pixel_size_um=0.598)
    # the field is sparse: three clearly stained nuclei (checked by eye); a couple of faint
    # blobs may or may not pass the threshold
    assert 3 <= len(det) <= 6
    f = det.to_frame()
    for x, y in [(408, 433), (240, 517), (73, 583)]:
        assert np.hypot(f["x"] - x, f["y"] - y).min() < 6
    # nucleus sizes in micrometres: equivalent diameters between 10 and 35 um
    diam_um = 2 * np.sqrt(f["area"] / np.pi) * 0.598
    assert diam_um.between(10, 35).all()


def test_real_gfp_fields(plate_row_gfp):
    counts = []
    for field in range(3):
        img = tifffile.imread(plate_row_gfp / f"AS_09047_050428030001_O01f0{field}d2.TIF")
        det = detect_nuclei(img)
        counts.append(len(det))
        assert det.labels.shape == (512, 512)
        assert np.all((det.scores > 0) & (det.scores <= 1))
    # cytoplasmic GFP (Transfluor) in a confluent layer: the objects are bright cell bodies and
    # clusters, not nuclei, so only a plausible range is asserted (see docs/detection.md)
    assert all(20 <= c <= 300 for c in counts), counts


@pytest.mark.slow
def test_nuclei_of_the_screen_simulator_are_found():
    """Centroid-in-mask F1 on one hcs.synth live/dead field (the simulator gives no outlines)."""
    synth = pytest.importorskip("hcs.synth")
    import tempfile
    from pathlib import Path

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "layout.csv"
        layout.write_text("well,condition\nB02,ctrl\n")
        res = synth.simulate_plate(Path(tmp) / "sim", layout, "livedead", fmt="scanr", fields=1,
                                   size=540, seed=3, progress=False, workers=1)
        (path,) = res.export.glob("data/*--HOECHST 33342.tif")
        img = tifffile.imread(path)
        truth = pd.read_parquet(res.out / "truth" / "members.parquet")
    truth = truth[truth.nucleus_area_px > 0].dropna(subset=["nucleus_x"])
    det = detect_nuclei(img, pixel_size_um=0.598)
    rows = np.clip(np.round(truth.nucleus_y).astype(int), 0, img.shape[0] - 1)
    cols = np.clip(np.round(truth.nucleus_x).astype(int), 0, img.shape[1] - 1)
    found = det.labels[rows, cols]
    hits = len(np.unique(found[found > 0]))
    precision, recall = hits / len(det), hits / len(truth)
    assert len(truth) > 20
    assert precision >= 0.95 and recall >= 0.95, (precision, recall, len(truth), len(det))
