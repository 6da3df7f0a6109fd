"""Where training and evaluation annotations come from: exactly one of a VOC folder, class
folders, or a simulation's truth (its object boxes, or the engine's detections labelled by the
object they lie in)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hcs.errors import InputError
from hcs.train.datasets import load_annotations

__all__ = ["TRUTH_BOXES", "source_table"]

TRUTH_BOXES = ("truth", "detected")


def source_table(voc: str | Path | None, folders: str | Path | None, truth: str | Path | None,
                  label_map: dict[str, str] | None, truth_boxes: str = "truth",
                  plate: str | Path | None = None, assay: str = "",
                  detector: str = "threshold", nucleus_channel: str | int | None = None,
                  log: Callable[[str], None] | None = None) -> Any:
    """The annotation table of exactly one source (``source`` = the image a box comes from).

    With ``truth`` and ``truth_boxes="detected"`` the boxes are the engine's detections of the
    simulated plate, labelled by :func:`hcs.train.detected.detected_truth`.
    """
    if truth_boxes not in TRUTH_BOXES:
        raise InputError(f"--truth-boxes {truth_boxes!r}: expected truth or detected")
    if truth is None:
        if truth_boxes != "truth":
            raise InputError("--truth-boxes detected needs --truth SIM_DIR")
        return load_annotations(voc, folders, label_map)
    if voc is not None or folders is not None:
        raise InputError("give exactly one data source: --annotations DIR, --folders DIR or "
                         "--truth DIR")
    from hcs.train.truth import find_plate, read_truth

    if truth_boxes == "detected":
        from hcs.train.detected import detected_truth

        return detected_truth(truth, find_plate(truth, plate), assay, detector, nucleus_channel,
                              log)
    return read_truth(truth)
