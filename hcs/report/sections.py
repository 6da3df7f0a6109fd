"""The report's sections: each function returns one section (or ``None`` when its data is absent).

A section is ``{"id", "title", "blocks": [...], "fig_objects": {id: plotly Figure}}``; a block is
``{"type": "figures", "ids": [...]}``, ``{"type": "table", "columns": [...], "rows": [[cell]],
"sortable": bool}`` (cell: ``{"text", "sort"}``), ``{"type": "kv", "items": [(key, value)]}``,
``{"type": "text", "text": str}`` or ``{"type": "gallery", ...}``. All strings are plain text; the
template escapes them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hcs.report.curves import count_qc_figure, dose_figure, embedding_figure
from hcs.report.figures import (
    PALETTE,
    class_composition,
    condition_box,
    condition_order,
    plate_heatmap,
    readout_label,
)

if TYPE_CHECKING:
    from hcs.report.colours import Colours

_MAX_FAILURES = 50


def _fmt(v: object, digits: int = 3) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, float | np.floating):
        if not math.isfinite(float(v)):
            return "" if math.isnan(float(v)) else str(v)
        v = float(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(v)


def _cell(v: object, digits: int = 3) -> dict[str, Any]:
    """A table cell: display text and a sort key (numbers sort numerically, blanks last)."""
    text = _fmt(v, digits)
    try:
        key: object = float(v)  # type: ignore[arg-type]
        key = key if math.isfinite(key) else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        key = text
    return {"text": text, "sort": key}


def _table(df: pd.DataFrame, columns: dict[str, str], sortable: bool = True,
           digits: int = 3) -> dict[str, Any]:
    rows = [[_cell(r[c], digits) for c in columns] for _, r in df.iterrows()]
    return {"type": "table", "columns": list(columns.values()), "rows": rows,
            "sortable": sortable}


def well_states(wells: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``(imaged, flagged)``: wells that were imaged (no ``missing`` flag), and imaged wells
    that are flagged (not usable). The third state is usable (imaged and not flagged)."""
    from hcs.stats.qc import imaged_mask

    imaged = imaged_mask(wells)
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    return imaged, imaged & ~usable


def _flag_counts(wells: pd.DataFrame) -> str:
    """``no_cells 2, qc_fields_failed 1``: flags of imaged flagged wells and how many have each."""
    _, flagged = well_states(wells)
    if "flags" not in wells:
        return ""
    names = [f for fl in wells.loc[flagged, "flags"].fillna("").astype(str)
             for f in fl.split(";") if f]
    return ", ".join(f"{k} {v}" for k, v in pd.Series(names).value_counts().items()) \
        if names else ""


