"""The screen report: one HTML page over the plates of ``hcs analyze A B C --out DIR``.

Sections, in order: the screen summary with a link to each plate's own report; the pooled hits
(``plate = all`` comparisons, adjusted p < 0.05 first); per-plate QC side by side (wells imaged,
cells, failed fields, Z' of every readout); the plate heatmaps of every plate; replicate
agreement (Pearson / Spearman per readout and pair of plates, with scatter plots); the table of
every comparison (pooled and per plate). The plate-level sections are those of the single-plate
report (:mod:`hcs.report.sections`) fed the screen's wells and statistics.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

import hcs.report.sections as sections
from hcs.atomic import atomic_write_text
from hcs.plate import PlateGeometry
from hcs.report.builder import render
from hcs.report.figures import Figure, base_layout, readout_label, trace

__all__ = ["build_screen_report", "screen_context"]

#: Replicate scatter plots at most (readouts x pairs of plates).
MAX_SCATTERS = 12


def _text(v: object, digits: int = 3) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        return f"{v:.{digits}g}"
    return str(v)


def _table(df: pd.DataFrame, columns: dict[str, str]) -> dict[str, Any]:
    rows = []
    for _, r in df.iterrows():
        row = []
        for c in columns:
            v = r[c]
            try:
                key: object = float(v)
                key = key if math.isfinite(key) else None  # type: ignore[arg-type]
            except (TypeError, ValueError):
                key = _text(v)
            row.append({"text": _text(v), "sort": key})
        rows.append(row)
    return {"type": "table", "columns": list(columns.values()), "rows": rows, "sortable": True}


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def _geometry(wells: pd.DataFrame, runs: dict[str, dict[str, Any]]) -> PlateGeometry:
    geom = wells.attrs.get("geometry")
    if geom is not None and len(geom) == 2:
        return PlateGeometry(int(geom[0]), int(geom[1]))
    for run in runs.values():
        plate = run.get("plate")
        if plate and Path(plate).is_dir():
            try:
                from hcs.io.omezarr import open_plate

                return open_plate(plate).geometry
            except Exception:  # an unreadable plate only costs the geometry hint
                pass
    return PlateGeometry.smallest_fitting(int(wells["row"].max()), int(wells["col"].max()))


def _summary(wells: pd.DataFrame, stats: pd.DataFrame | None, runs: dict[str, dict[str, Any]],
             links: list[tuple[str, str]]) -> dict[str, Any]:
    imaged, _ = sections.well_states(wells)
    cells = int(pd.to_numeric(wells.get("n_detected"), errors="coerce").fillna(0).sum()) \
        if "n_detected" in wells else 0
    failed = sum(int(r.get("fields_failed") or 0) for r in runs.values())
    items = [("plates", str(len(runs))), ("wells imaged", str(int(imaged.sum()))),
             ("cells detected", f"{cells:,}"), ("failed fields", str(failed))]
    comp = stats[stats["kind"] == "comparison"] if stats is not None else None
    if comp is not None and len(comp):
        pooled = comp[comp["plate"] == "all"]
        items += [("reference", str(comp["reference"].iloc[0])),
                  ("pooled test", str(pooled["test"].iloc[0]) if len(pooled) else ""),
                  ("pooled comparisons with p adj < 0.05",
                   str(int((pd.to_numeric(pooled["p_adj"]) < 0.05).sum())))]
    text = ("Every plate was analysed with the same options on one cluster. Pooled statistics"
            " (plate = all) treat the plate as a block: an OLS model with the plate as a factor"
            " (test ols_plate), or each plate normalised to its own reference wells (--blocks"
            " normalise). Each plate's own report:")
    return {"id": "summary", "title": "Screen summary",
            "blocks": [{"type": "kv", "items": items}, {"type": "text", "text": text},
                       {"type": "links", "items": links}]}


def _hits(stats: pd.DataFrame | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    comp = stats[(stats["kind"] == "comparison") & (stats["plate"] == "all")].copy()
    if not len(comp):
        return None
    comp = comp.sort_values(["p_adj", "readout"], na_position="last")
    hits = comp[pd.to_numeric(comp["p_adj"]) < 0.05]
    comp["readout"] = comp["readout"].map(readout_label)
    cols = {"readout": "readout", "condition": "condition", "n": "wells", "n_ref": "wells ref",
            "mean": "mean", "mean_ref": "mean ref", "diff": "difference (plate-adjusted)",
            "ci_low": "CI low", "ci_high": "CI high", "p_adj": "p adj", "stars": "",
            "status": "status"}
    text = (f"{len(hits)} of {len(comp)} pooled comparisons (every plate, the plate as a block)"
            " have an adjusted p < 0.05; listed first. wells = the condition's wells over all"
            " plates; wells ref = the reference's (the sum over plates).")
    return {"id": "hits", "title": "Hits (pooled over plates)",
            "blocks": [{"type": "text", "text": text}, _table(comp, cols)]}


def _plate_qc(wells: pd.DataFrame, stats: pd.DataFrame | None,
              runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = []
    qc = stats[stats["kind"] == "qc"] if stats is not None else pd.DataFrame()
    zcols: dict[str, str] = {}
    for plate, grp in wells.groupby(wells["plate"].astype(str)):
        imaged, flagged = sections.well_states(grp)
        n = pd.to_numeric(grp.get("n_detected"), errors="coerce")
        run = runs.get(plate, {})
        row: dict[str, Any] = {
            "plate": plate, "imaged": int(imaged.sum()), "flagged": int(flagged.sum()),
            "cells": int(n.fillna(0).sum()) if n is not None else 0,
            "median": float(n[imaged].median()) if n is not None and imaged.any() else None,
            "failed": int(run.get("fields_failed") or 0)}
        for _, q in qc[qc["plate"] == plate].iterrows() if len(qc) else []:
            col = f"z_{q['readout']}"
            zcols[col] = f"Z' {readout_label(str(q['readout']))}"
            row[col] = q["z_prime"]
        rows.append(row)
    df = pd.DataFrame(rows)
    cols = {"plate": "plate", "imaged": "wells imaged", "flagged": "wells flagged",
            "cells": "cells", "median": "median cells/well", "failed": "failed fields", **zcols}
    for c in cols:
        if c not in df:
            df[c] = None
    text = ("Plates side by side. Z' from each plate's usable positive and negative control"
            " wells (>= 0.5 good, 0 to 0.5 marginal, < 0 unusable; blank: the layout has no"
            " positive control for it). Image QC and the count-outlier plots are in each"
            " plate's own report.")
    return {"id": "plate-qc", "title": "Plate QC side by side",
            "blocks": [{"type": "text", "text": text}, _table(df, cols)]}


def _replicates(wells: pd.DataFrame, reps: pd.DataFrame | None) -> dict[str, Any] | None:
    from hcs.stats.replicates import paired_readouts

    if reps is None or not len(reps):
        return None
    table = reps.copy()
    table["readout"] = table["readout"].map(readout_label)
    cols = {"readout": "readout", "plate_a": "plate A", "plate_b": "plate B",
            "n": "shared wells", "pearson_r": "Pearson r", "spearman_rho": "Spearman rho"}
    figs: dict[str, Figure] = {}
    for i, r in enumerate(reps.head(MAX_SCATTERS).itertuples(index=False)):
        pair = paired_readouts(wells, str(r.plate_a), str(r.plate_b), str(r.readout))
        label = readout_label(str(r.readout))
        fig = Figure(trace("scatter", x=pair["a"], y=pair["b"], mode="markers",
                           text=pair["well"] + " " + pair["condition"].astype(str),
                           hovertemplate="%{text}<br>%{x:.3g} vs %{y:.3g}<extra></extra>",
                           marker={"size": 6, "opacity": 0.7}))
        lo = float(min(pair["a"].min(), pair["b"].min())) if len(pair) else 0.0
        hi = float(max(pair["a"].max(), pair["b"].max())) if len(pair) else 1.0
        fig.add_trace(trace("scatter", x=[lo, hi], y=[lo, hi], mode="lines",
                            line={"color": "#999", "dash": "dot"}, hoverinfo="skip",
                            showlegend=False))
        base_layout(fig, f"{label}: {r.plate_a} vs {r.plate_b} (r = {_text(r.pearson_r)})",
                    height=340, showlegend=False)
        fig.update_layout(xaxis_title=f"{r.plate_a}", yaxis_title=f"{r.plate_b}")
        figs[f"rep-{i}"] = fig
    text = ("Agreement of well readouts between plates, on the wells both plates hold with the"
            " same condition (usable on both). Scatter plots: one point per shared well, the"
            " dotted line is y = x" + (f"; the first {MAX_SCATTERS} pairs are plotted." if len(
                reps) > MAX_SCATTERS else "."))
    return {"id": "replicates", "title": "Replicate agreement", "fig_objects": figs,
            "blocks": [{"type": "text", "text": text}, _table(table, cols),
                       {"type": "figures", "ids": list(figs), "grid": True}]}


def screen_context(folder: str | Path, plates: dict[str, Path], out: Path) -> dict[str, Any]:
    """Everything the screen page shows (the context :func:`hcs.report.builder.render`
    takes)."""
    folder = Path(folder)
    wells = pd.read_parquet(folder / "screen" / "wells.parquet")
    stats = _read(folder / "screen" / "stats.parquet")
    reps = _read(folder / "screen" / "replicates.parquet")
    runs: dict[str, dict[str, Any]] = {}
    links = []
    for key, pdir in plates.items():
        rj = Path(pdir) / "run" / "run.json"
        runs[key] = json.loads(rj.read_text()) if rj.is_file() else {}
        rep = Path(pdir) / "report.html"
        links.append((key, os.path.relpath(rep, out.parent)))
    from hcs.report.builder import add_section, new_context

    ctx = new_context(f"hcs screen report: {len(plates)} plates ({folder.name})")

    def add(section: dict[str, Any] | None) -> None:
        add_section(ctx, section)

    add(_summary(wells, stats, runs, links))
    add(_hits(stats))
    add(_plate_qc(wells, stats, runs))
    add(sections.heatmaps(wells, _geometry(wells, runs)))
    add(_replicates(wells, reps))
    if stats is not None:
        add(sections.stats_table(stats))
    return ctx


def build_screen_report(folder: str | Path, plates: dict[str, Path], out: str | Path) -> Path:
    """Write the screen report of a screen folder (see the module docstring).

    Parameters
    ----------
    folder
        Screen folder (``screen/wells.parquet``, ``screen/stats.parquet``, ...).
    plates
        Plate name -> the plate's analysis folder (for its ``run.json`` and report link).
    out
        The HTML file (written atomically).
    """
    out = Path(out)
    return atomic_write_text(out, render(screen_context(folder, plates, out)))
