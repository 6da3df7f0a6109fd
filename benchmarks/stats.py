"""Benchmark: `hcs.stats.run_stats` on a 1536-well plate, 20 readouts, 50 conditions + reference.

Target (issue 7): under 5 s. Baseline, measured in the same run: a plain loop calling
``scipy.stats.ttest_ind`` for every (readout, condition) and ``multipletests`` once -- the t-tests
alone, without CIs, effect sizes, dose fits or QC.

Run: ``python benchmarks/stats.py``
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from hcs.plate import PlateGeometry, well_name
from hcs.stats import run_stats

N_READOUTS = 20
N_CONDITIONS = 50  # 5 compounds x 10 doses, plus the DMSO reference and a positive control


def make_plate(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = PlateGeometry.from_format(1536)
    wells = [(r, c) for r in range(g.rows) for c in range(g.columns)]
    rng.shuffle(wells)
    conds = [("DMSO", "DMSO", np.nan, "negative_control")] * 60
    conds += [("staurosporine 1 uM", "staurosporine", 1.0, "positive_control")] * 36
    doses = 10 / 3.0 ** np.arange(10)
    per = (len(wells) - len(conds)) // N_CONDITIONS
    for k in range(5):
        for d in doses:
            conds += [(f"cmpd{k} {d:g} uM", f"cmpd{k}", d, "sample")] * per
    conds += [(None, None, np.nan, "empty")] * (len(wells) - len(conds))
    rows = []
    for (r, c), (cond, cons, dose, role) in zip(wells, conds, strict=True):
        rows.append({"plate": "bench", "well": well_name(r, c), "row": r, "col": c,
                     "condition": cond, "construct": cons, "dose": dose,
                     "dose_unit": "uM" if np.isfinite(dose) else None, "role": role})
    w = pd.DataFrame(rows)
    n = rng.poisson(400, len(w))
    w["n_detected"] = n
    w["n_analysed"] = n
    effect = np.where(w["dose"].notna(), 0.2 / (1 + (0.3 / w["dose"].fillna(1)) ** 1.2), 0.0)
    for i in range(N_READOUTS):
        p = np.clip(0.1 + effect * (i % 3) + rng.normal(0, 0.02, len(w)), 0.001, 0.999)
        w[f"n_r{i}"] = rng.binomial(n, p)
        w[f"freq_r{i}"] = w[f"n_r{i}"] / n
    w["usable"] = True
    return w


def baseline(w: pd.DataFrame) -> int:
    ref = w[w.condition == "DMSO"]
    ps = []
    for r in [c for c in w if c.startswith("freq_")]:
        for _cond, grp in w[w.condition != "DMSO"].groupby("condition"):
            ps.append(sps.ttest_ind(grp[r], ref[r]).pvalue)
    multipletests(ps, method="fdr_bh")
    return len(ps)


def main() -> None:
    w = make_plate()
    print(f"plate: {len(w)} wells ({int((w.role == 'empty').sum())} empty), {N_READOUTS}"
          f" readouts, {w.condition.nunique() - 1} conditions vs DMSO, 5 dose series")
    t0 = time.perf_counter()
    n_base = baseline(w)
    t_base = time.perf_counter() - t0
    timings = {}
    for label, kw in (("hcs run_stats (t-tests + dose fits + QC)", {}),
                      ("hcs run_stats, comparisons only", {"dose": False, "qc": False}),
                      ("hcs run_stats, welch + logit", {"test": "welch", "transform": "logit"})):
        t0 = time.perf_counter()
        s = run_stats(w, "DMSO", **kw)
        timings[label] = (time.perf_counter() - t0, s)
    print(f"{'what':45s} {'seconds':>8s} {'rows':>6s}")
    print(f"{'baseline: scipy ttest_ind loop + BH':45s} {t_base:8.2f} {n_base:6d}")
    for label, (t, s) in timings.items():
        print(f"{label:45s} {t:8.2f} {len(s):6d}")
    s = timings["hcs run_stats (t-tests + dose fits + QC)"][1]
    print("rows by kind:", s.kind.value_counts().to_dict(),
          "| dose fits ok:", int((s[s.kind == "dose_response"].status == "ok").sum()))
    worst = max(t for t, _ in timings.values())
    print(f"target < 5 s: {'PASS' if worst < 5 else 'FAIL'} (slowest {worst:.2f} s)")


if __name__ == "__main__":
    main()
