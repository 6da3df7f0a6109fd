"""Decision rules: class probabilities -> per-cell labels, as declarative data + small functions.

- ``cic`` (AIM-CICs): argmax, but a cell whose top probability is below 0.2 is ``non_cic``; the
  ``f_category`` is excluded from counting.
- ``livedead``: argmax of live / dead.
- ``cancer``: fused score ``S = (1 - w) S_det + w S_cls`` with ``w = 0.7``, then argmax.
- ``mitosis``: mitotic vs not, then one of 4 stages; for z-stacks the model outputs on the x, y
  and z max projections compete and the least-entropy prediction wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hcs.assays.registry import DecisionRule, get_assay
from hcs.errors import InputError


def get_rule(assay: str) -> DecisionRule:
    """The :class:`DecisionRule` of ``assay`` (its registry declaration's ``rule``).

    Examples
    --------
    >>> get_rule("cic").fallback, get_rule("cancer").fusion_weight
    ('non_cic', 0.7)
    """
    return get_assay(assay).rule


def _proba(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    p = np.atleast_2d(np.asarray(proba, dtype=float))
    if p.shape[1] != len(classes):
        raise InputError(f"probabilities have {p.shape[1]} columns but {len(classes)} classes")
    return p


def apply_rule(
    proba: np.ndarray, classes: Sequence[str], rule: DecisionRule | str
) -> np.ndarray:
    """Label per cell: argmax, with the rule's low-confidence fallback.

    With a ``mitotic_threshold`` (mitosis) the call is hierarchical: the first class is the
    negative (``non_mitotic``), ``P(mitotic)`` is one minus its probability, and a cell with
    ``P(mitotic) >= threshold`` gets its most probable stage (:func:`mitosis_labels`), even when
    the negative class has the single largest probability.

    Examples
    --------
    >>> from hcs.assays import get_assay
    >>> cls = get_assay("cic").classes
    >>> apply_rule([[0.1, 0.18, 0.12, 0.15, 0.15, 0.13, 0.17]], cls, "cic").tolist()
    ['non_cic']
    >>> apply_rule([[0.05, 0.7, 0.05, 0.05, 0.05, 0.05, 0.05]], cls, "cic").tolist()
    ['one_in_one']
    >>> m = get_assay("mitosis").classes
    >>> apply_rule([[0.4, 0.1, 0.1, 0.3, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1]], m, "mitosis").tolist()
    ['prometaphase_metaphase', 'non_mitotic']
    """
    rule = get_rule(rule) if isinstance(rule, str) else rule
    p = _proba(proba, classes)
    if rule.mitotic_threshold is not None:
        # hierarchical: P(mitotic) = 1 - P(first class, the negative); then the top stage
        return mitosis_labels(1.0 - p[:, 0], p[:, 1:], list(classes)[1:],
                              rule.mitotic_threshold, str(classes[0]))
    labels = np.asarray(classes, dtype=object)[np.argmax(p, axis=1)]
    if rule.min_confidence > 0:
        if rule.fallback not in classes:
            raise InputError(f"rule {rule.assay}: fallback {rule.fallback!r} is not a class")
        labels[p.max(axis=1) < rule.min_confidence] = rule.fallback
    return labels


def counted(labels: np.ndarray, rule: DecisionRule | str) -> np.ndarray:
    """Mask of cells that count towards the analysed total (not in an excluded class).

    Examples
    --------
    >>> counted(np.array(["partial", "f_category", "non_cic"]), "cic").tolist()
    [True, False, True]
    """
    rule = get_rule(rule) if isinstance(rule, str) else rule
    return ~np.isin(np.asarray(labels, dtype=object), list(rule.excluded))


def fuse_scores(s_det: np.ndarray, s_cls: np.ndarray, w: float = 0.7) -> np.ndarray:
    """Fused score ``S = (1 - w) S_det + w S_cls`` (cancer assay; ``S_det`` per cell, broadcast).

    Examples
    --------
    >>> fuse_scores(np.array([1.0]), np.array([0.5]), 0.7).round(2).tolist()
    [0.65]
    """
    if not 0 <= w <= 1:
        raise InputError(f"fusion weight w must be in [0, 1], got {w}")
    s_det = np.asarray(s_det, dtype=float)
    s_cls = np.asarray(s_cls, dtype=float)
    if s_cls.ndim == 2 and s_det.ndim == 1:
        s_det = s_det[:, None]
    return (1 - w) * s_det + w * s_cls


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = np.clip(np.asarray(proba, dtype=float), 1e-12, 1)
    return -(p * np.log(p)).sum(axis=-1)


def least_entropy(probas: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the prediction (among views, e.g. x/y/z projections) with the least entropy.

    Returns
    -------
    (proba, view)
        The chosen ``N x K`` probabilities and the index of the winning view per cell.

    Examples
    --------
    >>> xy = np.array([[0.5, 0.5], [0.9, 0.1]])
    >>> xz = np.array([[0.95, 0.05], [0.6, 0.4]])
    >>> p, v = least_entropy([xy, xz])
    >>> v.tolist(), p[:, 0].tolist()
    ([1, 0], [0.95, 0.9])
    """
    stack = np.stack([np.asarray(p, dtype=float) for p in probas])  # V x N x K
    view = np.argmin(entropy(stack), axis=0)
    return stack[view, np.arange(stack.shape[1])], view


def mitosis_labels(
    p_mitotic: np.ndarray, p_stage: np.ndarray, stages: Sequence[str],
    threshold: float = 0.5, negative: str = "non_mitotic",
) -> np.ndarray:
    """Hierarchical mitosis call: ``negative`` unless P(mitotic) >= threshold, then the top stage.

    Examples
    --------
    >>> st = ["pro", "early_prometa", "prometa_meta", "ana_telo_cyto"]
    >>> p_stage = np.array([[.7, .1, .1, .1], [.1, .1, .1, .7]])
    >>> mitosis_labels(np.array([0.2, 0.8]), p_stage, st).tolist()
    ['non_mitotic', 'ana_telo_cyto']
    """
    pm = np.asarray(p_mitotic, dtype=float).ravel()
    ps = _proba(p_stage, stages)
    out = np.asarray(stages, dtype=object)[np.argmax(ps, axis=1)]
    out[pm < threshold] = negative
    return out


def pair_partners(labels: Sequence[str], xy_um: np.ndarray, paired_class: str,
                  max_um: float) -> np.ndarray:
    """Detections that are the second half of a two-object cell (an anaphase's other mass).

    Among the detections labelled ``paired_class``, two that are each other's nearest and at
    most ``max_um`` apart form a pair; the later one (higher row index) is the partner of the
    earlier one, which stands for the cell.

    Parameters
    ----------
    labels
        Label per detection (one field).
    xy_um
        ``N x 2`` detection centres in micrometres.

    Returns
    -------
    numpy.ndarray
        Per detection, the row index of the detection it is the partner of, or -1.

    Examples
    --------
    >>> lab = ["ana", "ana", "ana", "non", "ana"]
    >>> xy = np.array([[0, 0], [8, 0], [100, 0], [4, 1], [130, 0]], float)
    >>> pair_partners(lab, xy, "ana", 15.0).tolist()
    [-1, 0, -1, -1, -1]
    """
    lab = np.asarray(labels, dtype=object)
    out = np.full(len(lab), -1, np.int64)
    idx = np.flatnonzero(lab == paired_class)
    if len(idx) < 2:
        return out
    pts = np.asarray(xy_um, dtype=float)[idx]
    d = np.hypot(pts[:, None, 0] - pts[None, :, 0], pts[:, None, 1] - pts[None, :, 1])
    np.fill_diagonal(d, np.inf)
    nearest = np.argmin(d, axis=1)
    for a, b in enumerate(nearest):
        if a < b and nearest[b] == a and d[a, b] <= max_um:
            out[idx[b]] = idx[a]
    return out
