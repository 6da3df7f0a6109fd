"""Training data: crops in memory, splits by source image, sampling weights, augmentation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError


@dataclass
class CropSet:
    """Crops (``N x S x S x C``), their class index, the class names and the annotation table."""

    crops: np.ndarray
    y: np.ndarray
    classes: list[str]
    table: pd.DataFrame

    def subset(self, mask: np.ndarray) -> CropSet:
        return CropSet(self.crops[mask], self.y[mask], self.classes,
                       self.table[mask].reset_index(drop=True))

    def counts(self) -> dict[str, int]:
        return {c: int((self.y == i).sum()) for i, c in enumerate(self.classes)}


def load_annotations(
    voc: str | Path | None = None,
    folders: str | Path | None = None,
    label_map: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The annotation table from a VOC folder or class folders (exactly one of them)."""
    from hcs.io.annotations import read_class_folders, read_voc

    if (voc is None) == (folders is None):
        raise InputError("give exactly one data source: --annotations DIR, --folders DIR or "
                         "--truth DIR")
    if voc is not None:
        return read_voc(voc, label_map or None)
    return read_class_folders(folders)  # type: ignore[arg-type]


def build_cropset(
    table: pd.DataFrame,
    classes: Sequence[str],
    size: int,
    margin: float,
    square: bool = True,
    pad_mode: str = "constant",
    channels: int | None = None,
) -> CropSet:
    """Cut every annotated box of ``table`` and map its label to an index of ``classes``."""
    from hcs.classify.crops import crops_from_table

    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise InputError(f"annotation classes {unknown} are not model classes {list(classes)}")
    table = table.reset_index(drop=True)
    crops = crops_from_table(table, size, margin, square, pad_mode, channels)
    y = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(int)
    return CropSet(crops, y, list(classes), table)


def split_by_image(
    sources: Sequence[str], fractions: dict[str, float], seed: int = 0
) -> dict[str, list[str]]:
    """Split unique source images into named parts (no image in two parts).

    Parameters
    ----------
    sources
        Source image name per crop (duplicates allowed).
    fractions
        Part name -> share of images; the remainder goes to ``train``.
    seed
        The shuffle seed (same seed, same split).

    Examples
    --------
    >>> s = split_by_image([f"i{k}" for k in range(10)] * 3, {"test": 0.2}, seed=0)
    >>> len(s["test"]), len(s["train"]), set(s["test"]) & set(s["train"])
    (2, 8, set())
    """
    uniq = np.array(sorted(set(sources)))
    if len(uniq) < 2:
        raise InputError(f"need at least 2 source images to split, got {len(uniq)}")
    order = np.random.default_rng(seed).permutation(len(uniq))
    out: dict[str, list[str]] = {}
    start = 0
    for name, frac in fractions.items():
        k = int(round(frac * len(uniq)))
        out[name] = sorted(uniq[order[start : start + k]].tolist())
        start += k
    out["train"] = sorted(uniq[order[start:]].tolist())
    if not out["train"]:
        raise InputError(f"split fractions {fractions} leave no training image")
    return out


def inverse_frequency_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weight 1 / (count of its class), for a weighted random sampler.

    Examples
    --------
    >>> inverse_frequency_weights(np.array([0, 0, 0, 1]), 2).tolist()
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 1.0]
    """
    counts = np.bincount(y, minlength=n_classes).astype(float)
    empty = [i for i in range(n_classes) if counts[i] == 0]
    if empty:
        raise InputError(f"class index(es) {empty} have no training example")
    return 1.0 / counts[y]


def augment_batch(x: "torch.Tensor", generator: "torch.Generator") -> "torch.Tensor":  # noqa: F821, UP037
    """Random flips and 90-degree rotations, drawn per sample (``N x C x H x W``)."""
    import torch

    n = x.shape[0]
    flips = torch.randint(0, 2, (n, 2), generator=generator)
    rots = torch.randint(0, 4, (n,), generator=generator)
    out = x.clone()
    for i in range(n):
        xi = out[i]
        if flips[i, 0]:
            xi = xi.flip(-1)
        if flips[i, 1]:
            xi = xi.flip(-2)
        if rots[i]:
            xi = torch.rot90(xi, int(rots[i]), dims=(-2, -1))
        out[i] = xi
    return out


def channel_stats(crops: np.ndarray, scale: float = 1 / 255) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``crops * scale`` (the model card's normalisation)."""
    x = crops.reshape(-1, crops.shape[-1]).astype(np.float64) * scale
    std = x.std(axis=0)
    std[std == 0] = 1.0
    return x.mean(axis=0).tolist(), std.tolist()
