"""Looking inside a classifier: t-SNE embedding of pooled features and Grad-CAM of one crop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcs.errors import InputError


def grad_cam(model: Any, crop: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM heat map (``H x W``, 0-1) of one crop for ``class_index`` (default: predicted).

    The class score's gradient with respect to the last feature map (timm ``forward_features``)
    is averaged per channel and used to weight that map (Selvaraju et al. 2017), then ReLU,
    upsampled to the crop size and scaled to 0-1.
    """
    import torch
    import torch.nn.functional as F

    from hcs.classify.infer import check_crops, to_tensor

    card, net = model.card, model.module.cpu().eval()
    crop = np.asarray(crop)
    check_crops(crop[None], card.in_chans, card.crop.size, what=card.name)
    x = to_tensor(crop[None], card.normalisation.mean, card.normalisation.std,
                  card.normalisation.scale)
    with torch.enable_grad():
        feats = net.forward_features(x)
        feats.retain_grad()
        logits = net.forward_head(feats)
        k = int(logits.argmax()) if class_index is None else int(class_index)
        if not 0 <= k < logits.shape[1]:
            raise InputError(f"class index {k} outside 0..{logits.shape[1] - 1}")
        logits[0, k].backward()
    weights = feats.grad.mean(dim=(2, 3), keepdim=True)  # type: ignore[union-attr]
    cam = F.relu((weights * feats).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=crop.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    top = float(cam.max())
    return (cam / top).numpy() if top > 0 else cam.numpy()


def embedding_figure(
    features: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence[str],
    seed: int = 0,
    max_points: int = 3000,
) -> Any:
    """Plotly figure: t-SNE of pooled features, coloured by true (left) and predicted class."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 5:
        raise InputError(f"need at least 5 crops for an embedding plot, got {n}")
    idx = np.random.default_rng(seed).permutation(n)[:max_points]
    xy = TSNE(2, random_state=seed, perplexity=min(30.0, (len(idx) - 1) / 3),
              init="pca").fit_transform(features[idx])
    fig = make_subplots(1, 2, subplot_titles=("true class", "predicted class"))
    for col, lab in ((1, np.asarray(y_true)[idx]), (2, np.asarray(y_pred)[idx])):
        for k, name in enumerate(classes):
            m = lab == k
            fig.add_trace(go.Scattergl(
                x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, legendgroup=name,
                showlegend=col == 1, marker=dict(size=4, color=_COLOURS[k % len(_COLOURS)]),
            ), 1, col)
    fig.update_layout(title="t-SNE of pooled features", width=1000, height=480)
    return fig


_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


def write_embedding(
    model: Any, crops: np.ndarray, y_true: np.ndarray, proba: np.ndarray, path: str | Path
) -> Path:
    """Compute pooled features and write the embedding figure as a self-contained HTML file."""
    from hcs.classify.infer import pooled_features

    feats = pooled_features(model, crops)
    fig = embedding_figure(feats, y_true, np.argmax(proba, 1), model.card.classes)
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True)
    return path


def heat_colours(cam: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 colours of a 0-1 map (blue - cyan - yellow - red, a 'jet'-like ramp).

    Examples
    --------
    >>> heat_colours(np.array([[0.0, 1.0]])).tolist()
    [[[0, 0, 128], [128, 0, 0]]]
    """
    v = np.clip(np.asarray(cam, dtype=np.float32), 0, 1)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.rint(np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def _display(crop: np.ndarray) -> np.ndarray:
    """A crop as ``H x W x 3`` uint8 for viewing (grey replicated, > 3 channels: first 3)."""
    c = np.clip(np.asarray(crop, dtype=np.float32), 0, 255).astype(np.uint8)
    if c.shape[2] == 1:
        return np.repeat(c, 3, axis=2)
    if c.shape[2] == 2:
        return np.concatenate([c, np.zeros_like(c[:, :, :1])], axis=2)
    return c[:, :, :3]


def overlay_panel(crop: np.ndarray, cam: np.ndarray, alpha: float = 0.45,
                  scale: int = 4) -> np.ndarray:
    """The crop and the crop with its Grad-CAM map blended on top, side by side, enlarged
    ``scale`` times (nearest neighbour), as ``(H * scale) x (2 W * scale + scale) x 3`` uint8.

    Examples
    --------
    >>> overlay_panel(np.zeros((8, 8, 1), np.uint8), np.ones((8, 8)), scale=2).shape
    (16, 34, 3)
    """
    img = _display(crop).astype(np.float32)
    blend = (1 - alpha) * img + alpha * heat_colours(cam).astype(np.float32)
    gap = np.full((img.shape[0], 1, 3), 255, np.float32)
    panel = np.concatenate([img, gap, blend], axis=1)
    panel = np.repeat(np.repeat(panel, scale, axis=0), scale, axis=1)
    return np.clip(np.rint(panel), 0, 255).astype(np.uint8)


def pick_examples(y_true: np.ndarray, proba: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` crop indices spread over the true classes (round robin, random within a class).

    Examples
    --------
    >>> pick_examples(np.array([0, 0, 0, 1]), np.zeros((4, 2)), 2).tolist()[1]
    3
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y_true)
    pools = [rng.permutation(np.flatnonzero(y == k)).tolist() for k in range(proba.shape[1])]
    out: list[int] = []
    while len(out) < min(n, len(y)):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop(0))
    return np.asarray(out, dtype=np.int64)


def _grad_cam_folder_not_ours(path: Path) -> str | None:
    """A folder of :func:`write_grad_cams`: ``index.csv`` and PNGs only (``None``), else why not."""
    if path.is_symlink() or not path.is_dir() or not (path / "index.csv").is_file():
        return "not a Grad-CAM folder written by hcs (no index.csv)"
    foreign = sorted(p.name for p in path.iterdir()
                     if p.name != "index.csv" and not (p.suffix == ".png" and p.is_file()))
    return f"holds {foreign[0]!r}, which hcs did not write" if foreign else None


def write_grad_cams(
    model: Any,
    crops: np.ndarray,
    y_true: np.ndarray,
    proba: np.ndarray,
    out: str | Path,
    n: int = 8,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write Grad-CAM overlays (PNG) of ``n`` crops spread over the classes, and ``index.csv``.

    Each PNG shows the crop and the crop with the Grad-CAM map of the *predicted* class; its
    name says the true and predicted class. The folder is written next to its place and renamed,
    so a failure leaves nothing.
    """

    import pandas as pd
    from skimage.io import imsave

    from hcs.atomic import atomic_dir, check_replaceable

    out = Path(out)
    check_replaceable(out, overwrite=overwrite, not_ours=_grad_cam_folder_not_ours)
    if n < 1:
        raise InputError(f"--n must be >= 1, got {n}")
    if len(crops) == 0:
        raise InputError("no crop to explain")
    classes = list(model.card.classes)
    with atomic_dir(out, overwrite=overwrite, not_ours=_grad_cam_folder_not_ours) as tmp:
        rows = []
        for k, i in enumerate(pick_examples(y_true, proba, n, seed)):
            pred = int(np.argmax(proba[i]))
            cam = grad_cam(model, crops[i], pred)
            name = f"{k:03d}_true-{classes[int(y_true[i])]}_pred-{classes[pred]}.png"
            imsave(tmp / name, overlay_panel(crops[i], cam), check_contrast=False)
            rows.append({"file": name, "crop": int(i), "true": classes[int(y_true[i])],
                         "predicted": classes[pred], "p_predicted": float(proba[i, pred])})
        pd.DataFrame(rows).to_csv(tmp / "index.csv", index=False)
    return out
