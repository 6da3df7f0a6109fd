"""Dose-response: 4-parameter logistic fits with 95% confidence intervals.

Model (GraphPad's "log(agonist) vs. response -- variable slope", drc's LL.4 with ``hill = -b``)::

    y = bottom + (top - bottom) / (1 + (ec50 / x) ** hill)

``bottom <= top`` are the plateaus; the Hill slope is positive when the response rises with the
dose and negative when it falls (then ``ec50`` is an IC50). Zero doses are allowed (their
response is the plateau the curve starts from). The fit is least squares
(:func:`scipy.optimize.curve_fit`, Levenberg-Marquardt) on ``log10(ec50)``; CIs are Wald
intervals ``estimate +- t_{0.975, n-4} se``, for ``ec50`` computed on the log scale and
transformed back (so they are asymmetric and positive).

Bounded readouts (frequencies: ``freq_<r>``, including ``freq_<stain>_positive``) are fitted with
both plateaus constrained to [0, 1] (``bounds``: the trust-region-reflective optimiser of
:func:`scipy.optimize.least_squares` with box constraints, the same least squares on the same
scale); a plateau that ends on a bound is named in ``message`` and its CI is clipped to the bounds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import optimize
from scipy import stats as sps

PARAMS = ("bottom", "top", "ec50", "hill")


def logistic4(x: np.ndarray, bottom: float, top: float, ec50: float, hill: float) -> np.ndarray:
    """The 4-parameter logistic at doses ``x`` (``x = 0`` gives the low-dose plateau).

    Examples
    --------
    >>> logistic4(np.array([0.0, 1.0, 1e9]), 10, 110, 1.0, 2.0).round(6).tolist()
    [10.0, 60.0, 110.0]
    """
    return _model(_log_dose(x), bottom, top, np.log10(ec50), hill)


_LN10 = np.log(10.0)


def _log_dose(x: np.ndarray) -> np.ndarray:
    """log10 of the doses; -inf for dose 0."""
    with np.errstate(divide="ignore"):
        return np.log10(np.asarray(x, dtype="float64"))


def _frac(lx: np.ndarray, log_ec50: float, hill: float) -> np.ndarray:
    # z = hill ln10 (log_ec50 - log10 x); a zero dose sits at the low-dose plateau
    z = np.where(np.isfinite(lx), hill * (log_ec50 - lx) * _LN10, 700.0 * np.sign(hill))
    return 1.0 / (1.0 + np.exp(np.clip(z, -700.0, 700.0)))


def _model(lx: np.ndarray, bottom: float, top: float, log_ec50: float, hill: float) -> np.ndarray:
    return bottom + (top - bottom) * _frac(lx, log_ec50, hill)


def _jacobian(lx: np.ndarray, bottom: float, top: float, log_ec50: float, hill: float
              ) -> np.ndarray:
    f = _frac(lx, log_ec50, hill)
    slope = -(top - bottom) * f * (1.0 - f) * _LN10
    dh = np.where(np.isfinite(lx), log_ec50 - lx, 0.0)
    return np.column_stack([1.0 - f, f, slope * hill, slope * dh])


def _empty(status: str, message: str, **extra: object) -> dict[str, object]:
    out: dict[str, object] = {p: np.nan for p in PARAMS}
    for p in PARAMS:
        out[f"{p}_se"] = out[f"{p}_ci_low"] = out[f"{p}_ci_high"] = np.nan
    out.update(status=status, message=message, rss=np.nan, r2=np.nan, df=np.nan)
    out.update(extra)
    return out


def fit_4pl(dose: np.ndarray, response: np.ndarray, maxfev: int = 400,
            bounds: tuple[float, float] | None = None) -> dict[str, object]:
    """Fit the 4-parameter logistic to (dose, response) points (one point per well).

    ``bounds = (low, high)`` constrains both plateaus (``bottom``, ``top``) to that range, e.g.
    ``(0, 1)`` for a frequency; ``None`` fits them freely.

    Returns
    -------
    dict
        ``bottom, top, ec50, hill`` with ``_se``, ``_ci_low``, ``_ci_high``; ``df`` (n - 4),
        ``rss``, ``r2``, ``n``, ``n_doses``, ``statistic``/``p`` (extra-sum-of-squares F test of
        the curve against a flat line, 3 and n-4 df), ``status`` and a readable ``message``.
        Status values: ``ok``; ``too_few_doses`` (fewer than 4 distinct doses, no fit);
        ``flat_response`` (no variation, no fit); ``no_convergence`` (the optimiser failed
        within ``maxfev`` evaluations; no estimates); ``no_dose_effect`` (the F test gives
        p >= 0.05: estimates kept, not to be trusted);
        ``ec50_outside_doses`` (fit converged but the EC50 lies outside the tested positive
        doses: the doses do not span the response, estimates are extrapolations); ``no_ci``
        (estimates but no finite standard errors, e.g. exactly 4 points).

    Examples
    --------
    >>> x = np.repeat([0.01, 0.1, 1, 10, 100], 2)
    >>> r = fit_4pl(x, logistic4(x, 5, 95, 2.0, 1.2))
    >>> r["status"], round(r["ec50"], 4), round(r["hill"], 4)
    ('ok', 2.0, 1.2)
    >>> f = fit_4pl(x, logistic4(x, 0.0, 1.0, 2.0, 1.2), bounds=(0, 1))
    >>> f["status"], round(f["bottom"], 4), round(f["top"], 4), f["bounds"]
    ('ok', 0.0, 1.0, '[0, 1]')
    """
    x = np.asarray(dose, dtype="float64")
    y = np.asarray(response, dtype="float64")
    keep = np.isfinite(x) & np.isfinite(y) & (x >= 0)
    x, y = x[keep], y[keep]
    levels = np.unique(x)
    extra: dict[str, object] = {"n": int(len(x)), "n_doses": int(len(levels)),
                                "bounds": f"[{bounds[0]:g}, {bounds[1]:g}]" if bounds else ""}
    if len(levels) < 4:
        return _empty("too_few_doses", f"a 4PL fit needs at least 4 distinct doses, got"
                      f" {len(levels)}", **extra)
    if np.ptp(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
        return _empty("flat_response", "the response does not change with the dose", **extra)
    pos = x > 0
    means = pd.Series(y).groupby(x).mean()
    lo, hi = float(means.iloc[0]), float(means.iloc[-1])
    mid = (lo + hi) / 2
    # Start EC50 where the dose-mean curve crosses half-way; else at the geometric middle dose.
    crossing = np.flatnonzero(np.diff(np.sign(means.to_numpy() - mid)) != 0)
    lpos = np.log10(x[pos])
    log_ec50_0 = float(np.log10(means.index[crossing[0] + 1])) if len(crossing) and \
        means.index[crossing[0] + 1] > 0 else float(np.mean([lpos.min(), lpos.max()]))
    p0 = [lo, hi, log_ec50_0, 1.0]
    lx = _log_dose(x)
    fit_options: dict[str, object] = {"method": "lm", "maxfev": maxfev}
    if bounds is not None:
        b_lo, b_hi = float(bounds[0]), float(bounds[1])
        p0[:2] = np.clip(p0[:2], b_lo, b_hi)
        fit_options = {"method": "trf", "max_nfev": maxfev,
                       "bounds": ([b_lo, b_lo, -np.inf, -np.inf], [b_hi, b_hi, np.inf, np.inf])}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = optimize.curve_fit(_model, lx, y, p0=p0, jac=_jacobian,
                                            check_finite=False,  # lx is -inf at dose 0
                                            **fit_options)
    except (RuntimeError, ValueError, optimize.OptimizeWarning) as exc:
        return _empty("no_convergence", f"the 4PL fit did not converge ({exc})", **extra)
    bottom, top, log_ec50, hill = (float(v) for v in popt)
    if not np.all(np.isfinite(popt)):
        return _empty("no_convergence", "the 4PL fit did not converge (non-finite estimates)",
                      **extra)
    perm = [0, 1, 2, 3]
    if bottom > top:  # same curve with the plateaus swapped and the slope negated
        bottom, top, hill = top, bottom, -hill
        perm = [1, 0, 2, 3]
    pcov = pcov[np.ix_(perm, perm)]
    resid = y - _model(lx, *popt)
    rss = float(resid @ resid)
    tss = float(((y - y.mean()) ** 2).sum())
    df = len(x) - 4
    se = np.sqrt(np.diag(pcov)) if df > 0 else np.full(4, np.inf)
    tq = float(sps.t.ppf(0.975, df)) if df > 0 else np.nan
    with np.errstate(over="ignore"):
        est = {"bottom": bottom, "top": top, "ec50": float(np.power(10.0, log_ec50)),
               "hill": hill}
    out: dict[str, object] = dict(est)
    for k, name in enumerate(("bottom", "top", "log_ec50", "hill")):
        value = log_ec50 if name == "log_ec50" else est[name]
        s = float(se[k]) if np.isfinite(se[k]) else np.nan
        low, high = value - tq * s, value + tq * s
        if bounds is not None and name in ("bottom", "top"):
            low, high = max(low, bounds[0]), min(high, bounds[1])
        if name == "log_ec50":
            with np.errstate(over="ignore"):
                low, high = np.power(10.0, low), np.power(10.0, high)
            name, s = "ec50", est["ec50"] * np.log(10) * s
        out.update({f"{name}_se": s, f"{name}_ci_low": low, f"{name}_ci_high": high})
    out.update(rss=rss, r2=1 - rss / tss if tss > 0 else np.nan, df=float(df), **extra)
    # extra-sum-of-squares F test of the 4PL against a flat line (3 more parameters)
    f_stat = ((tss - rss) / 3) / (rss / df) if df > 0 and rss > 0 else np.inf
    f_p = float(sps.f.sf(f_stat, 3, df)) if df > 0 else np.nan
    out.update(statistic=f_stat, p=f_p)
    dmin, dmax = float(x[pos].min()), float(x[pos].max())
    if not np.isfinite(out["ec50_se"]):
        out.update(status="no_ci", message="fit converged but the standard errors are not"
                   f" finite ({len(x)} points for 4 parameters)")
    elif f_p >= 0.05:
        out.update(status="no_dose_effect", message=f"the 4PL curve is not better than a flat"
                   f" line (F = {f_stat:.3g}, p = {f_p:.3g}): no dose effect shown")
    elif not dmin <= est["ec50"] <= dmax:
        out.update(status="ec50_outside_doses", message=f"EC50 {est['ec50']:.3g} lies outside"
                   f" the tested doses [{dmin:g}, {dmax:g}]: the doses do not span the"
                   " response, the estimates are extrapolated")
    else:
        out.update(status="ok", message="")
    if bounds is not None:
        tol = 1e-6 * (bounds[1] - bounds[0])
        hit = [f"{k} at the bound {b:g}" for k in ("bottom", "top")
               for b in bounds if abs(est[k] - b) <= tol]
        if hit:
            note = f"{', '.join(hit)} (plateaus bounded to {extra['bounds']})"
            out["message"] = f"{out['message']}; {note}" if out["message"] else note
    return out


def dose_response(
    wells: pd.DataFrame, values: pd.DataFrame, readouts: list[str] | None = None,
    bounded: list[str] | None = None,
) -> pd.DataFrame:
    """4PL fit for every readout and every dose series (wells of one ``construct``).

    A series is a construct with at least two distinct doses; its wells on all plates are pooled
    (each usable well one point, including dose-0 wells of the same construct). Returns one
    ``kind = "dose_response"`` row per (readout, construct) with the :func:`fit_4pl` columns.
    Readouts in ``bounded`` (default: every ``freq_`` column, the frequencies) are fitted with
    the plateaus constrained to [0, 1].
    """
    readouts = list(values.columns) if readouts is None else readouts
    bounded = [r for r in readouts if r.startswith("freq_")] if bounded is None else bounded
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    has_dose = wells["dose"].notna() & wells["construct"].notna() if "dose" in wells and \
        "construct" in wells else pd.Series(False, wells.index)
    rows = []
    for construct, grp in wells[has_dose].groupby("construct", sort=True):
        if grp["dose"].nunique() < 2:
            continue
        units = sorted(set(grp["dose_unit"].dropna().astype(str)))
        sel = grp.index[usable[grp.index]]
        for r in readouts:
            base = {"kind": "dose_response", "readout": r, "condition": str(construct),
                    "plate": "all", "dose_unit": ";".join(units)}
            if len(units) > 1:
                rows.append({**base, **_empty("mixed_units", f"series {construct} mixes dose"
                                              f" units {units}")})
                continue
            rows.append({**base, **fit_4pl(wells.loc[sel, "dose"].to_numpy(),
                                           values.loc[sel, r].to_numpy(),
                                           bounds=(0.0, 1.0) if r in bounded else None)})
    return pd.DataFrame(rows)
