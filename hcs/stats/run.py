"""From a wells table to ``stats.parquet``: comparisons, dose-response fits and plate QC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.stats.compare import (
    BLOCKS,
    adjust_pvalues,
    compare_block,
    compare_plate_model,
    normalise_to_reference,
    readout_values,
    stars,
)
from hcs.stats.dose import PARAMS, dose_response
from hcs.stats.qc import plate_qc

#: Columns of stats.parquet, in order (docs/statistics.md describes each).
STATS_COLUMNS: list[str] = [
    "kind", "readout", "plate", "condition", "reference", "n", "n_ref", "n_excluded",
    "mean", "mean_ref", "sd", "sd_ref", "diff", "ci_low", "ci_high", "test", "statistic", "df",
    "p", "p_adj", "correction", "hedges_g", "stars", "transform", "status", "message",
    "dose_unit", "n_doses",
    *[f"{p}{s}" for p in PARAMS for s in ("", "_se", "_ci_low", "_ci_high")], "rss", "r2",
    "z_prime", "ssmd", "row_effect_range", "col_effect_range", "edge_effect",
    "n_bscore_outliers", "n_outliers", "outlier_wells", "n_nonfinite", "nonfinite_wells",
    "ssmd_status", "n_imaged", "n_plate_wells", "bounds", "n_not_imaged",
]
_INT_COLUMNS = ("n", "n_ref", "n_excluded", "n_doses", "n_bscore_outliers", "n_outliers",
                "n_nonfinite", "n_imaged", "n_plate_wells", "n_not_imaged")
_TEXT_COLUMNS = ("kind", "readout", "plate", "condition", "reference", "test", "correction",
                 "stars", "transform", "status", "message", "dose_unit", "outlier_wells",
                 "nonfinite_wells", "ssmd_status", "bounds")

_MESSAGES = {
    "ok": "",
    "reference_missing": "the reference condition has no well here",
    "reference_no_cells": "no reference well has analysed cells (or all are flagged)",
    "no_cells": "no well of this condition has analysed cells (or all are flagged)",
    "not_imaged": "no well of this condition was imaged",
    "reference_not_imaged": "no well of the reference condition was imaged",
    "one_well": "a t-test needs at least 2 usable wells in each group",
    "zero_variance": "no variation within either group: the t statistic is undefined",
    "no_shared_plate": "condition and reference never share a plate: the plate model cannot"
                       " separate them",
}


def default_reference(wells: pd.DataFrame) -> str:
    """The condition of the ``negative_control`` wells, if there is exactly one."""
    if "role" in wells:
        refs = sorted(set(wells.loc[wells["role"] == "negative_control", "condition"].dropna()))
        if len(refs) == 1:
            return str(refs[0])
    known = sorted(set(wells["condition"].dropna().astype(str)))
    raise InputError("give the reference condition (--reference); the layout does not name"
                     f" exactly one negative_control condition. Conditions: {known[:20]}")


def nonfinite_readouts(wells: pd.DataFrame, values: pd.DataFrame
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Readout values that are NaN or infinite in wells the tests would use.

    A usable well (no flag) with a condition has a finite readout unless its table was made
    wrongly (a division by zero, a hand-edited ``wells.parquet``). Such values are never used:
    infinities would make a group's variance undefined and read as ``zero_variance``, NaNs would
    silently shrink ``n``. They are set to NaN (left out of every test) and reported.

    Returns
    -------
    (values, bad)
        ``values`` with every infinity replaced by NaN, and a boolean frame (same shape) that is
        True where a usable well with a condition had a non-finite value.

    Examples
    --------
    >>> w = pd.DataFrame({"well": ["A01", "A02", "A03"], "condition": ["a", "a", None],
    ...                   "usable": [True, True, True]})
    >>> v, bad = nonfinite_readouts(w, pd.DataFrame({"freq_x": [np.inf, 0.2, np.nan]}))
    >>> v["freq_x"].tolist(), bad["freq_x"].tolist()
    ([nan, 0.2, nan], [True, False, False])
    """
    usable = wells["usable"].astype(bool) if "usable" in wells else pd.Series(True, wells.index)
    counted = usable & wells["condition"].notna()
    finite = np.isfinite(values.to_numpy(dtype="float64"))
    bad = pd.DataFrame(~finite, index=values.index, columns=values.columns).mul(counted, axis=0)
    return values.where(finite), bad.astype(bool)


