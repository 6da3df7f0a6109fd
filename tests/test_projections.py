"""Mitosis on z-stacks: x/y/z projection crops, level training labels, projection ensembles in
training, evaluation and the engine (papers/004: three views, least entropy, mitotic then stage).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hcs.assays import get_assay
from hcs.assays.rules import apply_rule, least_entropy
from hcs.classify.ensemble import load_ensemble, read_ensemble
from hcs.classify.projections import compose_stack, view_crop, view_crops, z_scale
from hcs.engine.processor import compose_field, field_crops
from hcs.errors import InputError
from hcs.synth.fixtures import save_random_ensemble, save_random_model

STAGES = ["prophase", "early_prometaphase", "prometaphase_metaphase",
          "anaphase_telophase_cytokinesis"]


# --- projection crops -------------------------------------------------------------------------

def _ellipsoid(shape: tuple[int, int, int], c: tuple[float, float, float],
               r: tuple[float, float, float]) -> np.ndarray:
    z, y, x = np.indices(shape, dtype=float)
    return (((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2
            + ((x - c[2]) / r[2]) ** 2 <= 1).astype(np.float32)


def test_side_views_show_the_true_shape_of_a_3d_object():
    # a flat disc (interphase-like) and a sphere (mitotic-like) of the same footprint, 1 um
    # planes at 0.5 um pixels: from above both are discs of radius 10 px; from the side the
    # disc is 2 planes = 4 px tall (one z plane is 2 pixels), the sphere 20 px.
    shape = (15, 40, 80)
    disc = _ellipsoid(shape, (7, 20, 20), (1.4, 10, 10))
    ball = _ellipsoid(shape, (7, 20, 60), (5.5, 10, 10))
    stack = ((disc + ball) * 255)[..., None]
    zs = z_scale(1.0, 0.5)
    size = 40  # window of a 20 px box at margin 0.5 is 40 px: no resampling in the crop
    for box, want_h in (((10, 10, 30, 30), 4), ((50, 10, 70, 30), 22)):
        top = view_crop(stack, box, size, "z", margin=0.5)
        assert int((top[..., 0] > 127).sum(axis=0).max()) == 19 or int(
            (top[..., 0] > 127).sum(axis=0).max()) == 21
        for view in ("y", "x"):
            side = view_crop(stack, box, size, view, margin=0.5, zscale=zs)
            tall = int((side[..., 0] > 127).sum(axis=0).max())
            assert abs(tall - want_h) <= 2, (box, view, tall)
            wide = int((side[..., 0] > 127).sum(axis=1).max())
            assert abs(wide - 20) <= 2  # the footprint: as wide as the top view


def test_z_view_of_the_composed_stack_is_the_2d_path():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, size=(2, 6, 50, 60)).astype(np.uint16)
    boxes = np.array([[3.0, 4.0, 20.0, 18.0], [40.0, 30.0, 60.0, 50.0]])
    flat = field_crops(compose_field(image.max(axis=1), [1, 0], ["percentile"] * 2), boxes,
                       24, 0.5)
    stack = compose_stack(image, [1, 0], ["percentile"] * 2)
    views = view_crops(stack, boxes, 24, ["z", "y", "x"], 0.5, zscale=1.7)
    assert views.shape == (2, 3, 24, 24, 2)
    np.testing.assert_allclose(views[:, 0], flat, atol=1e-3)
    # a 24-plane stack, a 24 px window, 1 row per plane: the side views are exactly the
    # window's max over y (rows z, columns x) and over x (rows z, columns y)
    deep = compose_stack(rng.integers(0, 4000, size=(1, 24, 50, 60)).astype(np.uint16), [0],
                         ["percentile"])
    box = (10.0, 12.0, 34.0, 36.0)
    np.testing.assert_allclose(view_crop(deep, box, 24, "y"), deep[:, 12:36, 10:34].max(axis=1),
                               atol=1e-4)
    np.testing.assert_allclose(view_crop(deep, box, 24, "x"), deep[:, 12:36, 10:34].max(axis=2),
                               atol=1e-4)


def test_view_crop_bad_input():
    stack = np.zeros((4, 20, 20, 1), np.float32)
    with pytest.raises(InputError, match="outside"):
        view_crop(stack, (30, 30, 40, 40), 8, "y")
    with pytest.raises(InputError, match="unknown view"):
        view_crop(stack, (0, 0, 4, 4), 8, "w")
    with pytest.raises(InputError, match=r"\(z, y, x, c\)"):
        view_crop(stack[0], (0, 0, 4, 4), 8, "x")
    # a window past the field border is padded, never shifted
    c = view_crop(np.ones((4, 20, 20, 1), np.float32), (0, 0, 4, 4), 8, "x", margin=1.0)
    assert c.shape == (8, 8, 1) and float(c[:, 0].max()) == 0.0
    assert float(c.max()) == pytest.approx(1.0, abs=1e-3)


# --- the two-stage rule and level labels ------------------------------------------------------

def test_hierarchical_rule_and_least_entropy_by_hand():
    classes = get_assay("mitosis").classes
    # P(mitotic) = 0.55 >= 0.5 -> its top stage although non_mitotic is the largest single class
    p = np.array([[0.45, 0.05, 0.10, 0.30, 0.10], [0.55, 0.05, 0.05, 0.30, 0.05]])
    assert apply_rule(p, classes, "mitosis").tolist() == ["prometaphase_metaphase",
                                                          "non_mitotic"]
    # three views of two cells; the z view is unsure about cell 0, the x view sure
    z = np.array([[0.5, 0.5], [0.99, 0.01]])
    y = np.array([[0.3, 0.7], [0.6, 0.4]])
    x = np.array([[0.05, 0.95], [0.7, 0.3]])
    best, view = least_entropy([z, y, x])
    assert view.tolist() == [2, 0] and best[:, 1].tolist() == [0.95, 0.01]


def test_level_labels_and_bad_level():
    a = get_assay("mitosis")
    got = a.level_labels("mitotic", ["non_mitotic", *STAGES]).tolist()
    assert got == ["non_mitotic"] + ["mitotic"] * 4
    assert a.level_labels("stage", ["non_mitotic", *STAGES]).tolist() == ["", *STAGES]
    with pytest.raises(InputError, match="no level 'phase'"):
        a.level_labels("phase", ["prophase"])
    with pytest.raises(InputError, match="levels: none"):
        get_assay("cic").level_labels("mitotic", ["partial"])


# --- ensemble folders -------------------------------------------------------------------------

def test_ensemble_combines_levels_by_least_entropy(tmp_path):
    ens_dir = save_random_ensemble(tmp_path / "ens", ["nucleus"], crop_size=16)
    ens = load_ensemble(ens_dir)
    assert ens.card.levels == ["mitotic", "stage"]
    assert ens.card.views(16) == ["z", "y", "x"] and ens.card.views(1) == ["z"]
    rng = np.random.default_rng(1)
    crops = rng.uniform(0, 255, size=(7, 3, 16, 16, 1)).astype(np.float32)
    proba, win = ens.predict(crops, ["z", "y", "x"], device="cpu")
    assert proba.shape == (7, 5) and win.shape == (7, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # reference: each member on its own view, least entropy per level, then the product rule
    from hcs.classify.infer import predict_proba

    ref = {}
    for level in ("mitotic", "stage"):
        outs = [predict_proba(ens.models[level][v], crops[:, j], device="cpu")
                for j, v in enumerate("zyx")]
        ref[level], w = least_entropy(outs)
        np.testing.assert_array_equal(win[:, ["mitotic", "stage"].index(level)], w)
    np.testing.assert_allclose(proba[:, 0], ref["mitotic"][:, 0], atol=1e-6)
    np.testing.assert_allclose(proba[:, 1:], ref["mitotic"][:, 1:2] * ref["stage"], atol=1e-6)
    # the z view alone on a 2-D plate: the z members only
    pz, wz = ens.predict(crops[:, :1], ["z"], device="cpu")
    assert (wz == 0).all()
    np.testing.assert_allclose(pz[:, 0], predict_proba(ens.models["mitotic"]["z"], crops[:, 0],
                                                       device="cpu")[:, 0], atol=1e-6)


def test_ensemble_folder_errors(tmp_path):
    ens = save_random_ensemble(tmp_path / "e", ["nucleus"], crop_size=16)
    spec = yaml.safe_load((ens / "ensemble.yaml").read_text())

    def broken(change) -> str:
        d = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        shutil.copytree(ens, d)
        s = json.loads(json.dumps(spec))
        change(s, d)
        (d / "ensemble.yaml").write_text(yaml.safe_dump(s))
        with pytest.raises(InputError) as exc:
            read_ensemble(d)
        return str(exc.value)

    assert "trained on the y view, not x" in broken(
        lambda s, d: s["levels"]["stage"].update(x="stage-y"))
    assert "expected mitosis classes" in broken(
        lambda s, d: s["levels"]["stage"].update(z="mitotic-z"))
    assert "outside the ensemble folder" in broken(
        lambda s, d: s["levels"]["stage"].update(z="../e/stage-z"))
    assert "needs every level" in broken(lambda s, d: s["levels"].pop("stage"))
    assert "no z-view member" in broken(lambda s, d: s["levels"]["stage"].pop("z"))
    msg = broken(lambda s, d: save_random_model(d / "stage-x", "mitosis", ["nucleus"],
                                                crop_size=20, level="stage", view="x"))
    assert "crop size" in msg
    # commands that take one model say so for an ensemble
    from typer.testing import CliRunner

    from hcs.cli import app

    r = CliRunner().invoke(app, ["explain", "classifier", "--model", str(ens), "--folders",
                                 str(tmp_path), "--out", str(tmp_path / "cam")])
    assert r.exit_code == 2 and "is an ensemble: explain one of its members" in r.output
    r = CliRunner().invoke(app, ["evaluate", "classifier", "--model", str(ens), "--folders",
                                 str(tmp_path)])
    assert r.exit_code == 2 and "give --truth" in r.output
    # a member whose weights do not match its card fails when loaded
    d = tmp_path / "tampered"
    shutil.copytree(ens, d)
    (d / "stage-y" / "model.safetensors").write_bytes(
        (ens / "stage-z" / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match="sha256"):
        load_ensemble(d)


# --- on a simulated z-stack plate: training, evaluation, engine -------------------------------

@pytest.fixture(scope="module")
def zplate(tmp_path_factory) -> Path:
    """A small simulated mitosis z-stack screen (8 planes) and its converted plate."""
    from typer.testing import CliRunner

    from hcs.cli import app
    from hcs.synth import simulate_plate

    root = tmp_path_factory.mktemp("zstack")
    layout = root / "layout.csv"
    layout.write_text(
        "well,condition,construct,replicate,role,sim_density,sim_freq_non_mitotic,"
        "sim_freq_prophase,sim_freq_early_prometaphase,sim_freq_prometaphase_metaphase,"
        "sim_freq_anaphase_telophase_cytokinesis\n"
        "B02,DMSO,DMSO,1,negative_control,900,0.6,0.1,0.1,0.1,0.1\n"
        "B03,DMSO,DMSO,2,negative_control,900,0.6,0.1,0.1,0.1,0.1\n")
    sim = root / "sim"
    simulate_plate(sim, layout, "mitosis", fields=2, size=256, seed=3, z_planes=8,
                   z_step_um=1.0, progress=False, workers=1, plate_format=96)
    r = CliRunner().invoke(app, ["convert", str(sim / "export"), str(sim / "plate.ome.zarr")])
    assert r.exit_code == 0, r.output
    return sim


def test_train_side_view_level_model_and_evaluate(zplate, tmp_path):
    from hcs.train.loop import TrainConfig
    from hcs.train.pipeline import evaluate_model, train_model

    cfg = TrainConfig(architecture="resnet10t", epochs=1, batch_size=16, max_steps=2,
                      threads=1, seed=0)
    out, _ = train_model(tmp_path / "stage-y", truth=zplate, assay="mitosis", config=cfg,
                         crop_size=24, margin=0.25, level="stage", view="y",
                         test_fraction=0.25, val_fraction=0.0, n_boot=10, log=lambda s: None)
    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["level"] == "stage" and card["crop"]["view"] == "y"
    assert card["classes"] == STAGES
    truth = pd.read_parquet(zplate / "truth" / "cells.parquet")
    n_mitotic = int((truth["class"] != "non_mitotic").sum())
    crops = card["training"]["split"]["crops"]
    assert sum(sum(v.values()) for v in crops.values()) == n_mitotic  # stage level: mitotic only
    m, cs, proba = evaluate_model(out, truth=zplate, n_boot=10, device="cpu")
    assert m["n"] == n_mitotic and proba.shape == (n_mitotic, 4)
    # side views need a z-stack; a level model cannot be scored with the assay's 5-class rule
    with pytest.raises(InputError, match="side views"):
        train_model(tmp_path / "x", folders=tmp_path, assay="mitosis", view="x")
    with pytest.raises(InputError, match="level model"):
        evaluate_model(out, truth=zplate, n_boot=0, device="cpu", assay_rule=True)


def test_ensemble_on_a_zstack_plate_engine_and_evaluation(zplate, tmp_path, scheduler):
    from hcs.engine import process_field, run_plate
    from hcs.engine.processor import EngineParams, get_processor
    from hcs.train.pipeline import evaluate_model

    ens = save_random_ensemble(tmp_path / "ens", ["nucleus"], crop_size=24)
    plate = zplate / "plate.ome.zarr"
    s = run_plate(plate, "mitosis", ens, tmp_path / "run", scheduler=scheduler, progress=False,
                  batch_size=16)
    assert s.ok
    cells = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "run" / "cells")
                                                           .rglob("*.parquet"))])
    assert {"view_mitotic", "view_stage"} <= set(cells.columns)
    assert set(cells["view_mitotic"]) | set(cells["view_stage"]) <= {"z", "y", "x"}
    p = cells[[f"p_{c}" for c in get_assay("mitosis").classes]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    want = apply_rule(p, get_assay("mitosis").classes, "mitosis")
    assert (cells["label"].to_numpy() == want).all()
    # the same cells by hand: crops of every view, each member, least entropy, product rule
    params = EngineParams(plate=str(plate), assay="mitosis", model=str(ens), batch_size=16,
                          device="cpu")
    proc = get_processor(params)
    from hcs.engine.tasks import read_field

    image, meta = read_field(params, "B02", 0)
    prep = proc.prepare(image, meta)
    crops = proc.crops(prep, 0, prep.n)
    assert crops.shape == (prep.n, 3, 24, 24, 1)
    proba, win = load_ensemble(ens).predict(crops, ["z", "y", "x"], device="cpu")
    first = cells[(cells["well"] == "B02") & (cells["field"] == 0)].sort_values("cell_id")
    np.testing.assert_allclose(first[[f"p_{c}" for c in get_assay("mitosis").classes]]
                               .to_numpy(), proba, atol=1e-5)
    assert first["view_mitotic"].tolist() == np.asarray(["z", "y", "x"])[win[:, 0]].tolist()
    # evaluation scores the same ensemble on the truth boxes, and on its z view alone
    m, _, _ = evaluate_model(ens, truth=zplate, n_boot=10, device="cpu")
    assert m["views"] == ["z", "y", "x"] and m["n"] == len(pd.read_parquet(
        zplate / "truth" / "cells.parquet"))
    assert sum(m["view_wins"]["mitotic"].values()) == m["n"]
    mz, _, _ = evaluate_model(ens, truth=zplate, n_boot=10, device="cpu", views=["z"])
    assert mz["view_wins"]["mitotic"] == {"z": m["n"]}
    out = process_field(params, str(tmp_path / "one"), "B03", 1)
    assert out["n_cells"] > 0


def test_ensemble_on_a_2d_plate_uses_its_z_members_only(tmp_path):
    """One plane: no side views; the z members alone decide, view columns all ``z``."""
    from hcs.classify.infer import predict_proba
    from hcs.engine import process_field
    from hcs.engine.processor import EngineParams, get_processor
    from hcs.engine.tasks import read_field
    from hcs.synth.fixtures import write_disc_plate

    plate, truth = write_disc_plate(tmp_path / "p", ["B02"], fields=1, size=128, nuclei=5)
    ens = save_random_ensemble(tmp_path / "ens", ["nucleus"], crop_size=16)
    params = EngineParams(plate=str(plate), assay="mitosis", model=str(ens), device="cpu")
    out = process_field(params, str(tmp_path / "run"), "B02", 0)
    cells = pd.read_parquet(tmp_path / "run" / "cells" / "B02" / "0.parquet")
    assert out["n_cells"] == len(cells) == len(truth)
    assert set(cells["view_mitotic"]) == {"z"} and set(cells["view_stage"]) == {"z"}
    proc = get_processor(params)
    image, meta = read_field(params, "B02", 0)
    prep = proc.prepare(image, meta)
    crops = proc.crops(prep, 0, prep.n)
    assert crops.shape[1] == 1  # the z view only
    e = load_ensemble(ens)
    pm = predict_proba(e.models["mitotic"]["z"], crops[:, 0], device="cpu")
    np.testing.assert_allclose(cells.sort_values("cell_id")["p_non_mitotic"], pm[:, 0],
                               atol=1e-5)


def test_anaphase_pairs_are_counted_once():
    """Two chromatin masses of one anaphase (mutual nearest, <= 15 um) count as one cell."""
    from hcs.aggregate import counts_from_cells
    from hcs.assays.rules import pair_partners
    from hcs.engine.processor import pair_column

    ana = "anaphase_telophase_cytokinesis"
    a = get_assay("mitosis")
    assert a.paired_class == ana and a.pair_max_um == 15.0
    # a pair 10 um apart; a third anaphase mass 12 um from the second but the first is nearer
    # to it; a lone one 40 um away; a metaphase cell between the pair does not break it
    xy = np.array([[0, 0], [10, 0], [22, 0], [62, 0], [5, 0]], float)
    lab = [ana, ana, ana, ana, "prometaphase_metaphase"]
    assert pair_partners(lab, xy, ana, 15.0).tolist() == [-1, 0, -1, -1, -1]
    assert pair_partners(lab, xy, ana, 9.0).tolist() == [-1] * 5
    frame = pd.DataFrame({"cell_id": [7, 8, 9, 10, 11], "x": xy[:, 0] / 0.5, "y": xy[:, 1]})
    pair_of = pair_column(frame, lab, 0.5, ana, 15.0)
    assert pair_of.tolist() == [-1, 7, -1, -1, -1]
    cells = pd.DataFrame({"well": "B02", "label": lab, "pair_of": pair_of})
    c = counts_from_cells(cells, "mitosis").iloc[0]
    assert c["n_detected"] == 4 and c[f"n_{ana}"] == 3 and c["n_prometaphase_metaphase"] == 1
