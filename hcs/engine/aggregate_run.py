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


def _read(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"{path}: cannot read {what} ({exc})") from None


def _run_json(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable run.json ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: expected a JSON object")
    return meta


def _plate_name(meta: dict, cells: Path) -> str:
    """The run's plate name: ``run.json`` ``plate_name``; for runs written before hcs recorded
    it, the plate's (as the engine names it), else the ``plate`` column of any cell table."""
    import pyarrow.parquet as pq

    if meta.get("plate_name"):
        return str(meta["plate_name"])
    plate = meta.get("plate")
    plate = plate.get("path") if isinstance(plate, dict) else plate
    if plate and Path(str(plate)).is_dir():
        from hcs.io.omezarr import is_plate, open_plate

        if is_plate(plate):
            return str(open_plate(plate).name or Path(str(plate)).name)
    for f in sorted(cells.glob("*/*.parquet")):
        try:
            col = pq.read_table(f, columns=["plate"]).column("plate").to_pylist()
        except Exception as exc:
            raise InputError(f"{f}: cannot read the cell table ({exc})") from None
        if col:
            return str(col[0])
    raise InputError(f"{cells.parent / 'run.json'}: no plate_name, and neither the plate nor a "
                     "cell table names the plate")
def positive_thresholds(cells: Path, specs: list) -> dict:
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
    exclude_qc: bool = False,
    qc_focus_mad: float | None = None,
    qc_saturation_pct: float | None = None,
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
    exclude_qc
        Leave out the fields image QC flags (:mod:`hcs.engine.imageqc`); the wells table then
        has ``n_fields_qc_excluded`` and ``image_qc_excluded`` (which fields, why). Without
        it, flagged fields are counted (``n_fields_qc_flagged``) but kept.
    qc_focus_mad, qc_saturation_pct
        Image QC thresholds (default :data:`hcs.engine.imageqc.FOCUS_MAD`,
        :data:`hcs.engine.imageqc.SATURATION_PCT`).

    Every call also writes the per-field table ``fields.parquet`` (next to ``out``:
    ``RUN_DIR/fields.parquet`` by default, ``<out stem>.fields.parquet`` otherwise): ``plate,
    well, field, n_cells``, the image QC columns, ``qc_flag``, ``qc_reason`` and ``excluded``.

    Returns
    -------
    (pandas.DataFrame, Path)
        The well table and where it was written, with ``n_fields`` (cell tables read),
        ``n_fields_missing_planes`` (fields with planes convert recorded missing, from
        ``run.json``) and, when the run recorded failures, ``n_fields_failed`` per well. Wells
        with either get the flag ``qc_missing_planes`` / ``qc_fields_failed`` (not ``usable``:
        statistics leave them out unless asked). Every row is of the run's plate
        (``run.json`` ``plate_name``), wells without cells included.
    """
    import pyarrow.parquet as pq

    from hcs.aggregate import counts_from_cells, well_table, write_table
    from hcs.assays import run_assay

    run_dir = Path(run_dir)
    cells = run_dir / "cells"
    if not cells.is_dir():
        raise InputError(f"{run_dir}: no cells/ folder (is it a run folder of `hcs run`?)")
    meta = _run_json(run_dir)
    if not (assay or meta):
        raise InputError(f"{run_dir}: no run.json naming the assay; give --assay")
    from hcs.readouts import feature_columns, parse_positive, well_feature_summary

    name = assay or meta.get("assay")
    # None: a detection-only run; a user-defined assay: from run.json or the model card
    assay_def = run_assay(meta, name) if name else None
    classes = assay_def.classes if assay_def else ()
    specs = [parse_positive(p) for p in positive or ()]
    thresholds = positive_thresholds(cells, specs)
    out = Path(out) if out else run_dir / "wells.parquet"
    from hcs.atomic import check_file_replaceable

    fields_out = run_dir / "fields.parquet" if out == run_dir / "wells.parquet" else \
        out.with_name(f"{out.stem}.fields.parquet")
    for target in (out, fields_out):
        check_file_replaceable(target, overwrite=overwrite, inputs=[
            cells, run_dir / "run.json", run_dir / "failures.parquet", run_dir / "run.lock",
            *([layout] if layout is not None else [])])
    failed = run_dir / "failures.parquet"
    fails = _read(failed, "the failure table") if failed.exists() else pd.DataFrame({"well": []})
    plate_name = _plate_name(meta, cells)
    from hcs.engine.imageqc import FOCUS_MAD, SATURATION_PCT, field_table, flag_fields

    well_dirs = _well_dirs(cells)
    all_files = [f for wdir in well_dirs for f in sorted(
        wdir.glob("*.parquet"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)]
    fields = flag_fields(field_table(all_files, plate_name),
                         FOCUS_MAD if qc_focus_mad is None else qc_focus_mad,
                         saturation_pct=SATURATION_PCT if qc_saturation_pct is None
                         else qc_saturation_pct)
    fields["excluded"] = fields["qc_flag"] & bool(exclude_qc)
    dropped = {(str(w), int(f)) for w, f in fields.loc[fields["excluded"], ["well", "field"]]
               .itertuples(index=False)}
    rows = []
    extra: list[dict] = []
    features: list[str] = []
    for wdir in well_dirs:
        files = [f for f in all_files if f.parent == wdir
                 and (wdir.name, int(f.stem)) not in dropped]
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
            counts = pd.DataFrame({"plate": [plate_name], "well": [wdir.name]})
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
        empty = pd.DataFrame({"plate": [plate_name], "well": [well]})
        for c in classes:
            empty[f"n_{c}"] = 0
        empty["n_detected"] = 0
        empty["n_fields"] = 0
        rows.append(empty)
    if not rows:
        raise InputError(f"{cells}: no cell tables")
    counts = pd.concat(rows, ignore_index=True)
    names = sorted(set(counts["plate"].astype(str)))
    if len(names) > 1:
        raise InputError(f"{cells}: cell tables of several plates ({', '.join(names[:5])}) in "
                         "one run folder")
    n_failed = fails.groupby(fails["well"].astype(str)).size() if len(fails) else pd.Series(
        dtype="int64")
    n_missing = pd.Series([str(m["well"]) for m in meta.get("fields_missing_planes") or []],
                          dtype="object").value_counts()
    qc = pd.DataFrame({"plate": counts["plate"], "well": counts["well"]})
    qc["fields_failed"] = qc["well"].map(n_failed).fillna(0).gt(0)
    qc["missing_planes"] = qc["well"].map(n_missing).fillna(0).gt(0)
    wells = well_table(counts.drop(columns="n_fields"), assay_def, qc=qc)
    wells.insert(wells.columns.get_loc("n_detected"), "n_fields",
                 counts.set_index("well").loc[wells["well"], "n_fields"].to_numpy())
    wells.insert(wells.columns.get_loc("n_detected"), "n_fields_missing_planes",
                 wells["well"].map(n_missing).fillna(0).astype("int64").to_numpy())
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
        wells["n_fields_failed"] = wells["well"].map(n_failed).fillna(0).astype("int64")
    if layout is not None:
        from hcs.aggregate import join_layout
        from hcs.layouts import check_layout_on_plate, plate_geometry, read_layout

        lay = read_layout(layout)
        check_layout_on_plate(lay, wells["well"], plate_geometry(meta.get("plate")),
                              meta.get("plate") or run_dir)
        wells = join_layout(wells, lay)
        if "n_fields_failed" in wells:
            wells["n_fields_failed"] = wells["n_fields_failed"].fillna(0).astype("int64")
        wells["n_fields"] = wells["n_fields"].fillna(0).astype("int64")
        wells["n_fields_missing_planes"] = wells["n_fields_missing_planes"].fillna(0).astype(
            "int64")
    flagged = fields[fields["qc_flag"]]
    wells["n_fields_qc_flagged"] = wells["well"].map(
        flagged.groupby(flagged["well"].astype(str)).size()).fillna(0).astype("int64")
    if exclude_qc:
        gone = fields[fields["excluded"]]
        wells["n_fields_qc_excluded"] = wells["well"].map(
            gone.groupby(gone["well"].astype(str)).size()).fillna(0).astype("int64")
        why: dict[str, list[str]] = {}
        for w, f, r in gone[["well", "field", "qc_reason"]].itertuples(index=False):
            why.setdefault(str(w), []).append(f"field {int(f)}: {r}")
        # not qc_*: those columns are the well's own flags (hcs.aggregate.well_table)
        wells["image_qc_excluded"] = pd.Series(
            [" | ".join(why.get(str(w), [])) for w in wells["well"]], dtype="string")
    wells.attrs["image_qc"] = {"exclude_qc": bool(exclude_qc), "focus_mad": float(
        FOCUS_MAD if qc_focus_mad is None else qc_focus_mad), "saturation_pct": float(
        SATURATION_PCT if qc_saturation_pct is None else qc_saturation_pct)}
    write_table(fields, fields_out, overwrite=overwrite)
    write_table(wells, out, overwrite=overwrite)
    return wells, out
