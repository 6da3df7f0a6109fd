"""Detection metrics: the AIM-CICs protocol and the label-free cancer protocol, computed one way.

Matching (used by every metric here)
------------------------------------
Within one image, detections are visited in order of decreasing score (ties keep their input
order: a stable sort). Each detection is matched to the *unmatched* ground-truth box with which it
has the highest IoU, if that IoU is >= the threshold (COCO-style greedy matching; one ground truth
per detection, one detection per ground truth). Unmatched detections are false positives,
unmatched ground truths false negatives. Because the matching is greedy by score, the matches of
the detections above any score cut-off are the same as if the lower-scored detections did not
exist, so the precision-recall curve, AP and best F1 all come from one matching.

Metrics
-------
- ``precision_iou50, recall_iou50, precision_iou10, recall_iou10``: detections with score > 0.1
  (strictly greater), matched at IoU 0.5 and 0.1 (AIM-CICs, Fig. 2c).
- ``ap50``: area under the precision-recall curve at IoU 0.5 with *all-point* interpolation (the
  PASCAL VOC 2010+ definition; COCO samples the same envelope at 101 recall points): detections
  of all images are pooled, ranked by score, precision is replaced by its running maximum from the
  right, and summed over the recall steps. All detections count (no score cut-off).
- ``best_f1`` and ``best_f1_score``: the highest F1 at IoU 0.5 over all score cut-offs
  "keep score >= s", and the cut-off s that gives it (label-free cancer protocol).
- ``f1_iou50``: F1 at IoU 0.5 of the detections with score > 0.1. When every prediction and every
  ground truth carries a label mask, objects are matched by *mask* IoU (``f1_iou50_basis`` is
  ``"mask"``), otherwise by box IoU (``"box"``). ``box_f1_iou50`` is always the box version.
  Masks are matched one-to-one with :func:`scipy.optimize.linear_sum_assignment` (within one
  label mask objects are disjoint, so at IoU > 0.5 a match is unique and any method agrees).

Boxes are ``(x0, y0, x1, y1)`` with exclusive upper edges (see :mod:`hcs.detect`), so a box's area
is ``(x1 - x0) * (y1 - y0)``; 1-based inclusive annotations (Pascal VOC) need ``x0 - 1, y0 - 1``.
The JSON report and the precision-recall figure are in :mod:`hcs.detect.report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hcs.detect.detections import Detections
from hcs.errors import InputError

__all__ = [
    "box_iou",
    "match_boxes",
    "mask_iou",
    "mask_f1",
    "pr_curve",
    "average_precision",
    "best_f1",
    "precision_recall",
    "evaluate_detections",
]

SCORE_THRESHOLD = 0.1


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b``.

    Parameters
    ----------
    a, b
        ``(N, 4)`` and ``(M, 4)`` boxes ``(x0, y0, x1, y1)``.

    Returns
    -------
    numpy.ndarray
        ``(N, M)`` float64; 0 where the union is empty.

    Examples
    --------
    >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]]))
    array([[0.33333333, 0.        ]])
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


@dataclass
class Matching:
    """Greedy matching of one image's detections (in the caller's order) to its ground truth."""

    truth_index: np.ndarray  # (N,) matched ground-truth index, -1 if unmatched
    iou: np.ndarray  # (N,) IoU with the matched ground truth (0 if unmatched)
    n_truth: int

    @property
    def is_tp(self) -> np.ndarray:
        return self.truth_index >= 0


def _greedy(iou: np.ndarray, scores: np.ndarray, iou_threshold: float) -> Matching:
    n, m = iou.shape
    truth_index = np.full(n, -1, np.int64)
    best = np.zeros(n, np.float64)
    taken = np.zeros(m, bool)
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if m == 0:
            break
        row = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_threshold and row[j] > 0:
            truth_index[i], best[i], taken[j] = j, row[j], True
    return Matching(truth_index, best, m)


def match_boxes(
    pred_boxes: np.ndarray, scores: np.ndarray, truth_boxes: np.ndarray, iou_threshold: float
) -> Matching:
    """Greedy score-ordered matching of predicted to ground-truth boxes (see module docstring).

    Examples
    --------
    >>> m = match_boxes(np.array([[0, 0, 10, 10], [1, 0, 11, 10]]), np.array([0.5, 0.9]),
    ...                 np.array([[0, 0, 10, 10]]), 0.5)
    >>> m.truth_index.tolist()  # the higher-scored detection takes the only truth
    [-1, 0]
    """
    return _greedy(box_iou(pred_boxes, truth_boxes), scores, iou_threshold)


def mask_iou(pred_labels: np.ndarray, truth_labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """IoU of every predicted with every true object of two label masks.

    Returns ``(iou, pred_ids, truth_ids)`` with ``iou`` of shape ``(len(pred_ids),
    len(truth_ids))``; ids are the sorted non-zero labels.
    """
    p = np.asarray(pred_labels)
    t = np.asarray(truth_labels)
    if p.shape != t.shape:
        raise InputError(f"predicted mask {p.shape} and true mask {t.shape} differ in shape")
    p_ids, p_inv = np.unique(p, return_inverse=True)
    t_ids, t_inv = np.unique(t, return_inverse=True)
    inter = np.zeros((p_ids.size, t_ids.size), np.int64)
    np.add.at(inter, (p_inv.ravel(), t_inv.ravel()), 1)
    area_p = inter.sum(axis=1)
    area_t = inter.sum(axis=0)
    keep_p, keep_t = p_ids != 0, t_ids != 0
    inter = inter[np.ix_(keep_p, keep_t)]
    union = area_p[keep_p][:, None] + area_t[keep_t][None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou, p_ids[keep_p], t_ids[keep_t]


def mask_f1(
    pred_labels: np.ndarray, truth_labels: np.ndarray, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Object-level F1 of two label masks, objects matched one-to-one at mask IoU >= threshold.

    Matching uses :func:`scipy.optimize.linear_sum_assignment` on the IoU matrix (maximum total
    IoU among pairs above the threshold); for thresholds > 0.5 the match is unique anyway.

    Examples
    --------
    >>> t = np.zeros((10, 10), int); t[0:4, 0:4] = 1; t[6:9, 6:9] = 2
    >>> p = np.zeros((10, 10), int); p[0:4, 0:3] = 5
    >>> mask_f1(p, t)["f1"]
    0.6666666666666666
    """
    from scipy.optimize import linear_sum_assignment

    iou, p_ids, t_ids = mask_iou(pred_labels, truth_labels)
    tp = 0
    if iou.size:
        cost = np.where(iou >= iou_threshold, iou, 0.0)
        rows, cols = linear_sum_assignment(cost, maximize=True)
        tp = int(np.sum(iou[rows, cols] >= iou_threshold))
    return _prf(tp, p_ids.size - tp, t_ids.size - tp)


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def _boxes_of(obj: Detections | np.ndarray) -> np.ndarray:
    if isinstance(obj, Detections):
        return obj.boxes
    arr = np.asarray(obj, np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"ground-truth boxes must have shape (N, 4), got {arr.shape}")
    return arr


