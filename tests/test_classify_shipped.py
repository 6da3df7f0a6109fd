"""The shipped live/dead model scores what its card says on its held-out LDC images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

MODEL = Path(__file__).resolve().parents[1] / "models" / "livedead-ldc"


def test_shipped_livedead_model_on_held_out_images(livedead_ldc: Path) -> None:
    from hcs.classify.models import load_model
    from hcs.train.pipeline import evaluate_model

    split = json.loads((MODEL / "split.json").read_text())
    assert not set(split["test"]) & set(split["train"])
    assert not set(split["test"]) & set(split["val"])
    m, cs, proba = evaluate_model(MODEL, voc=livedead_ldc, split_file=MODEL / "split.json",
                                  part="test", device="cpu", n_boot=200)
    assert set(cs.table["source"]) <= set(split["test"])
    assert m["n"] > 1000
    assert m["auc"] >= 0.95
    assert m["balanced_accuracy"] >= 0.88
    # the card's held-out figures are what evaluation reproduces
    card = load_model(MODEL).card
    held = card.metrics["held_out_test"]
    assert m["n"] == held["n"]
    assert m["auc"] == pytest.approx(held["auc"], abs=1e-4)
    assert m["confusion"] == held["confusion"]
    assert np.allclose(proba.sum(1), 1, atol=1e-5)


def test_explain_cli_writes_grad_cam_overlays_of_the_shipped_model(livedead_ldc: Path,
                                                                   tmp_path: Path) -> None:
    import pandas as pd
    from skimage.io import imread
    from typer.testing import CliRunner

    from hcs.classify.crops import crops_from_table
    from hcs.classify.explain import grad_cam
    from hcs.classify.infer import predict_proba
    from hcs.classify.models import load_model
    from hcs.cli import app
    from hcs.io.annotations import read_voc

    split = json.loads((MODEL / "split.json").read_text())
    voc = tmp_path / "voc"  # a few held-out images (copies in the test's temporary folder)
    voc.mkdir()
    for name in split["test"][:6]:
        for f in livedead_ldc.glob(f"{Path(name).stem}.*"):
            shutil.copy(f, voc / f.name)
    out = tmp_path / "cams"
    r = CliRunner().invoke(app, ["explain", "classifier", "--model", str(MODEL), "--annotations",
                                 str(voc), "--n", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    index = pd.read_csv(out / "index.csv")
    assert len(index) == 4 and sorted(p.name for p in out.glob("*.png")) == sorted(index.file)
    assert set(index.true) == {"live", "dead"}  # spread over the classes
    m = load_model(MODEL)
    c = m.card.crop
    table = read_voc(voc, {"Living Cell": "live", "Dead Cell": "dead"}).reset_index(drop=True)
    crops = crops_from_table(table, c.size, c.margin, c.square, c.pad_mode, channels=1)
    proba = predict_proba(m, crops, device="cpu")
    for row in index.itertuples():
        k = int(row.crop)
        assert row.predicted == m.card.classes[int(np.argmax(proba[k]))]
        assert row.p_predicted == pytest.approx(float(proba[k].max()), abs=1e-5)
        png = imread(out / row.file)
        assert png.shape == (4 * c.size, 4 * (2 * c.size + 1), 3)
        # left panel: the crop itself, enlarged 4x; right panel: the crop under the heat map
        assert np.array_equal(png[::4, : 4 * c.size : 4, 0], crops[k, :, :, 0])
        cam = grad_cam(m, crops[k])
        assert cam.shape == (c.size, c.size) and cam.max() == pytest.approx(1.0)
    r = CliRunner().invoke(app, ["explain", "classifier", "--model", str(MODEL), "--voc",
                                 str(voc), "--out", str(out)])
    assert r.exit_code != 0 and "exists" in r.output


SIM_MODELS = sorted(p.parent.name for p in MODEL.parent.glob("*-sim/model.yaml"))
# held-out AUC floor per model (cancer-sim: `unknown` = no cytoplasmic dye, invisible to a
# label-free model, so its one-vs-rest AUC is at chance and pulls the macro AUC down)
MIN_AUC = {"cic-sim": 0.95, "livedead-sim": 0.99, "mitosis-sim": 0.95, "cancer-sim": 0.75}


@pytest.mark.parametrize("name", SIM_MODELS)
def test_shipped_sim_models_load_and_fit_their_assay(name: str) -> None:
    """Every shipped model loads (sha256 + weights match the card) and is a model of its assay:
    same classes, input channels the assay declares, figures on held-out data in the card."""
    from hcs.assays import get_assay
    from hcs.classify.infer import predict_proba
    from hcs.classify.models import load_model

    m = load_model(MODEL.parent / name)
    card = m.card
    assay = get_assay(card.assay)
    assert tuple(card.classes) == assay.classes
    roles = {c.name for c in assay.channels + assay.optional_channels}
    assert {c.name for c in card.channels} <= roles
    assert (MODEL.parent / name / "README.md").is_file()
    held = card.metrics["held_out_test"]
    assert held["n"] > 1000 and held["auc"] > MIN_AUC.get(name, 0.9)
    # scored on a plate simulated with another seed (crops, or the engine route)
    assert {"held_out_simulated", "engine_route"} & set(card.metrics)
    x = np.random.default_rng(0).integers(0, 255, (3, card.crop.size, card.crop.size,
                                                   card.in_chans), dtype=np.uint8)
    p = predict_proba(m, x, device="cpu")
    assert p.shape == (3, len(card.classes)) and np.allclose(p.sum(1), 1, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "min_auc", "min_bacc"),
                         [("livedead-sim", 0.97, 0.9), ("cic-sim", 0.9, 0.6)])
def test_shipped_sim_model_on_a_fresh_simulated_plate(name: str, min_auc: float,
                                                      min_bacc: float, tmp_path: Path) -> None:
    """A plate simulated with a seed no shipped model saw, scored on the engine's detections."""
    from typer.testing import CliRunner

    from hcs.classify.models import read_card
    from hcs.cli import app
    from hcs.train.pipeline import evaluate_model

    card = read_card(MODEL.parent / name)
    layout = {"cic": MODEL.parents[1] / "plate_layouts" / "arhgap36_truncations.csv",
              "livedead": MODEL.parents[1] / "plate_layouts" / "livedead_dose_series.csv"}
    sim = tmp_path / "sim"
    r = CliRunner().invoke(app, ["simulate", str(sim), "--layout", str(layout[card.assay]),
                                 "--assay", card.assay, "--fields", "1", "--size", "540",
                                 "--wells-per-condition", "3", "--seed", "11", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["convert", str(sim / "export"), str(tmp_path / "sim.ome.zarr")])
    assert r.exit_code == 0, r.output
    m, cs, _ = evaluate_model(MODEL.parent / name, truth=sim, truth_boxes="detected",
                              device="cpu", n_boot=100)
    assert m["n"] > 100
    assert m["auc"] >= min_auc and m["balanced_accuracy"] >= min_bacc
