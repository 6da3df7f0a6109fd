"""`--truth SIM_DIR`: crops of a simulated plate labelled by the simulator's truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hcs.errors import InputError

torch = pytest.importorskip("torch")

LAYOUT = """well,condition,construct,dose,dose_unit,replicate,role,sim_density,sim_freq_live,\
sim_freq_dead
B02,DMSO,DMSO,0.1,%,1,negative_control,1500,0.5,0.5
B03,stauro,stauro,1,uM,1,positive_control,1500,0.5,0.5
C02,DMSO,DMSO,0.1,%,2,negative_control,1500,0.5,0.5
C03,stauro,stauro,1,uM,2,positive_control,1500,0.5,0.5
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4-well, 2-field, 256 px livedead simulation and its plate ``<sim>.ome.zarr``."""
    from hcs.cli import app
    from hcs.synth import simulate_plate

    root = tmp_path_factory.mktemp("truth")
    (root / "layout.csv").write_text(LAYOUT)
    simulate_plate(root / "sim", root / "layout.csv", "livedead", fields=2, size=256, seed=0,
                   progress=False, workers=1, plate_format=96)
    r = CliRunner().invoke(app, ["convert", str(root / "sim" / "export"),
                                 str(root / "sim.ome.zarr")])
    assert r.exit_code == 0, r.output
    return root / "sim", root / "sim.ome.zarr"


def test_truth_crops_are_the_engine_crops_of_the_true_cells(sim: tuple[Path, Path]) -> None:
    from hcs.classify.crops import crop_box
    from hcs.io.omezarr import open_plate
    from hcs.train.truth import find_plate, input_modes, read_truth, truth_cropset

    sim_dir, plate = sim
    assert find_plate(sim_dir) == plate  # the sibling SIM_DIR.ome.zarr is found
    truth = pd.read_parquet(sim_dir / "truth" / "cells.parquet")
    table = read_truth(sim_dir)
    assert set(truth["class"]) == {"live", "dead"} and len(table) == len(truth) > 100
    cs = truth_cropset(table, plate, ["live", "dead"], ["brightfield"],
                       input_modes("livedead", ["brightfield"]), 48, 0.25)
    assert cs.crops.shape == (len(truth), 48, 48, 1) and cs.crops.dtype == np.uint8
    assert cs.y.tolist() == truth["class"].map({"live": 0, "dead": 1}).tolist()

    # independent reference for one field: the uint16 brightfield plane rescaled by its own
    # 1 - 99.8 percentiles to 0-255 (what the engine does), then the box cut with margin 0.25
    pl = open_plate(plate)
    assert pl.dtype == np.uint16 and pl.channels[0] == "Brightfield"
    raw = pl.field("B03", 1).values[0, 0, 0].astype(np.float64)
    lo, hi = np.percentile(raw, [1, 99.8])
    assert hi > 1000  # real 16-bit values: a 0-65535 -> 0-255 mapping would crush them
    ref_plane = np.clip((raw - lo) / (hi - lo) * 255, 0, 255)[:, :, None]
    rows = np.flatnonzero(((truth["well"] == "B03") & (truth["field"] == 1)).to_numpy())
    assert len(rows) > 10
    for i in rows:
        box = truth.loc[i, ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(float)
        ref = crop_box(ref_plane, box, 48, 0.25)
        assert np.abs(cs.crops[i].astype(float) - ref).max() <= 0.51
    # crops use the 0-255 range (rescaled per field, not divided by 257)
    assert cs.crops.max() == 255 and np.percentile(cs.crops, 50) > 20

    # an RGB brightfield model (red/green/blue roles) gets the grey plane replicated
    rgb = truth_cropset(table.head(5), plate, ["live", "dead"], ["red", "green", "blue"],
                        input_modes("livedead", ["red", "green", "blue"]), 48, 0.25)
    assert rgb.crops.shape == (5, 48, 48, 3)
    assert (rgb.crops == cs.crops[:5]).all()


def test_train_and_evaluate_from_truth(sim: tuple[Path, Path], tmp_path: Path) -> None:
    from hcs.cli import app

    sim_dir, plate = sim
    out = tmp_path / "m"
    runner = CliRunner()
    r = runner.invoke(app, [
        "train", "classifier", "--truth", str(sim_dir), "--plate", str(plate), "--out", str(out),
        "--assay", "livedead", "--arch", "test_resnet", "--crop-size", "32", "--epochs", "2",
        "--batch-size", "32", "--n-boot", "50", "--threads", "1", "--seed", "0",
    ])
    assert r.exit_code == 0, r.output
    truth = pd.read_parquet(sim_dir / "truth" / "cells.parquet")
    assert f"{len(truth)} boxes from 8 images" in r.output
    fields = {f"{w}/{f}" for w, f in zip(truth["well"], truth["field"], strict=True)}
    split = json.loads((out / "split.json").read_text())
    parts = [set(v) for v in split.values()]
    assert sum(len(p) for p in parts) == len(fields) == 8  # every field in exactly one part
    assert set().union(*parts) == fields
    assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1:])

    import yaml

    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["channels"][0]["name"] == "brightfield" and card["in_chans"] == 1
    assert card["training"]["data"]["plate"] == plate.name

    # evaluation on the held-out fields cuts the same crops: same metrics as the card's
    r = runner.invoke(app, ["evaluate", "classifier", "--model", str(out), "--truth", str(sim_dir),
                            "--split", str(out / "split.json"), "--part", "test", "--json",
                            "--n-boot", "50", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert {"n", "auc", "balanced_accuracy", "balanced_accuracy_ci", "per_class",
            "confusion"} <= set(m)
    test_rows = truth[[f"{w}/{f}" in split["test"]
                       for w, f in zip(truth["well"], truth["field"], strict=True)]]
    assert m["n"] == len(test_rows)
    assert np.asarray(m["confusion"]).sum(axis=1).tolist() == [
        int((test_rows["class"] == c).sum()) for c in m["classes"]]
    held = card["metrics"]["held_out_test"]
    assert m["auc"] == pytest.approx(held["auc"], abs=1e-9)
    assert m["balanced_accuracy"] == pytest.approx(held["balanced_accuracy"], abs=1e-9)


def test_truth_source_errors(sim: tuple[Path, Path], tmp_path: Path) -> None:
    from hcs.cli import app
    from hcs.train.truth import find_plate, read_truth, truth_cropset

    sim_dir, plate = sim
    with pytest.raises(InputError, match="no truth/cells.parquet"):
        read_truth(tmp_path)
    (tmp_path / "lone").mkdir()
    with pytest.raises(InputError, match="give --plate"):
        find_plate(tmp_path / "lone")
    table = read_truth(sim_dir)
    bad = table.head(3).assign(well="H12")
    with pytest.raises(InputError, match="well H12 field 0 of the truth is not in the plate"):
        truth_cropset(bad, plate, ["live", "dead"], ["brightfield"], ["none"], 32, 0.25)
    with pytest.raises(InputError, match="not model classes"):
        truth_cropset(table, plate, ["a", "b"], ["brightfield"], ["none"], 32, 0.25)
    with pytest.raises(InputError, match="no such plate channel"):
        truth_cropset(table.head(2), plate, ["live", "dead"], ["brightfield"], ["none"], 32, 0.25,
                      channel_map={"brightfield": "GFP"})
    r = CliRunner().invoke(app, ["train", "classifier", "--truth", str(sim_dir), "--voc",
                                 str(tmp_path), "--out", str(tmp_path / "m")])
    assert r.exit_code != 0 and "exactly one data source" in r.output
    r = CliRunner().invoke(app, ["train", "classifier", "--truth", str(sim_dir), "--out",
                                 str(tmp_path / "m"), "--channel-map", "brightfield"])
    assert r.exit_code != 0 and "--channel-map: expected ROLE=CHANNEL" in r.output
    assert not (tmp_path / "m").exists()


def test_detected_boxes_are_the_engines_detections_labelled_by_their_object(
        sim: tuple[Path, Path], tmp_path: Path) -> None:
    """--truth-boxes detected: the engine's own detector, each detection labelled by the truth
    object it lies in; livedead has no extra-nucleus class, so every detection keeps it."""
    from hcs.cli import app
    from hcs.detect import detect
    from hcs.engine.processor import nucleus_channel_index
    from hcs.io.omezarr import open_plate
    from hcs.train.detected import detected_truth

    sim_dir, plate = sim
    truth = pd.read_parquet(sim_dir / "truth" / "cells.parquet")
    table = detected_truth(sim_dir, plate, "livedead")
    pl = open_plate(plate)
    nuc = nucleus_channel_index(tuple(pl.channels), None)
    assert pl.channels[nuc].upper().startswith("HOECHST")
    planes = np.asarray(pl.field("B02", 0).values[0, nuc]).max(axis=0)
    det = detect(planes, pixel_size_um=float(pl.pixel_size_um[1]))
    mine = table[(table.well == "B02") & (table.field == 0)]
    # same boxes as the engine's detector (minus the few inside no truth box)
    assert len(det) - 5 <= len(mine) <= len(det) and len(mine) > 20
    assert {tuple(b) for b in mine[["x0", "y0", "x1", "y1"]].to_numpy()} <= {
        tuple(b) for b in det.boxes.astype(float)}
    # every detection's centre lies in its object's box, and it carries that object's class
    obj = truth.set_index(["well", "field", "cell_id"])
    for r in table.itertuples():
        o = obj.loc[(r.well, r.field, r.object_id)]
        cx, cy = (r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2
        assert o.bbox_x0 - 1 <= cx <= o.bbox_x1 + 1 and o.bbox_y0 - 1 <= cy <= o.bbox_y1 + 1
        assert r.label == r.object_class == o["class"]
    # one primary detection per matched object
    prim = table[table.primary]
    assert not prim.duplicated(["well", "field", "object_id"]).any()
    assert len(prim) == len(table.drop_duplicates(["well", "field", "object_id"]))
    assert len(prim) >= 0.9 * len(truth)

    out = tmp_path / "m"
    r = CliRunner().invoke(app, [
        "train", "classifier", "--truth", str(sim_dir), "--truth-boxes", "detected", "--out",
        str(out), "--assay", "livedead", "--arch", "test_resnet", "--crop-size", "32",
        "--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--n-boot", "20",
        "--threads", "1", "--natural-sampling"])
    assert r.exit_code == 0, r.output
    assert f"{len(table)} boxes from 8 images" in r.output
    import yaml

    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["training"]["data"]["boxes"].startswith("detected")
    assert card["training"]["settings"]["weighted_sampling"] is False
    assert card["training"]["settings"]["max_steps"] == 2
    r = CliRunner().invoke(app, ["train", "classifier", "--voc", str(tmp_path), "--truth-boxes",
                                 "detected", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "needs --truth" in r.output