def _nonfinite_columns(out: pd.DataFrame, wells: pd.DataFrame, bad: pd.DataFrame,
                       reference: str) -> pd.DataFrame:
    """``n_nonfinite`` / ``nonfinite_wells`` of every stats row, and a line in ``message``.

    A comparison row counts the condition's and the reference's wells (on its plate, or every
    plate for ``plate == "all"``); a dose-response row the wells of its construct; a QC row the
    wells of its plate.
    """
    multi = wells["plate"].nunique() > 1
    names = (wells["plate"] + ":" + wells["well"].astype(str)) if multi \
        else wells["well"].astype(str)
    n_col, w_col = [], []
    for row in out.itertuples(index=False):
        if row.readout not in bad:
            n_col.append(0)
            w_col.append("")
            continue
        sel = bad[row.readout].copy()
        if row.plate not in ("all", None) and not pd.isna(row.plate):
            sel &= wells["plate"] == row.plate
        if row.kind == "comparison":
            sel &= wells["condition"].isin([row.condition, reference])
        elif row.kind == "dose_response" and "construct" in wells:
            sel &= wells["construct"] == row.condition
        hit = sorted(names[sel])
        n_col.append(len(hit))
        w_col.append(";".join(hit))
    out = out.copy()
    out["n_nonfinite"] = n_col
    out["nonfinite_wells"] = w_col
    has = out["n_nonfinite"] > 0
    note = [f"{n} well(s) with a NaN or infinite value left out: {w.replace(';', ', ')}"
            for n, w in zip(out.loc[has, "n_nonfinite"], out.loc[has, "nonfinite_wells"],
                            strict=True)]
    old = out.loc[has, "message"].fillna("").astype(str)
    out.loc[has, "message"] = [f"{m}; {n}" if m else n for m, n in zip(old, note, strict=True)]
    return out


def _readouts(wells: pd.DataFrame, readouts: list[str] | None) -> list[str]:
    """Readout columns: ``freq_<r>`` (also given as ``<r>``), or any numeric well column given
    by name (``median_Nuclei_AreaShape_Area``, ``n_detected``). Default: every ``freq_``
    column; for a detection-only run (no class frequencies) also ``n_detected`` and the
    ``median_`` features."""
    have = [c for c in wells.columns if c.startswith("freq_")]
    features = [c for c in wells.columns if c.startswith("median_")]
    if readouts is None:
        positive = {f"freq_{p['channel']}_positive" for p in wells.attrs.get("positive") or []}
        if not set(have) - positive and "n_detected" in wells:  # no classes: detection only
            return [*have, "n_detected", *features]
        if not have:
            raise InputError("the wells table has no freq_<class> readout columns")
        return have
    out = []
    for r in readouts:
        col = r if r.startswith("freq_") else f"freq_{r}"
        if col not in wells and r in wells and pd.api.types.is_numeric_dtype(wells[r]) \
                and r not in ("row", "col"):
            col = r
        if col not in wells:
            raise InputError(f"unknown readout {r!r}; available: {[h[5:] for h in have]} "
                             f"and numeric columns such as n_detected, median_<feature>")
        out.append(col)
    return out


