"""How well an analysis of a simulated plate recovers the simulation's truth.

Two questions, answered from ``truth/wells.parquet`` (what the simulator drew) and the analysis'
``wells.parquet`` / ``stats.parquet``:

1. **Per-well frequencies.** For every readout, the Pearson r and the mean absolute error of the
   estimated per-well frequency against the true one (true counts of the simulated objects,
   F-category excluded as in the analysis).
2. **Built-in comparisons.** The layout's ``sim_freq_*`` columns give every condition an expected
   frequency; a comparison (readout, condition vs reference) is *built in* when the expected
   difference is at least ``min_effect`` (absolute). It is *recovered* when the analysis finds it
   significant (adjusted p < ``alpha``) in the expected direction. The same statistics run on the
   true per-well counts say which built-in effects this plate size can show at all
   (``truth_significant``): those are the ones a perfect classifier would recover.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.assays import get_assay
from hcs.errors import InputError

__all__ = ["builtin_comparisons", "frequency_agreement", "recovery_summary", "truth_well_table"]


def truth_well_table(truth: pd.DataFrame, assay: str) -> pd.DataFrame:
    """The simulation's true per-well counts as a ``wells.parquet``-style table (real
    :func:`hcs.aggregate.well_table`, so composites and exclusions are the analysis' own),
    with the truth's layout columns joined."""
    from hcs.aggregate import well_table
    from hcs.layouts import LAYOUT_COLUMNS

    a = get_assay(assay)
    need = [f"n_{c}" for c in a.classes]
    missing = [c for c in need if c not in truth]
    if missing:
        raise InputError(f"truth wells table: missing columns {missing} for assay {a.name}")
    counts = truth[["plate", "well", *need]].copy()
    counts["n_detected"] = truth[need].sum(axis=1)
    layout = truth[[c for c in LAYOUT_COLUMNS if c in truth]].copy()
    wells = well_table(counts, a)
    keep = [c for c in layout.columns if c not in wells.columns or c == "well"]
    return wells.merge(layout[keep], on="well", how="left")


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return None
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def frequency_agreement(est: pd.DataFrame, truth: pd.DataFrame, assay: str) -> pd.DataFrame:
    """Per readout: wells compared, Pearson r, MAE, mean bias (estimate - truth), true and
    estimated mean frequency; plus ``cells`` (detected cells vs true objects) and
    ``analysed_cells`` (cells counted in the frequencies, vs true objects less excluded ones).

    Examples
    --------
    >>> t = pd.DataFrame({"plate": "p", "well": ["A01", "A02", "A03"], "n_live": [8, 5, 2],
    ...                   "n_dead": [2, 5, 8]})
    >>> e = pd.DataFrame({"well": ["A01", "A02", "A03"], "freq_live": [0.7, 0.5, 0.3],
    ...                   "freq_dead": [0.3, 0.5, 0.7], "n_detected": [10, 11, 9]})
    >>> agr = frequency_agreement(e, truth_well_table(t, "livedead"), "livedead")
    >>> agr.loc["live", ["r", "mae"]].round(3).tolist()
    [1.0, 0.067]
    """
    a = get_assay(assay)
    m = truth.merge(est, on="well", how="inner", suffixes=("_true", "_est"))
    rows = {}
    for r in a.readouts:
        x = m[f"freq_{r}_true"].to_numpy(float)
        y = m[f"freq_{r}_est"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        err = y[ok] - x[ok]
        rows[r] = {"n_wells": int(ok.sum()), "r": _pearson(x, y),
                   "mae": float(np.abs(err).mean()) if ok.any() else None,
                   "bias": float(err.mean()) if ok.any() else None,
                   "mean_true": float(x[ok].mean()) if ok.any() else None,
                   "mean_est": float(y[ok].mean()) if ok.any() else None}
    for name, col in (("cells", "n_detected"), ("analysed_cells", "n_analysed")):
        if f"{col}_true" not in m or f"{col}_est" not in m:
            continue
        x = m[f"{col}_true"].to_numpy(float)
        y = m[f"{col}_est"].to_numpy(float)
        rows[name] = {"n_wells": len(m), "r": _pearson(x, y),
                      "mae": float(np.abs(y - x).mean()) if len(m) else None,
                      "bias": float((y - x).mean()) if len(m) else None,
                      "mean_true": float(x.mean()) if len(m) else None,
                      "mean_est": float(y.mean()) if len(m) else None}
    return pd.DataFrame.from_dict(rows, orient="index")


def _expected(truth: pd.DataFrame, assay: str) -> pd.DataFrame:
    """Expected frequency of every readout per condition (from ``expected_freq_<class>``)."""
    a = get_assay(assay)
    cols = {c: f"expected_freq_{c}" for c in a.analysed_classes}
    missing = [v for v in cols.values() if v not in truth]
    if missing:
        raise InputError(f"truth wells table: no {missing[0]} column (not a simulation of "
                         f"assay {a.name}?)")
    per = truth.groupby("condition")[list(cols.values())].first()
    per.columns = list(cols)
    for name, parts in a.composites.items():
        per[name] = per[list(parts)].sum(axis=1)
    return per[list(a.readouts)]


def _comparisons(stats: pd.DataFrame) -> pd.DataFrame:
    comp = stats[stats["kind"] == "comparison"]
    if "plate" in comp and (comp["plate"] == "all").any():
        comp = comp[comp["plate"] == "all"]
    comp = comp.assign(readout=comp["readout"].str.removeprefix("freq_"))
    return comp.drop_duplicates(["readout", "condition"]).set_index(["readout", "condition"])


def builtin_comparisons(truth_raw: pd.DataFrame, est_stats: pd.DataFrame, assay: str,
                        reference: str, *, alpha: float = 0.05, min_effect: float = 0.02,
                        test: str = "student", correction: str = "fdr_bh") -> pd.DataFrame:
    """One row per (readout, condition vs ``reference``): expected difference, the truth's and
    the analysis' difference and adjusted p, and whether the effect is built in
    (``|expected_diff| >= min_effect``), significant from the true counts, recovered
    (significant, right direction), significant in the wrong direction, ``small_recovered``
    (a smaller built-in difference, ``min_effect / 4 <= |expected_diff| < min_effect``, found in
    the right direction) or ``spurious`` (significant where the layout builds in less than
    ``min_effect / 4``, or a small difference in the wrong direction). ``truth_raw`` is the
    simulation's ``truth/wells.parquet``."""
    from hcs.stats import run_stats

    exp = _expected(truth_raw, assay)
    truth = truth_well_table(truth_raw, assay)
    if reference not in exp.index:
        raise InputError(f"reference {reference!r} is not a condition of the simulation")
    truth_stats = _comparisons(run_stats(truth, reference=reference, test=test,
                                         correction=correction, dose=False, qc=False))
    est = _comparisons(est_stats)
    rows = []
    for cond in exp.index:
        if cond == reference:
            continue
        for r in exp.columns:
            d = float(exp.loc[cond, r] - exp.loc[reference, r])
            t = truth_stats.loc[(r, cond)] if (r, cond) in truth_stats.index else None
            e = est.loc[(r, cond)] if (r, cond) in est.index else None
            e_sig = bool(e is not None and pd.notna(e["p_adj"]) and e["p_adj"] < alpha)
            t_sig = bool(t is not None and pd.notna(t["p_adj"]) and t["p_adj"] < alpha)
            same_sign = e is not None and pd.notna(e["diff"]) and np.sign(e["diff"]) == np.sign(d)
            rows.append({
                "readout": r, "condition": cond, "reference": reference,
                "expected_ref": float(exp.loc[reference, r]), "expected": float(exp.loc[cond, r]),
                "expected_diff": d, "built_in": abs(d) >= min_effect,
                "truth_diff": None if t is None else float(t["diff"]),
                "truth_p_adj": None if t is None else _f(t["p_adj"]),
                "truth_significant": t_sig,
                "est_diff": None if e is None else _f(e["diff"]),
                "est_p_adj": None if e is None else _f(e["p_adj"]),
                "est_significant": e_sig,
                "recovered": bool(e_sig and same_sign and abs(d) >= min_effect),
                "wrong_direction": bool(e_sig and not same_sign and abs(d) >= min_effect),
                "small_recovered": bool(e_sig and same_sign
                                        and min_effect / 4 <= abs(d) < min_effect),
                "spurious": bool(e_sig and abs(d) < min_effect
                                 and (not same_sign or abs(d) < min_effect / 4)),
            })
    return pd.DataFrame(rows)


def dose_agreement(truth_raw: pd.DataFrame, est_stats: pd.DataFrame,
                   assay: str) -> list[dict[str, Any]]:
    """EC50 and Hill of every dose-response fit of the analysis next to the same fit on the
    true per-well counts (empty when the layout has no dose series)."""
    from hcs.stats import run_stats

    est = est_stats[est_stats["kind"] == "dose_response"]
    if not len(est):
        return []
    truth = run_stats(truth_well_table(truth_raw, assay), dose=True, qc=False)
    truth = truth[truth["kind"] == "dose_response"].set_index(["readout", "condition"])
    out = []
    for _, e in est.iterrows():
        t = truth.loc[(e["readout"], e["condition"])] if (e["readout"], e["condition"]) in \
            truth.index else None
        out.append({"readout": str(e["readout"]).removeprefix("freq_"),
                    "construct": e["condition"], "dose_unit": e["dose_unit"],
                    "est_status": e["status"], "est_ec50": _f(e["ec50"]),
                    "est_ec50_ci": [_f(e["ec50_ci_low"]), _f(e["ec50_ci_high"])],
                    "est_hill": _f(e["hill"]),
                    "truth_status": None if t is None else t["status"],
                    "truth_ec50": None if t is None else _f(t["ec50"]),
                    "truth_hill": None if t is None else _f(t["hill"])})
    return out


def _f(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def recovery_summary(truth_wells: str | Path, est_wells: str | Path, est_stats: str | Path,
                     assay: str, reference: str | None = None, *, alpha: float = 0.05,
                     min_effect: float = 0.02, test: str = "student",
                     correction: str = "fdr_bh") -> dict[str, Any]:
    """The whole comparison with the truth as a JSON-ready dict (see the module docstring).

    ``recovered_all`` is True when every built-in effect the truth itself shows at this plate
    size is recovered in the right direction and no built-in effect is significant in the wrong
    one. Significant differences where the layout builds in less than ``min_effect`` are listed
    (``small_recovered_list``, ``spurious_list``) but do not count for or against it; spurious
    ones measure the classifier's bias.
    """
    from hcs.stats.run import default_reference

    truth_raw = pd.read_parquet(truth_wells)
    truth = truth_well_table(truth_raw, assay)
    est = pd.read_parquet(est_wells)
    stats = pd.read_parquet(est_stats)
    reference = reference or default_reference(truth)
    agr = frequency_agreement(est, truth, assay)
    comp = builtin_comparisons(truth_raw, stats, assay, reference, alpha=alpha,
                               min_effect=min_effect, test=test, correction=correction)
    built = comp[comp["built_in"]]
    shown = built[built["truth_significant"]]
    label = (comp["readout"] + ": " + comp["condition"]).rename("label")
    freqs = {k: {kk: (None if pd.isna(vv) else (int(vv) if kk == "n_wells" else round(vv, 4)))
                 for kk, vv in row.items()} for k, row in agr.to_dict(orient="index").items()}
    return {
        "assay": get_assay(assay).name, "reference": reference, "alpha": alpha,
        "min_effect": min_effect, "test": test, "correction": correction,
        "wells": int(len(truth)), "frequencies": freqs,
        "built_in": int(len(built)),
        "built_in_shown_by_truth": int(len(shown)),
        "recovered": int(built["recovered"].sum()),
        "recovered_of_shown": int(shown["recovered"].sum()),
        "recovered_list": label[comp["built_in"] & comp["recovered"]].tolist(),
        "missed_list": label[comp["built_in"] & ~comp["recovered"]].tolist(),
        "wrong_direction_list": label[comp["wrong_direction"]].tolist(),
        "small_recovered_list": _described(comp, label, "small_recovered"),
        "spurious_list": _described(comp, label, "spurious"),
        "recovered_all": bool(shown["recovered"].all() and not comp["wrong_direction"].any()),
        "dose_response": dose_agreement(truth_raw, stats, assay),
        "comparisons": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}
                        for r in comp.to_dict(orient="records")],
    }


