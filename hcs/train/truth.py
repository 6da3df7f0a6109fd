"""Training and evaluation crops from a simulated plate's truth (``--truth SIM_DIR``).

The simulator (:mod:`hcs.synth`) writes ``SIM_DIR/truth/cells.parquet``, one row per object
with its true ``class`` and pixel box; ``hcs convert SIM_DIR/export PLATE.ome.zarr`` gives the
plate. Crops are cut from the plate exactly as the engine cuts them at inference
(:class:`hcs.engine.processor.PipelineProcessor`): time point 0, z max-projection, the plate
channel playing each input role found by :func:`hcs.engine.model.plate_channel_for`, each plane
composed by :func:`hcs.engine.processor.compose_field` (uint16 planes rescaled to 0-255 by the
field's 1-99.8 percentiles) and cut by :func:`hcs.engine.processor.field_crops`. The source
image of a crop is its field, ``"<well>/<field>"``, so a split by source image never puts one
field in two parts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.train.datasets import CropSet

TRUTH_FILE = Path("truth") / "cells.parquet"
_COLUMNS = ("well", "field", "cell_id", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "class")


def read_truth(sim_dir: str | Path) -> pd.DataFrame:
    """The truth objects of a simulation folder, with a ``source`` column ``"<well>/<field>"``.

    Parameters
    ----------
    sim_dir
        The folder ``hcs simulate`` wrote (holding ``truth/cells.parquet``), or that file.

    Returns
    -------
    pandas.DataFrame
        The truth table plus ``source``, ``label`` (= ``class``) and ``x0, y0, x1, y1``
        (= the ``bbox_*`` columns), in file order.
    """
    path = Path(sim_dir)
    if path.is_dir():
        path = path / TRUTH_FILE
    if not path.is_file():
        raise InputError(f"{sim_dir}: no {TRUTH_FILE} (give the folder `hcs simulate` wrote)")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any parquet failure is bad input
        raise InputError(f"{path}: cannot read truth table ({exc})") from None
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: truth table lacks column(s) {missing}")
    if table.empty:
        raise InputError(f"{path}: the truth table has no object")
    table = table.reset_index(drop=True)
    table["source"] = table["well"].astype(str) + "/" + table["field"].astype(int).astype(str)
    table["label"] = table["class"].astype(str)
    for a, b in zip(("x0", "y0", "x1", "y1"), ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"),
                    strict=True):
        table[a] = table[b].astype(float)
    return table


def find_plate(sim_dir: str | Path, plate: str | Path | None = None) -> Path:
    """The converted plate of a simulation: ``plate`` if given, else the one ``*.ome.zarr``
    inside ``sim_dir`` or the sibling ``<sim_dir>.ome.zarr``."""
    if plate is not None:
        return Path(plate)
    sim = Path(sim_dir)
    if sim.is_file():  # the parquet file itself: SIM_DIR/truth/cells.parquet
        sim = sim.parent.parent
    found = sorted(sim.glob("*.ome.zarr")) + [p for p in [sim.with_name(sim.name + ".ome.zarr")]
                                              if p.is_dir()]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(map(str, found))})"
        raise InputError(f"{sim_dir}: {what} converted plate found next to the truth; give "
                         f"--plate PLATE.ome.zarr (from `hcs convert {sim / 'export'} ...`)")
    return found[0]


def input_modes(assay: str, roles: Sequence[str]) -> list[str]:
    """Rescale mode per input role, as the engine reads it from the assay's input spec."""
    from hcs.assays import get_input_spec

    spec = get_input_spec(assay)
    known = {c.name: c.rescale for c in spec.channels + spec.optional_channels}
    return [known.get(r, "percentile") for r in roles]


def truth_cropset(
    table: pd.DataFrame,
    plate: str | Path,
    classes: Sequence[str],
    roles: Sequence[str],
    modes: Sequence[str],
    size: int,
    margin: float,
    square: bool = True,
    pad_mode: str = "constant",
    channel_map: dict[str, str] | None = None,
    log: Callable[[str], None] | None = None,
    view: str = "z",
) -> CropSet:
    """Cut one crop per truth object (:func:`read_truth` rows) from the converted plate.

    Parameters
    ----------
    table
        Truth rows (``well``, ``field``, ``x0 .. y1``, ``label``, ``source``).
    plate
        The ``.ome.zarr`` plate converted from the simulation's export.
    classes
        Model classes (the truth ``class`` of every row must be one of them).
    roles, modes
        Input channel roles in tensor order and their rescale modes (:func:`input_modes`).
    size, margin, square, pad_mode
        The crop (see :func:`hcs.classify.crops.crop_box`).
    channel_map
        Role -> plate channel name or index, overriding the name matching.
    view
        ``z`` (the z max projection, as the 2-D engine path) or a side view ``y`` / ``x`` of
        the z-stack (:mod:`hcs.classify.projections`; the plate needs >= 3 z planes).

    Returns
    -------
    CropSet
        ``uint8`` crops ``N x size x size x len(roles)`` (the engine's float crops rounded), in
        row order.
    """
    from hcs.engine.model import plate_channel_for
    from hcs.engine.processor import compose_field, field_crops
    from hcs.io.omezarr import open_plate

    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise InputError(f"truth classes {unknown} are not model classes {list(classes)}")
    if table.empty:
        raise InputError("no truth object to crop")
    from hcs.classify.projections import MIN_PLANES, VIEWS, compose_stack, view_crops, z_scale

    pl = open_plate(plate)
    idx = [plate_channel_for(r, list(pl.channels), channel_map) for r in roles]
    if view not in VIEWS:
        raise InputError(f"unknown view {view!r} (z, y or x)")
    nz = pl.shape[2]
    if view != "z" and nz < MIN_PLANES:
        raise InputError(f"{plate}: {nz} z plane(s); the {view} view needs a z-stack of at least "
                         f"{MIN_PLANES} planes")
    zscale = z_scale(pl.z_step_um, pl.pixel_size_um[1] if pl.pixel_size_um else None)
    table = table.reset_index(drop=True)
    crops = np.zeros((len(table), size, size, len(roles)), np.uint8)
    groups = table.groupby(["well", "field"], sort=False)
    done = 0
    for k, ((well, fld), rows) in enumerate(groups):
        if well not in pl.wells or int(fld) not in pl.fields(str(well)):
            raise InputError(f"{plate}: well {well} field {fld} of the truth is not in the plate "
                             "(was the plate converted from this simulation's export?)")
        stack = np.asarray(pl.field(str(well), int(fld)).isel(t=0).values)
        boxes = rows[["x0", "y0", "x1", "y1"]].to_numpy(float)
        if view == "z":
            composed = compose_field(stack.max(axis=1), idx, list(modes))
            c = field_crops(composed, boxes, size, margin, square, pad_mode)
        else:
            c = view_crops(compose_stack(stack, idx, list(modes)), boxes, size, [view], margin,
                           square, pad_mode, zscale)[:, 0]
        crops[rows.index.to_numpy()] = np.clip(np.rint(c), 0, 255).astype(np.uint8)
        done += len(rows)
        if log is not None and ((k + 1) % 50 == 0 or k + 1 == groups.ngroups):
            log(f"cropped {k + 1}/{groups.ngroups} fields ({done} objects)")
    y = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(int)
    return CropSet(crops, y, list(classes), table)

