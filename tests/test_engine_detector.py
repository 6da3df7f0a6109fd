"""``hcs run --detector FOLDER``: a learned detector folder in the engine.

Fast tests use a tiny randomly initialised Faster R-CNN saved by
:func:`hcs.detect.learned.save_detector` (its boxes are meaningless but deterministic); the
reference is the detector called directly on the field composed by hand. A slow test runs the
shipped ``models/ldc-detector`` when it exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.engine import detector as engine_detector
from hcs.engine import process_fields, run_plate
from hcs.engine.processor import EngineParams, compose_field
from hcs.errors import InputError
from hcs.io.omezarr import open_plate
from hcs.synth.fixtures import save_random_model, write_disc_plate

WELLS = ["A01", "B02"]
FIELDS = 2
ITEMS = [(w, f) for w in WELLS for f in range(FIELDS)]
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "ldc-detector"


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    return write_disc_plate(tmp_path_factory.mktemp("plate"), WELLS, fields=FIELDS, size=160,
                            nuclei=4, seed=7)[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("models") / "ld_bf", "livedead",
                             ["brightfield"], crop_size=32)


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    import torch

    from hcs.detect.learned import build_detector, save_detector

    torch.manual_seed(0)
    net = build_detector("fasterrcnn_resnet18_fpn", in_chans=2)
    return save_detector(net, tmp_path_factory.mktemp("det") / "tiny-det",
                         architecture="fasterrcnn_resnet18_fpn",
                         channels=["brightfield", "nucleus"],
                         score_threshold=0.73)  # ~20 boxes per field


def _reference_boxes(plate: Path, folder: Path, well: str, field: int,
                     roles_to_plate: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The detector on the field composed by hand: z max-projection, each plate channel of
    the card's roles rescaled to 0-255 by its 1-99.8 percentiles."""
    from hcs.detect.learned import load_detector

    planes = open_plate(plate).field(well, field).isel(t=0).values.max(axis=1)
    image = compose_field(planes, roles_to_plate, ["percentile"] * len(roles_to_plate))
    det = load_detector(folder).detect(image)
    return det.boxes, det.scores


def test_learned_detector_boxes_reach_the_cell_tables(plate, model, detector, tmp_path):
    engine_detector.LOADS.clear()
    params = EngineParams(plate=str(plate.resolve()), assay="livedead",
                          model=str(model.resolve()), detector=str(detector.resolve()),
                          batch_size=16)
    res = process_fields(params, str(tmp_path), ITEMS)
    assert res["failed"] == [] and len(res["fields"]) == len(ITEMS)
    assert engine_detector.LOADS == [str(detector.resolve())]  # loaded once for 4 fields
    n = 0
    for w, f in ITEMS:
        cells = pd.read_parquet(tmp_path / "cells" / w / f"{f}.parquet")
        # card roles brightfield, nucleus -> plate channels Brightfield (0), HOECHST 33342 (1)
        boxes, scores = _reference_boxes(plate, detector, w, f, [0, 1])
        assert len(cells) == len(boxes) > 0
        got = cells[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy()
        np.testing.assert_allclose(got, boxes, atol=1e-3)
        np.testing.assert_allclose(cells.det_score, scores, atol=1e-5)
        assert (cells.cell_id == np.arange(1, len(cells) + 1)).all()
        n += len(cells)
    assert res["n_cells"] == n

    # --channels maps a role to another plate channel: nucleus=PI changes the detector input
    remapped = params.model_copy(update={"channel_map": (("nucleus", "PI"),)})
    process_fields(remapped, str(tmp_path / "pi"), [("A01", 0)])
    cells = pd.read_parquet(tmp_path / "pi" / "cells" / "A01" / "0.parquet")
    boxes, _ = _reference_boxes(plate, detector, "A01", 0, [0, 2])
    np.testing.assert_allclose(cells[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(),
                               boxes, atol=1e-3)
    before = pd.read_parquet(tmp_path / "cells" / "A01" / "0.parquet")
    assert len(before) != len(cells) or not np.allclose(before.bbox_x0, cells.bbox_x0)


def test_run_records_the_detector_and_refuses_a_changed_one(plate, model, detector, tmp_path):
    from hcs.detect.learned.card import read_detector_card

    out = tmp_path / "run"
    s = run_plate(plate, "livedead", model, out, detector=str(detector), workers=1, gpus=0,
                  wells=["A01"], progress=False)
    assert s.ok and s.fields_done == FIELDS
    meta = json.loads((out / "run.json").read_text())
    card = read_detector_card(detector)
    assert meta["detector"]["name"] == "tiny-det" and meta["detector"]["kind"] == "learned"
    assert meta["detector"]["sha256"] == card.sha256 and len(card.sha256) == 64
    assert meta["detector"]["channels"] == ["brightfield", "nucleus"]
    assert meta["channels_read"] == ["Brightfield", "HOECHST 33342", "PI"]  # + measurements
    with pytest.raises(InputError, match="different detector"):
        run_plate(plate, "livedead", model, out, resume=True, progress=False)
    with pytest.raises(InputError, match="neither a method .* nor a detector folder"):
        run_plate(plate, "livedead", model, tmp_path / "r2", detector=str(model),
                  progress=False)  # a classifier folder is not a detector


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_dir(), reason="models/ldc-detector is not shipped yet")
def test_shipped_ldc_detector_in_the_engine(tmp_path):
    """The shipped detector (by name, as ``--detector ldc-detector``) + the shipped livedead
    classifier on a simulated livedead field, against the detector called directly on the
    composed field."""
    from hcs.detect.learned.card import read_detector_card
    from hcs.engine.model import plate_channel_for
    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.synth import simulate_plate

    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,dmso,sample\n")
    sim = simulate_plate(tmp_path / "sim", layout, "livedead", fields=1, size=640, seed=0,
                         progress=False)
    plate = write_plate(open_export(sim.index_file.parent.parent), tmp_path / "p.ome.zarr",
                        progress=False)
    card = read_detector_card(SHIPPED)
    channels = open_plate(plate).channels
    idx = [plate_channel_for(r, channels) for r in card.channels]
    params = EngineParams(plate=str(plate.resolve()), assay="livedead",
                          model="livedead-ldc", detector="ldc-detector")
    res = process_fields(params, str(tmp_path / "run"), [("A01", 0)])
    assert res["failed"] == []
    cells = pd.read_parquet(tmp_path / "run" / "cells" / "A01" / "0.parquet")
    boxes, scores = _reference_boxes(plate, SHIPPED, "A01", 0, idx)
    assert len(cells) == len(boxes) > 0
    np.testing.assert_allclose(cells[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(),
                               boxes, atol=1e-3)
    np.testing.assert_allclose(cells.det_score, scores, atol=1e-5)
    assert set(cells.label) <= {"live", "dead"} and cells.model.iloc[0] == "livedead-ldc"
