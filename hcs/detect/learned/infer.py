"""A loaded learned detector: input checks, resize, tiling, torch inference -> Detections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hcs.detect.detections import Detections
from hcs.detect.learned.arch import build_detector
from hcs.detect.learned.card import (
    WEIGHTS,
    DetectorCard,
    TileCard,
    read_detector_card,
    write_detector_folder,
)
from hcs.detect.learned.tiles import detect_tiled
from hcs.errors import InputError

__all__ = ["LearnedDetector", "save_detector", "load_detector", "check_image",
           "detect_with_folder"]


def check_image(image: Any, in_chans: int, where: str = "image") -> np.ndarray:
    """Validate a detector input and return it as float32 ``(H, W, C)``.

    Raises :class:`~hcs.errors.InputError` for a non-numeric, empty or non-finite image and for
    a channel count other than ``in_chans`` (a 2-D image is one channel).

    Examples
    --------
    >>> check_image(np.zeros((4, 5)), 1).shape
    (4, 5, 1)
    >>> check_image(np.zeros((4, 5, 3)), 1)
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: image: the detector expects 1 channel(s), got 3 (shape (4, 5, 3))
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{where}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise InputError(f"{where}: expected (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.shape[2] != in_chans:
        raise InputError(f"{where}: the detector expects {in_chans} channel(s), got "
                         f"{arr.shape[2]} (shape {arr.shape})")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(f"{where}: empty image of shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise InputError(f"{where}: {bad} of {arr.size} values are NaN or infinite")
    return arr


class LearnedDetector:
    """A torchvision detector plus its :class:`DetectorCard`.

    ``detect(image)`` takes one field ``(H, W)`` or ``(H, W, C)`` on the 0-255 scale of the
    card's channels and returns :class:`~hcs.detect.Detections` in input pixels.
    """

    def __init__(self, module: Any, card: DetectorCard, folder: Path | None = None,
                 device: str = "cpu") -> None:
        import torch

        self.module = module.eval()
        self.card = card
        self.folder = folder
        self.device = torch.device(device)
        self.module.to(self.device)

    def __repr__(self) -> str:
        c = self.card
        return (f"LearnedDetector({c.name!r}, {c.architecture}, channels={c.channels}, "
                f"classes={c.classes})")

    def _predict(self, tiles: list[np.ndarray]) -> list[tuple[np.ndarray, ...]]:
        import torch
        import torch.nn.functional as F

        c = self.card
        xs = []
        for t in tiles:
            x = torch.from_numpy(np.ascontiguousarray(t.transpose(2, 0, 1))) * c.input_scale
            if c.scale != 1.0:
                x = F.interpolate(x[None], scale_factor=c.scale, mode="bilinear",
                                  align_corners=False, recompute_scale_factor=False)[0]
            xs.append(x.to(self.device))
        with torch.inference_mode():
            outs = self.module(xs)
        res = []
        for o in outs:
            # class 0 is background (FCOS / RetinaNet heads still score it: drop it)
            fg = (o["labels"] > 0).cpu().numpy()
            b = o["boxes"].cpu().numpy().astype(np.float32)[fg] / np.float32(c.scale)
            res.append((b, o["scores"].cpu().numpy().astype(np.float32)[fg],
                        o["labels"].cpu().numpy().astype(np.int64)[fg] - 1))
        return res

    def detect(self, image: Any, score_threshold: float | None = None, *,
               tile: bool | None = None) -> Detections:
        """Detect objects in one field.

        Parameters
        ----------
        image
            ``(H, W)`` or ``(H, W, C)``, ``C == card.in_chans``, values on the 0-255 scale
            (16-bit planes rescaled first, e.g. 1-99.8 percentiles as the engine does).
        score_threshold
            Keep detections scoring at least this (default: the card's, 0.5).
        tile
            ``None``: tile when the image is larger than ``card.tile.size``; ``True``/``False``
            force tiling on or off.

        Returns
        -------
        Detections
            Boxes in input pixels, scores, and ``class_ids`` (indices into ``card.classes``)
            for multi-class detectors. A constant image (all zero, saturated) gives none.
        """
        c = self.card
        arr = check_image(image, c.in_chans)
        thr = c.score_threshold if score_threshold is None else float(score_threshold)
        if not 0 <= thr <= 1:
            raise InputError(f"score_threshold must be in [0, 1], got {thr}")
        if float(arr.max()) == float(arr.min()):
            return Detections.empty()  # no structure, nothing to find
        h, w = arr.shape[:2]
        big = max(h, w) > c.tile.size
        if tile is None:
            tile = big
        if tile:
            boxes, scores, cls = detect_tiled(arr, self._predict, c.tile.size, c.tile.overlap,
                                              c.nms_iou)
        else:
            boxes, scores, cls = self._predict([arr])[0]
        keep = scores >= thr
        boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
        order = np.argsort(-scores, kind="stable")
        boxes, scores, cls = boxes[order], scores[order], cls[order]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return Detections(boxes, scores, class_ids=cls if len(c.classes) > 1 else None)


def _module_of(model_or_det: Any) -> Any:
    return model_or_det.module if isinstance(model_or_det, LearnedDetector) else model_or_det


def save_detector(
    model_or_det: Any, folder: str | Path, *, name: str | None = None,
    architecture: str | None = None, channels: list[str] | None = None,
    overwrite: bool = False, extra_files: dict[str, str] | None = None, **card_fields: Any,
) -> Path:
    """Write a detector (a :class:`LearnedDetector` or a module from :func:`build_detector`).

    Parameters
    ----------
    model_or_det
        The detector; a bare module needs ``architecture`` and ``channels``.
    folder
        Model folder (written atomically; must not exist unless ``overwrite``).
    name, architecture, channels
        Card fields (taken from the detector's card when it has one).
    **card_fields
        Any other :class:`DetectorCard` field (``classes``, ``mean``, ``std``, ``tile``,
        ``scale``, ``anchor_sizes``, ``training``, ``metrics``, ...).

    Examples
    --------
    >>> import tempfile
    >>> m = build_detector("fasterrcnn_resnet18_fpn", in_chans=1)
    >>> d = Path(tempfile.mkdtemp()) / "tiny"
    >>> _ = save_detector(m, d, architecture="fasterrcnn_resnet18_fpn", channels=["brightfield"])
    >>> load_detector(d).card.channels
    ['brightfield']
    """
    from hcs import __version__

    module = _module_of(model_or_det)
    if isinstance(model_or_det, LearnedDetector):
        base = model_or_det.card.model_dump()
    else:
        if architecture is None or channels is None:
            raise InputError("save_detector: a bare module needs architecture= and channels=")
        n = len(channels)
        base = dict(mean=list(module.transform.image_mean[:n]),
                    std=list(module.transform.image_std[:n]))
    base.update({k: v for k, v in dict(name=name, architecture=architecture,
                                       channels=channels).items() if v is not None})
    base.setdefault("name", Path(folder).name)
    base["in_chans"] = len(base["channels"])
    base.update(card_fields)
    base["hcs_version"] = __version__
    base["sha256"] = ""
    base["card_sha256"] = ""
    if isinstance(base.get("tile"), dict):
        base["tile"] = TileCard(**base["tile"])
    try:
        card = DetectorCard(**base)
    except Exception as exc:  # pydantic ValidationError: one line
        raise InputError(f"save_detector: invalid card ({exc})") from None
    return write_detector_folder(module.state_dict(), card, folder, overwrite, extra_files)


def load_detector(folder: str | Path, device: str = "cpu") -> LearnedDetector:
    """Load a detector folder, verifying the weights' sha256 against ``model.yaml``.

    Raises
    ------
    InputError
        Not a detector folder, missing weights, checksum mismatch, or weights that do not fit
        the architecture / channels / classes the card declares.
    """
    from hcs.classify.infer import select_device
    from hcs.classify.models import read_verified_weights

    folder = Path(folder)
    card = read_detector_card(folder)
    state = read_verified_weights(folder, card.sha256)
    weights = folder / WEIGHTS
    module = build_detector(card.architecture, card.in_chans, len(card.classes),
                            mean=card.mean, std=card.std, anchor_sizes=card.anchor_sizes)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{weights}: weights do not fit {card.architecture} with "
                         f"{card.in_chans} channel(s) and {len(card.classes)} class(es) "
                         f"({first})") from None
    return LearnedDetector(module, card, folder, str(select_device(device)))


_CACHE: dict[tuple[str, str, float], LearnedDetector] = {}


def detect_with_folder(image: Any, model: str | Path, score_threshold: float | None = None,
                       device: str = "cpu", tile: bool | None = None) -> Detections:
    """``detect(image, method="learned", model=FOLDER)``: load (cached per folder) and detect."""
    folder = Path(model)
    card = folder / "model.yaml"
    key = (str(folder.resolve()), device, card.stat().st_mtime if card.is_file() else 0.0)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_detector(folder, device)
    return _CACHE[key].detect(image, score_threshold, tile=tile)
