"""The classical detector's output is frozen: label images, detection tables and the engine's
cell table are bit for bit those of the detector before the speed work of issue 20 (main at
commit 1e0836b).

The digests below were computed by running *that* code (not the optimised one) on the same
inputs; a change to any mask pixel, box, centroid, score or measurement fails here. When a
detector change is meant to alter masks, the new masks must first be scored against these
(F1 >= 0.99 on the simulated fields with exact masks, no loss on ``benchmarks/detect.py``) and
the digests regenerated in the same commit with the reason (see docs/scaling.md, issue 20).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage as ndi

from hcs.detect import Detections
from hcs.detect.cells import detect_cells
from hcs.detect.threshold import detect_nuclei
from hcs.synth.fixtures import nuclei_field

PIXEL_UM = 0.598


def digest(array: np.ndarray) -> str:
    """First 16 hex digits of the SHA-256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def detections_digest(det: Detections) -> tuple[int, str, str]:
    """(number of objects, digest of the label image as int32, digest of the detection table)."""
    frame = det.to_frame()
    table = frame.to_numpy(np.float64) if len(frame) else np.zeros((0, frame.shape[1]))
    return len(det), digest(np.asarray(det.labels, np.int32)), digest(table)


def _sparse() -> np.ndarray:
    return nuclei_field((1080, 1080), 150, seed=0)[0]


def _dense() -> np.ndarray:
    return nuclei_field((1080, 1080), 400, touching_fraction=0.5, seed=1)[0]


def _dim_vignetted() -> np.ndarray:
    return nuclei_field((540, 540), 40, vignetting=0.5, signal=(300, 600), background=1500,
                        seed=5)[0]


def _cyto(nuclei: np.ndarray) -> np.ndarray:
    """A cytoplasm-like channel: the nuclei spread out (blurred), with its own noise."""
    rng = np.random.default_rng(11)
    spread = ndi.gaussian_filter(nuclei.astype(np.float32), 6.0)
    return spread + rng.normal(0.0, 5.0, nuclei.shape).astype(np.float32)


def _livedead_field() -> np.ndarray:
    """The HOECHST plane of one 1080 x 1080 field of the screen simulator (livedead)."""
    from hcs.synth import simulate_plate

    global _LIVEDEAD
    if _LIVEDEAD is None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            layout = Path(tmp) / "layout.csv"
            layout.write_text("well,condition\nB02,ctrl\n")
            res = simulate_plate(Path(tmp) / "sim", layout, "livedead", fmt="scanr", fields=1,
                                 size=1080, seed=0, progress=False, workers=1)
            _LIVEDEAD = {p.name.split("--")[-1][:-4]: tifffile.imread(p)
                         for p in sorted(res.export.glob("data/*.tif"))}
    return _LIVEDEAD["HOECHST 33342"]


_LIVEDEAD: dict[str, np.ndarray] | None = None

# name -> (input image, detector call)
CASES: dict[str, tuple[Callable[[], np.ndarray], Callable[[np.ndarray], Detections]]] = {
    "sparse": (_sparse, lambda im: detect_nuclei(im, PIXEL_UM)),
    "dense": (_dense, lambda im: detect_nuclei(im, PIXEL_UM)),
    "dense_otsu": (_dense, lambda im: detect_nuclei(im, PIXEL_UM, threshold="otsu")),
    "dense_no_split": (_dense, lambda im: detect_nuclei(im, PIXEL_UM, split_touching=False)),
    "dim": (_dim_vignetted, lambda im: detect_nuclei(im, PIXEL_UM)),
    "dim_no_pixel_size": (_dim_vignetted, lambda im: detect_nuclei(im)),
    "dim_triangle": (_dim_vignetted, lambda im: detect_nuclei(im, PIXEL_UM, threshold="triangle")),
    "dim_local": (_dim_vignetted, lambda im: detect_nuclei(im, PIXEL_UM, threshold="local")),
    "dim_no_background": (_dim_vignetted,
                          lambda im: detect_nuclei(im, PIXEL_UM, background_block_um=None)),
    "livedead": (_livedead_field, lambda im: detect_nuclei(im, PIXEL_UM)),
    "livedead_border": (_livedead_field,
                        lambda im: detect_nuclei(im, PIXEL_UM, exclude_border=True)),
    "cells_cytoplasm": (_sparse, lambda im: detect_cells(im, _cyto(im), PIXEL_UM)),
    "cells_membrane": (_sparse, lambda im: detect_cells(im, _cyto(im), PIXEL_UM,
                                                        stain="membrane", max_distance_um=12.0)),
}

