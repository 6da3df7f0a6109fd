"""Classifier metrics, computed the same way during training and in ``hcs evaluate``.

Per-class one-vs-rest ROC AUC, balanced accuracy (mean per-class recall) with a 95% bootstrap CI
(cells resampled with replacement), confusion matrix, precision / recall / F1 (scikit-learn).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hcs.errors import InputError


def balanced_accuracy_ci(
    y_true: np.ndarray, y_pred: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the balanced accuracy.

    Examples
    --------
    >>> y = np.array([0] * 50 + [1] * 50)
    >>> lo, hi = balanced_accuracy_ci(y, y)
    >>> (lo, hi)
    (1.0, 1.0)
    """
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    k = int(max(y_true.max(), y_pred.max())) + 1
    rng = np.random.default_rng(seed)
    n = len(y_true)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        # confusion counts of the resample; balanced accuracy = mean recall of present classes
        cm = np.bincount(y_true[idx] * k + y_pred[idx], minlength=k * k).reshape(k, k)
        support = cm.sum(1)
        present = support > 0
        if present.sum() < 2:
            continue
        stats.append(float(np.mean(np.diag(cm)[present] / support[present])))
    if not stats:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    y_pred: Sequence[int] | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of class probabilities against true class indices.

    Parameters
    ----------
    y_true
        True class index per cell (into ``classes``).
    proba
        ``N x K`` probabilities.
    classes
        Class names (``K``).
    y_pred
        Predicted indices (default: argmax of ``proba``; pass the assay's decision rule output to
        score it instead).
    n_boot, seed
        Bootstrap resamples and seed for the balanced-accuracy CI.

    Returns
    -------
    dict
        ``n``, ``auc`` (binary AUC of the second class for 2 classes, macro one-vs-rest otherwise),
        ``balanced_accuracy``, ``balanced_accuracy_ci`` ([lo, hi]), ``per_class`` (auc, precision,
        recall, f1, support), ``confusion`` (rows true, columns predicted, ``classes`` order),
        ``classes``.

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> m = classification_metrics([0, 0, 1, 1], p, ["live", "dead"], n_boot=0)
    >>> m["auc"], m["balanced_accuracy"], m["confusion"]
    (1.0, 1.0, [[2, 0], [0, 2]])
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    k = len(classes)
    if p.ndim != 2 or p.shape != (len(y), k):
        raise InputError(f"probabilities of shape {p.shape} do not match {len(y)} cells x {k}")
    if len(y) == 0:
        raise InputError("no cell to evaluate")
    pred = np.argmax(p, axis=1) if y_pred is None else np.asarray(y_pred, dtype=int)
    labels = list(range(k))
    present = np.unique(y)
    per_auc: list[float | None] = []
    for c in labels:
        pos = y == c
        per_auc.append(
            float(roc_auc_score(pos, p[:, c])) if 0 < pos.sum() < len(y) else None
        )
    if k == 2:
        auc = per_auc[1]
    else:
        valid = [a for a in per_auc if a is not None]
        auc = float(np.mean(valid)) if valid else None
    prec, rec, f1, sup = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    bacc = float(balanced_accuracy_score(y, pred)) if len(present) > 1 else float("nan")
    ci = balanced_accuracy_ci(y, pred, n_boot, seed) if n_boot else (bacc, bacc)
    return {
        "n": int(len(y)),
        "classes": list(classes),
        "auc": auc,
        "balanced_accuracy": bacc,
        "balanced_accuracy_ci": [ci[0], ci[1]],
        "per_class": {
            name: {
                "auc": per_auc[i], "precision": float(prec[i]), "recall": float(rec[i]),
                "f1": float(f1[i]), "support": int(sup[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }
