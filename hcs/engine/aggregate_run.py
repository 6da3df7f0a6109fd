"""``hcs aggregate RUN_DIR``: cell tables -> ``wells.parquet``, one well in memory at a time.

Only the ``plate``, ``well``, ``label`` (and ``pair_of``) columns of one well's files are read
at once and turned into one count row by :func:`hcs.aggregate.counts_from_cells`; the count rows
(one per well) are then made into the ``wells.parquet`` table by
:func:`hcs.aggregate.well_table`. Memory grows with the number of wells, never with the number of
cells.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError

__all__ = ["aggregate_run"]


def _well_dirs(cells: Path) -> list[Path]:
    from hcs.plate import parse_well

    dirs = []
    for d in cells.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            try:
                dirs.append((parse_well(d.name), d))
            except InputError:
                raise InputError(f"{d}: not a well folder (expected names like B03)") from None
    return [d for _, d in sorted(dirs)]


def _thresholds(cells: Path, specs: list) -> dict:
    """Each ``--positive`` readout's threshold, chosen once on every cell of the run (one
    column of each cell table read at a time)."""
    import pyarrow.parquet as pq

    from hcs.readouts import choose_threshold

    out = {}
    for spec in specs:
        values = []
        if spec.method != "value":
            for f in sorted(cells.glob("*/*.parquet")):
                names = pq.read_schema(f).names
                if spec.column not in names:
                    raise InputError(f"{f}: no column {spec.column} (--positive "
                                     f"{spec.channel} needs a run with measurements of that "
                                     "channel)")
                cols = [spec.column] + (["pair_of"] if "pair_of" in names else [])
                t = pq.read_table(f, columns=cols).to_pandas()
                if "pair_of" in t:
                    t = t[~(t["pair_of"] >= 0)]
                values.append(t[spec.column].to_numpy())
        out[spec] = choose_threshold(np.concatenate(values) if values else np.zeros(0), spec)
    return out


def aggregate_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    assay: str | None = None,
    layout: str | Path | None = None,
    overwrite: bool = False,
    positive: list[str] | tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, Path]:
    """Count labels per well from ``RUN_DIR/cells/`` and write ``wells.parquet``.

    Parameters
    ----------
    run_dir
        A run folder written by ``hcs run``.
    out
        Output file (default ``RUN_DIR/wells.parquet``).
    assay
        Assay name (default: from ``RUN_DIR/run.json``).
    layout
        Plate layout (any format :func:`hcs.layouts.read_layout` reads) joined to the wells;
        layout wells without cells are kept with zero counts and flagged.
    overwrite
        Replace an existing output.
    positive
        Percent-positive readouts, ``CHANNEL[:otsu|:gmm|:>VALUE]`` (:mod:`hcs.readouts`); the
        thresholds (chosen once for the plate) are in the table's ``attrs["positive"]``. A run
        with measurements also gets ``median_``/``mad_`` columns of every basic feature.

    Returns
    -------
    (pandas.DataFrame, Path)
        The well table and where it was written, with ``n_fields`` (cell tables read) and,
        when the run recorded failures, ``n_fields_failed`` per well.
    """
    import pyarrow.parquet as pq

    from hcs.aggregate import counts_from_cells, well_table, write_table
    from hcs.assays import get_assay

    run_dir = Path(run_dir)
    cells = run_dir / "cells"
    if not cells.is_dir():
        raise InputError(f"{run_dir}: no cells/ folder (is it a run folder of `hcs run`?)")
    meta = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() \
        else {}
    from hcs.readouts import feature_columns, parse_positive, well_feature_summary

    name = assay or meta.get("assay")
    assay_def = get_assay(name) if name else None  # None: a detection-only run
    classes = assay_def.classes if assay_def else ()
    specs = [parse_positive(p) for p in positive or ()]
    thresholds = _thresholds(cells, specs)
    out = Path(out) if out else run_dir / "wells.parquet"
    if out.exists() and not overwrite:
        from hcs.errors import OutputExistsError

        raise OutputExistsError(f"{out} exists (use --overwrite to replace it)")
    failed = run_dir / "failures.parquet"
    fails = pd.read_parquet(failed) if failed.exists() else pd.DataFrame({"well": []})
    rows = []
    extra: list[dict] = []
    features: list[str] = []
    for wdir in _well_dirs(cells):
        files = sorted(wdir.glob("*.parquet"), key=lambda p: int(p.stem) if p.stem.isdigit()
                       else -1)
        parts = []
        for f in files:
            try:
                names = pq.read_schema(f).names
                cols = ["plate", "well"] + (["label"] if assay_def else [])
                if "pair_of" in names:
                    cols.append("pair_of")
                feats = feature_columns(names)
                features = features or feats  # the columns of the run's first table
                cols += [c for c in dict.fromkeys([*feats, *(s.column for s in specs)])
                         if c in names]
                parts.append(pq.read_table(f, columns=cols).to_pandas())
            except Exception as exc:
                raise InputError(f"{f}: cannot read the cell table ({exc})") from None
        well_cells = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            {"plate": [], "well": [], "label": []})
        if "pair_of" in well_cells:  # the second half of a two-object cell is not a cell
            well_cells = well_cells[~(pd.to_numeric(well_cells["pair_of"]).fillna(-1) >= 0)]
        if len(well_cells) and assay_def:
            counts = counts_from_cells(well_cells, assay_def)
        else:
            counts = pd.DataFrame({"plate": [str(well_cells["plate"].iloc[0]) if len(
                well_cells) else meta.get("plate_name", "plate")], "well": [wdir.name]})
            for c in classes:
                counts[f"n_{c}"] = 0
            counts["n_detected"] = len(well_cells)
        missing = [s.column for s in specs if s.column not in well_cells]
        if missing and len(well_cells):
            raise InputError(f"{wdir}: no column {missing[0]} in the cell tables (--positive "
                             "needs a run with measurements of that channel)")
        extra.append({"well": wdir.name, **well_feature_summary(
            well_cells, [c for c in features if c in well_cells], thresholds)})
        counts["n_fields"] = len(files)
        rows.append(counts)
    # a well whose every field failed has no cells/ folder: keep it, with zero counts
    seen = {str(r["well"].iloc[0]) for r in rows}
    for well in sorted(set(fails["well"].astype(str)) - seen):
        empty = pd.DataFrame({"plate": [meta.get("plate_name", "plate")], "well": [well]})
        for c in classes:
            empty[f"n_{c}"] = 0
        empty["n_detected"] = 0
        empty["n_fields"] = 0
        rows.append(empty)
    if not rows:
        raise InputError(f"{cells}: no cell tables")
    counts = pd.concat(rows, ignore_index=True)
    wells = well_table(counts.drop(columns="n_fields"), assay_def)
    wells.insert(wells.columns.get_loc("n_detected"), "n_fields",
                 counts.set_index("well").loc[wells["well"], "n_fields"].to_numpy())
    if extra:
        readouts = pd.DataFrame(extra).set_index("well").reindex(wells["well"])
        attrs = dict(wells.attrs)
        wells = pd.concat([wells, readouts.reset_index(drop=True)], axis=1)
        for c in readouts.columns:
            if c.startswith("n_"):
                wells[c] = wells[c].fillna(0).astype("int64")
        wells.attrs = attrs
    wells.attrs["positive"] = [s.as_dict(thresholds[s]) for s in specs]
    if failed.exists():
        wells["n_fields_failed"] = wells["well"].map(
            fails.groupby("well").size()).fillna(0).astype("int64")
    if layout is not None:
        from hcs.aggregate import join_layout
        from hcs.layouts import read_layout

        wells = join_layout(wells, read_layout(layout))
        if "n_fields_failed" in wells:
            wells["n_fields_failed"] = wells["n_fields_failed"].fillna(0).astype("int64")
        wells["n_fields"] = wells["n_fields"].fillna(0).astype("int64")
    write_table(wells, out, overwrite=overwrite)
    return wells, out
