"""Detection training data: annotated images -> arrays + boxes, split by image, augmentation.

Boxes follow :mod:`hcs.detect` (continuous pixel edges, ``x1``/``y1`` exclusive). Pascal VOC
stores 1-based inclusive pixel indices, so ``xmin, ymin`` are shifted by -1 on reading; VIA
boxes are already 0-based edges.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcs.errors import InputError

__all__ = ["DetectionSet", "read_detection_set", "resolve_split", "augment_sample", "random_crop"]


@dataclass
class DetectionSet:
    """Images (``(H, W, C)`` float32, 0-255), their boxes and class indices, by source name."""

    sources: list[str]
    images: list[np.ndarray]
    boxes: list[np.ndarray]
    classes: list[np.ndarray]
    class_names: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, names: Sequence[str]) -> DetectionSet:
        """The images whose source is in ``names`` (in this set's order)."""
        want = set(names)
        idx = [i for i, s in enumerate(self.sources) if s in want]
        return DetectionSet([self.sources[i] for i in idx], [self.images[i] for i in idx],
                            [self.boxes[i] for i in idx], [self.classes[i] for i in idx],
                            list(self.class_names), dict(self.meta))


def _to_0_255(img: np.ndarray) -> np.ndarray:
    from hcs.classify.crops import rescale_0_255

    if img.dtype == np.uint8:
        return img.astype(np.float32)
    return np.stack([rescale_0_255(img[:, :, c]) for c in range(img.shape[2])], axis=2)


def read_detection_set(
    annotations: str | Path, fmt: str = "voc", in_chans: int = 1, class_agnostic: bool = True,
    via_attribute: str | None = None, only: Sequence[str] | None = None,
) -> DetectionSet:
    """Read annotated images for detector training or evaluation.

    Parameters
    ----------
    annotations
        VOC: a folder of ``*.xml`` (images next to them). VIA: a JSON file, or a folder holding
        exactly one ``*.json``.
    fmt
        ``"voc"`` or ``"via"``.
    in_chans
        Channels fed to the detector; RGB images asked for one channel are converted to grey
        with the ITU-R 601 luma weights, grey images are replicated for 3.
    class_agnostic
        Every box is one class ``"cell"``; otherwise the annotation labels, sorted.
    via_attribute
        VIA region attribute holding the class (default: the only one).
    only
        Read only these source images (e.g. one part of a split); a name without any box is
        an error.
    """
    from hcs.classify.crops import as_channels, read_image
    from hcs.io.annotations import read_via, read_voc

    path = Path(annotations)
    if fmt == "voc":
        table = read_voc(path)
        table[["x0", "y0"]] -= 1.0  # 1-based inclusive -> 0-based edges
    elif fmt == "via":
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if len(found) != 1:
                raise InputError(f"{path}: expected one VIA *.json in the folder, found "
                                 f"{len(found)}; pass the file")
            path = found[0]
        table = read_via(path, attribute=via_attribute)
        if table.empty:
            raise InputError(f"{path}: no region in this VIA file")
    else:
        raise InputError(f"annotation format {fmt!r}: expected voc or via")
    if table.empty:
        raise InputError(f"{annotations}: no annotated box")
    names = ["cell"] if class_agnostic else sorted(table["label"].unique().tolist())
    if only is not None:
        missing = sorted(set(only) - set(table["source"]))
        if missing:
            raise InputError(f"{annotations}: {len(missing)} requested image(s) have no "
                             f"annotation, e.g. {missing[0]!r}")
        table = table[table["source"].isin(set(only))]
    index = {n: i for i, n in enumerate(names)}
    out = DetectionSet([], [], [], [], names, {"annotations": str(annotations), "format": fmt})
    for image_path, rows in table.groupby("image", sort=True):
        img = as_channels(_to_0_255(read_image(image_path)), in_chans, where=str(image_path))
        h, w = img.shape[:2]
        b = rows[["x0", "y0", "x1", "y1"]].to_numpy(np.float32)
        b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
        b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
        ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        labels = np.zeros(len(rows), np.int64) if class_agnostic else \
            rows["label"].map(index).to_numpy(np.int64)
        out.sources.append(str(rows["source"].iloc[0]))
        out.images.append(np.ascontiguousarray(img, dtype=np.float32))
        out.boxes.append(b[ok])
        out.classes.append(labels[ok])
    if len(set(out.sources)) != len(out.sources):
        raise InputError(f"{annotations}: two images share a file name; sources must be unique")
    return out


def resolve_split(
    sources: Sequence[str], split: str | Path | None, val_fraction: float, test_fraction: float,
    seed: int,
) -> dict[str, list[str]]:
    """``{"train", "val", "test"}`` lists of source names: from a split.json or by fractions.

    A split file (e.g. ``models/livedead-ldc/split.json``) lists ``test`` / ``val`` / ``train``
    source names; images it does not mention are ignored, mentioned images that are missing
    are an error. Without one, images are shuffled with ``seed`` (same seed, same split).
    """
    from hcs.train.datasets import split_by_image

    if split is None:
        parts = split_by_image(list(sources), {"test": test_fraction, "val": val_fraction}, seed)
        return {k: parts.get(k, []) for k in ("train", "val", "test")}
    p = Path(split)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p}: split file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "train" not in data:
        raise InputError(f"{p}: expected an object with 'train' (and 'val', 'test') lists")
    have = set(sources)
    out = {}
    for part in ("train", "val", "test"):
        names = [str(s) for s in data.get(part, [])]
        missing = [s for s in names if s not in have]
        if missing:
            raise InputError(f"{p}: {len(missing)} {part} image(s) not in the annotations, "
                             f"e.g. {missing[0]!r}")
        out[part] = names
    seen: dict[str, str] = {}
    for part, names in out.items():
        for s in names:
            if s in seen:
                raise InputError(f"{p}: image {s!r} is in both {seen[s]} and {part}")
            seen[s] = part
    return out