def run_stats(
    wells: pd.DataFrame,
    reference: str | None = None,
    layout: pd.DataFrame | None = None,
    test: str = "student",
    correction: str = "fdr_bh",
    transform: str = "none",
    blocks: str = "model",
    readouts: list[str] | None = None,
    dose: bool = True,
    qc: bool = True,
    include_missing_planes: bool = False,
) -> pd.DataFrame:
    """Statistics of a wells table (``wells.parquet``) as the ``stats.parquet`` table.

    Parameters
    ----------
    wells
        Per-well table (:func:`hcs.aggregate.well_table`); layout columns may already be joined.
    reference
        Reference condition; default: the single condition with role ``negative_control``.
    layout
        Layout to join first (replaces layout columns already in ``wells``).
    test
        ``student`` (pooled variance, as the AIM-CICs paper) or ``welch``.
    correction
        ``fdr_bh`` (Benjamini-Hochberg), ``holm``, ``bonferroni`` or ``none``; the family is all
        tested comparison rows sharing a ``plate`` value (``"all"``: the run).
    transform
        ``none`` (frequencies) or ``logit`` (empirical logit of the counts).
    blocks
        With several plates, how the ``plate = "all"`` rows handle plates: ``model`` (OLS with
        plate as a factor) or ``normalise`` (subtract each plate's reference mean).
    readouts
        Readouts to test (``partial`` or ``freq_partial``); default every ``freq_`` column.
    dose, qc
        Add dose-response rows (series with >= 2 doses) and plate QC rows.
    include_missing_planes
        Use wells flagged ``qc_missing_planes`` (a field with planes missing at convert, read
        as zeros) like the others; by default they are left out (counted in ``n_excluded``).

    Returns
    -------
    pandas.DataFrame
        :data:`STATS_COLUMNS`; ``kind`` is ``comparison``, ``dose_response`` or ``qc``.
    """
    from hcs.aggregate import join_layout

    if blocks not in BLOCKS:
        raise InputError(f"unknown blocks method {blocks!r}; use one of {', '.join(BLOCKS)}")
    if layout is not None:
        wells = join_layout(wells, layout)
    if "condition" not in wells:
        raise InputError("the wells table has no 'condition' column: give a layout (--layout)")
    wells = wells.reset_index(drop=True)
    if include_missing_planes and "qc_missing_planes" in wells and "flags" in wells:
        others = wells["flags"].fillna("").astype(str).map(
            lambda f: [x for x in f.split(";") if x and x != "qc_missing_planes"])
        wells["usable"] = others.map(len) == 0
    if "plate" not in wells:
        wells = wells.assign(plate="plate")
    wells["plate"] = wells["plate"].astype(str)
    wells["condition"] = wells["condition"].astype("object").where(wells["condition"].notna())
    if "role" in wells:  # empty wells are no condition; wells outside the layout have no role
        role = wells["role"].astype(object)
        wells["role"] = role.where(role.notna(), np.where(wells["condition"].notna(), "sample",
                                                          "empty"))
        wells.loc[wells["role"] == "empty", "condition"] = None
    reference = default_reference(wells) if reference is None else reference
    conditions = sorted(wells["condition"].dropna().astype(str).unique())
    if conditions and reference not in conditions:  # a typo would make every test "missing"
        near = [c for c in conditions if c.casefold() == str(reference).casefold()]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise InputError(f"--reference {reference!r} is not a condition of the layout "
                         f"(its conditions: {', '.join(conditions)}){hint}")
    cols = _readouts(wells, readouts)
    values, bad = nonfinite_readouts(wells, readout_values(wells, cols, transform))
    plates = sorted(wells["plate"].unique())

    parts = []
    if len(plates) == 1:
        parts.append(compare_block(wells, values, reference, test).assign(plate="all"))
    else:
        if blocks == "model":
            pooled = compare_plate_model(wells, values, reference, test)
        else:
            norm = normalise_to_reference(wells, values, reference)
            pooled = compare_block(wells, norm, reference, test)
            raw = compare_block(wells, values, reference, test)
            pooled[["mean", "mean_ref", "sd", "sd_ref"]] = raw[["mean", "mean_ref", "sd",
                                                                "sd_ref"]]
            pooled["test"] = f"{test}_plate_normalised"
        parts.append(pooled.assign(plate="all"))
        for p in plates:
            sel = wells["plate"] == p
            parts.append(compare_block(wells[sel], values[sel], reference, test).assign(plate=p))
    comp = pd.concat([x for x in parts if not x.empty], ignore_index=True) if any(
        not x.empty for x in parts) else pd.DataFrame(columns=["plate", "p", "status"])
    comp["kind"] = "comparison"
    comp["correction"] = correction
    comp["p_adj"] = np.nan
    for _, idx in comp.groupby("plate").groups.items():
        comp.loc[idx, "p_adj"] = adjust_pvalues(comp.loc[idx, "p"].to_numpy(float), correction)
    comp["stars"] = [stars(p) for p in comp["p_adj"].to_numpy(float)]
    comp["message"] = comp["status"].map(_MESSAGES).fillna("")
    comp["transform"] = transform

    frames = [comp]
    if dose and {"dose", "construct"} <= set(wells.columns):
        bounded = [c for c in cols if c.startswith("freq_")] if transform == "none" else []
        frames.append(dose_response(wells, values, bounded=bounded).assign(transform=transform))
    if qc:
        geom = (layout.attrs if layout is not None else wells.attrs).get("geometry")
        frames.append(plate_qc(wells, values, geom).assign(transform=transform))
    out = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    out = _nonfinite_columns(out, wells, bad, reference)
    out.attrs["nonfinite"] = {r: sorted(wells.loc[bad[r], "well"].astype(str))
                              for r in bad if bad[r].any()}
    return _typed(out)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for c in STATS_COLUMNS:
        if c not in df:
            df[c] = np.nan
    df = df[STATS_COLUMNS + [c for c in df.columns if c not in STATS_COLUMNS]].copy()
    for c in STATS_COLUMNS:
        if c in _INT_COLUMNS:
            df[c] = pd.array(pd.to_numeric(df[c]).round(), dtype="Int64")
        elif c in _TEXT_COLUMNS:
            df[c] = df[c].astype("string")
        else:
            df[c] = pd.to_numeric(df[c]).astype("float64")
    return df


