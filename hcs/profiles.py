"""``hcs export profiles``: a run's cells as profiles in the pycytominer / CytoTable convention.

One row per cell (``level="cell"``) or per well (``level="well"``, the median of every feature
over the well's cells, as ``pycytominer.aggregate`` computes it), with

- ``Metadata_Plate``, ``Metadata_Well``, and per cell ``Metadata_Site`` (the field) and
  ``Metadata_ObjectNumber`` (the ``cell_id``, which is also the value of the cell's mask in the
  plate's label image); per well ``Metadata_Object_Count``;
- the layout columns (from the run's ``wells.parquet``, or ``layout``) as ``Metadata_<name>``
  (``Metadata_condition``, ``Metadata_dose``, ...);
- every other cell-table column that is not a feature as ``Metadata_<name>`` (position, box,
  detection score, class label and probabilities), per cell only;
- the features unchanged: ``Nuclei_AreaShape_Area``, ``Nuclei_Intensity_MeanIntensity_PH3``
  (compartment prefixes, as pycytominer's ``features="infer"`` expects).

Cell profiles are written field by field (:class:`pyarrow.parquet.ParquetWriter`): memory
holds one field, never the plate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from hcs.errors import InputError, OutputExistsError

__all__ = ["export_profiles"]

_FEATURE = re.compile(r"^(Nuclei|Cells|Cytoplasm)_")
_KEYS = {"plate": "Metadata_Plate", "well": "Metadata_Well", "field": "Metadata_Site",
         "cell_id": "Metadata_ObjectNumber"}


def _layout(run_dir: Path, layout: str | Path | None) -> pd.DataFrame | None:
    """Per-well layout columns: ``well`` + the layout's columns (from ``layout`` or the
    run's ``wells.parquet``)."""
    from hcs.layouts import LAYOUT_COLUMNS, read_layout

    if layout is not None:
        lay = read_layout(layout)
    elif (run_dir / "wells.parquet").is_file():
        lay = pd.read_parquet(run_dir / "wells.parquet")
    else:
        return None
    cols = [c for c in LAYOUT_COLUMNS if c in lay and c not in ("well", "row", "col")]
    if not cols:
        return None
    return lay[["well", *cols]].drop_duplicates("well").rename(
        columns={c: f"Metadata_{c}" for c in cols})


def _cell_frame(cells: pd.DataFrame, layout: pd.DataFrame | None) -> pd.DataFrame:
    feats = [c for c in cells.columns if _FEATURE.match(c)]
    rest = [c for c in cells.columns if c not in feats and c not in _KEYS
            and c not in ("row", "col")]
    out = cells[list(_KEYS)].rename(columns=_KEYS)
    out["Metadata_Plate"] = out["Metadata_Plate"].astype("string")
    out["Metadata_Well"] = out["Metadata_Well"].astype("string")
    if layout is not None:
        out = out.merge(layout, left_on="Metadata_Well", right_on="well", how="left").drop(
            columns="well")
    for c in rest:
        out[f"Metadata_{c}"] = cells[c].to_numpy()
    return pd.concat([out.reset_index(drop=True), cells[feats].reset_index(drop=True)], axis=1)


def export_profiles(run_dir: str | Path, out: str | Path, *,
                    level: Literal["cell", "well"] = "cell",
                    layout: str | Path | None = None,
                    overwrite: bool = False) -> tuple[int, Path]:
    """Write the profiles of ``run_dir`` to ``out`` (Parquet); returns (rows, path).

    Raises
    ------
    InputError
        No cell tables, no measurement columns (a run with ``--measure none``), or a bad level.
    OutputExistsError
        ``out`` exists and ``overwrite`` is False.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hcs.atomic import atomic_write

    run_dir, out = Path(run_dir), Path(out)
    if level not in ("cell", "well"):
        raise InputError(f"--level: expected cell or well, got {level!r}")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists (use --overwrite to replace it)")
    files = sorted((run_dir / "cells").glob("*/*.parquet"),
                   key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit() else -1))
    if not files:
        raise InputError(f"{run_dir}: no cell tables (cells/<well>/<field>.parquet)")
    names = pq.read_schema(files[0]).names
    if not any(_FEATURE.match(c) for c in names):
        raise InputError(f"{files[0]}: no measurement columns (Nuclei_...); run hcs run "
                         "with --measure basic or full")
    lay = _layout(run_dir, layout)
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        writer = None
        schema = None
        try:
            if level == "cell":
                empty = None
                for f in files:
                    frame = _cell_frame(pd.read_parquet(f), lay)
                    if not len(frame):  # a field without cells: no rows, and its column
                        empty = frame   # types (all-null text) must not set the schema
                        continue
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    if schema is None:
                        schema = table.schema
                        writer = pq.ParquetWriter(tmp, schema)
                    writer.write_table(table.cast(schema))
                    rows += len(frame)
                if writer is None and empty is not None:
                    empty.to_parquet(tmp, index=False)
            else:
                frames = []
                for well in sorted({f.parent.name for f in files}):
                    cells = pd.concat([pd.read_parquet(f) for f in files
                                       if f.parent.name == well], ignore_index=True)
                    if "pair_of" in cells:  # a second half is not a cell
                        cells = cells[~(cells["pair_of"] >= 0)]
                    feats = [c for c in cells.columns if _FEATURE.match(c)]
                    row = {"Metadata_Plate": str(cells["plate"].iloc[0]) if len(cells) else "",
                           "Metadata_Well": well, "Metadata_Object_Count": len(cells)}
                    row.update({c: float(np.nanmedian(cells[c])) if len(cells) else np.nan
                                for c in feats})
                    frames.append(row)
                frame = pd.DataFrame(frames)
                if lay is not None:
                    frame = frame.merge(lay, left_on="Metadata_Well", right_on="well",
                                        how="left").drop(columns="well")
                    meta = [c for c in frame if c.startswith("Metadata_")]
                    frame = frame[meta + [c for c in frame if c not in meta]]
                frame.to_parquet(tmp, index=False)
                rows = len(frame)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(out, write)
    return rows, out
