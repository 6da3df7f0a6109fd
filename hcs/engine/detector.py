"""The detector as the engine sees it: a classical method or a learned detector folder.

``--detector threshold`` runs a method of :mod:`hcs.detect` on the nuclear-stain channel.
``--detector FOLDER`` (a folder written by :func:`hcs.detect.learned.save_detector`) runs a
learned torchvision detector on its own input channels, composed from the plate exactly like the
classifier's (card roles -> plate channels by :func:`hcs.engine.model.plate_channel_for`,
``--channels`` overrides, each plane rescaled to 0-255 by :func:`compose_field`). A learned
detector is loaded once per worker process (cached by folder and weights sha256).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hcs.errors import InputError

__all__ = ["EngineDetector", "detector_info", "is_detector_spec", "load_engine_detector"]

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
LOADS: list[str] = []  # detector folders this process loaded, in order (tests check "once")


def is_detector_spec(spec: str) -> bool:
    """True when ``spec`` names a learned detector folder (rather than a method name)."""
    p = Path(spec)
    if not p.is_dir():
        return False
    from hcs.detect.learned import is_detector_folder

    return bool(is_detector_folder(p))


def detector_info(spec: str) -> dict[str, Any]:
    """Provenance of a detector for ``run.json``: ``name, kind, path, sha256, channels`` and,
    for a learned detector, ``card_sha256`` (``detector`` is a resume key, so a changed detector
    card is never mixed in).

    ``spec`` is a method name, a detector folder, or the name of one under ``models/``.

    Raises
    ------
    InputError
        ``spec`` is neither an available method nor a detector folder.
    """
    methods = [m for m in _methods() if m != "learned"]  # "learned" needs a folder: pass it
    if spec in methods:
        return {"name": spec, "kind": "method", "path": None, "sha256": None, "channels": []}
    shipped = Path(__file__).resolve().parents[2] / "models" / spec
    if not Path(spec).exists() and not Path(spec).is_absolute() and is_detector_spec(shipped):
        spec = str(shipped)  # a name under the repository's models/, like --model
    if is_detector_spec(spec):
        from hcs.detect.learned.card import read_detector_card
        from hcs.engine.model import card_roles

        folder = Path(spec).resolve()
        card = read_detector_card(folder)
        return {"name": card.name, "kind": "learned", "path": str(folder),
                "sha256": card.sha256, "card_sha256": card.card_sha256,
                "channels": card_roles(card),
                "architecture": getattr(card, "architecture", None)}
    raise InputError(f"detector {spec!r} is not available here: neither a method "
                     f"({', '.join(methods)}) nor a detector folder (model.yaml with "
                     f"kind: detector, e.g. models/ldc-detector)")


def _methods() -> list[str]:
    from hcs.detect import available_methods

    return available_methods()


@dataclass
class EngineDetector:
    """One worker's detector: what it reads (plate channel indices) and how it detects.

    ``kind`` is ``method`` (a 2-D image -> :class:`hcs.detect.Detections` function on the
    nuclear channel) or ``learned`` (a loaded detector on its composed input channels).
    """

    kind: str
    name: str
    sha256: str | None
    roles: list[str]
    model: Any = None

    def plate_channels(self, channels: list[str], nucleus: int,
                       mapping: dict[str, str], modes: dict[str, str]
                       ) -> tuple[list[int], list[str]]:
        """Plate channel indices the detector reads, and their rescale modes."""
        if self.kind == "method":
            return [nucleus], ["raw"]
        from hcs.engine.model import plate_channel_for

        idx = [plate_channel_for(r, channels, mapping) for r in self.roles]
        return idx, [modes.get(r, "percentile") for r in self.roles]

    def detect(self, planes: np.ndarray, pixel_size_um: float) -> Any:
        """Detections of one field from its detector input: ``(H, W)`` raw nuclear plane for a
        method, ``(H, W, C)`` float 0-255 composite for a learned detector."""
        if self.kind == "method":
            from hcs.detect import detect

            return detect(planes, method=self.name, pixel_size_um=pixel_size_um)
        return self.model.detect(planes)


def load_engine_detector(spec: str, device: str) -> EngineDetector:
    """The detector of ``spec`` for this process (a learned one is loaded once per process)."""
    info = detector_info(spec)
    if info["kind"] == "method":
        return EngineDetector("method", spec, None, [])
    from hcs.detect.learned import load_detector

    key = (info["path"], info["card_sha256"] or "")
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_detector(info["path"], device)
            LOADS.append(info["path"])
        det = _CACHE[key]
    return EngineDetector("learned", info["name"], info["sha256"], info["channels"], det)
