"""Tiled detection of large fields: overlapping tiles, owner regions, NMS across tiles.

A 2160 x 2560 field is too large for one pass of a detector in bounded memory (AIM-CICs split
each image into a 4 x 4 grid). Here the field is cut into tiles of ``size`` pixels that overlap
by at least ``overlap`` pixels; neighbouring tiles divide their overlap at its middle, so every
pixel belongs to exactly one tile's *owner region*. A detection is kept only by the tile that
owns its box centre, and then non-maximum suppression runs across all kept boxes (a safety net
for an object whose centre moves across an owner boundary between two tiles' predictions).

When every object is smaller than ``overlap / 2`` on each side of its centre, the tile that owns
its centre sees it whole with at least ``overlap / 2`` pixels of context, so a detector whose
output depends on a bounded neighbourhood gives the same boxes tiled and untiled.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hcs.errors import InputError

__all__ = ["tile_starts", "tile_grid", "owner_bounds", "nms", "detect_tiled"]


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``size`` covering ``[0, length)`` with >= ``overlap`` overlap.

    Tiles are spread evenly (the last ends exactly at ``length``).

    Examples
    --------
    >>> tile_starts(2160, 600, 60)
    [0, 520, 1040, 1560]
    >>> tile_starts(300, 512, 64)
    [0]
    """
    if size <= overlap:
        raise InputError(f"tile size {size} must exceed the overlap {overlap}")
    if length <= size:
        return [0]
    n = int(np.ceil((length - overlap) / (size - overlap)))
    n = max(n, 2)
    return [int(round(i * (length - size) / (n - 1))) for i in range(n)]


def owner_bounds(starts: list[int], size: int) -> list[tuple[float, float]]:
    """The owner interval ``[lo, hi)`` of each tile: overlaps are divided at their middle.

    Examples
    --------
    >>> owner_bounds([0, 520, 1040], 600)
    [(-inf, 560.0), (560.0, 1080.0), (1080.0, inf)]
    """
    out = []
    for i, s in enumerate(starts):
        lo = -np.inf if i == 0 else (starts[i - 1] + size + s) / 2
        hi = np.inf if i == len(starts) - 1 else (s + size + starts[i + 1]) / 2
        out.append((float(lo), float(hi)))
    return out


def tile_grid(shape: tuple[int, int], size: int, overlap: int) -> list[tuple[int, int]]:
    """``(y0, x0)`` of every tile of a ``(H, W)`` image."""
    ys = tile_starts(shape[0], size, overlap)
    xs = tile_starts(shape[1], size, overlap)
    return [(y, x) for y in ys for x in xs]


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float,
        classes: np.ndarray | None = None) -> np.ndarray:
    """Indices kept by (per-class) non-maximum suppression, by decreasing score.

    Examples
    --------
    >>> b = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    import torch
    from torchvision.ops import batched_nms

    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    cls = np.zeros(len(boxes), np.int64) if classes is None else np.asarray(classes, np.int64)
    keep = batched_nms(torch.as_tensor(boxes, dtype=torch.float32),
                       torch.as_tensor(scores, dtype=torch.float32),
                       torch.as_tensor(cls), iou)
    return keep.numpy()


Predict = Callable[[list[np.ndarray]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def detect_tiled(
    image: np.ndarray, predict: Predict, size: int, overlap: int, nms_iou: float = 0.5,
    batch: int = 4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``predict`` on overlapping tiles of ``image`` and merge the results.

    Parameters
    ----------
    image
        ``(H, W, C)`` array.
    predict
        Maps a list of ``(h, w, C)`` tiles to one ``(boxes, scores, classes)`` per tile, boxes
        in tile pixels.
    size, overlap
        Tile side and minimum overlap (pixels).
    nms_iou
        IoU of the cross-tile non-maximum suppression.
    batch
        Tiles per ``predict`` call (memory stays bounded by ``batch`` tiles).

    Returns
    -------
    tuple
        ``boxes (N, 4)``, ``scores (N,)``, ``classes (N,)`` in image pixels, by decreasing score.

    Examples
    --------
    A "detector" that boxes every bright pixel gives the same result tiled and untiled:

    >>> img = np.zeros((100, 130, 1), np.float32); img[[10, 50, 90], [20, 64, 120]] = 1
    >>> def bright(tiles):
    ...     out = []
    ...     for t in tiles:
    ...         r, c = np.nonzero(t[..., 0])
    ...         b = np.stack([c - 2, r - 2, c + 3, r + 3], 1).astype(np.float32)
    ...         out.append((b, np.ones(len(b), np.float32), np.zeros(len(b), np.int64)))
    ...     return out
    >>> boxes, _, _ = detect_tiled(img, bright, size=48, overlap=16)
    >>> sorted(boxes[:, :2].tolist()) == sorted(bright([img])[0][0][:, :2].tolist())
    True
    """
    h, w = image.shape[:2]
    ys, xs = tile_starts(h, size, overlap), tile_starts(w, size, overlap)
    own_y, own_x = owner_bounds(ys, size), owner_bounds(xs, size)
    cells = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    all_b, all_s, all_c = [], [], []
    for k in range(0, len(cells), batch):
        chunk = cells[k:k + batch]
        tiles = [image[ys[i]:ys[i] + size, xs[j]:xs[j] + size] for i, j in chunk]
        for (i, j), (b, s, c) in zip(chunk, predict(tiles), strict=True):
            b = np.asarray(b, np.float32).reshape(-1, 4) + np.array(
                [xs[j], ys[i], xs[j], ys[i]], np.float32)
            cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
            keep = ((cy >= own_y[i][0]) & (cy < own_y[i][1]) &
                    (cx >= own_x[j][0]) & (cx < own_x[j][1]))
            all_b.append(b[keep])
            all_s.append(np.asarray(s, np.float32)[keep])
            all_c.append(np.asarray(c, np.int64)[keep])
    boxes = np.concatenate(all_b) if all_b else np.zeros((0, 4), np.float32)
    scores = np.concatenate(all_s) if all_s else np.zeros(0, np.float32)
    classes = np.concatenate(all_c) if all_c else np.zeros(0, np.int64)
    keep = nms(boxes, scores, nms_iou, classes)
    return boxes[keep], scores[keep], classes[keep]
