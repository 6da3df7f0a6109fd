"""Batched classifier inference on CPU or GPU: crops in, class probabilities out."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from hcs.errors import InputError


def select_device(spec: str = "auto") -> Any:
    """``auto`` (first CUDA GPU if any, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Examples
    --------
    >>> str(select_device("cpu"))
    'cpu'
    """
    import torch

    s = (spec or "auto").strip().lower()
    if s == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if s == "cpu":
        return torch.device("cpu")
    if s.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {spec!r}: no CUDA GPU is available here (use cpu or auto)")
        dev = torch.device(s)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {spec!r}: only {torch.cuda.device_count()} GPU(s)")
        return dev
    raise InputError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N")


def to_tensor(crops: np.ndarray, mean: list[float], std: list[float], scale: float) -> Any:
    """``N x H x W x C`` crops -> normalised float32 ``N x C x H x W`` tensor."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x * scale - m) / s


def check_crops(crops: np.ndarray, in_chans: int, size: int | None = None, what: str = "") -> None:
    """Raise :class:`InputError` unless ``crops`` is ``N x H x W x in_chans``."""
    shape = np.shape(crops)
    where = f"{what}: " if what else ""
    if len(shape) != 4:
        raise InputError(f"{where}crops must be N x H x W x C, got shape {shape}")
    if shape[3] != in_chans:
        raise InputError(
            f"{where}crops have {shape[3]} channel(s) but the model expects {in_chans}"
        )
    if size is not None and (shape[1], shape[2]) != (size, size):
        raise InputError(f"{where}crops are {shape[1]}x{shape[2]}, the model expects {size}x{size}")


def predict_proba(
    model: Any,
    crops: np.ndarray,
    batch_size: int = 128,
    device: str = "auto",
    amp: bool = True,
) -> np.ndarray:
    """Class probabilities of ``N x H x W x C`` crops (a loaded model folder).

    Parameters
    ----------
    model
        A loaded model (its card gives channels, crop size and normalisation).
    crops
        Crops as cut by :func:`hcs.classify.crops.crop_box` (pixel values, not normalised).
    batch_size
        Crops per forward pass.
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    amp
        Mixed precision (autocast); used on CUDA only, CPU always runs float32.

    Returns
    -------
    numpy.ndarray
        ``N x n_classes`` float32, rows sum to 1, columns in ``model.card.classes`` order.
    """
    import torch

    card = model.card
    check_crops(crops, card.in_chans, card.crop.size, what=card.name)
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    dev = select_device(device)
    net = model.module.to(dev).eval()
    n = card.normalisation
    out = np.empty((len(crops), len(card.classes)), dtype=np.float32)
    use_amp = amp and dev.type == "cuda"
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = to_tensor(crops[i : i + batch_size], n.mean, n.std, n.scale).to(dev)
            ctx = torch.autocast("cuda") if use_amp else contextlib.nullcontext()
            with ctx:
                logits = net(x)
            out[i : i + len(x)] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return out


def pooled_features(model: Any, crops: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Pooled penultimate features (``N x F``) on CPU, e.g. for a t-SNE embedding plot."""
    import torch

    card = model.card
    check_crops(crops, card.in_chans, card.crop.size, what=card.name)
    net = model.module.cpu().eval()
    n = card.normalisation
    feats = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = to_tensor(crops[i : i + batch_size], n.mean, n.std, n.scale)
            feats.append(net.forward_head(net.forward_features(x), pre_logits=True).numpy())
    return np.concatenate(feats)


def classify_boxes(
    model: Any,
    image: np.ndarray,
    boxes: np.ndarray,
    batch_size: int = 128,
    device: str = "auto",
) -> np.ndarray:
    """Probabilities for cells of one field: ``image`` (``H x W x C``) and ``N x 4`` boxes.

    Crops follow the model card (size, margin, square padding, pad mode); the image's channels
    must already be the card's input channels (see :func:`hcs.classify.crops.compose_channels`).

    Examples
    --------
    >>> from hcs.classify.models import LoadedModel, ModelCard, create_classifier
    >>> card = ModelCard(name="t", assay="livedead", classes=["live", "dead"],
    ...     architecture="lcnet_050", in_chans=1, channels=[{"name": "brightfield"}],
    ...     crop=dict(size=16, margin=0.25), normalisation=dict(mean=[0.5], std=[0.2]))
    >>> m = LoadedModel(create_classifier("lcnet_050", 2, 1).eval(), card, None)
    >>> classify_boxes(m, np.zeros((40, 40, 1)), np.array([[0, 0, 8, 8], [30, 30, 40, 40]]),
    ...                device="cpu").shape
    (2, 2)
    """
    from hcs.classify.crops import crop_box

    card = model.card
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    crops = np.stack([
        crop_box(img, b, card.crop.size, card.crop.margin, card.crop.square, card.crop.pad_mode)
        for b in boxes
    ]) if len(boxes) else np.zeros((0, card.crop.size, card.crop.size, img.shape[2]), np.float32)
    return predict_proba(model, crops, batch_size=batch_size, device=device)
