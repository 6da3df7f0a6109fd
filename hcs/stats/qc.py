"""Plate quality control: Z'-factor, SSMD, cell-count outliers, row/column and edge effects.

Definitions (see docs/statistics.md):

- Z'-factor (Zhang, Chung & Oldenburg 1999): ``Z' = 1 - 3 (sd_p + sd_n) / |mu_p - mu_n|`` from
  the positive and negative control wells (sample SD, ``ddof=1``);
- SSMD (Zhang 2007, method-of-moments, independent groups):
  ``(mu_p - mu_n) / sqrt(sd_p^2 + sd_n^2)``;
- cell-count outliers: robust z ``(x - median) / (1.4826 MAD)`` of ``n_detected`` per plate,
  ``|z| > 3.5`` (Iglewicz & Hoaglin);
- QC statuses from the values: Z' >= 0.5 ``good``, 0 <= Z' < 0.5 ``marginal``, Z' < 0
  ``unusable``; SSMD (moderate controls, Zhang 2008): ``|SSMD| >= 3`` good, 2-3 marginal, < 2
  unusable;
- only imaged wells (no ``missing`` flag) enter any QC number: a well of the layout that was
  never imaged has no cell count, not a count of 0;
- Tukey median polish of the plate grid (``value = overall + row + column + residual``); the
  B-score of a well is its residual divided by ``1.4826 MAD`` of the plate's residuals
  (Brideau et al. 2003).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAD_SCALE = 1.4826
OUTLIER_Z = 3.5
#: Z' thresholds (Zhang et al. 1999): >= 0.5 good, >= 0 marginal, below unusable.
Z_GOOD, Z_MARGINAL = 0.5, 0.0
#: |SSMD| thresholds for moderate controls (Zhang 2008): >= 3 good, >= 2 marginal.
SSMD_GOOD, SSMD_MARGINAL = 3.0, 2.0


def z_prime_status(z: float) -> str:
    """``good`` (Z' >= 0.5), ``marginal`` (0 <= Z' < 0.5), ``unusable`` (Z' < 0) or
    ``not_computable`` (NaN: fewer than 2 finite wells per control, or no spread and no gap).

    Examples
    --------
    >>> [z_prime_status(v) for v in (0.7, 0.5, 0.2, 0.0, -6.2, float("-inf"), float("nan"))]
    ['good', 'good', 'marginal', 'marginal', 'unusable', 'unusable', 'not_computable']
    """
    if np.isnan(z):
        return "not_computable"
    return "good" if z >= Z_GOOD else "marginal" if z >= Z_MARGINAL else "unusable"


def ssmd_status(s: float) -> str:
    """``good`` (abs(SSMD) >= 3), ``marginal`` (2 to 3), ``unusable`` (< 2) or ``not_computable``.

    Examples
    --------
    >>> [ssmd_status(v) for v in (-7.0, 3.0, 2.5, 1.0, float("nan"))]
    ['good', 'good', 'marginal', 'unusable', 'not_computable']
    """
    if np.isnan(s):
        return "not_computable"
    a = abs(s)
    return "good" if a >= SSMD_GOOD else "marginal" if a >= SSMD_MARGINAL else "unusable"


def imaged_mask(wells: pd.DataFrame) -> pd.Series:
    """True for wells that were imaged: every well of the table but those flagged ``missing``
    (a layout well that the run has no images of)."""
    if "missing" not in wells:
        return pd.Series(True, wells.index)
    return ~wells["missing"].astype("boolean").fillna(False).astype(bool)


def z_prime(positive: np.ndarray, negative: np.ndarray) -> float:
    """Z'-factor of positive and negative control values.

    Examples
    --------
    >>> round(z_prime(np.array([9.0, 10, 11]), np.array([0.0, 1, 2])), 4)
    0.3333
    """
    p, n = np.asarray(positive, float), np.asarray(negative, float)
    p, n = p[np.isfinite(p)], n[np.isfinite(n)]
    if len(p) < 2 or len(n) < 2:
        return float("nan")
    gap = abs(p.mean() - n.mean())
    spread = 3 * (p.std(ddof=1) + n.std(ddof=1))
    if gap == 0:
        return float("nan") if spread == 0 else float("-inf")
    return float(1 - spread / gap)


def ssmd(positive: np.ndarray, negative: np.ndarray) -> float:
    """Strictly standardised mean difference of positive vs negative controls.

    Examples
    --------
    >>> round(ssmd(np.array([9.0, 10, 11]), np.array([0.0, 1, 2])), 4)
    6.364
    """
    p, n = np.asarray(positive, float), np.asarray(negative, float)
    p, n = p[np.isfinite(p)], n[np.isfinite(n)]
    if len(p) < 2 or len(n) < 2:
        return float("nan")
    s = np.sqrt(p.var(ddof=1) + n.var(ddof=1))
    return float((p.mean() - n.mean()) / s) if s > 0 else float("nan")


def robust_z(values: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 MAD)``; zeros when the MAD is 0 and x equals the median.

    Examples
    --------
    >>> robust_z(np.array([10.0, 11, 9, 10, 40])).round(2).tolist()
    [0.0, 0.67, -0.67, 0.0, 20.23]
    """
    x = np.asarray(values, float)
    med = np.nanmedian(x)
    mad = MAD_SCALE * np.nanmedian(np.abs(x - med))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - med) / mad
    return np.where(x == med, 0.0, z)


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """Median along an axis ignoring NaN (0 where all NaN); much faster than np.nanmedian here."""
    s = np.sort(a, axis=axis)  # NaN sort last
    n = (~np.isnan(a)).sum(axis=axis)
    lo = np.expand_dims(np.maximum(n - 1, 0) // 2, axis)
    hi = np.expand_dims(np.maximum(n, 1) // 2, axis)
    med = (np.take_along_axis(s, lo, axis) + np.take_along_axis(s, hi, axis)) / 2
    med = np.squeeze(med, axis=axis)
    return np.where(n > 0, med, 0.0)


def median_polish(
    grid: np.ndarray, max_iter: int = 10, tol: float = 1e-6,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Tukey's median polish of a rows x columns grid (NaN = no well).

    Returns ``(overall, row_effects, col_effects, residuals)`` with
    ``grid = overall + row[:, None] + col[None, :] + residuals``.

    Examples
    --------
    >>> g = np.add.outer([0.0, 1, 2], [0.0, 10, 20]) + 5
    >>> overall, r, c, res = median_polish(g)
    >>> overall, r.tolist(), c.tolist(), float(np.abs(res).max())
    (16.0, [-1.0, 0.0, 1.0], [-10.0, 0.0, 10.0], 0.0)
    """
    res = np.array(grid, dtype=float)
    overall = 0.0
    row = np.zeros(res.shape[0])
    col = np.zeros(res.shape[1])
    for _ in range(max_iter):
        rmed = _nanmedian(res, axis=1)
        res -= rmed[:, None]
        row += rmed
        d = float(np.median(col))
        col -= d
        overall += d
        cmed = _nanmedian(res, axis=0)
        res -= cmed[None, :]
        col += cmed
        d = float(np.median(row))
        row -= d
        overall += d
        if max(np.abs(rmed).max(), np.abs(cmed).max()) < tol:
            break
    return overall, row, col, res


def bscores(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """B-scores of wells (one plate): median-polish residual / (1.4826 MAD of residuals).

    Examples
    --------
    >>> r, c = np.divmod(np.arange(12), 4)
    >>> v = 100 + 5 * r + 0.0 * c
    >>> v[5] += 30
    >>> b = bscores(v, r, c)
    >>> int(np.argmax(np.abs(b))), bool(abs(b[5]) > 3)
    (5, True)
    """
    values = np.asarray(values, float)
    rows, cols = np.asarray(rows, int), np.asarray(cols, int)
    grid = np.full((rows.max() + 1, cols.max() + 1), np.nan)
    grid[rows, cols] = values
    _, _, _, res = median_polish(grid)
    return _scale_residuals(res[rows, cols])


def _scale_residuals(r: np.ndarray) -> np.ndarray:
    mad = MAD_SCALE * np.median(np.abs(r - np.median(r)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mad > 0, r / mad, np.where(np.abs(r) > 1e-12, np.inf, 0.0))


def plate_qc(
    wells: pd.DataFrame, values: pd.DataFrame, geometry: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """QC rows (``kind = "qc"``) per plate: controls per readout, then a cell-count row.

    Per readout: ``z_prime``, ``ssmd`` (positive vs negative control wells, ``n``/``n_ref``
    and ``mean``/``mean_ref`` of the positive/negative controls), the median-polish
    ``row_effect_range`` / ``col_effect_range``, ``edge_effect`` (median of edge wells minus
    median of interior wells, sample wells) and ``n_bscore_outliers`` (|B| > 3). The
    ``n_detected`` row adds ``n_outliers`` and ``outlier_wells`` (robust z beyond 3.5).

    Three well states are kept apart: not imaged (flag ``missing``: in no QC number), imaged
    but flagged (in the cell-count outlier test, which is there to find them; their readouts are
    not used), usable. For the cell count a well whose only flag is ``no_cells`` is a real
    count of 0 and enters the edge effect and the B-scores. ``n_imaged`` and ``n_plate_wells``
    say how many wells of the plate were imaged.

    ``status`` follows the value of Z' (:func:`z_prime_status`): ``good``, ``marginal``,
    ``unusable`` or ``not_computable``, or ``controls_missing`` (no Z'/SSMD without both control
    roles); ``ssmd_status`` follows SSMD (:func:`ssmd_status`); ``message`` gives the numbers.
    """
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    imaged = imaged_mask(wells)
    flags = wells["flags"].fillna("").astype(str) if "flags" in wells else pd.Series(
        "", wells.index)
    counted = imaged & (usable | (flags == "no_cells"))  # a real count, maybe 0
    role = wells["role"].astype(object).fillna("empty") if "role" in wells else pd.Series(
        "sample", wells.index)
    rows = []
    metrics = dict(values.items())
    if "n_detected" in wells:
        metrics["n_detected"] = wells["n_detected"].astype(float)
    for plate, w in wells.groupby("plate", sort=True):
        n_rows = geometry[0] if geometry else int(w["row"].max()) + 1
        n_cols = geometry[1] if geometry else int(w["col"].max()) + 1
        edge = (w["row"] == 0) | (w["col"] == 0) | (w["row"] == n_rows - 1) | \
            (w["col"] == n_cols - 1)
        pos = w.index[(role[w.index] == "positive_control") & usable[w.index]]
        neg = w.index[(role[w.index] == "negative_control") & usable[w.index]]
        n_imaged = int(imaged[w.index].sum())
        for name, v in metrics.items():
            use = counted if name == "n_detected" else usable & imaged
            sample = (role[w.index] != "empty") & use[w.index]
            row: dict[str, object] = {"kind": "qc", "readout": name, "plate": str(plate),
                                      "n_imaged": n_imaged, "n_plate_wells": n_rows * n_cols}
            if len(pos) and len(neg):
                p, n = v[pos].to_numpy(), v[neg].to_numpy()
                zp, sm = z_prime(p, n), ssmd(p, n)
                row.update(z_prime=zp, ssmd=sm, n=int(np.isfinite(p).sum()),
                           n_ref=int(np.isfinite(n).sum()), mean=np.nanmean(p),
                           mean_ref=np.nanmean(n), sd=np.nanstd(p, ddof=1),
                           sd_ref=np.nanstd(n, ddof=1), status=z_prime_status(zp),
                           ssmd_status=ssmd_status(sm), message=_qc_message(zp, sm))
            else:
                row.update(status="controls_missing", ssmd_status="controls_missing",
                           message="Z' and SSMD need usable wells with roles positive_control"
                           " and negative_control")
            sel = w.index[sample & v[w.index].notna()]
            if len(sel) >= 4:
                grid = np.full((n_rows, n_cols), np.nan)
                grid[w.loc[sel, "row"], w.loc[sel, "col"]] = v[sel]
                _, reff, ceff, res = median_polish(grid)
                rr, cc = w.loc[sel, "row"].to_numpy(), w.loc[sel, "col"].to_numpy()
                present_r, present_c = np.unique(rr), np.unique(cc)
                b = _scale_residuals(res[rr, cc])
                e, i = v[sel][edge[sel]], v[sel][~edge[sel]]
                row.update(row_effect_range=float(np.ptp(reff[present_r])),
                           col_effect_range=float(np.ptp(ceff[present_c])),
                           edge_effect=float(e.median() - i.median()) if len(e) and len(i)
                           else np.nan,
                           n_bscore_outliers=int((np.abs(b) > 3).sum()))
            if name == "n_detected":
                sel = w.index[(role[w.index] != "empty") & imaged[w.index]]
                z = robust_z(v[sel].to_numpy())
                out = np.abs(z) > OUTLIER_Z
                row.update(n_outliers=int(out.sum()),
                           outlier_wells=";".join(w.loc[sel[out], "well"]))
            rows.append(row)
    out = pd.DataFrame(rows)
    for c in ("z_prime", "ssmd", "n", "n_ref", "mean", "mean_ref", "sd", "sd_ref",
              "row_effect_range", "col_effect_range", "edge_effect", "n_bscore_outliers"):
        if c not in out:
            out[c] = np.nan
    return out


def _qc_message(zp: float, sm: float) -> str:
    """The numbers behind the QC statuses, e.g. ``Z' = -6.2 < 0: unusable; SSMD = 1.1 ...``."""
    def z_text(z: float) -> str:
        st = z_prime_status(z)
        if st == "not_computable":
            return "Z' not computable (fewer than 2 finite control wells, or no spread and no" \
                " gap)"
        rule = {"good": ">= 0.5", "marginal": "in [0, 0.5)", "unusable": "< 0"}[st]
        return f"Z' = {z:.3g} {rule}: {st}"

    def s_text(s: float) -> str:
        st = ssmd_status(s)
        if st == "not_computable":
            return "SSMD not computable"
        rule = {"good": ">= 3", "marginal": "in [2, 3)", "unusable": "< 2"}[st]
        return f"|SSMD| = {abs(s):.3g} {rule}: {st}"

    return f"{z_text(zp)}; {s_text(sm)}"
