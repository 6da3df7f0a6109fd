"""The top and the end of the report: findings first, provenance last (issue 18).

:func:`findings` is the first section: the plate(s), the question (conditions against the
reference, on which readouts, with which test), a verdict per plate from Z' on the layout's
controls (:func:`plate_verdicts`), the model-domain warning of ``RUN/domain.json`` when the model
ran outside its training domain, the ranked hit list (:func:`hit_table`) with the threshold used,
an effect map (conditions x readouts, :func:`effect_map`) and the CSV downloads (:func:`csv_text`).
:func:`provenance` is the last section, every ``run.json`` entry, collapsed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.report.figures import Figure, base_layout, esc, fmt_num, readout_label, trace
from hcs.stats.compare import ALPHA
from hcs.stats.qc import Z_GOOD, Z_MARGINAL, z_prime_status

#: Verdicts a plate can get from its controls' Z'.
VERDICTS = ("good", "marginal", "unusable")

# Provenance keys shown first, in this order (run.json may hold more; they follow).
_FIRST = ("status", "plate", "plate_name", "instrument", "assay", "model", "model_sha256",
          "model_training_data", "detector", "parameters", "hcs_version", "start", "end",
          "started", "finished")


def _fmt(v: object) -> str:
    if v is None or v is pd.NA:
        return ""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return ""
    if f != 0 and (abs(f) < 1e-3 or abs(f) >= 1e5):
        return f"{f:.2e}"
    return f"{f:.3g}"


def _cell(v: object, text: str | None = None) -> dict[str, Any]:
    try:
        key: object = float(v)  # type: ignore[arg-type]
        key = key if math.isfinite(key) else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        key = str(v) if v is not None and v is not pd.NA else None
    return {"text": _fmt(v) if text is None else text, "sort": key}


def comparisons(stats: pd.DataFrame | None) -> pd.DataFrame:
    """The comparison rows of a statistics table (empty when there are none)."""
    if stats is None or not {"kind", "readout"} <= set(stats.columns):
        return pd.DataFrame(columns=["readout", "plate", "condition", "reference", "diff",
                                     "ci_low", "ci_high", "p_adj", "stars"])
    return stats[stats["kind"] == "comparison"]


def qc_readouts(stats: pd.DataFrame | None) -> list[str]:
    """Readouts that have a plate QC row, in the statistics table's order."""
    if stats is None or not {"kind", "readout"} <= set(stats.columns):
        return []
    return list(dict.fromkeys(stats.loc[stats["kind"] == "qc", "readout"].astype(str)))


def resolve_qc_readout(stats: pd.DataFrame | None, name: str | None) -> str | None:
    """The QC readout of the verdict: ``name`` (a column such as ``freq_dead``, or a class
    ``dead``), else the first readout whose Z' could be computed, else the first one.

    Raises
    ------
    hcs.errors.InputError
        ``name`` is given but no QC row has it (the message lists the readouts there are).
    """
    readouts = qc_readouts(stats)
    if name:
        for r in readouts:
            if name in (r, readout_label(r)) or r == f"freq_{name}":
                return r
        have = ", ".join(readouts) if readouts else "none (no plate QC in the statistics)"
        raise InputError(f"--qc-readout {name}: no plate QC for this readout; readouts with QC:"
                         f" {have}")
    if not readouts:
        return None
    qc = stats[stats["kind"] == "qc"]  # type: ignore[index]
    for r in readouts:
        if qc.loc[qc["readout"].astype(str) == r, "status"].astype(str).isin(VERDICTS).any():
            return r
    return readouts[0]