def _check_lists(preds: Sequence[Detections], truths: Sequence[Any]) -> None:
    if len(preds) != len(truths):
        raise InputError(f"{len(preds)} predicted images but {len(truths)} ground-truth images")
    for i, p in enumerate(preds):
        if not isinstance(p, Detections):
            raise InputError(f"prediction {i} is a {type(p).__name__}, expected Detections")


def pr_curve(
    preds: Sequence[Detections], truths: Sequence[Detections | np.ndarray], iou_threshold: float
) -> dict[str, np.ndarray | int]:
    """Pooled precision-recall curve over images, detections ranked by decreasing score.

    Returns ``scores, tp, precision, recall`` (one entry per ranked detection) and ``n_truth``.
    """
    _check_lists(preds, truths)
    all_scores, all_tp, n_truth = [], [], 0
    for p, t in zip(preds, truths, strict=True):
        tb = _boxes_of(t)
        m = match_boxes(p.boxes, p.scores, tb, iou_threshold)
        all_scores.append(p.scores.astype(np.float64))
        all_tp.append(m.is_tp)
        n_truth += tb.shape[0]
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    ctp = np.cumsum(tp)
    rank = np.arange(1, tp.size + 1)
    precision = ctp / rank
    recall = ctp / n_truth if n_truth else np.full(tp.size, np.nan)
    return {"scores": scores, "tp": tp, "precision": precision, "recall": recall,
            "n_truth": n_truth}


def average_precision(
    preds: Sequence[Detections], truths: Sequence[Detections | np.ndarray],
    iou_threshold: float = 0.5,
) -> float:
    """All-point interpolated AP (see module docstring); NaN when there is no ground truth.

    Examples
    --------
    Three true boxes; four detections ranked TP, FP, TP, TP: the precision envelope is 1, 3/4,
    3/4 at recall 1/3, 2/3, 1, so AP = (1 + 3/4 + 3/4) / 3 = 5/6.

    >>> truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    >>> det = Detections(np.array([[0, 0, 10, 10], [60, 0, 70, 10], [20, 0, 30, 10],
    ...                            [40, 0, 50, 10]]), np.array([0.9, 0.8, 0.7, 0.6]))
    >>> round(average_precision([det], [truth]), 6)
    0.833333
    """
    c = pr_curve(preds, truths, iou_threshold)
    if c["n_truth"] == 0:
        return math.nan
    if len(c["tp"]) == 0:
        return 0.0
    recall = np.concatenate([[0.0], c["recall"]])
    precision = np.concatenate([[0.0], c["precision"]])
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