def summary(run: dict[str, Any], wells: pd.DataFrame | None, failures: pd.DataFrame | None,
            assay: str | None, run_dir: Path, geometry: Any = None) -> dict[str, Any]:
    """Run summary and failures (the provenance, every run.json entry, is
    :func:`hcs.report.findings.provenance`, collapsed at the end of the report).

    The well count is of imaged wells, with the size of the plate (``geometry``) and the
    layout wells that were not imaged; flagged wells are counted with their reasons."""
    blocks: list[dict[str, Any]] = []
    facts: list[tuple[str, str]] = [("run folder", str(run_dir)), ("assay", str(assay or "?"))]
    if wells is not None and len(wells):
        plates = sorted(set(wells["plate"].astype(str))) if "plate" in wells else []
        imaged, flagged = well_states(wells)
        size = f" of the {geometry.rows * geometry.columns} wells of the plate" \
            if geometry is not None and len(plates) <= 1 else ""
        facts += [("plates", ", ".join(plates)), ("wells imaged", f"{int(imaged.sum())}{size}")]
        if (~imaged).any():
            facts.append(("layout wells not imaged", f"{int((~imaged).sum())} (grey in the"
                          " heatmaps, in no statistic)"))
        reasons = _flag_counts(wells)
        facts.append(("imaged wells flagged", f"{int(flagged.sum())}"
                      + (f" ({reasons})" if reasons else "")))
        for c in ("n_detected", "n_analysed"):
            if c in wells:
                facts.append((f"cells {c[2:]}", f"{int(wells[c].sum()):,}"))
        if "usable" in wells:
            facts.append(("wells usable for statistics", f"{int(wells['usable'].sum())}"))
        if "condition" in wells:
            facts.append(("conditions", str(wells["condition"].dropna().nunique())))
        for pos in wells.attrs.get("positive") or []:  # hcs aggregate --positive (issue 16)
            facts.append((f"{pos['channel']} positive", f"nuclear mean intensity > "
                          f"{pos['threshold']:.6g} ({pos['method']}, once for the plate)"))
    blocks.append({"type": "kv", "items": facts})
    missing = list(run.get("fields_missing_planes") or []) if run else []
    if missing or (wells is not None and "qc_missing_planes" in wells):
        facts.append(("fields with planes missing at convert", str(len(missing))))
    if missing:
        blocks.append({"type": "text", "text": f"{len(missing)} field(s) with planes missing in "
                       "the plate (recorded at convert, read as zeros); their wells are flagged "
                       "qc_missing_planes and left out of the statistics"})
        blocks.append(_table(pd.DataFrame(
            [{"well": m.get("well"), "field": m.get("field"), "planes": m.get("planes"),
              "channels": ", ".join(map(str, m.get("channels") or []))} for m in missing]),
            {"well": "well", "field": "field", "planes": "missing planes",
             "channels": "channels"}))
    if failures is not None:
        facts.append(("failed fields", str(len(failures))))
    if failures is not None and len(failures):
        blocks.append({"type": "text", "text": f"{len(failures)} failures"
                       + (f" (first {_MAX_FAILURES} shown)" if len(failures) > _MAX_FAILURES
                          else "")})
        head = failures.head(_MAX_FAILURES)
        blocks.append(_table(head, {c: c for c in head.columns}))
    return {"id": "summary", "title": "Run summary", "blocks": blocks}


def heatmaps(wells: pd.DataFrame, geometry: Any) -> dict[str, Any]:
    """Cell count and each frequency readout per well, on the plate grid."""
    cols = [c for c in ("n_detected",) if c in wells] + [c for c in wells if c.startswith("freq_")]
    cols += feature_readouts(wells)
    figs, ids = {}, []
    for p_i, (plate, grp) in enumerate(wells.groupby(wells["plate"].astype(str)
                                                     if "plate" in wells else 0)):
        for col in cols:
            fig_id = f"heat-{p_i}-{col}"
            figs[fig_id] = plate_heatmap(grp, col, geometry, str(plate))
            ids.append(fig_id)
    imaged, flagged = well_states(wells)
    reasons = _flag_counts(wells)
    text = (f"{geometry.rows} x {geometry.columns} plate, {int(imaged.sum())} wells imaged. Hover"
            " a well for its condition, counts and flags. Grey without a cross: not imaged"
            f" ({int((~imaged).sum())} layout wells; ignored everywhere). A red cross: imaged but"
            f" flagged, left out of the statistics ({int(flagged.sum())} wells"
            + (f": {reasons}" if reasons else "") + "). Grey with a cross: imaged, flagged"
            " and without a value (e.g. no analysed cells).")
    return {"id": "heatmaps", "title": "Plate heatmaps", "fig_objects": figs,
            "blocks": [{"type": "text", "text": text},
                       {"type": "figures", "ids": ids, "grid": True}]}


def feature_readouts(wells: pd.DataFrame, stats: pd.DataFrame | None = None) -> list[str]:
    """Per-cell feature readouts shown like frequencies: the well medians of the nuclear area
    and of each channel's nuclear mean intensity, and any other readout ``stats`` tested."""
    cols = [c for c in wells if c == "median_Nuclei_AreaShape_Area"
            or c.startswith("median_Nuclei_Intensity_MeanIntensity_")]
    if stats is not None and "readout" in stats and "kind" in stats:
        tested = stats.loc[stats["kind"] == "comparison", "readout"].dropna().astype(str)
        cols += [c for c in dict.fromkeys(tested) if c in wells and c not in cols
                 and not c.startswith("freq_") and c != "n_detected"]
    return cols