def plate_verdicts(stats: pd.DataFrame | None, wells: pd.DataFrame | None,
                   qc_readout: str | None = None) -> list[dict[str, Any]]:
    """One verdict per plate from Z' of the layout's controls on one readout.

    Parameters
    ----------
    stats
        The statistics table (its ``kind == "qc"`` rows).
    wells
        The wells table (for plates without a QC row).
    qc_readout
        The readout whose Z' decides (see :func:`resolve_qc_readout`).

    Returns
    -------
    list of dict
        ``{"plate", "verdict", "readout", "z_prime", "text"}``; ``verdict`` is ``good``
        (Z' >= 0.5), ``marginal`` (0 to 0.5), ``unusable`` (< 0) or ``unknown`` (no controls,
        or Z' not computable), ``text`` gives the numbers.
    """
    readout = resolve_qc_readout(stats, qc_readout)
    plates = sorted(set(wells["plate"].astype(str))) if wells is not None and "plate" in wells \
        else []
    qc = stats[(stats["kind"] == "qc") & (stats["readout"].astype(str) == readout)] \
        if readout is not None and stats is not None else pd.DataFrame(columns=["plate"])
    plates += [p for p in qc["plate"].astype(str) if p not in plates]
    out = []
    for plate in plates:
        rows = qc[qc["plate"].astype(str) == plate]
        if not len(rows):
            out.append({"plate": plate, "verdict": "unknown", "readout": readout,
                        "z_prime": float("nan"), "text": "no plate QC: the statistics need a"
                        " layout with positive and negative control wells (hcs stats)"})
            continue
        r = rows.iloc[0]
        zp = float(r["z_prime"]) if pd.notna(r["z_prime"]) else float("nan")
        status = z_prime_status(zp)
        verdict = status if status in VERDICTS else "unknown"
        n = f" ({int(r['n'])} positive, {int(r['n_ref'])} negative control wells)" \
            if verdict != "unknown" and pd.notna(r.get("n")) and pd.notna(r.get("n_ref")) else ""
        out.append({"plate": plate, "verdict": verdict, "readout": readout, "z_prime": zp,
                    "text": f"{readout_label(str(readout))}: {r['message']}{n}"})
    return out


def hit_table(stats: pd.DataFrame | None, alpha: float = ALPHA) -> pd.DataFrame:
    """Every (condition, readout) comparison ranked by adjusted p, then by the size of the
    effect; ``hit`` is adjusted p < ``alpha``. Columns: ``rank``, ``plate``, ``condition``,
    ``reference``, ``readout``, ``diff`` (effect: condition mean minus reference mean),
    ``ci_low``/``ci_high`` (its 95% CI), ``p``, ``p_adj``, ``stars``, ``hit``, ``hedges_g``,
    ``n``, ``n_ref``, ``status``."""
    comp = comparisons(stats).copy()
    cols = ["plate", "condition", "reference", "readout", "diff", "ci_low", "ci_high", "p",
            "p_adj", "stars", "hedges_g", "n", "n_ref", "status"]
    for c in cols:
        if c not in comp:
            comp[c] = np.nan
    comp["_abs"] = -pd.to_numeric(comp["diff"], errors="coerce").abs()
    comp["_p"] = pd.to_numeric(comp["p_adj"], errors="coerce")
    comp = comp.sort_values(["_p", "_abs"], na_position="last", kind="stable")
    comp["hit"] = comp["_p"] < alpha
    comp.insert(0, "rank", range(1, len(comp) + 1))
    return comp[["rank", *cols[:9], "stars", "hit", *cols[10:]]].reset_index(drop=True)


