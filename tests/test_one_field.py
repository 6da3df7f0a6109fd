"""Issue 17 on one real field: label cells of one half of a single field, train a model blind to
a marker, run it, and score the other half against the marker (``hcs evaluate run``).

The field is simulated (live/dead, Hoechst + PI + brightfield): the simulated annotator gives
each detected cell the true class of the object it lies in, and PI marks the dead cells, so
the marker comparison has a known answer. Reference figures are computed here with
scikit-learn on the run's cell tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_checks import one_line_error
from typer.testing import CliRunner

from hcs.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
LAYOUT = ("well,condition,role,sim_density,sim_freq_live,sim_freq_dead\n"
          "B02,drug,sample,900,0.6,0.4\n")


def invoke(*args: object) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def hcs(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcs", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def field(tmp_path_factory, scheduler) -> dict:
    """One well, one 720 px field; detection-only run; truth labels of its left half; a
    features model trained on them on the Hoechst channel only; the model's run."""
    from hcs.annotate.cells import read_run_cells
    from hcs.synth import simulate_plate
    from hcs.train.own import truth_labels

    root = tmp_path_factory.mktemp("onefield")
    (root / "layout.csv").write_text(LAYOUT)
    simulate_plate(root / "sim", root / "layout.csv", "livedead", fields=1, size=720, seed=3,
                   progress=False)
    invoke("convert", root / "sim", root / "plate.ome.zarr")
    invoke("run", root / "plate.ome.zarr", "--out", root / "run", "--scheduler", scheduler,
           "--no-labels", "-q")
    truth = truth_labels(root / "sim", root / "run")
    xy = read_run_cells(root / "run", ["x"])[["well", "field", "cell_id", "x"]]
    truth = truth.merge(xy, on=["well", "field", "cell_id"])
    left = truth[truth["x"] < 360].drop(columns="x")
    right = truth[truth["x"] >= 360].drop(columns="x")
    (root / "ann").mkdir()
    (root / "held").mkdir()
    left.to_csv(root / "ann" / "labels.csv", index=False)
    right.to_csv(root / "held" / "labels.csv", index=False)
    res = hcs("train", "classifier", "--labels", root / "ann" / "labels.csv", "--run",
              root / "run", "--kind", "features", "--channels", "dna=HOECHST 33342",
              "--out", root / "model")
    assert res.returncode == 0, res.stderr
    # no --channels: the role "dna" is no stain name; the card says which channel played it
    invoke("run", root / "plate.ome.zarr", "--model", root / "model", "--out", root / "run2",
           "--scheduler", scheduler, "--no-labels", "-q")
    return {"root": root, "left": left, "right": right, "train_log": res.stderr + res.stdout}


def test_one_field_cross_validated_by_strips(field) -> None:
    """All labels in one field: 5 folds of equal-count strips of the field, each cell in one
    test fold, the strips side by side; figures on every labelled cell."""
    import yaml

    from hcs.annotate.cells import read_run_cells

    card = yaml.safe_load((field["root"] / "model" / "model.yaml").read_text())
    cv = card["metrics"]["cross_validated"]
    assert cv["grouped_by"] == "region" and cv["folds"] == 5
    assert "grouped by region" in field["train_log"]
    n = len(field["left"])
    assert 40 <= n and cv["n"] == n and np.sum(cv["confusion"]) == n
    strips = [g for fold in cv["fold_groups"] for g in fold]
    assert len(strips) == len(set(strips)) == 5
    # the labelled half is 360 px wide and 720 px tall: the strips cut it along y
    axis = "y"
    assert all(s.split()[1] == axis for s in strips), strips
    ranges = [tuple(map(float, s.split()[2].split("-"))) for s in sorted(strips)]
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    v = read_run_cells(field["root"] / "run", [axis]).merge(
        field["left"], on=["well", "field", "cell_id"])[axis]
    assert ranges[0][0] == round(v.min()) and ranges[-1][1] == round(v.max())
    assert cv["auc"] > 0.9, cv["auc"]


