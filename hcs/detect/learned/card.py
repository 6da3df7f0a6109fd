"""The detector model folder: ``model.safetensors`` + ``model.yaml`` (``kind: detector``).

The card says everything needed to rebuild and use the detector without the network:
architecture and its options, input channels (role names, in order) and their normalisation,
the resize factor applied before the network, the tile size and overlap for large fields, the
classes, training data (with licence), held-out metrics, the sha256 of the weights (checked
on load) and ``card_sha256`` over the decisive content (verified whenever the card is read, see
:func:`hcs.classify.models.card_checksum`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hcs.classify.models import (  # one model-folder layout for all models
    CARD,
    WEIGHTS,
    read_yaml,
    validate_card,
    verify_card,
    write_model_folder,
)
from hcs.errors import InputError

__all__ = ["DetectorCard", "TileCard", "is_detector_folder", "read_detector_card",
           "write_detector_folder", "WEIGHTS", "CARD"]



class TileCard(BaseModel):
    """Tiling of large images (input pixels, before ``scale``)."""

    model_config = ConfigDict(extra="forbid")
    size: int = Field(512, gt=0)
    overlap: int = Field(64, ge=0)

    def model_post_init(self, __context: Any) -> None:
        if self.overlap >= self.size:
            raise ValueError(f"tile overlap {self.overlap} must be smaller than size {self.size}")


class DetectorCard(BaseModel):
    """The content of a detector's ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str
    kind: str = "detector"
    architecture: str
    in_chans: int = Field(gt=0)
    channels: list[str]
    channel_meaning: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=lambda: ["cell"])
    mean: list[float]
    std: list[float]
    input_scale: float = Field(1.0 / 255.0, gt=0)
    scale: float = Field(1.0, gt=0)
    anchor_sizes: list[int] | None = None
    tile: TileCard = Field(default_factory=TileCard)
    nms_iou: float = Field(0.5, gt=0, le=1)
    score_threshold: float = Field(0.5, ge=0, le=1)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    sha256: str = ""
    card_sha256: str = ""
    hcs_version: str = ""

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v != "detector":
            raise ValueError(f"kind must be 'detector', got {v!r}")
        return v

    def model_post_init(self, __context: Any) -> None:
        n = self.in_chans
        if len(self.channels) != n:
            raise ValueError(f"in_chans is {n} but {len(self.channels)} channel roles are given")
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(f"mean/std must have {n} values (in_chans)")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct names, got {self.classes}")


def is_detector_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder whose ``model.yaml`` says ``kind: detector``.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> is_detector_folder(d)
    False
    >>> _ = (d / "model.yaml").write_text("kind: detector\\n")
    >>> is_detector_folder(d)
    True
    """
    card = Path(path) / CARD
    if not card.is_file():
        return False
    try:
        data = yaml.safe_load(card.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("kind") == "detector"


def read_detector_card(folder: str | Path) -> DetectorCard:
    """Parse and validate ``folder/model.yaml`` (one clear error naming the field)."""
    path = Path(folder) / CARD
    if not path.is_file():
        raise InputError(f"{path}: model card not found ({Path(folder)} is not a model folder)")
    data = read_yaml(path)
    if not isinstance(data, dict) or data.get("kind") != "detector":
        raise InputError(f"{path}: not a detector card (needs 'kind: detector'); a classifier "
                         "folder cannot be used as a detector")
    return verify_card(path, validate_card(path, DetectorCard, data))


def write_detector_folder(
    state: dict[str, Any], card: DetectorCard, folder: str | Path, overwrite: bool = False,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write weights + card (with the weights' sha256) atomically
    (:func:`hcs.classify.models.write_model_folder`)."""
    return write_model_folder(folder, state, card, overwrite, extra_files,
                              metadata={"kind": "detector"})
