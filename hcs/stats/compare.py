"""Condition vs reference comparisons: t-tests, 95% CIs, Hedges' g, corrections, plates as blocks.

The well is the unit of replication. Formulas (textbook, see docs/statistics.md):

- Student: ``sp^2 = ((n1-1) s1^2 + (n2-1) s2^2) / (n1+n2-2)``, ``se = sp sqrt(1/n1 + 1/n2)``,
  ``df = n1+n2-2``;
- Welch: ``se = sqrt(s1^2/n1 + s2^2/n2)``, Welch-Satterthwaite ``df``;
- ``t = (m1 - m2) / se``, two-tailed ``p = 2 P(T_df > |t|)``, CI ``diff +- t_{0.975,df} se``;
- Hedges' g = ``J (m1 - m2) / sp`` with ``J = 1 - 3 / (4 (n1+n2) - 9)`` (always the pooled SD).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from hcs.errors import InputError

TESTS = ("student", "welch")
CORRECTIONS = ("fdr_bh", "holm", "bonferroni", "none")
TRANSFORMS = ("none", "logit")
BLOCKS = ("model", "normalise")


def two_sample_summary(
    n1: np.ndarray, m1: np.ndarray, v1: np.ndarray,
    n2: np.ndarray, m2: np.ndarray, v2: np.ndarray, test: str = "student",
) -> dict[str, np.ndarray]:
    """Two-sample t-test from group sizes, means and variances (``ddof=1``); vectorised.

    Group 1 is the condition, group 2 the reference. Returns arrays ``diff, se, statistic, df,
    p, ci_low, ci_high, hedges_g``; NaN where the test is undefined (fewer than two values in a
    group, or no variance in either group).

    Examples
    --------
    >>> r = two_sample_summary(np.array([3]), np.array([2.0]), np.array([1.0]),
    ...                        np.array([3]), np.array([0.0]), np.array([1.0]))
    >>> round(float(r["statistic"][0]), 4), float(r["df"][0])
    (2.4495, 4.0)
    """
    if test not in TESTS:
        raise InputError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")
    n1, m1, v1, n2, m2, v2 = (np.asarray(a, dtype="float64") for a in (n1, m1, v1, n2, m2, v2))
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = m1 - m2
        dfp = n1 + n2 - 2
        sp = np.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / dfp)
        if test == "student":
            se = sp * np.sqrt(1 / n1 + 1 / n2)
            df = dfp
        else:
            a, b = v1 / n1, v2 / n2
            se = np.sqrt(a + b)
            df = (a + b) ** 2 / (a**2 / (n1 - 1) + b**2 / (n2 - 1))
        valid = (n1 >= 2) & (n2 >= 2) & (se > 0) & np.isfinite(se)
        se = np.where(valid, se, np.nan)
        df = np.where(valid, df, np.nan)
        t = diff / se
        p = 2 * sps.t.sf(np.abs(t), df)
        half = sps.t.ppf(0.975, df) * se
        j = 1 - 3 / (4 * (n1 + n2) - 9)
        g = np.where(valid & (sp > 0), j * diff / sp, np.nan)
    return {"diff": diff, "se": se, "statistic": t, "df": df, "p": p,
            "ci_low": diff - half, "ci_high": diff + half, "hedges_g": g}


def adjust_pvalues(p: np.ndarray | pd.Series, method: str = "fdr_bh") -> np.ndarray:
    """Adjust p-values with :func:`statsmodels.stats.multitest.multipletests`; NaN stays NaN.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, np.nan, 0.03], "fdr_bh").round(3).tolist()
    [0.03, 0.04, nan, 0.04]
    """
    from statsmodels.stats.multitest import multipletests

    if method not in CORRECTIONS:
        raise InputError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
    p = np.asarray(p, dtype="float64")
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if method == "none":
        out[ok] = p[ok]
    elif ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out


#: Significance level of a hit: adjusted p below it (one star).
ALPHA = 0.05


def stars(p: float) -> str:
    """Significance stars: ``***`` p < 0.001, ``**`` < 0.01, ``*`` < 0.05, ``ns``; ``""`` for NaN.

    Examples
    --------
    >>> [stars(x) for x in (0.0004, 0.004, 0.04, 0.4, float("nan"))]
    ['***', '**', '*', 'ns', '']
    """
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < ALPHA else "ns"


def readout_values(wells: pd.DataFrame, readouts: list[str], transform: str) -> pd.DataFrame:
    """Per-well values of the readouts (``freq_<r>``), transformed on request.

    ``logit`` uses the empirical logit ``log((k + 0.5) / (n - k + 0.5))`` of the counts
    ``k = n_<r>`` and ``n = n_analysed``, finite even at frequencies 0 and 1.
    """
    if transform not in TRANSFORMS:
        raise InputError(f"unknown transform {transform!r}; use one of {', '.join(TRANSFORMS)}")
    if transform == "none":
        return wells[readouts].astype("float64")
    out = {}
    for r in readouts:
        k_col = "n_" + r.removeprefix("freq_")
        if k_col not in wells or "n_analysed" not in wells:
            raise InputError(f"the logit transform needs counts {k_col} and n_analysed in the"
                             " wells table")
        k = wells[k_col].astype("float64")
        n = wells["n_analysed"].astype("float64")
        out[r] = np.log((k + 0.5) / (n - k + 0.5)).where(n > 0)
    return pd.DataFrame(out, index=wells.index)


def _status(n_all, n, n_ref_all, n_ref, v, v_ref, m, m_ref, n_img=None, n_ref_img=None):
    scale = np.maximum(1.0, np.maximum(np.abs(m), np.abs(m_ref)))
    tol = (1e-12 * scale) ** 2
    flat = (np.nan_to_num(v) <= tol) & (np.nan_to_num(v_ref) <= tol)
    n_img = n_all if n_img is None else n_img
    n_ref_img = n_ref_all if n_ref_img is None else n_ref_img
    return np.select(
        [n_ref_all == 0, n_ref_img == 0, n_ref == 0, n_img == 0, n == 0,
         (n < 2) | (n_ref < 2), flat],
        ["reference_missing", "reference_not_imaged", "reference_no_cells", "not_imaged",
         "no_cells", "one_well", "zero_variance"],
        default="ok",
    )


def compare_block(
    wells: pd.DataFrame, values: pd.DataFrame, reference: str, test: str = "student",
) -> pd.DataFrame:
    """Every condition vs ``reference`` for every readout column of ``values`` (one block).

    ``wells`` has ``condition`` and (optionally) ``usable``; ``values`` holds one column per
    readout on the same index. Wells that are not usable or have a NaN value are left out of
    the test and counted in ``n_excluded`` if they were imaged, in ``n_not_imaged`` if not
    (flag ``missing``: a layout well the run has no images of).
    """
    from hcs.stats.qc import imaged_mask

    cond = wells["condition"]
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    conditions = [c for c in pd.unique(cond.dropna()) if c != reference]
    n_all = cond.value_counts()
    n_ref_all = int(n_all.get(reference, 0))
    n_img_all = cond[imaged_mask(wells)].value_counts()
    n_img = n_img_all.reindex(pd.Index(conditions)).fillna(0).to_numpy()
    n_ref_img = int(n_img_all.get(reference, 0))
    v = values.where(usable, axis=0)
    agg = v.groupby(cond).agg(["count", "mean", "var"])
    rows = []
    idx = pd.Index(conditions)
    for r in values.columns:
        a = agg[r].reindex(idx) if len(idx) else pd.DataFrame(columns=["count", "mean", "var"])
        ref = agg[r].loc[reference] if reference in agg.index else pd.Series(
            {"count": 0, "mean": np.nan, "var": np.nan})
        n = a["count"].fillna(0).to_numpy(dtype=float)
        nr = np.full(len(idx), float(ref["count"]))
        m, s2 = a["mean"].to_numpy(dtype=float), a["var"].to_numpy(dtype=float)
        mr, s2r = np.full(len(idx), float(ref["mean"])), np.full(len(idx), float(ref["var"]))
        res = two_sample_summary(n, m, s2, nr, mr, s2r, test)
        status = _status(n_all.reindex(idx).to_numpy(), n, n_ref_all, nr, s2, s2r, m, mr,
                         n_img, n_ref_img)
        tested = status == "ok"
        frame = pd.DataFrame({
            "readout": r, "condition": idx.astype(str),
            "reference": reference, "n": n.astype(int), "n_ref": nr.astype(int),
            "n_excluded": (n_img - n).astype(int),
            "n_not_imaged": (n_all.reindex(idx).fillna(0).to_numpy() - n_img).astype(int),
            "mean": m, "mean_ref": mr, "sd": np.sqrt(s2), "sd_ref": np.sqrt(s2r),
            "diff": np.where(np.isfinite(m) & np.isfinite(mr), m - mr, np.nan), "test": test,
        })
        for k in ("ci_low", "ci_high", "statistic", "df", "p", "hedges_g"):
            frame[k] = np.where(tested, res[k], np.nan)
        frame["status"] = status
        rows.append(frame)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def compare_plate_model(
    wells: pd.DataFrame, values: pd.DataFrame, reference: str, test: str = "student",
) -> pd.DataFrame:
    """Plates as blocks by a linear model ``value ~ C(group) + C(plate)`` (statsmodels OLS).

    For each readout and condition, the wells of the condition and of the reference (all plates)
    are fitted with an additive plate effect; ``diff`` is the plate-adjusted group coefficient,
    with its t, residual df, p and 95% CI. ``test="welch"`` uses HC3 heteroscedasticity-robust
    standard errors instead of the pooled residual variance. Hedges' g is
    ``J diff / sqrt(MSE)`` with ``J = 1 - 3 / (4 df - 1)``.
    """
    import statsmodels.api as sm

    base = compare_block(wells, values, reference, test)
    if base.empty:
        return base
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    plate = wells["plate"].astype(str)
    out = base.copy()
    out["test"] = "ols_plate_hc3" if test == "welch" else "ols_plate"
    for i, row in base.iterrows():
        if row["status"] != "ok":
            continue
        col = row["readout"]
        sel = usable & wells["condition"].isin([row["condition"], reference]) & values[col].notna()
        y = values.loc[sel, col].to_numpy(dtype=float)
        group = (wells.loc[sel, "condition"] == row["condition"]).to_numpy(dtype=float)
        dummies = pd.get_dummies(plate[sel], drop_first=True, dtype=float).to_numpy()
        x = np.column_stack([np.ones_like(y), group, dummies])
        if np.linalg.matrix_rank(x) < x.shape[1] or len(y) <= x.shape[1]:
            out.loc[i, ["statistic", "df", "p", "ci_low", "ci_high", "hedges_g"]] = np.nan
            out.loc[i, "status"] = "no_shared_plate"
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.OLS(y, x).fit(**({"cov_type": "HC3", "use_t": True} if test == "welch"
                                      else {}))
        ci = fit.conf_int(0.05)[1]
        dfr = float(fit.df_resid)
        j = 1 - 3 / (4 * dfr - 1)
        mse = float(fit.mse_resid)
        out.loc[i, ["diff", "statistic", "df", "p", "ci_low", "ci_high", "hedges_g"]] = [
            fit.params[1], fit.tvalues[1], dfr, fit.pvalues[1], ci[0], ci[1],
            j * fit.params[1] / np.sqrt(mse) if mse > 0 else np.nan]
        if not mse > 0:
            out.loc[i, "status"] = "zero_variance"
            out.loc[i, ["statistic", "p", "ci_low", "ci_high"]] = np.nan
    return out


def normalise_to_reference(
    wells: pd.DataFrame, values: pd.DataFrame, reference: str,
) -> pd.DataFrame:
    """Subtract, per plate, the mean of the plate's usable reference wells from every value.

    Wells on a plate without a usable reference value become NaN (left out of the tests).
    """
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    is_ref = (wells["condition"] == reference) & usable
    ref_mean = values.where(is_ref, axis=0).groupby(wells["plate"]).transform("mean")
    return values - ref_mean
