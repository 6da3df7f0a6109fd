"""Plate QC: Z'-factor and SSMD by hand, median polish, B-scores, edge effects, outliers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcs.stats import bscores, median_polish, robust_z, run_stats, ssmd, z_prime
from hcs.stats.qc import plate_qc


def test_z_prime_and_ssmd_by_hand():
    pos = np.array([0.82, 0.78, 0.85, 0.80, 0.79])
    neg = np.array([0.10, 0.12, 0.08, 0.11, 0.09])
    sp, sn = pos.std(ddof=1), neg.std(ddof=1)
    assert z_prime(pos, neg) == pytest.approx(1 - 3 * (sp + sn) / abs(pos.mean() - neg.mean()))
    assert ssmd(pos, neg) == pytest.approx((pos.mean() - neg.mean()) / np.sqrt(sp**2 + sn**2))
    assert np.isnan(z_prime(pos[:1], neg))


def test_median_polish_recovers_an_additive_plate():
    rows, cols = np.arange(8), np.arange(12)
    row_eff = np.array([3, 1, 0, 0, 0, 0, -1, -2], float)
    col_eff = np.linspace(-5, 5, 12)
    grid = 50 + row_eff[:, None] + col_eff[None, :]
    overall, r, c, res = median_polish(grid)
    fitted = overall + r[:, None] + c[None, :]
    np.testing.assert_allclose(fitted, grid, atol=1e-9)
    np.testing.assert_allclose(res, 0, atol=1e-9)
    np.testing.assert_allclose(np.ptp(r), np.ptp(row_eff))
    assert rows.size == 8 and cols.size == 12


def test_bscore_flags_the_hit_not_the_row_trend():
    r, c = np.divmod(np.arange(96), 12)
    rng = np.random.default_rng(3)
    v = 100 + 10 * r + 2 * c + rng.normal(0, 1, 96)
    v[40] += 25
    b = bscores(v, r, c)
    assert int(np.argmax(np.abs(b))) == 40 and abs(b[40]) > 5
    assert (np.abs(np.delete(b, 40)) < 4).all()


def test_robust_z():
    z = robust_z(np.array([100.0, 102, 98, 101, 99, 10]))
    assert abs(z[-1]) > 3.5 and (np.abs(z[:-1]) < 1.5).all()


def qc_plate() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for r in range(8):
        for c in range(12):
            role = "negative_control" if c == 0 else "positive_control" if c == 11 else "sample"
            mean = 0.1 if c == 0 else 0.8 if c == 11 else 0.3
            edge = r in (0, 7) or c in (0, 11)
            rows.append({"plate": "p1", "well": f"{'ABCDEFGH'[r]}{c + 1:02d}", "row": r,
                         "col": c, "role": role, "condition": role,
                         "freq_x": mean + rng.normal(0, 0.02) + (0.1 if edge and role ==
                                                                 "sample" else 0),
                         "n_detected": 500 + int(rng.normal(0, 10)), "usable": True})
    w = pd.DataFrame(rows)
    w.loc[w.well == "D05", "n_detected"] = 20  # a nearly empty well
    return w


def test_plate_qc_rows():
    w = qc_plate()
    q = plate_qc(w, w[["freq_x"]], (8, 12)).set_index("readout")
    pos = w.loc[w.role == "positive_control", "freq_x"]
    neg = w.loc[w.role == "negative_control", "freq_x"]
    assert q.loc["freq_x", "z_prime"] == pytest.approx(
        1 - 3 * (pos.std() + neg.std()) / abs(pos.mean() - neg.mean()))
    assert q.loc["freq_x", "n"] == 8 and q.loc["freq_x", "n_ref"] == 8
    assert q.loc["freq_x", "edge_effect"] == pytest.approx(0.1, abs=0.03)
    assert q.loc["n_detected", "outlier_wells"] == "D05" and q.loc["n_detected", "n_outliers"] == 1


def test_controls_missing_status():
    w = qc_plate()
    w["role"] = "sample"
    q = plate_qc(w, w[["freq_x"]])
    assert (q["status"] == "controls_missing").all() and q["z_prime"].isna().all()


def test_qc_rows_in_run_stats():
    w = qc_plate()
    s = run_stats(w, "negative_control")
    q = s[s.kind == "qc"]
    assert set(q["readout"]) == {"freq_x", "n_detected"} and set(q["plate"]) == {"p1"}
    assert q["z_prime"].notna().any()
