"""``hcs evaluate run RUN``: score what a run's model called, cell by cell, against your labels
or against a marker channel of the same cells.

A run made with a model (``hcs run PLATE --model M``) holds, for every cell, the model's
probabilities (``p_<class>``) and its call (``label``, the assay's decision rule). This module
compares them with a truth the user has:

- ``labels``: an ``ANN/labels.csv`` of cells of that run (``hcs annotate``), in the model's
  classes: per-class AUC, balanced accuracy, confusion (:func:`hcs.train.metrics.
  classification_metrics` on the run's probabilities and calls);
- ``marker``: a stain the model did not see (a mitosis marker for a DNA-only mitosis model, PI
  for a stain-free dead-cell model). A cell is marker-positive when its nuclear mean intensity
  of that channel is above the threshold ``hcs aggregate --positive`` chooses for the run
  (:func:`hcs.engine.aggregate_run.positive_thresholds`: Otsu, a Gaussian mixture, or a given
  value). The model's score of a cell is the summed probability of ``positive_classes`` (e.g.
  every mitotic stage), its call positive when its ``label`` is one of them: AUC of the score
  against the marker, with a 95% bootstrap CI over cells, and the balanced accuracy of the
  calls, with a 95% CI by a bootstrap over wells (over fields when one well; over cells when
  one field), and both counts (how many cells the marker and the model call positive).

``exclude`` leaves out the cells of a labels file, e.g. those the model was trained on, so the
figures are on cells it has never seen. Cells of the run are named by ``well, field, cell_id``:
a labels file of another run of the same plate and detector names the same cells (detection is
deterministic); a cell it names that this run lacks is an error, not skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError

__all__ = ["auc_ci", "score_run"]

KEY = ["well", "field", "cell_id"]


def auc_ci(y: np.ndarray, score: np.ndarray, n_boot: int = 1000, seed: int = 0
           ) -> list[float]:
    """95% percentile bootstrap CI of the ROC AUC over cells (resamples with one class only
    are redrawn by skipping them; NaN when fewer than 2 cells of either class).

    Examples
    --------
    >>> y = np.array([0] * 50 + [1] * 50); s = np.r_[np.zeros(50), np.ones(50)]
    >>> auc_ci(y, s, n_boot=100)
    [1.0, 1.0]
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, int)
    score = np.asarray(score, float)
    if min((y == 0).sum(), (y == 1).sum()) < 2 or n_boot <= 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            stats.append(roc_auc_score(y[i], score[i]))
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return [float(lo), float(hi)]


def _run_classes(cells: pd.DataFrame, run: Path) -> list[str]:
    classes = [c[2:] for c in cells.columns if c.startswith("p_")]
    if not classes or "label" not in cells:
        raise InputError(f"{run}: its cells carry no model output (p_<class>, label): score a "
                         "run made with a model (hcs run PLATE --model M --out RUN)")
    return classes


def _drop_excluded(cells: pd.DataFrame, exclude: Path, run: Path) -> tuple[pd.DataFrame, int]:
    from hcs.train.own import read_labels

    ex = read_labels(exclude)[KEY].drop_duplicates()
    m = ex.merge(cells[KEY], on=KEY, how="left", indicator=True)
    lost = m[m["_merge"] == "left_only"]
    if len(lost):
        r = lost.iloc[0]
        raise InputError(f"{exclude}: well {r['well']} field {r['field']} cell {r['cell_id']} "
                         f"is not a cell of run {run} ({len(lost)} such cell(s)); --exclude "
                         "names cells of this run (same plate and detector)")
    keep = cells.merge(ex.assign(_ex=True), on=KEY, how="left")["_ex"].isna().to_numpy()
    return cells[keep].reset_index(drop=True), int((~keep).sum())


def _groups(cells: pd.DataFrame) -> tuple[str, np.ndarray | None]:
    if cells["well"].nunique() > 1:
        return "well", cells["well"].astype(str).to_numpy()
    if cells[["well", "field"]].drop_duplicates().shape[0] > 1:
        return "field", (cells["well"].astype(str) + ":" + cells["field"].astype(str)).to_numpy()
    return "cell", None