def effect_map(stats: pd.DataFrame | None, order: list[str]) -> Figure | None:
    """Conditions x readouts, each cell coloured by the signed standardised effect (Hedges' g,
    diverging colour scale centred at 0) with the stars of its adjusted p written in it; the
    hover gives the effect, its 95% CI and the adjusted p. ``None`` without comparisons."""
    comp = comparisons(stats)
    if not len(comp):
        return None
    if (comp["plate"].astype(str) == "all").any():  # the pooled comparison of every plate
        comp = comp[comp["plate"].astype(str) == "all"]
    comp = comp.drop_duplicates(["condition", "readout"])
    readouts = list(dict.fromkeys(comp["readout"].astype(str)))
    conds = [c for c in order if c in set(comp["condition"].astype(str))]
    conds += [c for c in dict.fromkeys(comp["condition"].astype(str)) if c not in conds]
    g = np.full((len(conds), len(readouts)), np.nan)
    text = np.full(g.shape, "", dtype=object)
    hover = np.full(g.shape, "", dtype=object)
    ci, ri = {c: i for i, c in enumerate(conds)}, {r: j for j, r in enumerate(readouts)}
    for _, r in comp.iterrows():
        i, j = ci[str(r["condition"])], ri[str(r["readout"])]
        g[i, j] = float(r["hedges_g"]) if pd.notna(r["hedges_g"]) else np.nan
        text[i, j] = esc(r["stars"]) if pd.notna(r["stars"]) else ""
        hover[i, j] = (f"<b>{esc(r['condition'])}</b> vs {esc(r['reference'])}<br>"
                       f"{esc(readout_label(str(r['readout'])))}: effect {fmt_num(r['diff'])}"
                       f" (95% CI {fmt_num(r['ci_low'])} to {fmt_num(r['ci_high'])})<br>"
                       f"Hedges' g {fmt_num(r['hedges_g'])}, adjusted p {fmt_num(r['p_adj'])}"
                       f" {esc(r['stars']) if pd.notna(r['stars']) else ''}")
    finite = np.abs(g[np.isfinite(g)])
    lim = float(np.percentile(finite, 95)) if finite.size else 1.0
    lim = lim if lim > 0 else 1.0
    fig = Figure(trace(
        "heatmap", z=np.clip(g, -lim, lim), x=[esc(readout_label(r)) for r in readouts],
        y=[esc(c) for c in conds], text=text, texttemplate="%{text}", customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", colorscale="RdBu",
        zmid=0, zmin=-lim, zmax=lim, xgap=1, ygap=1, hoverongaps=False,
        colorbar={"title": {"text": "Hedges' g"}, "len": 0.9, "thickness": 12},
        textfont={"size": 12}))
    base_layout(fig, "Effect map: condition vs reference", height=max(220, 24 * len(conds) + 110),
                width=max(300, 56 * len(readouts) + 230))
    longest = max(len(readout_label(r)) for r in readouts)
    top = 60 + (min(120, 6 * longest) if len(readouts) > 3 else 20)  # room for slanted labels
    fig.update_xaxes(side="top", showgrid=False, automargin=True,
                     tickangle=-35 if len(readouts) > 3 else 0)
    fig.update_yaxes(autorange="reversed", showgrid=False, automargin=True)
    fig.update_layout(margin={"l": 10, "r": 10, "t": top, "b": 10}, plot_bgcolor="#eeeeee",
                      height=max(220, 24 * len(conds) + 30 + top),
                      title={"y": 0.99, "yanchor": "top", "yref": "container"})
    return fig


def csv_text(df: pd.DataFrame) -> str:
    """A table as CSV text (comma-separated, a header line, ``\\n`` line ends, blanks for
    missing values) for the page's download buttons."""
    return df.to_csv(index=False, lineterminator="\n")


def _question(stats: pd.DataFrame | None, wells: pd.DataFrame | None) -> str:
    comp = comparisons(stats)
    if not len(comp):
        return ("No comparisons: run `hcs stats RUN --reference CONDITION` with a layout to test"
                " the conditions against a reference.")
    refs = ", ".join(sorted(set(comp["reference"].dropna().astype(str))))
    conds = comp["condition"].astype(str).nunique()
    readouts = ", ".join(readout_label(r) for r in dict.fromkeys(comp["readout"].astype(str)))
    first = comp.iloc[0]
    return (f"Do {conds} conditions differ from the reference {refs}? Readouts: {readouts};"
            f" {first['test']} t-test per well, {first['correction']} correction over the run.")


def _model(run: dict[str, Any]) -> str:
    m = run.get("model")
    m = m.get("name") or m.get("path") if isinstance(m, dict) else m
    return str(m) if m else ""


