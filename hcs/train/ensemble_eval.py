"""``hcs evaluate classifier`` for a projection ensemble (:mod:`hcs.classify.ensemble`).

Each cell of a simulated z-stack plate (its truth boxes or the engine's detections) is cut in
every view, classified by the members as the engine does, and scored with the assay's decision
rule (mitosis: a stage when ``P(mitotic) >= 0.5``) against its true class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hcs.errors import InputError
from hcs.train.datasets import CropSet


def evaluate_ensemble(
    model: str | Path,
    truth: str | Path,
    plate: str | Path | None = None,
    channel_map: dict[str, str] | None = None,
    truth_boxes: str = "truth",
    detector: str = "threshold",
    nucleus_channel: str | int | None = None,
    views: list[str] | None = None,
    batch_size: int = 128,
    device: str = "auto",
    n_boot: int = 1000,
    seed: int = 0,
    table: Any = None,
) -> tuple[dict[str, Any], CropSet, np.ndarray]:
    """Score an ensemble folder on a simulated plate.

    Parameters
    ----------
    model
        The ensemble folder.
    truth, plate, channel_map, truth_boxes, detector, nucleus_channel
        As :func:`hcs.train.pipeline.evaluate_model`.
    views
        Views to use (default: every view the plate allows); e.g. ``["z"]`` scores the
        ensemble as it would run on the z projection alone.
    table
        The annotation table, if already read (rows of other parts of a split removed).

    Returns
    -------
    (metrics, crops, proba)
        The metrics (plus ``views`` and ``view_wins``: per level, how often each view won), the
        z-view crops with their true classes, and the assay-class probabilities.
    """
    from hcs.assays.rules import apply_rule
    from hcs.classify.ensemble import load_ensemble
    from hcs.io.omezarr import open_plate
    from hcs.train.metrics import classification_metrics
    from hcs.train.sources import source_table
    from hcs.train.truth import find_plate, input_modes, truth_cropset

    ens = load_ensemble(model)
    card = ens.card
    plate_path = find_plate(truth, plate)
    allowed = card.views(int(open_plate(plate_path).shape[2]))
    views = list(views or allowed)
    bad = [v for v in views if v not in allowed]
    if bad:
        raise InputError(f"views {bad} are not available here (the ensemble and plate allow "
                         f"{allowed})")
    if table is None:
        table = source_table(None, None, truth, None, truth_boxes, plate, card.assay, detector,
                              nucleus_channel)
    roles = [c.name for c in card.channels]
    sets = []
    for v in views:
        c = card.crop_for(v)
        sets.append(truth_cropset(table, plate_path, card.classes, roles,
                                  input_modes(card.assay, roles), c.size, c.margin, c.square,
                                  c.pad_mode, channel_map, view=v))
    crops = np.stack([s.crops for s in sets], axis=1)
    proba, win = ens.predict(crops, views, batch_size, device)
    labels = apply_rule(proba, card.classes, card.assay)
    y_pred = np.asarray([card.classes.index(x) for x in labels])
    metrics = classification_metrics(sets[0].y, proba, card.classes, y_pred=y_pred,
                                     n_boot=n_boot, seed=seed)
    metrics["views"] = views
    metrics["view_wins"] = {level: {v: int((win[:, j] == k).sum()) for k, v in enumerate(views)}
                            for j, level in enumerate(card.levels)}
    return metrics, sets[0], proba
