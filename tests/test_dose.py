"""4-parameter logistic fits: noiseless recovery, a published fit (drc ryegrass), failure modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcs.stats import fit_4pl, logistic4, run_stats
from hcs.stats.dose import dose_response

# Inderjit et al. (2002) ryegrass root length vs ferulic acid dose (mM), the drc package's
# `ryegrass` data; published LL.4 fit (drc 3.2 tests): b = 2.98221907127508,
# c = 0.481413188446126, d = 7.7929582936999, e = 3.0579549665481.
RYEGRASS_DOSE = np.array([0] * 6 + [0.94] * 3 + [1.88] * 3 + [3.75] * 3 + [7.5] * 3 + [15] * 3
                         + [30] * 3, dtype=float)
RYEGRASS_ROOT = np.array([
    7.58, 8.0, 8.3285714, 7.25, 7.375, 7.9625, 8.3555556, 6.9142857, 7.75, 6.8714286, 6.45,
    5.9222222, 1.925, 2.8857143, 4.2333333, 1.1875, 0.8571429, 1.0571429, 0.6875, 0.525, 0.825,
    0.25, 0.22, 0.44])


def test_published_ryegrass_fit():
    r = fit_4pl(RYEGRASS_DOSE, RYEGRASS_ROOT)
    assert r["status"] == "ok" and r["n"] == 24 and r["df"] == 20
    # drc LL.4: f = c + (d - c) / (1 + exp(b (log x - log e))) -> bottom c, top d, hill -b
    assert r["bottom"] == pytest.approx(0.481413188446126, rel=1e-4)
    assert r["top"] == pytest.approx(7.7929582936999, rel=1e-5)
    assert r["ec50"] == pytest.approx(3.0579549665481, rel=1e-5)
    assert r["hill"] == pytest.approx(-2.98221907127508, rel=1e-4)
    assert r["ec50_ci_low"] < r["ec50"] < r["ec50_ci_high"]
    assert r["hill_ci_low"] < r["hill"] < r["hill_ci_high"] < 0
    tss = ((RYEGRASS_ROOT - RYEGRASS_ROOT.mean()) ** 2).sum()
    f = ((tss - r["rss"]) / 3) / (r["rss"] / 20)
    assert r["statistic"] == pytest.approx(f) and r["p"] < 1e-10


def test_confidence_intervals_from_the_jacobian():
    r = fit_4pl(RYEGRASS_DOSE, RYEGRASS_ROOT)
    # independent check: s^2 (J^T J)^-1 with a central-difference Jacobian in (b, t, log10 e, h)
    theta = np.array([r["bottom"], r["top"], np.log10(r["ec50"]), r["hill"]])

    def f(th):
        return logistic4(RYEGRASS_DOSE, th[0], th[1], 10 ** th[2], th[3])

    jac = np.empty((len(RYEGRASS_DOSE), 4))
    for k in range(4):
        h = np.zeros(4)
        h[k] = 1e-6
        jac[:, k] = (f(theta + h) - f(theta - h)) / 2e-6
    s2 = ((RYEGRASS_ROOT - f(theta)) ** 2).sum() / 20
    se = np.sqrt(np.diag(s2 * np.linalg.inv(jac.T @ jac)))
    from scipy import stats as sps

    tq = sps.t.ppf(0.975, 20)
    assert r["top_se"] == pytest.approx(se[1], rel=1e-3)
    assert r["hill_ci_low"] == pytest.approx(theta[3] - tq * se[3], rel=1e-3)
    assert r["ec50_ci_high"] == pytest.approx(10 ** (theta[2] + tq * se[2]), rel=1e-3)


@pytest.mark.parametrize("bottom,top,ec50,hill", [
    (5.0, 95.0, 2.0, 1.2), (0.02, 0.4, 0.05, -0.8), (10.0, 60.0, 300.0, 2.5)])
def test_noiseless_recovery(bottom, top, ec50, hill):
    x = np.repeat(ec50 * np.logspace(-2, 2, 9), 3)
    r = fit_4pl(x, logistic4(x, bottom, top, ec50, hill))
    lo, hi = min(bottom, top), max(bottom, top)
    sign = 1 if top >= bottom else -1  # the fit reports bottom <= top
    assert r["status"] == "ok"
    assert (r["bottom"], r["top"]) == pytest.approx((lo, hi), rel=1e-6, abs=1e-9)
    assert r["ec50"] == pytest.approx(ec50, rel=1e-6)
    assert r["hill"] == pytest.approx(sign * hill, rel=1e-6)


def test_failure_modes_have_a_status_and_message():
    x = np.array([1, 1, 2, 2, 3, 3], float)
    r = fit_4pl(x, x)
    assert r["status"] == "too_few_doses" and np.isnan(r["ec50"]) and "4 distinct" in r["message"]
    x = np.repeat([0.1, 1, 10, 100], 2)
    assert fit_4pl(x, np.full(8, 0.3))["status"] == "flat_response"
    # doses only on the rising foot of the curve: EC50 is far above the highest dose
    x = np.repeat([0.001, 0.002, 0.004, 0.008, 0.016], 3)
    rng = np.random.default_rng(1)
    y = logistic4(x, 0, 100, 1.0, 1.0) + rng.normal(0, 0.01, len(x))
    r = fit_4pl(x, y)
    assert r["status"] in ("ec50_outside_doses", "no_convergence")
    assert "do not span" in r["message"] or "did not converge" in r["message"]
    # pure noise around a constant does not give a trustworthy curve
    y = rng.normal(0.5, 0.01, 15)
    x = np.repeat([0.1, 1, 10, 100, 1000], 3)
    r = fit_4pl(x, y)
    assert r["status"] in ("no_dose_effect", "no_convergence", "no_ci"), r
    assert r["message"]


def test_no_convergence_is_reported():
    r = fit_4pl(RYEGRASS_DOSE, RYEGRASS_ROOT, maxfev=3)
    assert r["status"] == "no_convergence" and "did not converge" in r["message"]
    assert np.isnan(r["ec50"]) and r["n"] == 24
    # no trend at all: the fit ends on a flat line whose EC50 and slope are not identifiable
    x = np.repeat([0.1, 1, 10, 100], 2)
    r = fit_4pl(x, np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert r["status"] in ("no_ci", "no_convergence") and r["message"]


def dose_wells() -> pd.DataFrame:
    doses = 10 / 3.0 ** np.arange(8)
    rows = []
    for k, d in enumerate(doses):
        for rep in range(3):
            rows.append({"well": f"{'ABC'[rep]}{k + 2:02d}", "construct": "cmpd", "dose": d,
                         "dose_unit": "uM", "condition": f"cmpd {d:g} uM", "role": "sample",
                         "freq_dead": logistic4(np.array([d]), 0.05, 0.8, 0.3, 1.5)[0]})
    for rep in range(3):
        rows.append({"well": f"{'ABC'[rep]}01", "construct": "DMSO", "dose": np.nan,
                     "dose_unit": None, "condition": "DMSO", "role": "negative_control",
                     "freq_dead": 0.05 + 0.001 * rep})
    w = pd.DataFrame(rows)
    w["plate"], w["usable"] = "p1", True
    w["row"] = w.well.str[0].map({"A": 0, "B": 1, "C": 2})
    w["col"] = w.well.str[1:].astype(int) - 1
    return w


def test_dose_response_rows_in_run_stats():
    s = run_stats(dose_wells(), "DMSO")
    d = s[s.kind == "dose_response"]
    assert len(d) == 1
    row = d.iloc[0]
    assert row["condition"] == "cmpd" and row["dose_unit"] == "uM" and row["n"] == 24
    assert row["ec50"] == pytest.approx(0.3, rel=1e-6) and row["hill"] == pytest.approx(1.5)
    assert row["status"] == "ok" and row["n_doses"] == 8


def test_mixed_units_are_refused_per_series():
    w = dose_wells()
    w.loc[0, "dose_unit"] = "nM"
    d = dose_response(w, w[["freq_dead"]])
    assert d.iloc[0]["status"] == "mixed_units" and "nM" in d.iloc[0]["message"]