def random_crop(
    img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator,
    min_visible: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` window (smaller images are kept whole), mostly around an object.

    Boxes are clipped to the window; a box keeping less than ``min_visible`` of its area is
    dropped (a sliver of a cell at the edge is not a cell to find).

    Examples
    --------
    >>> img = np.zeros((100, 100, 1), np.float32)
    >>> b = np.array([[40, 40, 60, 60]], np.float32)
    >>> _, bb, lab = random_crop(img, b, np.array([0]), 50, np.random.default_rng(0))
    >>> len(bb) in (0, 1) and bool(np.all(bb >= 0) and np.all(bb <= 50))
    True
    """
    h, w = img.shape[:2]
    if h <= size and w <= size:
        return img, boxes, labels
    ch, cw = min(size, h), min(size, w)
    if len(boxes) and rng.random() < 0.8:  # window around a random object's centre
        b = boxes[rng.integers(len(boxes))]
        cy, cx = (b[1] + b[3]) / 2, (b[0] + b[2]) / 2
        y0 = int(np.clip(cy - rng.uniform(0.2, 0.8) * ch, 0, h - ch))
        x0 = int(np.clip(cx - rng.uniform(0.2, 0.8) * cw, 0, w - cw))
    else:
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = boxes - np.array([x0, y0, x0, y0], np.float32)
    area = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, cw)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, ch)
    vis = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
    keep = (vis >= min_visible * np.maximum(area, 1e-6)) & (out[:, 2] - out[:, 0] >= 2) & (
        out[:, 3] - out[:, 1] >= 2)
    return img[y0:y0 + ch, x0:x0 + cw], out[keep], labels[keep]


def augment_sample(
    img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.8, 1.25),
) -> tuple[Any, Any]:
    """Random flips, 90-degree rotation, scale and brightness/contrast of one sample.

    Rotations are by multiples of 90 degrees, which keep axis-aligned boxes exact (an arbitrary
    angle would inflate every box). Returns a ``(C, H, W)`` float tensor (0-255) and boxes.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    b = torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4).clone()
    _, h, w = x.shape
    if rng.random() < 0.5:  # horizontal flip
        x = x.flip(2)
        b[:, [0, 2]] = w - b[:, [2, 0]]
    if rng.random() < 0.5:  # vertical flip
        x = x.flip(1)
        b[:, [1, 3]] = h - b[:, [3, 1]]
    if rng.random() < 0.5:  # transpose; with the flips this gives all 8 right-angle rotations
        x = x.transpose(1, 2)
        b = b[:, [1, 0, 3, 2]]
        h, w = w, h
    s = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    if abs(s - 1) > 1e-3:
        nh, nw = max(8, round(h * s)), max(8, round(w * s))
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        b = b * torch.tensor([nw / w, nh / h, nw / w, nh / h])
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    x = (x * gain + bias).clamp(0, 255)
    return x.contiguous(), b