def test_field_strips_equal_contiguous_along_the_wider_spread() -> None:
    from hcs.train.own import field_strips

    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 300, 131), rng.uniform(0, 1000, 131)
    g = field_strips(x, y, 5)
    assert all(n.split()[1] == "y" for n in g)  # y spreads more
    names, counts = np.unique(g, return_counts=True)
    assert len(names) == 5 and counts.max() - counts.min() <= 1
    order = np.argsort(y)
    runs = [g[order][0]] + [b for a, b in zip(g[order], g[order][1:], strict=False) if a != b]
    assert len(runs) == 5  # each strip is one run of the cells sorted by y
    assert len(set(field_strips(x, y, 500))) == 131  # never more strips than cells


def test_marker_scores_the_other_half(field) -> None:
    """``hcs evaluate run --marker PI --exclude TRAIN``: the cells of the other half, the run's
    p_dead against PI > the run's Otsu threshold, as scikit-learn computes it."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from hcs.annotate.cells import read_run_cells
    from hcs.readouts import PositiveSpec, choose_threshold

    root = field["root"]
    res = hcs("evaluate", "run", root / "run2", "--marker", "PI", "--positive-class", "dead",
              "--exclude", root / "ann" / "labels.csv", "--json", "--n-boot", "200")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    cells = read_run_cells(root / "run2")
    col = "Nuclei_Intensity_MeanIntensity_PI"
    thr = choose_threshold(cells[col].to_numpy(float), PositiveSpec("PI", "otsu"))
    assert m["threshold"] == pytest.approx(thr)
    key = ["well", "field", "cell_id"]
    rest = cells.merge(field["left"][key].assign(_t=1), on=key, how="left")
    rest = rest[rest["_t"].isna()]
    y = (rest[col].to_numpy(float) > thr).astype(int)
    assert m["n"] == len(rest) and m["n_excluded"] == len(field["left"])
    assert m["n_marker_positive"] == y.sum() and m["positive_classes"] == ["dead"]
    assert m["n_called_positive"] == (rest["label"] == "dead").sum()
    assert m["auc"] == pytest.approx(roc_auc_score(y, rest["p_dead"]))
    called = (rest["label"] == "dead").astype(int)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, called))
    lo, hi = m["auc_ci"]
    assert lo <= m["auc"] <= hi and m["ci_over"] == "cell"
    # PI marks the simulated dead cells; a Hoechst-only model trained on 1/2 field finds them
    assert m["auc"] > 0.85, m["auc"]
    assert m["warning"] is None
    text = hcs("evaluate", "run", root / "run2", "--marker", "PI:gmm", "--positive-class",
               "dead", "--exclude", root / "ann" / "labels.csv", "--n-boot", "50")
    assert text.returncode == 0, text.stderr
    assert "dead against Nuclei_Intensity_MeanIntensity_PI >" in text.stdout
    assert f"({len(field['left'])} excluded)" in text.stdout
    assert "warning" not in text.stderr
    # the wrong class named: the figures are inverted, and said to be
    wrong = hcs("evaluate", "run", root / "run2", "--marker", "PI", "--positive-class", "live",
                "--n-boot", "20")
    assert wrong.returncode == 0, wrong.stderr
    assert "below chance" in wrong.stderr and "is live the class the marker marks?" in wrong.stderr


def test_labels_score_the_other_half(field) -> None:
    """``hcs evaluate run --labels HELD``: the run's probabilities and calls of the held-out
    half against their truth labels."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    from hcs.train.run_scores import score_run

    root = field["root"]
    m = score_run(root / "run2", labels=root / "held" / "labels.csv", n_boot=100)
    cells = pd.read_csv(root / "held" / "labels.csv").merge(
        pd.concat(pd.read_parquet(f) for f in sorted((root / "run2" / "cells").glob("*/*"))),
        on=["well", "field", "cell_id"], suffixes=("_truth", ""))
    y = (cells["label_truth"] == "dead").astype(int)
    assert m["mode"] == "labels" and m["n"] == len(field["right"])
    assert m["auc"] == pytest.approx(roc_auc_score(y, cells["p_dead"]))
    assert m["confusion"] == confusion_matrix(y, (cells["label"] == "dead").astype(int)
                                              ).tolist()
    assert m["auc"] > 0.85


