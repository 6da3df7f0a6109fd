"""Image QC of a field, from the planes already in memory during ``hcs run``; per-plate flags.

:func:`field_qc` measures one field (called once per field by
:meth:`hcs.engine.processor.PipelineProcessor.prepare` on its z max-projected planes, so no
pixel is read twice):

- **focus**: the power-spectrum log-log slope (CellProfiler's ``PowerLogLogSlope``) of the
  nuclear channel, on its central :data:`FOCUS_PX` square. Images of cells have a power spectrum
  close to a power law ``P(f) ~ f^slope``; defocus removes high frequencies and makes the slope
  steeper (more negative: about -3 for a sharp field, -5 to -9 for a Gaussian blur of 3 px). The
  slope was chosen over the variance of the Laplacian because it does not change with the
  intensity (a gain multiplies the spectrum), with the number of cells in the field (more
  objects of the same kind raise the spectrum uniformly; the variance of the Laplacian falls with
  the cell count, so a toxic compound would look "out of focus") nor, for a power law, with the
  magnification (a change of scale shifts ``log P`` but keeps the slope).
- **saturation**: per channel, the % of pixels at the dtype maximum (65535 for 16-bit data).
- **background**: per channel, the 5th percentile of the pixels (an 8x-strided sample).

The values are stored with the field's cell table (``attrs["image_qc"]``, Parquet metadata
``PANDAS_ATTRS``), so a field without cells keeps its QC. :func:`flag_fields` turns the run's
fields into ``fields.parquet`` flags with robust per-plate thresholds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FOCUS_MAD", "FOCUS_MIN_DROP", "FOCUS_PX", "SATURATION_PCT", "field_qc",
           "field_table", "flag_fields", "power_loglog_slope", "read_field_qc"]

#: Side of the central square of the nuclear plane whose spectrum gives the focus (pixels).
FOCUS_PX = 1024
#: A field is out of focus when its slope is below the plate median by more than
#: ``FOCUS_MAD`` robust standard deviations (1.4826 x MAD) ...
FOCUS_MAD = 3.0
#: ... and by at least this much (slope units), so a very uniform plate flags nothing by chance.
FOCUS_MIN_DROP = 0.5
#: A field is over-exposed when any channel has more than this % of its pixels at the maximum.
SATURATION_PCT = 1.0


def power_loglog_slope(plane: np.ndarray) -> float:
    """Slope of the radially averaged power spectrum of ``plane`` on log-log axes.

    Frequencies from 4 cycles per field to Nyquist, in 24 log-spaced bins; a constant plane
    gives NaN.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(100, 10, (128, 128))
    >>> abs(power_loglog_slope(noise)) < 0.3  # white noise: a flat spectrum
    True
    >>> from scipy.ndimage import gaussian_filter
    >>> power_loglog_slope(gaussian_filter(noise, 2)) < -3  # blurred: a steep one
    True
    """
    import scipy.fft

    img = np.asarray(plane, np.float32)
    img = img - img.mean()
    h, w = img.shape
    if h < 16 or w < 16 or not np.any(img):
        return float("nan")
    f = scipy.fft.rfft2(img, workers=1)
    power = (f.real ** 2 + f.imag ** 2).ravel()
    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]).ravel()
    edges = np.geomspace(4.0 / min(h, w), 0.5, 25)
    idx = np.digitize(r, edges)
    total = np.bincount(idx, power, minlength=len(edges) + 1)[1:len(edges)]
    count = np.bincount(idx, minlength=len(edges) + 1)[1:len(edges)]
    centre = np.sqrt(edges[:-1] * edges[1:])
    ok = (count > 0) & (total > 0)
    if ok.sum() < 3:
        return float("nan")
    mean = total[ok] / count[ok]
    return float(np.polyfit(np.log(centre[ok]), np.log(mean), 1)[0])


def _centre(plane: np.ndarray, size: int) -> np.ndarray:
    h, w = plane.shape
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return plane[y0:y0 + size, x0:x0 + size]


def field_qc(planes: np.ndarray, channels: list[str], nuclear: int) -> dict[str, Any]:
    """Image QC of one field from its ``(c, y, x)`` planes (dtype as read).

    Parameters
    ----------
    planes
        The field's planes (z max projection), one per entry of ``channels``.
    channels
        Channel names of ``planes``.
    nuclear
        Index (into ``planes``) of the nuclear channel the focus is measured on.

    Returns
    -------
    dict
        ``focus`` (power-spectrum log-log slope), ``focus_channel``, ``saturation_pct`` and
        ``background`` (dicts by channel name).

    Examples
    --------
    >>> p = np.zeros((2, 64, 64), np.uint16); p[1, :8] = 65535
    >>> q = field_qc(p, ["dapi", "gfp"], 0)
    >>> q["saturation_pct"], q["background"]["dapi"]
    ({'dapi': 0.0, 'gfp': 12.5}, 0.0)
    """
    sat: dict[str, float] = {}
    bg: dict[str, float | None] = {}
    for name, p in zip(channels, planes, strict=True):
        top = np.iinfo(p.dtype).max if np.issubdtype(p.dtype, np.integer) else None
        sat[str(name)] = round(100.0 * float(np.count_nonzero(p == top)) / p.size, 4) \
            if top is not None and p.size else 0.0
        bg[str(name)] = float(np.percentile(p[::8, ::8], 5)) if p.size else None
    focus = power_loglog_slope(_centre(planes[nuclear], FOCUS_PX))
    return {"focus": focus if np.isfinite(focus) else None,
            "focus_channel": str(channels[nuclear]), "saturation_pct": sat, "background": bg}


def read_field_qc(path: str | Path) -> dict[str, Any] | None:
    """The image QC stored with a cell table (``None`` for tables of runs before image QC)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"PANDAS_ATTRS")
    if not raw:
        return None
    qc = json.loads(raw).get("image_qc")
    return qc if isinstance(qc, dict) else None


