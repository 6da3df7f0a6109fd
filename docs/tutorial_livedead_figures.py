"""Figures for docs/tutorial-livedead.md, from the commands the tutorial runs.

Run as ``python docs/tutorial_livedead_figures.py PHENIX_ANALYSIS_DIR`` after the tutorial's
``hcs analyze`` of the real Phenix sample (needs the ``docs`` extra: matplotlib, and
../shared/data). It scores ``models/livedead-ldc`` on its held-out test images exactly as
``hcs evaluate classifier ... --part test`` does (same function), and draws:

- ``docs/img/tutorial-livedead-eval.png``: ROC curve, confusion matrix and test crops (the most
  confident calls of each class and the errors);
- ``docs/img/tutorial-livedead-phenix.png``: the Phenix brightfield field with every detected
  cell boxed and coloured by the model's call, the crops the model saw, and LDC training crops
  at the same scale for comparison.

It prints the figures it quotes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HCS_SHARED_DATA", REPO.parent / "shared" / "data"))
IMG = REPO / "docs" / "img"
MODEL = REPO / "models" / "livedead-ldc"
COLOURS = {"live": "#2ca02c", "dead": "#d62728"}


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over every threshold (``y`` 1 = positive)."""
    order = np.argsort(-score, kind="stable")
    y = y[order].astype(bool)
    tpr = np.concatenate([[0], np.cumsum(y) / max(y.sum(), 1)])
    fpr = np.concatenate([[0], np.cumsum(~y) / max((~y).sum(), 1)])
    return fpr, tpr


def _show(ax: plt.Axes, crop: np.ndarray, title: str, colour: str) -> None:
    img = crop[..., 0] if crop.shape[-1] == 1 else crop[..., :3]
    ax.imshow(np.clip(img / 255, 0, 1), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=7, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])


def evaluation_figure() -> dict:
    from hcs.train.pipeline import evaluate_model

    m, cs, proba = evaluate_model(MODEL, voc=DATA / "livedead-ldc",
                                  split_file=MODEL / "split.json", part="test", device="cpu")
    dead = cs.classes.index("dead")
    p_dead = proba[:, dead]
    y = cs.y == dead
    fpr, tpr = roc_curve(y, p_dead)
    pred = proba.argmax(axis=1)
    fig = plt.figure(figsize=(11, 6.2))
    ax = fig.add_axes([0.06, 0.55, 0.27, 0.4])
    ax.plot(fpr, tpr, color="#1f77b4")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (live called dead)")
    ax.set_ylabel("true positive rate (dead called dead)")
    ax.set_title(f"ROC, {m['n']} held-out crops: AUC {m['auc']:.3f}", fontsize=9)
    ax = fig.add_axes([0.4, 0.55, 0.2, 0.4])
    conf = np.asarray(m["confusion"])
    ax.imshow(conf, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(conf[i, j]), ha="center", va="center",
                    color="white" if conf[i, j] > conf.max() / 2 else "black")
    ax.set_xticks([0, 1], [f"called {c}" for c in m["classes"]])
    ax.set_yticks([0, 1], [f"true {c}" for c in m["classes"]])
    lo, hi = m["balanced_accuracy_ci"]
    ax.set_title(f"balanced accuracy {m['balanced_accuracy']:.3f}\n(95% CI {lo:.3f}-{hi:.3f})",
                 fontsize=9)
    # crops: 4 most confident per class, then up to 8 errors
    picks: list[tuple[int, str]] = []
    for c in (0, 1):
        idx = np.where((cs.y == c) & (pred == c))[0]
        idx = idx[np.argsort(-proba[idx, c])][:4]
        picks += [(int(i), f"{cs.classes[c]} {proba[i, c]:.2f}") for i in idx]
    wrong = np.where(pred != cs.y)[0]
    wrong = wrong[np.argsort(-proba[wrong].max(axis=1))][:8]
    picks += [(int(i), f"true {cs.classes[cs.y[i]]}\ncalled {cs.classes[pred[i]]}"
                       f" {proba[i].max():.2f}") for i in wrong]
    for k, (i, title) in enumerate(picks[:16]):
        r, c = divmod(k, 8)
        ax = fig.add_axes([0.05 + c * 0.115, 0.21 - r * 0.2, 0.1, 0.15])
        _show(ax, cs.crops[i], title, "black" if k < 8 else "#d62728")
    fig.text(0.62, 0.9, "models/livedead-ldc on its held-out test images", fontsize=11)
    fig.text(0.62, 0.84, "top row: the most confident live and dead calls", fontsize=9)
    fig.text(0.62, 0.8, "bottom row: the most confident errors (red)", fontsize=9)
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / "tutorial-livedead-eval.png", dpi=110)
    plt.close(fig)
    return {k: m[k] for k in ("n", "auc", "balanced_accuracy", "balanced_accuracy_ci",
                               "confusion")} | {"errors": int(len(np.where(pred != cs.y)[0]))}