def load_wells(path: str | Path) -> pd.DataFrame:
    """Read ``wells.parquet`` from a run folder or a file path."""
    path = Path(path)
    if path.is_dir():
        path = path / "wells.parquet"
    if not path.is_file():
        raise InputError(f"no wells table at {path} (give a run folder with wells.parquet, or"
                         " the wells.parquet file)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"{path}: cannot read as Parquet ({exc})") from None


def stats_for_run(
    source: str | Path,
    out: str | Path | None = None,
    layout: str | Path | None = None,
    plate_format: int | None = None,
    overwrite: bool = False,
    **options: object,
) -> tuple[pd.DataFrame, Path]:
    """Read a wells table, run :func:`run_stats`, write ``stats.parquet`` atomically.

    ``source`` is a run folder (holding ``wells.parquet``) or a wells Parquet file; ``out``
    defaults to ``stats.parquet`` next to the wells table. ``options`` go to :func:`run_stats`.
    Returns the table and the path written.
    """
    import json

    from hcs.aggregate import write_table
    from hcs.layouts import check_layout_on_plate, plate_geometry, read_layout
    from hcs.plate import PlateGeometry

    source = Path(source)
    wells = load_wells(source)
    folder = source if source.is_dir() else source.parent
    out = Path(out) if out is not None else folder / "stats.parquet"
    from hcs.atomic import check_file_replaceable

    check_file_replaceable(out, overwrite=overwrite, inputs=[
        source / "wells.parquet" if source.is_dir() else source, folder / "run.json",
        folder / "cells", folder / "failures.parquet",
        *([layout] if layout is not None else [])])
    geometry = PlateGeometry.from_format(plate_format) if plate_format else None
    lay = read_layout(layout, geometry) if layout is not None else None
    if lay is not None:  # the plate of the run the wells come from, when it is known
        run_json = folder / "run.json"
        plate = json.loads(run_json.read_text()).get("plate") if run_json.is_file() else None
        check_layout_on_plate(lay, wells["well"] if "well" in wells else [],
                              geometry or plate_geometry(plate), plate or source)
    stats = run_stats(wells, layout=lay, **options)  # type: ignore[arg-type]
    write_table(stats, out, overwrite=overwrite)
    return stats, out