def flag_fields(fields: pd.DataFrame, focus_mad: float = FOCUS_MAD,
                focus_min_drop: float = FOCUS_MIN_DROP,
                saturation_pct: float = SATURATION_PCT) -> pd.DataFrame:
    """``qc_flag`` and ``qc_reason`` of each field, with thresholds per plate.

    A field is flagged ``out_of_focus`` when its focus slope is below the plate's median by
    more than ``max(focus_mad * 1.4826 * MAD, focus_min_drop)``, and ``saturated`` when any
    channel has more than ``saturation_pct`` % of its pixels at the maximum. ``qc_reason``
    gives the numbers (both reasons joined by ``; ``). Fields without QC are never flagged.

    Examples
    --------
    >>> f = pd.DataFrame({"plate": ["p"] * 5, "qc_focus": [-3.0, -3.1, -2.9, -3.0, -6.0],
    ...                   "qc_saturation_pct": [0, 0, 0, 5.0, 0]})
    >>> flag_fields(f)[["qc_flag", "qc_reason"]].values.tolist()[3:]
    [[True, 'saturated: 5% of pixels at the maximum (limit 1%)'], \
[True, 'out_of_focus: slope -6.00 < -3.50 (plate median -3.00)']]
    """
    out = fields.copy()
    reasons: list[list[str]] = [[] for _ in range(len(out))]
    for _, idx in out.groupby(out["plate"].astype(str)).groups.items():
        pos = [out.index.get_loc(i) for i in idx]
        focus = pd.to_numeric(out["qc_focus"].iloc[pos], errors="coerce")
        good = focus.dropna()
        if len(good) >= 3:
            med = float(good.median())
            mad = float((good - med).abs().median()) * 1.4826
            limit = med - max(focus_mad * mad, focus_min_drop)
            for p, v in zip(pos, focus, strict=True):
                if np.isfinite(v) and v < limit:
                    reasons[p].append(f"out_of_focus: slope {v:.2f} < {limit:.2f} "
                                      f"(plate median {med:.2f})")
        sat = pd.to_numeric(out["qc_saturation_pct"].iloc[pos], errors="coerce")
        for p, v in zip(pos, sat, strict=True):
            if np.isfinite(v) and v > saturation_pct:
                reasons[p].insert(0, f"saturated: {v:.3g}% of pixels at the maximum "
                                     f"(limit {saturation_pct:g}%)")
    out["qc_flag"] = [bool(r) for r in reasons]
    out["qc_reason"] = pd.Series(["; ".join(r) for r in reasons], index=out.index,
                                 dtype="string")
    return out


def field_table(files: list[Path], plate: str) -> pd.DataFrame:
    """One row per cell table: ``plate, well, field, n_cells`` (rows of the table), ``qc_focus``,
    ``qc_focus_channel``, ``qc_saturation_pct`` (the worst channel) and
    ``qc_saturation_channel``, then ``qc_saturation_<channel>`` and ``qc_background_<channel>``
    per channel (names as :func:`hcs.measure.safe_name`). Only Parquet footers are read."""
    import pyarrow.parquet as pq

    from hcs.errors import InputError
    from hcs.measure import safe_name

    rows = []
    for f in files:
        try:
            meta = pq.read_metadata(f)
            qc = read_field_qc(f) or {}
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputError(f"{f}: cannot read the cell table ({exc})") from None
        row: dict[str, Any] = {"plate": plate, "well": f.parent.name, "field": int(f.stem),
                               "n_cells": int(meta.num_rows), "qc_focus": qc.get("focus"),
                               "qc_focus_channel": qc.get("focus_channel")}
        sat = {str(k): float(v) for k, v in (qc.get("saturation_pct") or {}).items()}
        worst = max(sat, key=lambda k: sat[k]) if sat else None
        row["qc_saturation_pct"] = sat[worst] if worst is not None else None
        row["qc_saturation_channel"] = worst
        for k, v in sat.items():
            row[f"qc_saturation_{safe_name(k)}"] = v
        for k, v in (qc.get("background") or {}).items():
            row[f"qc_background_{safe_name(k)}"] = v
        rows.append(row)
    out = pd.DataFrame(rows, columns=["plate", "well", "field", "n_cells", "qc_focus",
                                      "qc_focus_channel", "qc_saturation_pct",
                                      "qc_saturation_channel"] if not rows else None)
    for c in out.columns:
        if c.startswith(("qc_focus", "qc_saturation", "qc_background")) and not c.endswith(
                "_channel"):
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    for c in ("plate", "well", "qc_focus_channel", "qc_saturation_channel"):
        out[c] = out[c].astype("string")
    out["field"] = out["field"].astype("int64")
    out["n_cells"] = out["n_cells"].astype("int64")
    return out