def phenix_figure(analysis: Path) -> dict:
    from hcs.classify.models import read_card
    from hcs.engine.processor import compose_field, field_crops
    from hcs.io.omezarr import open_plate
    from hcs.train.datasets import load_annotations  # noqa: F401  (documents the source)

    plate = open_plate(analysis / "plate.ome.zarr")
    cells = pd.concat([pd.read_parquet(f) for f in
                       sorted((analysis / "run" / "cells").glob("*/*.parquet"))])
    well, fld = str(cells["well"].iloc[0]), int(cells["field"].iloc[0])
    planes = np.asarray(plate.field(well, fld).isel(t=0).values).max(axis=1)
    bf = [c.lower() for c in plate.channels].index("brightfield")
    card = read_card(MODEL)
    composed = compose_field(planes, [bf], ["percentile"])
    boxes = cells[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(float)
    crops = field_crops(composed, boxes, card.crop.size, card.crop.margin)
    fig = plt.figure(figsize=(11, 6))
    ax = fig.add_axes([0.02, 0.05, 0.5, 0.88])
    ax.imshow(composed[..., 0], cmap="gray", vmin=0, vmax=255)
    for (_, c), b in zip(cells.iterrows(), boxes, strict=True):
        col = COLOURS.get(c["label"], "yellow")
        ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                                   color=col, lw=1.5))
        ax.text(b[0], b[1] - 8, f"{c['label']} {c['confidence']:.2f}", color=col, fontsize=8)
    ax.set_title(f"real Opera Phenix field ({well}, brightfield, 1080 px, 0.598 µm/px): "
                 f"{len(cells)} nuclei detected", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for k in range(len(cells)):
        a = fig.add_axes([0.56 + k * 0.14, 0.6, 0.12, 0.25])
        _show(a, crops[k], f"Phenix cell {k + 1}: {cells['label'].iloc[k]} "
                           f"{cells['confidence'].iloc[k]:.2f}", "black")
    _ldc_row(fig, card)
    fig.text(0.56, 0.93, "what the model sees (48 px crops, 0-255)", fontsize=10)
    fig.savefig(IMG / "tutorial-livedead-phenix.png", dpi=110)
    plt.close(fig)
    return {"cells": len(cells), "labels": cells["label"].tolist(),
            "p_dead": cells["p_dead"].round(4).tolist()}


def _ldc_row(fig: plt.Figure, card) -> None:  # noqa: ANN001 - a ModelCard
    """LDC training-style crops (test images) of each class at the model's crop size."""
    from hcs.train.pipeline import evaluate_model

    _, cs, _ = evaluate_model(MODEL, voc=DATA / "livedead-ldc", split_file=MODEL / "split.json",
                              part="test", device="cpu", n_boot=10)
    for k, c in enumerate((0, 0, 1, 1)):
        i = np.where(cs.y == c)[0][k * 7]
        a = fig.add_axes([0.56 + k * 0.105, 0.15, 0.095, 0.22])
        _show(a, cs.crops[i], f"LDC {cs.classes[c]}", COLOURS[cs.classes[c]])
    fig.text(0.56, 0.42, "LDC crops (trypan-blue brightfield, 8-bit RGB as grey)", fontsize=10)


def main() -> None:
    analysis = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("phenix-analysis")
    out = {"evaluation": evaluation_figure(), "phenix": phenix_figure(analysis)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
