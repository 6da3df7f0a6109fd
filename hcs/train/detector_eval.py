"""``hcs evaluate detector``: a detector folder scored on annotated images.

Detection is class-agnostic here: every annotated box is a cell to find, whatever its label
(the engine uses the detector to find cells; the classifier decides their class). Metrics are
those of :func:`hcs.detect.evaluate.evaluate_detections`: precision and recall at IoU 0.5 and
0.1 for detections with score > 0.1 (AIM-CICs), AP50 and best F1 (label-free cancer paper), and
F1 at IoU 0.5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hcs.errors import InputError

__all__ = ["evaluate_detector", "METRIC_KEYS"]

#: The keys the issue asks for, always present in the JSON.
METRIC_KEYS = ("precision_iou50", "recall_iou50", "precision_iou10", "recall_iou10", "ap50",
               "f1_iou50")


def evaluate_detector(
    model: str | Path, annotations: str | Path, fmt: str = "voc", *,
    split: str | Path | None = None, part: str = "test", score_threshold: float = 0.1,
    json_path: str | Path | None = None, html_path: str | Path | None = None,
    device: str = "cpu", overwrite: bool = False, record: str | None = None,
) -> dict[str, Any]:
    """Detect on the annotated images (or one part of a split) and report the metrics.

    Parameters
    ----------
    model
        Detector folder (see :func:`hcs.detect.learned.load_detector`).
    annotations, fmt
        Annotated images, ``voc`` or ``via``.
    split, part
        A split.json and which part to score (``test`` by default); all images without it.
    score_threshold
        Detections scoring at or below it are ignored for precision / recall / F1 (AP50 and best
        F1 use every detection the model returns, down to its internal floor of 0.01).
    json_path, html_path
        Optional outputs: the metrics as JSON and the precision-recall plot.
    record
        Also store the metrics in the model card under ``metrics.<record>`` (e.g. ``test``).

    Returns
    -------
    dict
        JSON-ready metrics, including :data:`METRIC_KEYS`, plus ``model`` and ``images``.
    """
    from hcs.detect.learned import load_detector
    from hcs.detect.report import detector_report
    from hcs.train.detector_data import read_detection_set

    det = load_detector(model, device=device)
    only = None
    if split is not None:
        import json

        try:
            parts = json.loads(Path(split).read_text())
        except FileNotFoundError:
            raise InputError(f"{split}: split file not found") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{split}: not valid JSON ({exc})") from None
        if part not in parts:
            raise InputError(f"{split}: no part {part!r} (has {', '.join(parts)})")
        only = sorted(set(parts[part]))
    data = read_detection_set(annotations, fmt, det.card.in_chans, class_agnostic=True,
                              only=only)
    if len(data) == 0:
        raise InputError(f"{annotations}: no image to evaluate")
    preds = [det.detect(img, score_threshold=0.0) for img in data.images]
    extra = {"model": str(model), "images": len(data), "annotations": str(annotations),
             "split": None if split is None else f"{split}:{part}"}
    report = detector_report(preds, data.boxes, json_path, html_path, overwrite=overwrite,
                             score_threshold=score_threshold,
                             title=f"{det.card.name} on {Path(annotations).name}", extra=extra)
    if record:
        record_metrics(model, record, report)
    return report


def record_metrics(model: str | Path, key: str, metrics: dict[str, Any]) -> None:
    """Store ``metrics`` under ``metrics.<key>`` in the card (weights and sha256 untouched)."""
    import yaml

    from hcs.atomic import atomic_write_text

    path = Path(model) / "model.yaml"
    card = yaml.safe_load(path.read_text())
    card.setdefault("metrics", {})[key] = metrics
    atomic_write_text(path, yaml.safe_dump(card, sort_keys=False))