def best_f1(
    preds: Sequence[Detections], truths: Sequence[Detections | np.ndarray],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """Highest F1 over score cut-offs "keep score >= s"; returns f1, score, precision, recall.

    Only cut-offs between distinct scores are considered (tied detections are kept or dropped
    together). ``score`` is NaN when there are no detections.
    """
    c = pr_curve(preds, truths, iou_threshold)
    n_truth, scores, tp = c["n_truth"], c["scores"], c["tp"]
    out = {"f1": 0.0 if n_truth else math.nan, "score": math.nan,
           "precision": math.nan, "recall": 0.0 if n_truth else math.nan}
    if len(scores) == 0 or n_truth == 0:
        return out
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    ctp = np.cumsum(tp)[last_of_tie]
    k = np.arange(1, len(scores) + 1)[last_of_tie]
    f1 = 2 * ctp / (k + n_truth)
    i = int(np.argmax(f1))
    return {"f1": float(f1[i]), "score": float(scores[last_of_tie][i]),
            "precision": float(ctp[i] / k[i]), "recall": float(ctp[i] / n_truth)}


def precision_recall(
    preds: Sequence[Detections], truths: Sequence[Detections | np.ndarray],
    iou_threshold: float, score_threshold: float = SCORE_THRESHOLD,
) -> dict[str, float]:
    """TP, FP, FN, precision, recall and F1 of the detections with score > ``score_threshold``.

    Examples
    --------
    A box shifted by half its width overlaps its truth with IoU 1/3: a miss at IoU 0.5, a hit at
    IoU 0.1.

    >>> det = Detections(np.array([[5, 0, 15, 10]]), np.array([0.9]))
    >>> truth = np.array([[0, 0, 10, 10]])
    >>> [precision_recall([det], [truth], iou)["recall"] for iou in (0.5, 0.1)]
    [0.0, 1.0]
    """
    _check_lists(preds, truths)
    tp = fp = fn = 0
    for p, t in zip(preds, truths, strict=True):
        keep = p.scores > score_threshold
        tb = _boxes_of(t)
        m = match_boxes(p.boxes[keep], p.scores[keep], tb, iou_threshold)
        n_tp = int(m.is_tp.sum())
        tp, fp, fn = tp + n_tp, fp + int(keep.sum()) - n_tp, fn + tb.shape[0] - n_tp
    return _prf(tp, fp, fn)


def evaluate_detections(
    preds: Sequence[Detections], truths: Sequence[Detections | np.ndarray],
    score_threshold: float = SCORE_THRESHOLD,
) -> dict[str, Any]:
    """All detection metrics over a set of images (keys in the module docstring).

    Parameters
    ----------
    preds
        One :class:`~hcs.detect.Detections` per image.
    truths
        Per image, the ground truth: a :class:`~hcs.detect.Detections` (boxes, and a label mask
        for mask-level F1) or an ``(M, 4)`` box array.
    score_threshold
        Detections scoring at or below it are ignored for the fixed-operating-point metrics.
    """
    _check_lists(preds, truths)
    at50 = precision_recall(preds, truths, 0.5, score_threshold)
    at10 = precision_recall(preds, truths, 0.1, score_threshold)
    best = best_f1(preds, truths, 0.5)
    use_masks = bool(preds) and all(
        p.labels is not None and isinstance(t, Detections) and t.labels is not None
        for p, t in zip(preds, truths, strict=True)
    )
    if use_masks:
        tp = fp = fn = 0
        for p, t in zip(preds, truths, strict=True):
            kept = p.ids[p.scores > score_threshold]
            pl = np.where(np.isin(p.labels, kept), p.labels, 0)
            r = mask_f1(pl, t.labels, 0.5)
            tp, fp, fn = tp + r["tp"], fp + r["fp"], fn + r["fn"]
        f1_iou50 = _prf(tp, fp, fn)["f1"]
    else:
        f1_iou50 = at50["f1"]
    return {
        "n_images": len(preds),
        "n_truth": int(sum(_boxes_of(t).shape[0] for t in truths)),
        "n_pred": int(sum(len(p) for p in preds)),
        "n_pred_scored": at50["tp"] + at50["fp"],
        "score_threshold": score_threshold,
        "precision_iou50": at50["precision"],
        "recall_iou50": at50["recall"],
        "precision_iou10": at10["precision"],
        "recall_iou10": at10["recall"],
        "ap50": average_precision(preds, truths, 0.5),
        "f1_iou50": f1_iou50,
        "f1_iou50_basis": "mask" if use_masks else "box",
        "box_f1_iou50": at50["f1"],
        "best_f1": best["f1"],
        "best_f1_score": best["score"],
        "tp_iou50": at50["tp"], "fp_iou50": at50["fp"], "fn_iou50": at50["fn"],
        "tp_iou10": at10["tp"], "fp_iou10": at10["fp"], "fn_iou10": at10["fn"],
    }