def score_run(
    run: str | Path,
    *,
    labels: str | Path | None = None,
    marker: str | None = None,
    positive_classes: Sequence[str] | None = None,
    exclude: str | Path | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Score a run's per-cell model output against ``labels`` or a ``marker`` (module doc).

    Parameters
    ----------
    run
        A run folder made with a model.
    labels
        ``ANN/labels.csv`` of cells of the run, in the model's classes.
    marker
        ``CHANNEL[:otsu|:gmm|:>VALUE]`` as ``hcs aggregate --positive``.
    positive_classes
        With ``marker`` (required): the classes whose cells the marker should mark.
    exclude
        A labels file whose cells are left out (e.g. the model's training labels).
    n_boot
        Bootstrap resamples of the confidence intervals.

    Returns
    -------
    dict
        ``mode`` (labels | marker), ``n`` (cells scored), ``n_excluded``, the model and the
        figures (see the module docstring); with ``marker`` also ``threshold``, ``method``,
        ``column``, ``positive_classes``, ``n_marker_positive``, ``n_called_positive``,
        ``n_no_marker_value`` (cells without a measurement of the channel, left out), ``auc``,
        ``auc_ci``, ``balanced_accuracy``, ``balanced_accuracy_ci`` (and ``ci_over``),
        ``confusion`` (rows marker -/+, columns called -/+), ``precision``, ``recall``,
        ``warning`` (``None``, or why the figures look inverted: AUC below 0.5).

    Raises
    ------
    InputError
        Neither or both of ``labels`` and ``marker``; a run without model output; a label or
        class that is not one of the model's; a labelled or excluded cell the run lacks; a
        marker channel the run did not measure.
    """
    from hcs.annotate.cells import read_run_cells
    from hcs.runinfo import read_run_json
    from hcs.train.metrics import classification_metrics
    from hcs.train.own import group_balanced_accuracy_ci, read_labels

    run = Path(run)
    if (labels is None) == (marker is None):
        raise InputError("give one of --labels (your labels of cells of the run) or --marker "
                         "CHANNEL[:otsu|:gmm|:>VALUE]")
    if positive_classes and marker is None:
        raise InputError("--positive-class goes with --marker")
    record = read_run_json(run) if (run / "run.json").exists() else {}
    cells = read_run_cells(run)
    if cells.empty:
        raise InputError(f"{run}: the run has no cells")
    classes = _run_classes(cells, run)
    out: dict[str, Any] = {"run": str(run), "model": record.get("model"),
                           "assay": record.get("assay"), "classes": classes}
    n_excluded = 0
    if exclude is not None:
        cells, n_excluded = _drop_excluded(cells, Path(exclude), run)
    out["n_excluded"] = n_excluded
    missing = cells["label"].isna().to_numpy()
    if missing.any():
        r = cells[missing].iloc[0]
        raise InputError(f"{run}: well {r['well']} field {r['field']} cell {r['cell_id']} has no "
                         "call (label) of the model")
    unknown_calls = sorted(set(cells["label"].astype(str)) - set(classes))
    if unknown_calls:
        raise InputError(f"{run}: call {unknown_calls[0]!r} is not one of the model's classes "
                         f"{classes}")

    if labels is not None:
        table = read_labels(labels)
        joined = table[KEY + ["label"]].rename(columns={"label": "truth"}).merge(
            cells, on=KEY, how="left", indicator=True)
        lost = joined[joined["_merge"] == "left_only"]
        if len(lost):
            r = lost.iloc[0]
            raise InputError(f"{labels}: well {r['well']} field {r['field']} cell "
                             f"{r['cell_id']} is not a scored cell of run {run} ({len(lost)} "
                             "such label(s); excluded cells are not scored)")
        bad = sorted(set(joined["truth"]) - set(classes))
        if bad:
            raise InputError(f"{labels}: label {bad[0]!r} is not one of the model's classes "
                             f"{classes}")
        y = np.asarray([classes.index(c) for c in joined["truth"]])
        proba = joined[[f"p_{c}" for c in classes]].to_numpy(float)
        pred = np.asarray([classes.index(c) for c in joined["label"].astype(str)])
        m = classification_metrics(y, proba, classes, y_pred=pred, n_boot=n_boot)
        by, groups = _groups(joined)
        if groups is not None:
            m["balanced_accuracy_ci"] = group_balanced_accuracy_ci(y, pred, groups,
                                                                   len(classes), n_boot)
        return {**out, "mode": "labels", "labels": str(labels), "ci_over": by, **m}

    from hcs.engine.aggregate_run import positive_thresholds
    from hcs.readouts import parse_positive

    spec = parse_positive(marker)
    if spec.column not in cells:
        raise InputError(f"--marker {marker}: the run has no column {spec.column} (a run with "
                         f"measurements, --measure basic or full, of a channel named "
                         f"{spec.channel})")
    if not positive_classes:  # never guessed: the class order of a user's model is arbitrary
        raise InputError(f"--marker needs --positive-class: the model's class(es) the marker "
                         f"marks, one or more of {classes}")
    pos = [c.strip() for c in positive_classes]
    bad = [c for c in pos if c not in classes]
    if bad:
        raise InputError(f"--positive-class {bad[0]!r} is not one of the model's classes "
                         f"{classes}")
    threshold = positive_thresholds(run / "cells", [spec])[spec]
    value = cells[spec.column].to_numpy(float)
    ok = np.isfinite(value)
    cells, value = cells[ok].reset_index(drop=True), value[ok]
    if cells.empty:
        raise InputError(f"--marker {marker}: no scored cell has a {spec.column} value")
    y = (value > threshold).astype(int)
    score = cells[[f"p_{c}" for c in pos]].to_numpy(float).sum(axis=1)
    called = cells["label"].astype(str).isin(pos).to_numpy().astype(int)
    m = classification_metrics(y, np.c_[1 - score, score], ["marker-", "marker+"],
                               y_pred=called, n_boot=n_boot)
    by, groups = _groups(cells)
    ci = (group_balanced_accuracy_ci(y, called, groups, 2, n_boot) if groups is not None
          else m["balanced_accuracy_ci"])
    tp = int(((y == 1) & (called == 1)).sum())
    warning = None
    if m["auc"] is not None and m["auc"] < 0.5:
        warning = (f"AUC {m['auc']:.3f} is below chance: the model ranks marker-negative cells "
                   f"higher; is {', '.join(pos)} the class the marker marks?")
    return {**out, "mode": "marker", "marker": marker, **spec.as_dict(threshold),
            "positive_classes": pos, "n": int(len(y)), "n_no_marker_value": int((~ok).sum()),
            "n_marker_positive": int(y.sum()), "n_called_positive": int(called.sum()),
            "auc": m["auc"], "auc_ci": auc_ci(y, score, n_boot),
            "balanced_accuracy": m["balanced_accuracy"], "balanced_accuracy_ci": ci,
            "ci_over": by, "confusion": m["confusion"],
            "precision": tp / called.sum() if called.sum() else float("nan"),
            "recall": tp / y.sum() if y.sum() else float("nan"), "warning": warning}