def model_vs_stain(wells: pd.DataFrame, colours: Colours | None = None) -> dict[str, Any] | None:
    """Per well, each classifier frequency against each stain's percent positive
    (``hcs aggregate --positive``): a model checked against the marker a lab already uses."""
    from hcs.report.figures import Figure, base_layout, trace

    pos = [f"freq_{p['channel']}_positive" for p in wells.attrs.get("positive") or []]
    pos = [c for c in pos if c in wells]
    classes = [c for c in wells if c.startswith("freq_") and c not in pos
               and not c.endswith("_positive")]
    if not pos or not classes:
        return None
    figs, rows = {}, []
    use = wells[wells["usable"]] if "usable" in wells else wells
    for p in pos:
        fig = Figure()
        for i, c in enumerate(classes):
            fig.add_trace(trace("scatter", x=use[p].tolist(), y=use[c].tolist(), mode="markers",
                                name=readout_label(c), marker={"color": colours.of_readout(
                                    c, i) if colours is not None else PALETTE[i % len(PALETTE)]},
                                text=use["well"].astype(str).tolist(),
                                hovertemplate="%{text}: %{x:.3g} / %{y:.3g}"))
            ok = use[[p, c]].dropna()
            r = float(np.corrcoef(ok[p], ok[c])[0, 1]) if len(ok) > 2 and ok[p].std() > 0 \
                and ok[c].std() > 0 else float("nan")
            rows.append({"stain": readout_label(p), "classifier": readout_label(c),
                         "wells": len(ok), "pearson r": r})
        fig.add_trace(trace("scatter", x=[0, 1], y=[0, 1], mode="lines", name="y = x",
                            line={"dash": "dot", "color": "#999999"}))
        base_layout(fig, f"Classifier frequencies vs {readout_label(p)} per well", 380,
                    xaxis_title=readout_label(p), yaxis_title="classifier frequency")
        figs[f"stain-{p}"] = fig
    table = pd.DataFrame(rows)
    return {"id": "stain", "title": "Classifier vs stain", "fig_objects": figs,
            "blocks": [{"type": "text", "text": "Each usable well: the share of its cells the "
                        "classifier puts in a class against the share positive for a stain "
                        "(threshold in the summary)."},
                       {"type": "figures", "ids": list(figs), "grid": True},
                       _table(table, {c: c for c in table.columns})]}


def reference_of(stats: pd.DataFrame, wells: pd.DataFrame) -> str | None:
    """The reference condition of the comparisons (else the single negative control)."""
    comp = stats[stats["kind"] == "comparison"] if "kind" in stats else stats.iloc[:0]
    if len(comp) and comp["reference"].notna().any():
        return str(comp["reference"].dropna().iloc[0])
    if "role" in wells and "condition" in wells:
        refs = set(wells.loc[wells["role"] == "negative_control", "condition"].dropna())
        if len(refs) == 1:
            return str(refs.pop())
    return None


def conditions(wells: pd.DataFrame, stats: pd.DataFrame, classes: list[str],
               reference: str | None, colours: Colours | None = None) -> dict[str, Any] | None:
    """Per readout a box plot per condition with stars; class compositions per condition."""
    order = condition_order(wells, reference)
    if not order:
        return None
    readouts = [c for c in wells if c.startswith("freq_")] + feature_readouts(wells, stats)
    figs = {f"cond-{c}": condition_box(wells, c, order, stats, reference, colours)
            for c in readouts}
    analysed = [c for c in classes if f"freq_{c}" in wells]
    ids = []
    if analysed:  # a detection-only run has no classes
        figs["comp-abs"] = class_composition(wells, analysed, order, "Class frequencies per"
                                             " condition (absolute)", normalise=False,
                                             colours=colours)
        figs["comp-rel"] = class_composition(wells, analysed, order, "Class composition per"
                                             " condition (relative, stacked)", normalise=True,
                                             colours=colours)
        ids = ["comp-abs", "comp-rel"]
    from hcs.assays import ASSAYS

    shown: list[set[str]] = []
    for assay in ASSAYS.values():  # the composition within a composite readout (all CICs)
        for name, parts in assay.composites.items():
            # a composite inside one already shown (completed CICs in all CICs) adds nothing
            if f"freq_{name}" in wells and all(f"freq_{p}" in wells for p in parts) and \
                    len(parts) > 1 and not any(set(parts) <= s for s in shown):
                shown.append(set(parts))
                figs[f"comp-{name}"] = class_composition(
                    wells, list(parts), order, f"Composition of {readout_label(name)} per"
                    " condition (relative, stacked)", normalise=True, colours=colours)
                ids.append(f"comp-{name}")
    ref = f"reference: {reference}" if reference else "no reference condition"
    text = (f"Every usable well is one point; the box shows median and quartiles, the dashed"
            f" line the mean. Stars: adjusted p of the t-test against the reference ({ref});"
            " *** < 0.001, ** < 0.01, * < 0.05, ns otherwise.")
    return {"id": "conditions", "title": "Condition comparisons", "fig_objects": figs,
            "blocks": [{"type": "text", "text": text},
                       {"type": "figures", "ids": [f"cond-{c}" for c in readouts], "grid": True},
                       {"type": "figures", "ids": ids, "grid": True}]}


