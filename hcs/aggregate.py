"""Per-cell -> per-well: class counts, frequencies among analysed cells, QC flags and the layout.

The output is the ``wells.parquet`` contract of DESIGN.md: one row per well with ``plate, well,
row, col, n_detected, n_analysed, n_<class>, freq_<class>``, the flags, then the layout columns.
Wells are never dropped: a layout well that was not imaged, or has no analysed cell, or is flagged
by QC stays in the table with its flags, and ``usable`` says whether statistics may use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hcs.assays import Assay, get_assay
from hcs.atomic import atomic_write_parquet
from hcs.errors import InputError, OutputExistsError
from hcs.layouts import LAYOUT_COLUMNS
from hcs.plate import PlateGeometry, parse_well, well_name

#: Flag columns of wells.parquet (booleans; ``qc_<name>`` columns from a QC table are added).
FLAG_COLUMNS: list[str] = ["missing", "no_cells", "not_in_layout"]


def _plate_well(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Normalised ``plate``/``well``/``row``/``col`` columns (well names become ``A01`` style)."""
    if "well" not in df:
        raise InputError(f"{what}: no 'well' column (columns: {list(df.columns)[:10]})")
    df = df.copy()
    if "plate" not in df:
        df["plate"] = "plate"
    df["plate"] = df["plate"].astype(str)
    rc = []
    for w in df["well"]:
        try:
            rc.append(parse_well(str(w)))
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None
    df["row"] = np.array([r for r, _ in rc], dtype="int64")
    df["col"] = np.array([c for _, c in rc], dtype="int64")
    df["well"] = [well_name(r, c) for r, c in rc]
    return df


def counts_from_cells(cells: pd.DataFrame, assay: str | Assay) -> pd.DataFrame:
    """Count cell labels per well: ``plate, well, row, col, n_detected, n_<class>``.

    Parameters
    ----------
    cells
        Cell table (DESIGN.md ``cells/``) with at least ``well`` and ``label``; ``plate`` is
        optional. Rows with ``pair_of >= 0`` (the second detection of a two-object cell, e.g.
        an anaphase's other chromatin mass; :func:`hcs.engine.processor.pair_column`) are part
        of another row's cell and are not counted.
    assay
        Assay name or :class:`~hcs.assays.Assay`; every label must be one of its classes.

    Examples
    --------
    >>> cells = pd.DataFrame({"well": ["A01", "A01", "B02"], "label": ["live", "dead", "live"]})
    >>> counts_from_cells(cells, "livedead")[["well", "n_detected", "n_live", "n_dead"]]
      well  n_detected  n_live  n_dead
    0  A01           2       1       1
    1  B02           1       1       0
    >>> cells["pair_of"] = [-1, -1, -1]
    >>> pairs = pd.DataFrame({"well": ["A01", "A01"], "label": ["dead", "dead"],
    ...                       "pair_of": [-1, 1]})
    >>> counts_from_cells(pairs, "livedead")[["n_detected", "n_dead"]].values.tolist()
    [[1, 1]]
    """
    assay = get_assay(assay)
    if "label" not in cells:
        raise InputError("cell table: no 'label' column")
    if "pair_of" in cells:
        cells = cells[~(pd.to_numeric(cells["pair_of"], errors="coerce").fillna(-1) >= 0)]
    cells = _plate_well(cells, "cell table")
    unknown = sorted(set(cells["label"].dropna().astype(str)) - set(assay.classes))
    if unknown:
        raise InputError(f"cell table: labels {unknown} are not classes of assay {assay.name!r}"
                         f" ({', '.join(assay.classes)})")
    keys = ["plate", "well", "row", "col"]
    table = cells.groupby([*keys, "label"]).size().unstack("label", fill_value=0)
    table = table.reindex(columns=list(assay.classes), fill_value=0)
    table.columns = [f"n_{c}" for c in assay.classes]
    sizes = cells.groupby(keys).size().rename("n_detected")
    out = pd.concat([sizes, table], axis=1).fillna(0).astype("int64").reset_index()
    return out.sort_values(["plate", "row", "col"]).reset_index(drop=True)


