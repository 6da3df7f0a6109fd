"""Issue 17, "How it is shown": the annotator simulated from truth, through the labelling
page's own HTTP calls.

A simulated mitosis plate (12 wells, DNA stain), detected and measured by ``hcs run``; the wells
are split into a training half and a held-out half (each with both conditions). ``hcs annotate``
serves cells of the training half; a simulated annotator reads ``GET /api/state`` and answers
every served cell with ``POST /api/label`` (its truth class, mitotic or not, from
:func:`hcs.train.own.truth_labels`; a cell in no truth object is skipped, as a person skips
debris). Both kinds are trained on those labels (``hcs.train.own.train_on_labels``, DNA only)
and scored on every truth-labelled cell of the held-out wells, cut and classified as ``hcs run``
does; the reference is a model trained on all the truth labels of the training half. A second
round of 100 cells, ``--strategy uncertain --model ROUND1`` (each kind with its own round-1
model), is compared with a second round of 100 ``spread`` cells. Two annotator seeds.

The measured figures are in docs/classification.md ("How well do 150 labels do?").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_annotate import Server
from test_train_labels import invoke

pytestmark = pytest.mark.slow

ROWS = {"B": "drug", "C": "dmso"}  # drug: 50% mitotic; dmso: 30%
COLS = range(2, 8)
TRAIN = [f"{r}{c:02d}" for r in ROWS for c in COLS if c % 2 == 0]
HELD = [f"{r}{c:02d}" for r in ROWS for c in COLS if c % 2 == 1]
CLASSES = "non_mitotic,mitotic"
DNA = {"nucleus": "HOECHST 33342"}
SEEDS = (0, 1)
KINDS = ("features", "cnn")


def _layout() -> str:
    stages = ("prophase", "early_prometaphase", "prometaphase_metaphase",
              "anaphase_telophase_cytokinesis")
    head = "well,condition,role,sim_density,sim_freq_non_mitotic," + ",".join(
        f"sim_freq_{s}" for s in stages)
    rows = [head]
    for r, cond in ROWS.items():
        non = 0.5 if cond == "drug" else 0.7
        for c in COLS:
            rows.append(f"{r}{c:02d},{cond},sample,2500,{non}," + ",".join(
                [f"{(1 - non) / 4:g}"] * 4))
    return "\n".join(rows) + "\n"


def _binary(labels: pd.DataFrame) -> pd.DataFrame:
    return labels.assign(label=labels["label"].where(labels["label"] == "non_mitotic",
                                                     "mitotic"))


@pytest.fixture(scope="module")
def plate(tmp_path_factory, scheduler) -> dict[str, object]:
    """The plate, a run of each half (detection + basic measurements) and their truth labels."""
    from hcs.synth import simulate_plate
    from hcs.train.own import truth_labels

    root = tmp_path_factory.mktemp("figure")
    (root / "layout.csv").write_text(_layout())
    simulate_plate(root / "sim", root / "layout.csv", "mitosis", fields=2, size=320, seed=0,
                   progress=False, workers=1)
    invoke("convert", root / "sim", root / "plate.ome.zarr")
    out: dict[str, object] = {"root": root}
    for half, wells in (("train", TRAIN), ("held", HELD)):
        run = root / f"run_{half}"
        invoke("run", root / "plate.ome.zarr", "--out", run, "--wells", ",".join(wells),
               "--scheduler", scheduler, "--no-labels", "-q")
        out[half] = run
        out[f"truth_{half}"] = _binary(truth_labels(root / "sim", run))
    return out


def _annotate(plate: dict, ann: Path, *options: str) -> int:
    """One round of ``hcs annotate`` on the training half, every served cell answered through
    the page's HTTP calls with its truth class (skipped: cells in no truth object). Returns the
    number of cells served in the round."""
    truth = plate["truth_train"]
    answer = {f"{w}_f{f}_c{c}": lab for w, f, c, lab in
              truth[["well", "field", "cell_id", "label"]].itertuples(index=False)}
    srv = Server(plate["train"], ann, "--classes", CLASSES, "--channels",
                 "nucleus=HOECHST 33342", *options)
    try:
        status, body = srv.request("GET", "/api/state")
        assert status == 200
        state = json.loads(body)
        assert state["classes"] == CLASSES.split(",")
        done = set(state["labels"]) | set(state["skipped"])
        served = [c["cell"] for c in state["cells"] if c["cell"] not in done]
        for cell in served:
            lab = answer.get(cell)
            assert srv.label(cell, lab, skip=lab is None) == 200
    finally:
        srv.kill()
    return len(served)


def _held_out_auc(plate: dict, model: Path) -> float:
    """AUC (mitotic) of ``model`` on the truth-labelled cells of the held-out wells, from the
    cells' measurements (features) or their crops (cnn), as ``hcs run`` computes them."""
    from sklearn.metrics import roc_auc_score

    from hcs.annotate.cells import CropSpec, cell_crops, read_run_cells
    from hcs.classify.features import is_features_folder, load_features_model
    from hcs.classify.infer import predict_proba
    from hcs.classify.models import load_model

    key = ["well", "field", "cell_id"]
    cells = plate["truth_held"][key + ["label"]]
    if is_features_folder(model):
        m = load_features_model(model)
        cols = m.card.columns({"nucleus": DNA["nucleus"]})
        x = cells.merge(read_run_cells(plate["held"], cols), on=key, how="left")[cols]
        p = m.predict_proba(x.to_numpy(np.float64))
        classes = m.card.classes
    else:
        m = load_model(model)
        crops = cell_crops(plate["held"], cells[key], CropSpec.from_card(m.card), DNA)
        p = predict_proba(m, crops, device="cpu")
        classes = m.card.classes
    return float(roc_auc_score(cells["label"] == "mitotic", p[:, classes.index("mitotic")]))