def stats_table(stats: pd.DataFrame) -> dict[str, Any] | None:
    """Sortable table of the comparison rows."""
    comp = stats[stats["kind"] == "comparison"] if "kind" in stats else stats.iloc[:0]
    if not len(comp):
        return None
    comp = comp.sort_values(["p_adj", "readout"], na_position="last").copy()
    comp["readout"] = comp["readout"].map(readout_label)
    comp["ci"] = [f"{_fmt(a)} to {_fmt(b)}" if pd.notna(a) else ""
                  for a, b in zip(comp["ci_low"], comp["ci_high"], strict=True)]
    cols = {"readout": "readout", "plate": "plate", "condition": "condition",
            "reference": "reference", "n": "n", "n_ref": "n ref", "mean": "mean",
            "mean_ref": "mean ref", "diff": "difference", "ci": "95% CI", "p": "p",
            "p_adj": "p adj", "hedges_g": "Hedges' g", "stars": "", "status": "status"}
    for c, name in (("n_excluded", "flagged"), ("n_not_imaged", "not imaged")):
        if c in comp and pd.to_numeric(comp[c], errors="coerce").fillna(0).gt(0).any():
            cols[c] = name  # wells of the pair left out: imaged but flagged / never imaged
    first = comp.iloc[0]
    text = (f"{first['test']} t-test per readout and condition against the reference (well ="
            f" unit), {first['correction']} correction over the run; transform"
            f" {first['transform']}. Click a column header to sort.")
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}]
    bad = stats.iloc[:0] if "n_nonfinite" not in stats else stats[
        pd.to_numeric(stats["n_nonfinite"], errors="coerce").fillna(0) > 0]  # older tables: none
    if len(bad):  # NaN/inf readouts are never silently dropped (issue 15 item 10)
        wells = sorted({w for ws in bad["nonfinite_wells"].dropna() for w in str(ws).split(";")
                        if w})
        readouts = ", ".join(sorted({readout_label(r) for r in bad["readout"]}))
        blocks.append({"type": "text", "text": (
            f"Warning: {len(wells)} usable well(s) have a NaN or infinite readout ({readouts})"
            f" and were left out of the tests: {', '.join(wells[:50])}. See the column "
            f"'NaN/inf wells'.")})
        cols["n_nonfinite"] = "NaN/inf wells"
    return {"id": "statistics", "title": "Statistics", "blocks": [*blocks, _table(comp, cols)]}


def dose(wells: pd.DataFrame, stats: pd.DataFrame,
         colours: Colours | None = None) -> dict[str, Any] | None:
    """One dose-response figure per construct, and the table of fits."""
    rows = stats[stats["kind"] == "dose_response"] if "kind" in stats else stats.iloc[:0]
    if not len(rows) or not {"construct", "dose"} <= set(wells.columns):
        return None
    figs = {}
    for i, (construct, fits) in enumerate(rows.groupby("condition", sort=True)):
        figs[f"dose-{i}"] = dose_figure(wells, fits, str(construct), colours)
    table = rows.sort_values(["condition", "readout"]).copy()
    table["readout"] = table["readout"].map(readout_label)
    table["ec50_ci"] = [f"{_fmt(a)} to {_fmt(b)}" if pd.notna(a) else ""
                        for a, b in zip(table["ec50_ci_low"], table["ec50_ci_high"], strict=True)]
    cols = {"condition": "construct", "readout": "readout", "n": "wells", "n_doses": "doses",
            "ec50": "EC50", "ec50_ci": "EC50 95% CI", "dose_unit": "unit", "hill": "Hill",
            "bottom": "bottom", "top": "top", "r2": "R²", "p": "p (vs flat)", "status": "status",
            "bounds": "bounds", "message": "reason"}
    cols = {k: v for k, v in cols.items() if k in table}
    text = ("4-parameter logistic fits (bottom, top, EC50, Hill); the diamond marks the EC50 with"
            " its 95% CI. Frequencies are fitted with both plateaus bounded to [0, 1]. Every"
            " readout's wells are drawn; a fit that is not 'ok' is dashed, and its status and"
            " reason are written above the plot (a failed fit shows its points and why).")
    return {"id": "dose", "title": "Dose-response", "fig_objects": figs, "blocks": [
        {"type": "text", "text": text}, {"type": "figures", "ids": list(figs), "grid": True},
        _table(table, cols)]}