def test_model_runs_on_its_training_channels(field, tmp_path) -> None:
    """A model trained with ``--channels dna=HOECHST 33342`` runs on that plate without the
    mapping again (``hcs run`` and an ``uncertain`` round on a run made without the model);
    an explicit mapping still wins, and a plate without the channel still says what to map."""
    from hcs.engine.model import model_card, trained_channel_map
    from hcs.runinfo import read_run_json

    root = field["root"]
    assert read_run_json(root / "run2")["channel_map"] == {"dna": "HOECHST 33342"}
    res = hcs("annotate", root / "run", "--out", tmp_path / "ann", "--model", root / "model",
              "--strategy", "uncertain", "--n", "8", "--export", "folders")
    assert res.returncode == 0, res.stderr
    sample = pd.read_csv(tmp_path / "ann" / "sample.csv")
    assert len(sample) == 8 and sample["prediction"].isin(["live", "dead"]).all()
    _, card = model_card(root / "model")
    names = ["Brightfield", "hoechst 33342", "PI"]
    assert trained_channel_map(card, names) == {"dna": "hoechst 33342"}
    assert trained_channel_map(card, names, {"dna": "PI"}) == {"dna": "PI"}
    assert trained_channel_map(card, ["DAPI", "PI"]) == {}
    bad = hcs("run", root / "plate.ome.zarr", "--model", root / "model", "--out",
              tmp_path / "r", "--channels", "dna=Nope")
    one_line_error(bad, "--channels dna=Nope", "has no channel 'Nope'")


def test_next_round_takes_the_model_classes(field, tmp_path) -> None:
    """``hcs annotate RUN --model M --strategy uncertain`` on a new folder: M's classes."""
    root = field["root"]
    res = hcs("annotate", root / "run2", "--out", tmp_path / "ann2", "--model", root / "model",
              "--strategy", "uncertain", "--n", "12", "--export", "folders")
    assert res.returncode == 0, res.stderr
    assert "12 cells, 0 labelled, 0 skipped; classes live, dead" in res.stdout
    sample = pd.read_csv(tmp_path / "ann2" / "sample.csv")
    assert len(sample) == 12


def test_refusals(field, tmp_path) -> None:
    root = field["root"]
    one_line_error(hcs("evaluate", "run", root / "run", "--marker", "PI", "--positive-class",
                       "dead"), "no model output", "hcs run PLATE --model M")
    one_line_error(hcs("evaluate", "run", root / "run2", "--marker", "PI"),
                   "--positive-class", "'live', 'dead'")
    one_line_error(hcs("evaluate", "run", root / "run2"), "--labels", "--marker")
    one_line_error(hcs("evaluate", "run", root / "run2", "--marker", "PI", "--labels",
                       root / "held" / "labels.csv"), "--labels", "--marker")
    one_line_error(hcs("evaluate", "run", root / "run2", "--marker", "PH3", "--positive-class",
                       "dead"), "Nuclei_Intensity_MeanIntensity_PH3")
    one_line_error(hcs("evaluate", "run", root / "run2", "--marker", "PI",
                       "--positive-class", "dying"), "'dying'", "live")
    bad = field["left"].head(5).copy()
    bad.loc[bad.index[2], "cell_id"] = 99999
    bad.to_csv(tmp_path / "ex.csv", index=False)
    one_line_error(hcs("evaluate", "run", root / "run2", "--marker", "PI", "--positive-class",
                       "dead", "--exclude", tmp_path / "ex.csv"), "cell 99999",
                   "not a cell of run")
    # a held-out label on a cell that --exclude removed is not scored silently
    one_line_error(hcs("evaluate", "run", root / "run2", "--labels", root / "ann" / "labels.csv",
                       "--exclude", root / "ann" / "labels.csv"), "not a scored cell")