def _train(ann: Path, plate: dict, kind: str, out: Path, seed: int) -> Path:
    from hcs.train.own import train_on_labels

    model, _ = train_on_labels(ann / "labels.csv", plate["train"], out, kind, dict(DNA),
                               folds=3, seed=seed, n_boot=20, fractions=(1.0,),
                               log=lambda s: None)
    return model


@pytest.fixture(scope="module")
def figures(plate) -> dict[str, dict]:
    """Held-out AUC per kind: ``truth`` (all truth labels of the training half) and, per seed,
    ``r1`` (150 served), ``uncertain`` (+100 uncertain), ``spread`` (+100 spread)."""
    root: Path = plate["root"]  # type: ignore[assignment]
    all_truth = root / "ann_truth"
    all_truth.mkdir()
    plate["truth_train"].to_csv(all_truth / "labels.csv", index=False)
    fig: dict[str, dict] = {k: {"truth": _held_out_auc(plate, _train(
        all_truth, plate, k, root / f"truth_{k}", 0)), "n_truth": len(plate["truth_train"])}
        for k in KINDS}
    for seed in SEEDS:
        r1 = root / f"ann{seed}"
        assert _annotate(plate, r1, "--n", "150", "--seed", str(seed)) == 150
        n1 = len(pd.read_csv(r1 / "labels.csv"))
        for k in KINDS:
            m1 = _train(r1, plate, k, root / f"m{seed}_{k}_r1", seed)
            row = {"n_r1": n1, "r1": _held_out_auc(plate, m1)}
            for strategy in ("uncertain", "spread"):
                ann = root / f"ann{seed}_{k}_{strategy}"
                shutil.copytree(r1, ann)
                extra = ("--model", str(m1)) if strategy == "uncertain" else ()
                assert _annotate(plate, ann, "--n", "100", "--strategy", strategy,
                                 *extra) == 100
                row[f"n_{strategy}"] = len(pd.read_csv(ann / "labels.csv"))
                row[strategy] = _held_out_auc(plate, _train(
                    ann, plate, k, root / f"m{seed}_{k}_{strategy}", seed))
            fig[k][seed] = row
    (root / "figures.json").write_text(json.dumps(fig, indent=1))
    print(json.dumps(fig, indent=1))
    return fig


@pytest.mark.parametrize("kind", KINDS)
def test_150_labels_within_005_of_all_truth(figures, kind) -> None:
    """150 served cells (a few skipped) give a held-out AUC within 0.05 of a model trained on
    all the truth labels of the same wells (several times as many), for every seed."""
    f = figures[kind]
    assert f["n_truth"] > 4 * 150
    for seed in SEEDS:
        assert 130 <= f[seed]["n_r1"] <= 150
        assert f[seed]["r1"] > f["truth"] - 0.05, (seed, f)
        assert f[seed]["r1"] > 0.93  # the bar for DNA-only mitosis crops


@pytest.mark.parametrize("kind", KINDS)
def test_second_round_uncertain_vs_spread(figures, kind) -> None:
    """A second round of 100 cells, uncertain or spread: with ~235 labels either way the model
    stays within 0.05 of all the truth. The uncertain round serves more cells in no truth object
    (skipped), and on this plate it does not beat a spread round of the same size (measured:
    docs/classification.md); for the cnn, 100 more labels of either kind raise the held-out AUC
    (mean over seeds; measured +0.007 uncertain, +0.007 spread)."""
    f = figures[kind]
    for seed in SEEDS:
        for strategy in ("uncertain", "spread"):
            assert 200 <= f[seed][f"n_{strategy}"] <= 250
            assert f[seed][strategy] > f["truth"] - 0.05, (seed, strategy, f)
    mean = {k: np.mean([f[s][k] for s in SEEDS]) for k in ("r1", "uncertain", "spread")}
    if kind == "cnn":
        assert mean["uncertain"] > mean["r1"] and mean["spread"] > mean["r1"], mean
    assert abs(mean["uncertain"] - mean["spread"]) < 0.01, mean  # no strategy wins by more
