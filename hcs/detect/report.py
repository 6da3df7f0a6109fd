"""Detection report: metrics as JSON and the precision-recall figure as one HTML file.

The metrics are those of :func:`hcs.detect.evaluate.evaluate_detections` (definitions and the
matching rule are in that module's docstring).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcs.atomic import atomic_write_text
from hcs.detect.detections import Detections
from hcs.detect.evaluate import (
    SCORE_THRESHOLD,
    best_f1,
    evaluate_detections,
    pr_curve,
    precision_recall,
)
from hcs.errors import InputError, OutputExistsError

__all__ = ["pr_figure", "detector_report"]


def pr_figure(
    preds: Sequence[Detections], truths: Sequence[Detections | np.ndarray], title: str = ""
) -> Any:
    """Plotly figure: precision-recall curves at IoU 0.5 and 0.1, with the score > 0.1 operating
    point and the best-F1 point marked."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for iou, colour in ((0.5, "#1f77b4"), (0.1, "#ff7f0e")):
        c = pr_curve(preds, truths, iou)
        fig.add_trace(go.Scatter(
            x=c["recall"], y=c["precision"], mode="lines", name=f"IoU {iou}",
            line={"color": colour, "shape": "hv"},
            customdata=c["scores"], hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}"
            "<br>score >= %{customdata:.3f}<extra></extra>"))
        pr = precision_recall(preds, truths, iou)
        fig.add_trace(go.Scatter(
            x=[pr["recall"]], y=[pr["precision"]], mode="markers", name=f"score > 0.1, IoU {iou}",
            marker={"color": colour, "size": 10, "symbol": "circle-open"}))
    b = best_f1(preds, truths, 0.5)
    fig.add_trace(go.Scatter(
        x=[b["recall"]], y=[b["precision"]], mode="markers",
        name=f"best F1 {b['f1']:.3f} (score >= {b['score']:.3f})",
        marker={"color": "#2ca02c", "size": 12, "symbol": "star"}))
    fig.update_layout(title=title or "Detection precision-recall", xaxis_title="recall",
                      yaxis_title="precision", xaxis_range=[0, 1.02], yaxis_range=[0, 1.02],
                      template="plotly_white")
    return fig


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def detector_report(
    preds: Sequence[Detections],
    truths: Sequence[Detections | np.ndarray],
    json_path: str | Path | None = None,
    html_path: str | Path | None = None,
    *,
    overwrite: bool = False,
    score_threshold: float = SCORE_THRESHOLD,
    title: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate detections and optionally write the metrics as JSON and the PR curve as HTML.

    NaN metrics (e.g. precision with no detections) are written as JSON ``null``. The files are
    written atomically; nothing is written if either exists and ``overwrite`` is false.

    Returns
    -------
    dict
        The metrics of :func:`evaluate_detections` (plus ``extra``), JSON-ready.
    """
    paths = [Path(p) for p in (json_path, html_path) if p is not None]
    for p in paths:
        if p.exists() and not overwrite:
            raise OutputExistsError(f"{p} exists; pass overwrite=True to replace it")
        if not p.parent.is_dir():
            raise InputError(f"output folder {p.parent} does not exist")
    metrics = evaluate_detections(preds, truths, score_threshold)
    if extra:
        metrics.update(extra)
    report = {k: _jsonable(v) for k, v in metrics.items()}
    if html_path is not None:
        fig = pr_figure(preds, truths, title)
        _atomic_write_text(Path(html_path), fig.to_html(include_plotlyjs=True, full_html=True))
    if json_path is not None:
        _atomic_write_text(Path(json_path), json.dumps(report, indent=2) + "\n")
    return report
