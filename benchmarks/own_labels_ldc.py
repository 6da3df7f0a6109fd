"""Real cells (issue 17): LDC brightfield images as a plate, cells detected by
``models/ldc-detector``, labels from the VOC boxes, both ``hcs train classifier --labels`` kinds
against the shipped ``models/livedead-ldc``.

The images are those of ``models/livedead-ldc/split.json``'s *test* part (never seen by the shipped
model, so its figures are fair) of size 225 x 219 (one field shape for the plate), written as a
TIFF folder of 8-bit grey planes (ITU-R 601 luma, as the shipped model's card converts RGB),
8 fields per well. Each detected cell takes the class of the VOC box it overlaps with IoU >= 0.5
(else it is not labelled). Wells 1-``TRAIN_WELLS`` give the training labels (``--n`` of them,
spread over the wells); the other wells are held out. Figures: the cross-validated ones of the
card (grouped by well) and AUC / balanced accuracy on the held-out wells' labelled cells, for
the features model, the cnn model and the shipped model (its ``p_dead`` of the run).

    python benchmarks/own_labels_ldc.py --out /tmp/ldc [--n 200] [--epochs 20]
                                        [--arch hcs_smallcnn] [--folds 5]

The cnn kind trains what ``hcs train classifier --labels --kind cnn`` trains by default
(``hcs_smallcnn``, one thread); ``--arch`` another timm architecture (``lcnet_050``: the
figures of the first version of this benchmark).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "livedead-ldc"
FIELDS = 8
TRAIN_WELLS = 12


def hcs(*args: object) -> None:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "hcs", *map(str, args)], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"hcs {args[0]} failed:\n{r.stderr[-3000:]}")
    print(f"hcs {' '.join(map(str, args[:2]))}: {time.perf_counter() - t0:.0f} s", flush=True)
    return r.stdout


def write_folder(out: Path) -> pd.DataFrame:
    """TIFF folder of the test images (225 x 219); returns image -> well, field."""
    import tifffile
    from PIL import Image

    split = json.loads((REPO / "models" / "livedead-ldc" / "split.json").read_text())
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(split["test"]):
        img = Image.open(DATA / name)
        if img.size != (225, 219):
            continue
        k = len(rows)
        well = f"{'ABCDEFGH'[k // FIELDS // 12]}{k // FIELDS % 12 + 1:02d}"
        grey = np.asarray(img.convert("L"))  # ITU-R 601 luma
        tifffile.imwrite(out / f"{well}_f{k % FIELDS:02d}_d0.tif", grey)
        rows.append({"image": name, "well": well, "field": k % FIELDS})
    return pd.DataFrame(rows)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def voc_labels(run: Path, images: pd.DataFrame) -> pd.DataFrame:
    """Each detected cell labelled by the VOC box it overlaps with IoU >= 0.5."""
    from hcs.annotate.cells import read_run_cells
    from hcs.assays import get_input_spec
    from hcs.io.annotations import read_voc

    label_map = get_input_spec("livedead").label_map
    cells = read_run_cells(run, columns=["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "p_dead"])
    out = []
    for r in images.itertuples():
        voc = read_voc(DATA / Path(r.image).with_suffix(".xml"), label_map)
        g = cells[(cells["well"] == r.well) & (cells["field"] == r.field)]
        if g.empty or voc.empty:
            continue
        m = iou(g[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(float),
                voc[["x0", "y0", "x1", "y1"]].to_numpy(float))
        best = m.argmax(axis=1)
        ok = m.max(axis=1) >= 0.5
        out.append(pd.DataFrame({"plate": g["plate"].to_numpy()[ok], "well": r.well,
                                 "field": r.field, "cell_id": g["cell_id"].to_numpy()[ok],
                                 "label": voc["label"].to_numpy()[best[ok]],
                                 "annotator": "voc", "time": "2026-01-01T00:00:00Z",
                                 "p_dead_shipped": g["p_dead"].to_numpy()[ok]}))
    return pd.concat(out, ignore_index=True)


def held_out(model: Path, run: Path, test: pd.DataFrame) -> dict:
    """AUC and balanced accuracy of ``model`` on the held-out labelled cells."""
    from hcs.classify.features import is_features_folder, load_features_model
    from hcs.train.metrics import classification_metrics

    y = (test["label"] == "dead").astype(int).to_numpy()
    if model.name == "livedead-ldc":
        p = test["p_dead_shipped"].to_numpy(float)
        proba = np.stack([1 - p, p], axis=1)
    elif is_features_folder(model):
        from hcs.annotate.cells import read_run_cells

        m = load_features_model(model)
        key = ["well", "field", "cell_id"]
        cells = test[key].merge(read_run_cells(run).drop(columns="plate"), on=key, how="left")
        cols = m.card.columns({"brightfield": "brightfield"})
        proba = m.predict_proba(cells[cols].to_numpy(float))
    else:
        from hcs.annotate.cells import cell_crops
        from hcs.classify.infer import predict_proba
        from hcs.classify.models import load_model

        lm = load_model(model)
        proba = predict_proba(lm, cell_crops(run, test, lm.card), device="cpu")
    m = classification_metrics(y, proba, ["live", "dead"], n_boot=500)
    return {"n": m["n"], "auc": round(m["auc"], 3),
            "balanced_accuracy": round(m["balanced_accuracy"], 3),
            "balanced_accuracy_ci": [round(v, 3) for v in m["balanced_accuracy_ci"]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--arch", default="hcs_smallcnn", help="timm architecture of the cnn kind")
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    root = a.out
    images = write_folder(root / "tiffs")
    print(f"{len(images)} images -> {images['well'].nunique()} wells x {FIELDS} fields",
          flush=True)
    if not (root / "ldc.ome.zarr").exists():
        hcs("convert", root / "tiffs", root / "ldc.ome.zarr", "--pixel-size", "1.0",
            "--channel-names", "brightfield", "--pattern",
            r"(?P<well>[A-H]\d{2})_f(?P<field>\d+)_d(?P<channel>\d)\.tif$")
    hcs("run", root / "ldc.ome.zarr", "--detector", "ldc-detector", "--model", "livedead-ldc",
        "--out", root / "run", "--no-labels", "--workers", "1", "--resume", "-q")
    labels = voc_labels(root / "run", images)
    wells = sorted(labels["well"].unique())
    train_wells = wells[:TRAIN_WELLS]
    pool = labels[labels["well"].isin(train_wells)]
    train = pool.sample(n=min(a.n, len(pool)), random_state=0).sort_values(
        ["well", "field", "cell_id"])
    test = labels[~labels["well"].isin(train_wells)]
    (root / "ann").mkdir(exist_ok=True)
    train.drop(columns="p_dead_shipped").to_csv(root / "ann" / "labels.csv", index=False)
    print(f"{len(labels)} detected cells matched a VOC box; {len(train)} training labels "
          f"({train['label'].value_counts().to_dict()}) in {len(train_wells)} wells, "
          f"{len(test)} held-out cells ({test['label'].value_counts().to_dict()}) in "
          f"{len(wells) - len(train_wells)} wells", flush=True)
    res = {}
    cnn = ["--arch", a.arch, "--threads", 1, "--epochs", a.epochs]  # 1 thread: shared CPUs
    for kind, extra in (("features", []), ("cnn", cnn)):
        model = root / f"m_{kind}"
        hcs("train", "classifier", "--labels", root / "ann" / "labels.csv", "--run",
            root / "run", "--kind", kind, "--channels", "brightfield=brightfield",
            "--folds", a.folds, "--out", model, "--overwrite", *extra)
        import yaml

        cv = yaml.safe_load((model / "model.yaml").read_text())["metrics"]["cross_validated"]
        res[kind] = {"cv_auc": round(cv["auc"], 3),
                     "cv_balanced_accuracy": round(cv["balanced_accuracy"], 3),
                     "cv_ci": [round(v, 3) for v in cv["balanced_accuracy_ci"]],
                     "learning_curve_auc": [round(c["auc"], 3) for c in cv["learning_curve"]],
                     "held_out": held_out(model, root / "run", test)}
    res["livedead-ldc"] = {"held_out": held_out(REPO / "models" / "livedead-ldc", root / "run",
                                                test)}
    res["cnn"]["arch"] = a.arch
    print(json.dumps(res, indent=1))
    (root / "figures.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
