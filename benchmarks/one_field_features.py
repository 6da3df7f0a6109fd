"""Issue 17's real check, simulated: one field, labels of its left half, a model on the DNA
stain only, scored on the right half; the features model with and without feature
subsampling (``max_features``), side by side.

Each field is simulated (1080 px, one well), converted and run (detection only, ``hcs run
--no-labels``); the simulated annotator (:func:`hcs.train.own.truth_labels`) labels every
detected cell of the left half (mitosis: the four mitotic stages as ``mitotic``); the right
half is held out. For each setting: the cross-validated AUC of the left half (5 strips, as
``hcs train classifier --labels`` groups one field), the held-out AUC and balanced accuracy of
the right half, and the number of distinct held-out probabilities (2 means the model is a step
function of one feature). With ``--ldc DIR`` (a folder made by ``benchmarks/own_labels_ldc.py``)
the real LDC cells too: its 200 labels of wells 1-12, cross-validated by well, held-out wells.

    python benchmarks/one_field_features.py --out /tmp/off [--mitosis 11 12 13 14 15]
                                            [--livedead 21 22] [--ldc /tmp/ldc]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MITOSIS = ("sim_freq_non_mitotic,sim_freq_prophase,sim_freq_early_prometaphase,"
           "sim_freq_prometaphase_metaphase,sim_freq_anaphase_telophase_cytokinesis",
           "1100,0.92,0.015,0.015,0.025,0.025")  # ~8% mitotic, as 26 of 315 HT29 nuclei
LIVEDEAD = ("sim_freq_live,sim_freq_dead", "900,0.85,0.15")
SIZE = 1080
SETTINGS = {"max_features=1.0 (before)": 1.0, "max_features=0.5 (hcs)": 0.5}


def hcs(*args: object) -> None:
    r = subprocess.run([sys.executable, "-m", "hcs", *map(str, args)], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"hcs {args[0]} failed:\n{r.stderr[-3000:]}")


def make_field(root: Path, assay: str, seed: int) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """Simulate, convert and run one field; truth labels of its left and right halves."""
    from hcs.annotate.cells import read_run_cells
    from hcs.synth import simulate_plate
    from hcs.train.own import truth_labels

    d = root / f"{assay}{seed}"
    if not (d / "run" / "run.json").is_file():
        d.mkdir(parents=True, exist_ok=True)
        cols, vals = MITOSIS if assay == "mitosis" else LIVEDEAD
        (d / "layout.csv").write_text(f"well,condition,role,sim_density,{cols}\n"
                                      f"B02,drug,sample,{vals}\n")
        simulate_plate(d / "sim", d / "layout.csv", assay, fields=1, size=SIZE, seed=seed,
                       progress=False)
        hcs("convert", d / "sim", d / "plate.ome.zarr")
        hcs("run", d / "plate.ome.zarr", "--out", d / "run", "--workers", "1", "-q",
            "--no-labels")
    t = truth_labels(d / "sim", d / "run")
    if assay == "mitosis":
        t["label"] = t["label"].where(t["label"] == "non_mitotic", "mitotic")
    xy = read_run_cells(d / "run", ["x"])[["well", "field", "cell_id", "x"]]
    t = t.merge(xy, on=["well", "field", "cell_id"])
    half = SIZE / 2
    return d / "run", t[t["x"] < half].drop(columns="x"), t[t["x"] >= half].drop(columns="x")


def score(run: Path, train: pd.DataFrame, held: pd.DataFrame, roles: dict[str, str],
          positive: str, by: str, seed: int) -> dict[str, dict[str, Any]]:
    """Both settings on one dataset: CV AUC, held-out AUC / balanced accuracy, distinct p."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    from hcs.annotate.cells import read_run_cells
    from hcs.train.own import _FeaturesFitter, cross_validate, field_strips

    key = ["well", "field", "cell_id"]
    cells = read_run_cells(run)
    cells = cells.drop(columns=[c for c in ("label",) if c in cells])
    both = pd.concat([train[key + ["label"]].assign(_held=0),
                      held[key + ["label"]].assign(_held=1)], ignore_index=True)
    joined = both.merge(cells, on=key, how="left")
    classes = sorted(joined["label"].unique(), key=lambda c: c == positive)
    y = np.asarray([classes.index(c) for c in joined["label"]])
    tr = np.flatnonzero(joined["_held"] == 0)
    te = np.flatnonzero(joined["_held"] == 1)
    left = joined.iloc[tr].reset_index(drop=True)
    groups = (left["well"].astype(str).to_numpy() if by == "well" else
              field_strips(left["x"].to_numpy(float), left["y"].to_numpy(float), 5))
    out = {}
    for name, mf in SETTINGS.items():
        fits = []
        for table in (joined, left):
            f = _FeaturesFitter(table, roles, seed)
            hcs_estimator = f._estimator
            f._estimator = lambda est=hcs_estimator, mf=mf: est().set_params(max_features=mf)
            f.k = len(classes)
            fits.append(f)
        fits[0].y, fits[1].y = y, y[tr]
        cv, _ = cross_validate(y[tr], groups, classes, fits[1].fit_predict, 5, seed, 0, (1.0,))
        p = fits[0].fit_predict(tr, te)[:, 1]
        out[name] = {"cv_auc": cv["auc"], "auc": roc_auc_score(y[te], p),
                     "bacc": balanced_accuracy_score(y[te], p > 0.5),
                     "distinct": len(np.unique(np.round(p, 6))),
                     "n": f"{len(tr)} / {len(te)} ({int(y[te].sum())} {positive})"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mitosis", type=int, nargs="*", default=[11, 12, 13, 14, 15])
    ap.add_argument("--livedead", type=int, nargs="*", default=[21, 22])
    ap.add_argument("--ldc", type=Path, help="a --out folder of benchmarks/own_labels_ldc.py")
    ap.add_argument("--seed", type=int, default=0, help="the model's seed (hcs --seed)")
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    dna = {"dna": "HOECHST 33342"}
    rows = []
    t0 = time.perf_counter()
    for assay, seeds, pos in (("mitosis", a.mitosis, "mitotic"), ("livedead", a.livedead, "dead")):
        for s in seeds:
            run, left, right = make_field(a.out, assay, s)
            rows.append((f"{assay} {s}", score(run, left, right, dna, pos, "strip", a.seed)))
            print(f"  {assay} {s} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    if a.ldc is not None:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from own_labels_ldc import TRAIN_WELLS, voc_labels, write_folder

        images = write_folder(a.out / "ldc_tiffs")
        labels = voc_labels(a.ldc / "run", images)
        wells = sorted(labels["well"].unique())
        train = pd.read_csv(a.ldc / "ann" / "labels.csv")
        held = labels[~labels["well"].isin(wells[:TRAIN_WELLS])]
        rows.append(("LDC real (by well)", score(a.ldc / "run", train, held,
                                                 {"brightfield": "brightfield"}, "dead", "well",
                                                 a.seed)))
    names = list(SETTINGS)
    print(f"\nfeatures model, labels of the left half, scored on the right (seed {a.seed}):")
    print(f"{'dataset':22s} {'labels / held (pos)':24s} " + " | ".join(
        f"{n}: CV AUC, AUC, bal.acc, distinct p" for n in names))
    for name, res in rows:
        cells = " | ".join(f"{r['cv_auc']:.3f}  {r['auc']:.3f}  {r['bacc']:.3f}  {r['distinct']:4d}"
                           for r in (res[n] for n in names))
        print(f"{name:22s} {res[names[0]]['n']:24s} {cells}")


if __name__ == "__main__":
    main()