def normalised(wells: pd.DataFrame, stats: pd.DataFrame) -> dict[str, Any] | None:
    """Percent of control and NPI (``poc_``/``npi_`` wells columns) per condition: the mean of
    the usable wells next to the raw readout's mean."""
    from hcs.stats.normalise import normalised_name, source_columns

    if "condition" not in wells or not any(c.startswith(("poc_", "npi_")) for c in wells):
        return None
    use = wells[wells["usable"].astype(bool) & wells["condition"].notna()] if "usable" in wells \
        else wells[wells["condition"].notna()]
    rows = []
    for col in source_columns(wells):
        poc, npi = normalised_name(col, "poc"), normalised_name(col, "npi")
        if poc not in wells:
            continue
        for cond, g in use.groupby(use["condition"].astype(str), sort=False):
            rows.append({"readout": readout_label(col), "condition": cond, "wells": len(g),
                         "raw": g[col].mean(), "poc": g[poc].mean(),
                         "npi": g[npi].mean() if npi in g else np.nan})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    text = ("Per plate: percent of control = 100 x / mean of the negative controls; NPI ="
            " 100 (mean neg - x) / (mean neg - mean pos), 0 % at the negative and 100 % at the"
            " positive control. Means of the usable wells per condition. Test them with"
            " `hcs stats --readout npi_<readout>` (columns poc_<readout>, npi_<readout> of"
            " wells.parquet).")
    return {"id": "normalised", "title": "Normalised readouts", "blocks": [
        {"type": "text", "text": text},
        _table(table, {"readout": "readout", "condition": "condition", "wells": "wells",
                       "raw": "mean (raw)", "poc": "% of control", "npi": "NPI %"})]}


def plate_qc(wells: pd.DataFrame, stats: pd.DataFrame,
             geometry: Any) -> dict[str, Any] | None:
    """Z', SSMD, edge and row/column effects, B-score and cell-count outliers."""
    qc = stats[stats["kind"] == "qc"] if "kind" in stats else stats.iloc[:0]
    if not len(qc) and "n_detected" not in wells:
        return None
    blocks: list[dict[str, Any]] = []
    figs = {}
    outliers: dict[str, set[str]] = {}
    if len(qc):
        counts = qc[qc["readout"] == "n_detected"]
        for _, r in counts.iterrows():
            wells_out = str(r["outlier_wells"]) if pd.notna(r["outlier_wells"]) else ""
            outliers[str(r["plate"])] = {w for w in wells_out.replace(",", ";").split(";") if w}
        table = qc.copy()
        table["readout"] = table["readout"].map(readout_label)
        cols = {"plate": "plate", "readout": "readout", "z_prime": "Z'", "status": "Z' status",
                "ssmd": "SSMD", "ssmd_status": "SSMD status",
                "mean": "mean pos", "mean_ref": "mean neg", "edge_effect": "edge effect",
                "row_effect_range": "row effect range", "col_effect_range": "col effect range",
                "n_bscore_outliers": "|B| > 3", "n_outliers": "count outliers",
                "outlier_wells": "outlier wells", "n_imaged": "wells imaged"}
        cols = {k: v for k, v in cols.items() if k in table}  # older stats tables
        verdicts = [f"{r['plate']}, {readout_label(str(r['readout']))}: {r['message']}"
                    for _, r in qc.iterrows() if str(r["status"]) in ("good", "marginal",
                                                                     "unusable")]
        blocks += [{"type": "text", "text": "Z' and SSMD from the usable positive and negative"
                    " control wells; Z' >= 0.5 good, 0 to 0.5 marginal, < 0 unusable; abs(SSMD)"
                    " >= 3 good, 2 to 3 marginal, < 2 unusable. Edge effect = median of the outer"
                    " ring minus median of the interior; row/column effects from Tukey's median"
                    " polish; count outliers: robust z of the cell count beyond 3.5. Only imaged"
                    " wells enter any of these numbers."}]
        blocks += [{"type": "text", "text": v} for v in verdicts[:12]]
        blocks.append(_table(table, cols))
    imaged, _ = well_states(wells) if len(wells) else (pd.Series(dtype=bool), None)
    n_not = int((~imaged).sum())
    if "n_detected" in wells and "row" in wells:
        figs["qc-counts"] = count_qc_figure(wells, outliers, geometry)
        blocks += [{"type": "text", "text": "Cells detected per imaged well in the outer ring"
                    " of the plate and inside it; count outliers are ringed in red"
                    + (f"; {n_not} layout wells that were not imaged are left out." if n_not
                       else ".")},
                   {"type": "figures", "ids": ["qc-counts"], "grid": False}]
    return {"id": "qc", "title": "Plate QC", "fig_objects": figs, "blocks": blocks}


