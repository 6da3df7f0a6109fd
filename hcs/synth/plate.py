"""Plate layout -> per-well simulation plan, and per-well truth tables.

Simulation parameters live in the layout CSV itself, as extra columns (any may be left out; the
assay's defaults fill in):

- ``sim_density``: objects per mm^2 (a 1080 px field at 0.598 um/px covers 0.417 mm^2, so
  300/mm^2 is about 125 objects per field);
- ``sim_freq_<class>``: relative class weights over *all* objects, normalised per well (for cic,
  ``f_category`` counts among them; the expected frequency among analysed objects is then
  ``w / (1 - w_f_category)``);
- ``sim_dispersion``: over-dispersion rho of replicate wells (default 0.005).

Wells of one condition vary like biological replicates: each well draws its class
probabilities from a Dirichlet with mean ``p`` and concentration ``(1 - rho) / rho`` (its
marginals are beta-binomial with intra-class correlation rho), and its density from a
log-normal (sd 0.1). Edge wells (the plate's outer ring) get 15% fewer cells and 10% dimmer
fluorescence. Wells with role ``empty`` and wells not in the layout are not imaged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.layouts import read_layout
from hcs.plate import PlateGeometry
from hcs.synth.artefacts import is_edge_well
from hcs.synth.assays import AssaySim

DEFAULT_DISPERSION = 0.005
EDGE_DENSITY = 0.85
EDGE_INTENSITY = 0.9
#: Seed stream for well-level draws (fields use (seed, row, col, field)).
_WELL_STREAM = 1_000_003


def load_layout(path: str | Path, plate_format: int | None = None) -> pd.DataFrame:
    """Read a layout for simulation: a 96-well plate unless it needs more wells (or
    ``plate_format`` says otherwise)."""
    if plate_format is not None:
        return read_layout(path, PlateGeometry.from_format(plate_format))
    df = read_layout(path)
    rows, cols = df.attrs["geometry"]
    if rows <= 8 and cols <= 12:
        df = read_layout(path, PlateGeometry.from_format(96))
    return df


def _numeric(layout: pd.DataFrame, rec: dict, col: str, default: float) -> float:
    value, well = rec.get(col), rec["well"]
    if value is None or pd.isna(value) or str(value).strip() == "":
        return default
    try:
        out = float(str(value).replace(",", "."))
    except ValueError:
        out = float("nan")
    if not np.isfinite(out) or out < 0:
        src = layout.attrs.get("source", "layout")
        line = layout.attrs.get("lines", {}).get(well, "?")
        raise InputError(f"{src}:{line}: {col} of well {well} must be a number >= 0, got {value!r}")
    return out


def plan_wells(
    layout: pd.DataFrame,
    assay: AssaySim,
    seed: int,
    wells_per_condition: int | None = None,
) -> pd.DataFrame:
    """One row per imaged well: its condition's class probabilities and density, and the
    well's own draws (``p_<class>``, ``density``) around them.

    Examples
    --------
    >>> from hcs.synth.assays import get_assay
    >>> lay = pd.DataFrame({"well": ["A01", "A02"], "row": [0, 0], "col": [0, 1],
    ...                     "condition": ["c", "c"], "role": ["sample", "sample"]})
    >>> plan = plan_wells(lay, get_assay("livedead"), seed=0)
    >>> plan[["well", "cond_p_live"]].to_dict("records")
    [{'well': 'A01', 'cond_p_live': 0.82}, {'well': 'A02', 'cond_p_live': 0.82}]
    """
    src = layout.attrs.get("source", "layout")
    known = {f"sim_freq_{c}" for c in assay.classes}
    stray = [c for c in layout.columns if c.startswith("sim_freq_") and c not in known]
    if stray:
        raise InputError(
            f"{src}: column {stray[0]} names no class of the {assay.name} assay "
            f"(classes: {', '.join(assay.classes)})"
        )
    geom = layout.attrs.get("geometry", (8, 12))
    use = layout[layout["role"].fillna("empty") != "empty"].sort_values(["row", "col"])
    if wells_per_condition is not None:
        if wells_per_condition < 1:
            raise InputError(f"wells_per_condition must be >= 1, got {wells_per_condition}")
        use = use.groupby(use["condition"].fillna(""), sort=False).head(wells_per_condition)
    if use.empty:
        raise InputError(f"{src}: no well to simulate (every well is empty)")
    has_freq = any(c in layout for c in known)
    rows = []
    for rec in use.to_dict("records"):
        well = rec["well"]
        if has_freq:
            w = np.array([_numeric(layout, rec, f"sim_freq_{c}", 0.0) for c in assay.classes])
        else:
            w = np.array([assay.default_freq.get(c, 0.0) for c in assay.classes])
        if w.sum() <= 0:
            line = layout.attrs.get("lines", {}).get(well, "?")
            raise InputError(f"{src}:{line}: well {well} has no positive sim_freq_<class> weight")
        p = w / w.sum()
        density = _numeric(layout, rec, "sim_density", assay.default_density_per_mm2)
        rho = _numeric(layout, rec, "sim_dispersion", DEFAULT_DISPERSION)
        if not 0 <= rho < 1:
            raise InputError(f"{src}: sim_dispersion of well {well} must be in [0, 1), got {rho}")
        rng = np.random.default_rng([seed, int(rec["row"]), int(rec["col"]), _WELL_STREAM])
        if rho > 0:
            conc = (1 - rho) / rho
            alpha = np.maximum(p * conc, 1e-9)
            pw = rng.dirichlet(alpha)
            pw = np.where(p > 0, pw, 0.0)
            pw = pw / pw.sum()
        else:
            pw = p
        edge = is_edge_well(int(rec["row"]), int(rec["col"]), geom[0], geom[1])
        dens = density * float(np.exp(rng.normal(0, 0.1))) * (EDGE_DENSITY if edge else 1.0)
        row = dict(rec)
        row.update(
            edge_well=edge,
            cond_density=density,
            density=dens,
            intensity_scale=EDGE_INTENSITY if edge else 1.0,
            dispersion=rho,
        )
        for c, pc, pwc in zip(assay.classes, p, pw, strict=True):
            row[f"cond_p_{c}"] = round(float(pc), 12)
            row[f"p_{c}"] = float(pwc)
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def draw_field_classes(
    well: dict, assay: AssaySim, rng: np.random.Generator, area_mm2: float
) -> list[str]:
    """Classes of the objects in one field: Poisson count at the well's density, then each
    object's class from the well's probabilities."""
    n = int(rng.poisson(well["density"] * area_mm2))
    p = np.array([well[f"p_{c}"] for c in assay.classes])
    idx = rng.choice(len(assay.classes), size=n, p=p / p.sum())
    return [assay.classes[i] for i in idx]


def well_truth(
    plan: pd.DataFrame, cells: pd.DataFrame, assay: AssaySim, plate_name: str
) -> pd.DataFrame:
    """True per-well counts and frequencies (``freq_<class>`` among analysed objects: the
    assay's excluded classes, such as cic ``f_category``, leave the denominator)."""
    counts = (
        cells.groupby(["well", "class"]).size().unstack(fill_value=0)
        if len(cells)
        else pd.DataFrame()
    )
    out = []
    for rec in plan.to_dict("records"):
        well = rec["well"]
        row = {"plate": plate_name, "well": well, "row": rec["row"], "col": rec["col"],
               "condition": rec.get("condition")}
        n = {c: int(counts.loc[well, c]) if well in counts.index and c in counts else 0
             for c in assay.classes}
        total = sum(n.values())
        analysed = total - sum(n[c] for c in assay.excluded)
        for c in assay.classes:
            row[f"n_{c}"] = n[c]
        row["n_total"] = total
        row["n_analysed"] = analysed
        for c in assay.classes:
            if c not in assay.excluded:
                row[f"freq_{c}"] = n[c] / analysed if analysed else float("nan")
        if assay.name == "cic":
            cic = sum(n[c] for c in assay.classes if c not in ("non_cic", "f_category"))
            row["n_cic"] = cic
            row["freq_cic"] = cic / analysed if analysed else float("nan")
        sub = cells[cells["well"] == well] if len(cells) else cells
        row["n_cells"] = int(sub["n_members"].sum()) if len(sub) else 0
        excl = sum(rec[f"cond_p_{c}"] for c in assay.excluded)
        for c in assay.classes:
            row[f"true_p_{c}"] = rec[f"p_{c}"]
            if c not in assay.excluded:
                row[f"expected_freq_{c}"] = rec[f"cond_p_{c}"] / (1 - excl) if excl < 1 else 0.0
        for key in ("density", "cond_density", "edge_well", "dispersion"):
            row[key] = rec[key]
        out.append(row)
    df = pd.DataFrame(out)
    layout_cols = [c for c in plan.columns
                   if c not in df.columns and not c.startswith(("p_", "cond_p_"))
                   and c not in ("intensity_scale",)]
    return pd.concat([df, plan[layout_cols].reset_index(drop=True)], axis=1)
