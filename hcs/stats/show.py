"""Readable terminal tables of a stats table (rich)."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.table import Table


def _num(v: object, digits: int = 3) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    v = float(v)
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}"


def _p(v: object) -> str:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{float(v):.2e}" if float(v) < 1e-3 else f"{float(v):.4f}"


def print_stats(stats: pd.DataFrame, console: Console | None = None, max_rows: int = 40) -> None:
    """Print comparison, dose-response and QC rows as three tables (most significant first)."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # pipes and files: do not squeeze the table to 80 columns
            console = Console(width=180)
    comp = stats[stats["kind"] == "comparison"]
    if len(comp):
        comp = comp.sort_values(["plate", "p_adj", "readout"], na_position="last",
                                key=lambda s: s if s.name != "plate" else s.ne("all"))
        t = Table(title=f"Comparisons ({comp['test'].iloc[0]} t-test, "
                        f"{comp['correction'].iloc[0]}; well = unit)", show_lines=False)
        for c in ("readout", "plate", "condition", "n", "n_ref", "mean", "mean_ref", "diff",
                  "95% CI", "p", "p_adj", "", "g", "status"):
            t.add_column(c, justify="right" if c not in ("readout", "condition", "plate",
                                                         "status") else "left")
        for r in comp.head(max_rows).itertuples():
            t.add_row(r.readout, r.plate, r.condition, str(r.n), str(r.n_ref), _num(r.mean),
                      _num(r.mean_ref), _num(r.diff),
                      f"[{_num(r.ci_low)}, {_num(r.ci_high)}]" if pd.notna(r.ci_low) else "",
                      _p(r.p), _p(r.p_adj), r.stars or "", _num(r.hedges_g), r.status)
        console.print(t)
        if len(comp) > max_rows:
            console.print(f"... {len(comp) - max_rows} more comparison rows in stats.parquet")
    dose = stats[stats["kind"] == "dose_response"]
    if len(dose):
        t = Table(title="Dose-response (4-parameter logistic)")
        for c in ("readout", "series", "n", "bottom", "top", "EC50 [95% CI]", "hill", "status"):
            t.add_column(c)
        for r in dose.head(max_rows).itertuples():
            ci = f" [{_num(r.ec50_ci_low)}, {_num(r.ec50_ci_high)}]" if pd.notna(
                r.ec50_ci_low) else ""
            t.add_row(r.readout, r.condition, str(r.n), _num(r.bottom), _num(r.top),
                      f"{_num(r.ec50)}{ci} {r.dose_unit or ''}", _num(r.hill), r.status)
        console.print(t)
        for r in dose[dose["message"].fillna("") != ""].head(max_rows).itertuples():
            console.print(f"  {r.readout} / {r.condition}: {r.message}")
    qc = stats[stats["kind"] == "qc"]
    if len(qc):
        t = Table(title="Plate QC")
        for c in ("plate", "readout", "Z'", "SSMD", "row range", "col range", "edge",
                  "|B|>3", "outliers", "Z' status", "SSMD status"):
            t.add_column(c)
        for r in qc.head(max_rows).itertuples():
            out = "" if pd.isna(r.n_outliers) else f"{r.n_outliers} {r.outlier_wells or ''}"
            t.add_row(r.plate, r.readout, _num(r.z_prime), _num(r.ssmd),
                      _num(r.row_effect_range), _num(r.col_effect_range), _num(r.edge_effect),
                      "" if pd.isna(r.n_bscore_outliers) else str(r.n_bscore_outliers),
                      out.strip(), r.status, str(getattr(r, "ssmd_status", "") or ""))
        console.print(t)