# computed with main at 1e0836b (the detector before issue 20's speed work)
REFERENCE: dict[str, tuple[int, str, str]] = {
    'sparse': (147, '0bd970f803f0773c', '46ad1a9b1a8d9810'),
    'dense': (383, '89e9305fdfa391a7', '3505c6e702412f70'),
    'dense_otsu': (366, '39c1ee40429c0388', 'ad0e55bff62b91f9'),
    'dense_no_split': (180, '68b52ded6466f482', '1b8334d6252a5be9'),
    'dim': (39, '4b44a0c6f15721bb', '8436c801e4af11cd'),
    'dim_no_pixel_size': (39, '49c2afcda7f0915c', '35428703bebf4007'),
    'dim_triangle': (39, '59c38bd927330628', '429985d4950bf3a9'),
    'dim_local': (40, 'ae8ac9ba7d2231e1', 'c82452818e0faed7'),
    'dim_no_background': (6, '4b05fb118a4af658', '901a9d84d2d57ccd'),
    'livedead': (208, 'd5e5e9a13bd0c46e', '4492c36bf638db3b'),
    'livedead_border': (202, '6c4b6d552733560c', '73f0ee6931901a94'),
    'cells_cytoplasm': (147, '1a375429e445bab2', '38eb3a137b13afa5'),
    'cells_membrane': (147, 'cba20be0d1b4e721', '2b6f4ff12d8499c1'),
}

# the engine's detection-only cell table (detect + measure basic) of the livedead field
ENGINE_REFERENCE: tuple[int, str] = (208, "dd35df68d34f66e5")


def engine_table() -> pd.DataFrame:
    """Cell table of the livedead field through the engine's processor (no model)."""
    from hcs.engine.processor import EngineParams, FieldMeta, PipelineProcessor

    _livedead_field()
    assert _LIVEDEAD is not None
    names = tuple(sorted(_LIVEDEAD))
    image = np.stack([_LIVEDEAD[n] for n in names])[:, None]  # (c, z, y, x)
    proc = PipelineProcessor(EngineParams(plate="synthetic", measure="basic"))
    meta = FieldMeta(plate="synthetic", well="B02", row=1, col=1, field=0, channels=names,
                     pixel_size_um=PIXEL_UM)
    return proc.process(image, meta)


def table_digest(table: pd.DataFrame) -> tuple[int, str]:
    """(rows, digest of every numeric column as float64, in column order)."""
    num = table.select_dtypes("number")
    h = hashlib.sha256(",".join(num.columns).encode())
    h.update(digest(num.to_numpy(np.float64)).encode())
    return len(table), h.hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(CASES))
def test_detector_output_is_unchanged(name):
    image, run = CASES[name]
    got = detections_digest(run(image()))
    assert got[0] > 0
    assert got == REFERENCE[name], f"{name}: {got} != frozen {REFERENCE[name]}"


def test_engine_cell_table_is_unchanged():
    got = table_digest(engine_table())
    assert got[0] > 100
    assert got == ENGINE_REFERENCE


# --- the faster building blocks give the numbers of the ones they replace -------------------


@pytest.mark.parametrize("seed", range(4))
def test_threshold_li_equals_scikit_image(seed, monkeypatch):
    from skimage import filters

    import hcs.detect._util as util

    img, _ = nuclei_field((256, 256), 12, seed=seed)
    smooth = ndi.gaussian_filter(img.astype(np.float32), 1.0)
    images = (smooth, smooth - smooth.mean(), smooth[:, :1].copy())
    expected = [float(filters.threshold_li(image)) for image in images]
    fallbacks: list[int] = []
    original = util.filters.threshold_li
    monkeypatch.setattr(util.filters, "threshold_li",
                        lambda im: fallbacks.append(1) or original(im))
    assert [util.threshold_li(image) for image in images] == expected
    assert fallbacks == []  # the fast iteration decided every one