def findings(run: dict[str, Any], wells: pd.DataFrame | None, stats: pd.DataFrame | None,
             domain: dict[str, Any] | None, order: list[str], qc_readout: str | None = None,
             alpha: float = ALPHA) -> dict[str, Any]:
    """The report's first section: plates, question, verdicts, model-domain warning, hit list
    and effect map, and the CSV downloads (``csv`` ids ``wells``, ``stats``, ``hits``; the
    builder embeds their text)."""
    plates = sorted(set(wells["plate"].astype(str))) if wells is not None and "plate" in wells \
        else []
    facts = [("plate" + ("s" if len(plates) > 1 else ""), ", ".join(plates) or "?"),
             ("question", _question(stats, wells))]
    if _model(run):
        facts.append(("model", _model(run)))
    blocks: list[dict[str, Any]] = [{"type": "kv", "items": facts}]
    blocks.append({"type": "verdicts", "items": plate_verdicts(stats, wells, qc_readout),
                   "rule": f"Verdict from Z' of the positive and negative control wells: >="
                           f" {Z_GOOD} good, {Z_MARGINAL} to {Z_GOOD} marginal, <"
                           f" {Z_MARGINAL} unusable."})
    if domain and str(domain.get("status")) == "off_domain":
        blocks.append({"type": "warning", "title": "The model ran outside its training domain",
                       "text": str(domain.get("summary") or ""),
                       "hint": str(domain.get("hint") or "")})
    elif domain and str(domain.get("status")) == "unknown":
        blocks.append({"type": "text", "text": "Model domain not checked: "
                       + str(domain.get("summary") or "unknown")})
    downloads = [{"id": "wells", "label": "wells.csv"}]
    hits = hit_table(stats, alpha)
    figs = {}
    if len(hits):
        downloads += [{"id": "stats", "label": "stats.csv"}, {"id": "hits", "label": "hits.csv"}]
        multi = hits["plate"].astype(str).nunique() > 1
        cols = ["rank", "condition", "readout", *(["plate"] if multi else []), "effect",
                "95% CI", "p adj", "", "hit"]
        rows = []
        for _, r in hits.iterrows():
            ci = f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])}" if pd.notna(r["ci_low"]) else ""
            rows.append([_cell(r["rank"]), _cell(r["condition"]),
                         _cell(readout_label(str(r["readout"]))),
                         *([_cell(r["plate"])] if multi else []), _cell(r["diff"]),
                         _cell(r["ci_low"], ci), _cell(r["p_adj"]),
                         _cell(r["stars"] if pd.notna(r["stars"]) else ""),
                         _cell("yes" if r["hit"] else "no")])
        n_hits = int(hits["hit"].sum())
        table = {"type": "table", "columns": cols, "rows": rows, "sortable": True,
                 "csv": "hits", "compact": True, "cls": "hits"}
        side: list[dict[str, Any]] = [
            {"type": "text", "text": f"Hit list: {n_hits} of {len(hits)} (condition, readout)"
             f" pairs with adjusted p < {alpha:g}, ranked by adjusted p, then by the size of the"
             " effect. Effect: condition mean minus reference mean (95% CI); stars *** < 0.001,"
             f" ** < 0.01, * < {alpha:g}."}, table]
        fig = effect_map(stats, order)
        row: list[dict[str, Any]] = [{"type": "stack", "blocks": side}]
        if fig is not None:
            figs["effect-map"] = fig
            row.append({"type": "figures", "ids": ["effect-map"], "grid": False})
        blocks.append({"type": "row", "blocks": row})
    blocks.append({"type": "downloads", "items": downloads})
    return {"id": "findings", "title": "Findings", "blocks": blocks, "fig_objects": figs}


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            items += _flatten(v, key + ".")
        else:
            items.append((key, v if isinstance(v, str) else json.dumps(v, default=str)))
    return items


def _training_data(run: dict[str, Any]) -> dict[str, Any]:
    """``training_data`` of the model card (``model_path``/model.yaml), if run.json lacks it."""
    if "model_training_data" in run or not run.get("model_path"):
        return {}
    card = Path(str(run["model_path"])) / "model.yaml"
    try:
        import yaml

        data = yaml.safe_load(card.read_text()) or {}
    except (OSError, ValueError):  # a missing or broken card only costs this line
        return {}
    return {"model_training_data": data["training_data"]} if "training_data" in data else {}


def provenance(run: dict[str, Any]) -> dict[str, Any]:
    """The last section, collapsed: every ``run.json`` entry (flattened), the model card's
    training data, or a line saying there is no run.json."""
    if run:
        run = {**run, **_training_data(run)}
        ordered = {k: run[k] for k in _FIRST if k in run}
        ordered.update({k: v for k, v in run.items() if k not in ordered})
        blocks: list[dict[str, Any]] = [{"type": "kv", "items": _flatten(ordered)}]
    else:
        blocks = [{"type": "text", "text": "No run.json: provenance unknown."}]
    return {"id": "provenance", "title": "Provenance (run.json)", "blocks": blocks,
            "collapsed": True}