def well_table(
    counts: pd.DataFrame,
    assay: str | Assay | None,
    layout: pd.DataFrame | None = None,
    geometry: PlateGeometry | None = None,
    qc: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Turn per-well class counts into the ``wells.parquet`` table.

    Parameters
    ----------
    counts
        One row per well: ``well`` (``plate`` optional), ``n_<class>`` for every class of the
        assay, ``n_detected`` optional (defaults to the sum of the class counts).
    assay
        Assay name or :class:`~hcs.assays.Assay`: its excluded classes are left out of
        ``n_analysed``; its composite readouts get ``n_``/``freq_`` columns. None (a
        detection-only run): no class columns, ``n_analysed`` = ``n_detected``.
    layout
        Tidy layout from :func:`hcs.layouts.read_layout`; joined with :func:`join_layout`.
    geometry
        Plate the wells must lie on (checked when given).
    qc
        Optional well QC table: ``well`` (``plate`` optional) and boolean columns; each becomes a
        ``qc_<name>`` flag column.

    Returns
    -------
    pandas.DataFrame
        ``plate, well, row, col, n_detected, n_analysed, n_<class>.., n_<composite>..,
        freq_<readout>..`` (frequencies are shares of ``n_analysed``, NaN when it is 0), flag
        columns ``missing, no_cells, not_in_layout, qc_*``, ``flags`` (the active flags joined by
        ``;``) and ``usable`` (no flag set), then the layout columns.

    Examples
    --------
    >>> counts = pd.DataFrame({"well": ["A01"], "n_partial": [2], "n_one_in_one": [1],
    ...     "n_two_in_one": [0], "n_in_turn": [0], "n_complicated": [1], "n_f_category": [5],
    ...     "n_non_cic": [16]})
    >>> w = well_table(counts, "cic")
    >>> int(w.n_detected[0]), int(w.n_analysed[0]), float(w.freq_all_cic[0])
    (25, 20, 0.2)
    """
    assay = get_assay(assay) if assay is not None else None
    counts = _plate_well(counts, "counts table")
    need = [f"n_{c}" for c in assay.classes] if assay else []
    missing = [c for c in need if c not in counts]
    if missing:
        raise InputError(f"counts table: missing columns {missing} for assay "
                         f"{assay.name!r}")  # type: ignore[union-attr]
    dup = counts.duplicated(["plate", "well"])
    if dup.any():
        first = counts.loc[dup].iloc[0]
        raise InputError(f"counts table: well {first['well']} of plate {first['plate']} twice")
    if geometry is not None:
        bad = counts.loc[~((counts.row < geometry.rows) & (counts.col < geometry.columns))]
        if len(bad):
            raise InputError(f"counts table: well {bad.well.iloc[0]} is outside the"
                             f" {geometry.rows} x {geometry.columns} plate")
    if assay is None and "n_detected" not in counts:
        raise InputError("counts table: no n_detected column (a run without an assay)")
    n = counts[need or ["n_detected"]].to_numpy(dtype="float64")
    if np.isnan(n).any() or (n < 0).any():
        raise InputError("counts table: class counts must be non-negative numbers")
    out = counts[["plate", "well", "row", "col"]].copy()
    total = n.sum(axis=1)
    out["n_detected"] = (counts["n_detected"] if "n_detected" in counts else total).astype("int64")
    if assay is None:
        out["n_analysed"] = out["n_detected"]
    else:
        analysed = [f"n_{c}" for c in assay.analysed_classes]
        out["n_analysed"] = counts[analysed].sum(axis=1).astype("int64")
        for c in assay.classes:
            out[f"n_{c}"] = counts[f"n_{c}"].astype("int64")
        for name, parts in assay.composites.items():
            out[f"n_{name}"] = out[[f"n_{p}" for p in parts]].sum(axis=1).astype("int64")
        denom = out["n_analysed"].where(out["n_analysed"] > 0).astype("float64")
        for r in assay.readouts:
            out[f"freq_{r}"] = out[f"n_{r}"] / denom
    out["missing"] = False
    out["no_cells"] = out["n_analysed"] == 0
    if qc is not None:
        out = _join_qc(out, qc)
    out.attrs["assay"] = assay.name if assay else None
    if layout is not None:
        out = join_layout(out, layout)
    else:
        out["not_in_layout"] = False
    return _finish(out)


def _join_qc(out: pd.DataFrame, qc: pd.DataFrame) -> pd.DataFrame:
    qc = _plate_well(qc, "QC table")
    flags = [c for c in qc.columns if c not in ("plate", "well", "row", "col")]
    qc = qc[["plate", "well", *flags]].rename(
        columns={c: c if c.startswith("qc_") else f"qc_{c}" for c in flags})
    out = out.merge(qc, on=["plate", "well"], how="left", validate="one_to_one")
    for c in qc.columns[2:]:
        out[c] = out[c].fillna(False).astype(bool)
    return out


def join_layout(wells: pd.DataFrame, layout: pd.DataFrame) -> pd.DataFrame:
    """Join layout columns to a well table; keep every well of either side, flagged.

    Wells with counts but no layout row get ``not_in_layout``; layout wells without counts are
    added with zero counts, NaN frequencies and the ``missing`` and ``no_cells`` flags. A layout
    without a ``plate`` column applies to every plate of ``wells``. Layout columns already in
    ``wells`` are replaced.

    Examples
    --------
    >>> wells = pd.DataFrame({"plate": ["p"], "well": ["A01"], "row": [0], "col": [0],
    ...                       "n_analysed": [10], "freq_x": [0.5]})
    >>> layout = pd.DataFrame({"well": ["A01", "A02"], "condition": ["ctrl", "drug"]})
    >>> j = join_layout(wells, layout)
    >>> j[["well", "n_analysed", "condition", "missing"]].to_dict("list")
    {'well': ['A01', 'A02'], 'n_analysed': [10, 0], 'condition': ['ctrl', 'drug'], \
'missing': [False, True]}
    """
    geometry = layout.attrs.get("geometry")  # merges below drop attrs: keep it for the result
    wells = _plate_well(wells, "wells table")
    layout = _plate_well(layout, layout.attrs.get("source", "layout")) if "plate" in layout \
        else _plate_well(layout.assign(plate="\0"), layout.attrs.get("source", "layout"))
    cols = [c for c in layout.columns if c not in ("plate", "well", "row", "col")]
    stale = (set(cols) | set(LAYOUT_COLUMNS)) - {"well", "row", "col", *FLAG_COLUMNS}
    wells = wells.drop(columns=[c for c in wells.columns if c in stale])
    if (layout["plate"] == "\0").all():
        plates = pd.DataFrame({"plate": wells["plate"].unique()})
        layout = layout.drop(columns="plate").merge(plates, how="cross")
    lay = layout[["plate", "well", "row", "col", *cols]]
    out = wells.merge(lay, on=["plate", "well"], how="outer", suffixes=("", "_layout"),
                      indicator=True)
    only_layout = out["_merge"] == "right_only"
    out["row"] = out["row"].fillna(out.pop("row_layout")).astype("int64")
    out["col"] = out["col"].fillna(out.pop("col_layout")).astype("int64")
    out["not_in_layout"] = out["_merge"] == "left_only"
    out = out.drop(columns="_merge")
    for c in out.columns:
        if c.startswith("n_"):
            out[c] = out[c].fillna(0).astype("int64")
    out["missing"] = out["missing"].astype("boolean").fillna(False).astype(bool) | only_layout \
        if "missing" in out else only_layout
    out["no_cells"] = (out["n_analysed"] == 0) if "n_analysed" in out else only_layout
    for c in out.columns:
        if c.startswith("qc_"):
            out[c] = out[c].astype("boolean").fillna(False).astype(bool)
    out.attrs = dict(wells.attrs)
    if geometry is not None:
        out.attrs["geometry"] = geometry
    return _finish(out)


def _finish(out: pd.DataFrame) -> pd.DataFrame:
    """Order columns, recompute ``flags``/``usable`` and the normalised readouts
    (:mod:`hcs.stats.normalise`) and sort by plate, row, col."""
    from hcs.stats.normalise import PREFIXES, normalised_readouts

    flags = [c for c in FLAG_COLUMNS if c in out] + sorted(c for c in out if c.startswith("qc_"))
    on = out[flags].to_numpy(dtype=bool)
    names = np.array(flags, dtype=object)
    out["flags"] = [";".join(names[row]) for row in on]
    out["usable"] = ~on.any(axis=1)
    attrs = dict(out.attrs)
    out = out.drop(columns=[c for c in out if c.startswith(PREFIXES)])
    norm = normalised_readouts(out)
    if len(norm.columns):
        out = pd.concat([out, norm], axis=1)
    out.attrs = attrs
    counts = [c for c in out if c.startswith("n_") and c not in ("n_detected", "n_analysed")]
    freqs = [c for c in out if c.startswith("freq_")]
    normed = [c for c in out if c.startswith(PREFIXES)]
    head = ["plate", "well", "row", "col", "n_detected", "n_analysed", *counts, *freqs, *normed,
            *flags, "flags", "usable"]
    head = [c for c in head if c in out]
    lay = [c for c in LAYOUT_COLUMNS if c in out and c not in head]
    rest = [c for c in out if c not in head and c not in lay]
    attrs = dict(out.attrs)
    out = out[head + lay + rest].sort_values(["plate", "row", "col"]).reset_index(drop=True)
    out.attrs = attrs
    return out


def write_table(df: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write a Parquet file atomically (temporary file + rename); refuse to overwrite by default."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists (use --overwrite to replace it)")
    return atomic_write_parquet(df, path)