def test_fill_holes_equals_scipy():
    from hcs.detect._util import fill_holes

    rng = np.random.default_rng(3)
    for density in (0.3, 0.5, 0.7):
        mask = rng.random((120, 90)) < density
        assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
        assert fill_holes(mask).sum() > mask.sum()  # there were holes to fill


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, bool])
def test_integer_noise_sigma_equals_float(dtype):
    from hcs.detect.background import noise_sigma

    rng = np.random.default_rng(5)
    for shape in ((101, 64), (40, 33), (1, 50), (50, 1)):
        img = rng.poisson(3.0 if dtype is bool else 40.0, shape)
        img = (img > 3) if dtype is bool else img.astype(dtype)
        assert noise_sigma(img) == noise_sigma(img.astype(np.float64))
    flat = np.full((80, 80), 7, dtype if dtype is not bool else np.uint8)
    flat[::3, ::5] = 9  # more than half the differences zero: the std fallback
    assert noise_sigma(flat) == noise_sigma(flat.astype(np.float64)) > 0


def test_windowed_distance_equals_whole_field_edt():
    """Per-component windows, including masks so dense that windows hold no background and
    fall back to the whole-field transform."""
    from hcs.detect.threshold import _distance

    rng = np.random.default_rng(2)
    for density in (0.4, 0.6, 0.75, 0.97):
        mask = ndi.binary_opening(rng.random((150, 170)) < density)
        components, _ = ndi.label(mask)
        got = _distance(mask, components, ndi.find_objects(components))
        assert np.array_equal(got, ndi.distance_transform_edt(mask).astype(np.float32))
        assert got.max() > 1


def test_centroids_and_boxes_equal_scipy():
    from hcs.detect.detections import _label_boxes, _mask_centroids

    labels = nuclei_field((300, 260), 25, seed=4)[1].labels
    ones, (rows, cols) = np.ones(labels.shape), np.indices(labels.shape, dtype=np.float64)
    # unordered ids with an absent one (the foreground-only sums), then with the background
    for ids in (np.array([3, 1, 99, 2]), np.array([0, 2])):
        got = _mask_centroids(labels, ids)
        with np.errstate(invalid="ignore", divide="ignore"):
            area = ndi.sum_labels(ones, labels, ids)
            want = (ndi.sum_labels(cols, labels, ids) / area,
                    ndi.sum_labels(rows, labels, ids) / area, area)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
        assert got[2][-1] > 100
    got_ids, boxes = _label_boxes(labels)
    assert got_ids.tolist() == np.unique(labels)[1:].tolist()
    sl = ndi.find_objects(labels)[0]
    assert boxes[0].tolist() == [sl[1].start, sl[0].start, sl[1].stop, sl[0].stop]


def test_background_level_equals_median_reference():
    """The sorted-once clipping gives np.median's numbers: odd and even sizes, ties, objects."""
    from hcs.detect.background import _background_level_median, background_level

    rng = np.random.default_rng(9)
    images = [rng.normal(200, 7, shape).astype(np.float32)
              for shape in ((64, 64), (65, 65), (9, 9), (2, 3))]
    spots = rng.normal(50, 3, (120, 130)).astype(np.float32)
    spots[rng.random(spots.shape) < 0.2] += 400  # bright objects: several clipping steps
    images += [spots, np.round(spots / 10) * 10, ndi.gaussian_filter(_dim_vignetted(), 1.0)
               .astype(np.float32)]
    for image in images:
        assert background_level(image) == _background_level_median(image)
    med, sd = background_level(spots)
    assert abs(med - 50) < 1 and 2 < sd < 4  # the objects were clipped away


if __name__ == "__main__":  # print the digests of the code that is imported
    for case, (img, fn) in CASES.items():
        print(f"    {case!r}: {detections_digest(fn(img()))!r},")
    print("ENGINE", table_digest(engine_table()))