def summary_lines(s: dict[str, Any]) -> list[str]:
    """Terminal lines of a :func:`recovery_summary`."""
    lines = [f"truth recovery ({s['wells']} wells, reference {s['reference']!r}):",
             "  readout            r      MAE    mean true  mean est"]
    for k, v in s["frequencies"].items():
        r = "  n/a " if v["r"] is None else f"{v['r']:6.3f}"
        unit = "cells" in k
        lines.append(f"  {k + (' (count)' if unit else ''):<17} {r}  {v['mae'] or 0:7.4f}  "
                     f"{v['mean_true'] or 0:9.4f}  {v['mean_est'] or 0:8.4f}")
    lines.append(f"  built-in comparisons (|expected diff| >= {s['min_effect']}): {s['built_in']}; "
                 f"significant from the true counts at this size: "
                 f"{s['built_in_shown_by_truth']}; recovered (p_adj < {s['alpha']}, right "
                 f"direction): {s['recovered']} ({s['recovered_of_shown']} of those the truth "
                 f"shows)")
    for d in s.get("dose_response", []):
        if d["readout"] != "dead" and len(s["dose_response"]) > 1:
            continue
        lines.append(f"  dose-response {d['construct']} ({d['readout']}): EC50 "
                     f"{_num(d['est_ec50'])} {d['dose_unit']} ({d['est_status']}); from the true "
                     f"counts {_num(d['truth_ec50'])} {d['dose_unit']} ({d['truth_status']})")
    for name, key in (("recovered", "recovered_list"), ("missed", "missed_list"),
                      ("WRONG DIRECTION", "wrong_direction_list"),
                      ("smaller built-in differences also found", "small_recovered_list"),
                      ("significant without a built-in effect", "spurious_list")):
        if s[key]:
            lines.append(f"  {name}: {'; '.join(s[key])}")
    return lines


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _described(comp: pd.DataFrame, label: pd.Series, flag: str) -> list[str]:
    rows = comp[comp[flag]]
    return [f"{lab} (expected {d:+.3f}, estimated {e:+.3f})" for lab, d, e in
            zip(label[comp[flag]], rows["expected_diff"], rows["est_diff"], strict=True)]
