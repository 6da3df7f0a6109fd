"""``hcs seal``: record a deliberate edit of a model card (classifier or detector) by writing
its ``card_sha256`` anew (:func:`hcs.classify.models.card_checksum`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hcs.atomic import atomic_write_text
from hcs.classify.models import (
    CARD,
    ModelCard,
    card_checksum,
    read_verified_weights,
    read_yaml,
    validate_card,
)
from hcs.detect.learned.card import DetectorCard
from hcs.errors import InputError

__all__ = ["seal_card"]


def seal_card(folder: str | Path) -> str:
    """Record a deliberate change of a card: verify the weights, write ``card_sha256`` anew.

    For a lab that edits the decisive content of its own card (renames a class, changes the
    decision rule). The weights' sha256 must still match, so sealing never blesses other
    weights; the card is validated (a detector card as such) and rewritten atomically with
    only ``card_sha256`` changed. Runs made with the old card cannot be resumed with the new one
    (the checksum is part of the resume key).

    Returns
    -------
    str
        The new ``card_sha256``.
    """
    folder = Path(folder)
    path = folder / CARD
    if not path.is_file():
        raise InputError(f"{path}: model card not found ({folder} is not a model folder)")
    data = read_yaml(path)
    if isinstance(data, dict) and data.get("kind") == "features":
        from hcs.classify.features import FEATURES_FILE, FeaturesCard
        from hcs.records import sha256_file

        card: Any = validate_card(path, FeaturesCard, data)
        model = folder / FEATURES_FILE
        if not model.is_file() or sha256_file(model) != card.sha256:
            raise InputError(f"{model}: missing, or its sha256 does not match the card's; "
                             "sealing never blesses another model file")
    else:
        if isinstance(data, dict) and data.get("kind") == "detector":
            card = validate_card(path, DetectorCard, data)
        else:
            card = validate_card(path, ModelCard, data)
        read_verified_weights(folder, card.sha256)
    data["card_sha256"] = card_checksum(card)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return data["card_sha256"]
