"""The result type of every detector: :class:`Detections` (boxes, scores, optional label mask).

The box and centroid conventions are those of :mod:`hcs.detect`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hcs.errors import InputError

__all__ = ["Detections"]


@dataclass(eq=False)
class Detections:
    """Objects found in one 2-D image.

    Parameters
    ----------
    boxes
        ``(N, 4)`` float32, ``(x0, y0, x1, y1)`` in level-0 pixels (see the module docstring).
    scores
        ``(N,)`` float32 confidence in ``[0, 1]``.
    labels
        Optional ``(H, W)`` int32 label mask: 0 is background and object ``i`` (0-based row of
        ``boxes``) has the value ``ids[i]``.
    class_ids
        Optional ``(N,)`` int class index per object (multi-class detectors).
    ids
        ``(N,)`` int32 object ids (the label value in ``labels``); defaults to ``1..N``.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((6, 8), dtype=np.int32)
    >>> lab[1:3, 2:5] = 1
    >>> d = Detections.from_labels(lab)
    >>> d.boxes.tolist(), len(d)
    ([[2.0, 1.0, 5.0, 3.0]], 1)
    >>> d.to_frame()[["x", "y", "area"]].values.tolist()
    [[3.0, 1.5, 6.0]]
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray | None = None
    class_ids: np.ndarray | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"detection boxes must have shape (N, 4), got {boxes.shape}")
        n = boxes.shape[0]
        if not np.all(np.isfinite(boxes)):
            raise InputError("detection boxes contain NaN or infinite coordinates")
        if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            raise InputError("detection boxes must satisfy x1 >= x0 and y1 >= y0")
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if scores.shape[0] != n:
            raise InputError(f"{n} boxes but {scores.shape[0]} scores")
        if np.any(~np.isfinite(scores)):
            raise InputError("detection scores contain NaN or infinite values")
        ids = np.arange(1, n + 1, dtype=np.int32) if self.ids is None else self.ids
        ids = np.asarray(ids, dtype=np.int32).reshape(-1)
        if ids.shape[0] != n:
            raise InputError(f"{n} boxes but {ids.shape[0]} ids")
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim != 2:
                raise InputError(f"label mask must be 2-D, got shape {labels.shape}")
            self.labels = labels.astype(np.int32, copy=False)
        if self.class_ids is not None:
            class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
            if class_ids.shape[0] != n:
                raise InputError(f"{n} boxes but {class_ids.shape[0]} class ids")
            self.class_ids = class_ids
        self.boxes, self.scores, self.ids = boxes, scores, ids

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __repr__(self) -> str:
        mask = "none" if self.labels is None else "x".join(map(str, self.labels.shape))
        classes = "" if self.class_ids is None else ", with class ids"
        return f"Detections(n={len(self)}, label mask {mask}{classes})"

    @classmethod
    def empty(cls, shape: tuple[int, int] | None = None) -> Detections:
        """No detections; with ``shape``, an all-background label mask of that shape."""
        labels = None if shape is None else np.zeros(shape, dtype=np.int32)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), labels=labels)

    @classmethod
    def from_labels(
        cls, labels: np.ndarray, scores: np.ndarray | dict[int, float] | None = None
    ) -> Detections:
        """Detections of every non-zero region of a label mask, ordered by label id.

        Parameters
        ----------
        labels
            2-D integer label mask (0 = background); ids need not be consecutive.
        scores
            ``(N,)`` scores in label-id order, or a ``{label id: score}`` mapping; default 1.0.
        """
        labels = np.asarray(labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise InputError(f"a label mask must be a 2-D integer array, got "
                             f"{labels.dtype} {labels.shape}")
        ids, boxes = _label_boxes(labels)
        if scores is None:
            sc = np.ones(len(ids), np.float32)
        elif isinstance(scores, dict):
            sc = np.array([scores[int(i)] for i in ids], np.float32)
        else:
            sc = np.asarray(scores, np.float32)
        return cls(boxes, sc, labels=labels.astype(np.int32, copy=False), ids=ids)

    def to_frame(self) -> pd.DataFrame:
        """One row per object: ``cell_id, x, y, bbox_x0, bbox_y0, bbox_x1, bbox_y1, area,
        det_score`` (and ``class_id`` when present).

        ``x, y`` is the mask centroid and ``area`` the mask pixel count when a label mask is
        present; otherwise the box centre and box area.
        """
        b = self.boxes.astype(np.float64)
        if self.labels is not None and len(self):
            x, y, area = _mask_centroids(self.labels, self.ids)
        else:
            x = (b[:, 0] + b[:, 2]) / 2 - 0.5
            y = (b[:, 1] + b[:, 3]) / 2 - 0.5
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        frame = pd.DataFrame(
            {
                "cell_id": self.ids.astype(np.int64),
                "x": x,
                "y": y,
                "bbox_x0": b[:, 0],
                "bbox_y0": b[:, 1],
                "bbox_x1": b[:, 2],
                "bbox_y1": b[:, 3],
                "area": np.asarray(area, dtype=np.float64),
                "det_score": self.scores.astype(np.float64),
            }
        )
        if self.class_ids is not None:
            frame["class_id"] = self.class_ids
        return frame


def _label_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted non-zero ids and their boxes ``(x0, y0, x1, y1)`` (exclusive upper edges)."""
    from scipy import ndimage as ndi

    if labels.size and labels.min() < 0:
        raise InputError("a label mask must not contain negative ids")
    if labels.size and int(labels.max()) <= labels.size:  # ids present = non-empty bins
        ids = np.flatnonzero(np.bincount(labels.ravel()))
    else:
        ids = np.unique(labels)
    ids = ids[ids != 0]
    if ids.size == 0:
        return ids.astype(np.int32), np.zeros((0, 4), np.float32)
    native = labels.dtype in (np.int32, np.int64)  # find_objects takes these as they are
    slices = ndi.find_objects(labels if native else labels.astype(np.int64, copy=False))
    boxes = np.array(
        [[slices[i - 1][1].start, slices[i - 1][0].start, slices[i - 1][1].stop,
          slices[i - 1][0].stop] for i in ids],
        dtype=np.float32,
    )
    return ids.astype(np.int32), boxes


def _mask_centroids(
    labels: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid x, y and pixel area of each id in ``labels``.

    The sums of row and column indices are whole numbers far below 2**53, so accumulating them
    over the foreground pixels only gives exactly :func:`scipy.ndimage.sum_labels`'s numbers.
    """
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    lab = flat[nz].astype(np.intp)
    if (lab.size and lab.min() < 0) or (np.asarray(ids) == 0).any():  # scipy's general path
        from scipy import ndimage as ndi

        area = ndi.sum_labels(np.ones(labels.shape), labels, ids)
        rows, cols = np.indices(labels.shape, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (ndi.sum_labels(cols, labels, ids) / area,
                    ndi.sum_labels(rows, labels, ids) / area, area)
    idx = np.array(ids, np.intp, copy=True, ndmin=1)
    size = int(lab.max()) + 1 if lab.size else 1
    found = (idx >= 0) & (idx < size)
    idx[~found] = 0  # bin 0 holds nothing (only non-zero pixels are counted): 0, as scipy
    area = np.bincount(lab, minlength=size).astype(np.float64)[idx]
    rows, cols = np.divmod(nz, labels.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.bincount(lab, weights=rows, minlength=size)[idx] / area
        x = np.bincount(lab, weights=cols, minlength=size)[idx] / area
    return x, y, area