def gallery(run_dir: Path, plate: Path | None, classes: list[str],
            colours: dict[str, str]) -> dict[str, Any] | None:
    """Example crops per class (most confident and borderline) and one field overlay."""
    from hcs.report.gallery import build_gallery, read_cells, sample_cell_files

    files, total = sample_cell_files(run_dir)
    if not files:
        return None
    if plate is None:
        return {"id": "gallery", "title": "Cell gallery", "blocks": [{
            "type": "text", "text": "No plate found (run.json 'plate'): no cell images."}]}
    cells = read_cells(files)
    if not len(cells) or "label" not in cells:  # no cells, or a detection-only run
        return None
    gal = build_gallery(plate, cells, classes, colours)
    note = (f"Examples from {len(files)} of {total} fields ({len(cells):,} cells). 'best':"
            " highest class probability; 'borderline': smallest margin between the two most"
            " probable classes. Scores: probability of the label (margin).")
    return {"id": "gallery", "title": "Cell gallery", "blocks": [
        {"type": "text", "text": note}, {"type": "gallery", **gal}]}


def embedding(emb: pd.DataFrame, classes: list[str], max_cells: int = 5000,
              seed: int = 0, colours: Colours | None = None) -> dict[str, Any] | None:
    """Scatter of cells coloured by class: precomputed 2-D coordinates (``umap_1``/``umap_2``
    or ``tsne_1``/``tsne_2``) if the embeddings table has them, else the first two principal
    components of its ``emb_*``/``feat_*`` features (standardised). t-SNE or UMAP are not run
    here: they take minutes for a few thousand cells, the report must take seconds."""
    if "label" not in emb or len(emb) < 3:
        return None
    if len(emb) > max_cells:
        emb = emb.sample(max_cells, random_state=seed)
    pre = next((m for m in ("umap", "tsne") if {f"{m}_1", f"{m}_2"} <= set(emb.columns)), None)
    feats = [c for c in emb.columns if c.startswith(("emb_", "feat_"))]
    if pre is not None:
        xy = emb[[f"{pre}_1", f"{pre}_2"]].to_numpy(float)
        method = {"umap": "UMAP", "tsne": "t-SNE"}[pre] + ", precomputed"
    elif len(feats) >= 2:
        x = emb[feats].to_numpy(float)
        sd = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        xy, method = u[:, :2] * s[:2], f"PCA of {len(feats)} standardised features"
    else:
        return None
    fig = embedding_figure(xy, emb["label"].astype(str).tolist(), classes, method,
                           colours)
    return {"id": "embedding", "title": "Cell embedding", "fig_objects": {"embedding": fig},
            "blocks": [{"type": "text", "text": f"{len(xy):,} cells; {method}."},
                       {"type": "figures", "ids": ["embedding"], "grid": False}]}
