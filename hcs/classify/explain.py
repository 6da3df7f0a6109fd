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
