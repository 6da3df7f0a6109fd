"""The cells of a run and their crops, cut exactly as ``hcs run`` cuts them for its classifier.

:func:`read_run_cells` reads every cell table of a run (``RUN/cells/<well>/<field>.parquet``).
:func:`cell_crops` cuts the crops of chosen cells from the run's plate with the engine's own
code: the field is read as :func:`hcs.engine.tasks.read_field` reads it (the run's timepoint,
max over z), the model's input channels are matched to plate channels by
:func:`hcs.engine.model.plate_channel_for` (the run's ``--channels`` map, then the caller's),
composed by :func:`hcs.engine.processor.compose_field` and cut by
:func:`hcs.engine.processor.field_crops` (:func:`hcs.classify.crops.crop_box`). A
:class:`CropSpec` says which channels, rescale modes and crop: from a model card
(:meth:`CropSpec.from_card`, what that model sees at run time) or from an assay
(:meth:`CropSpec.from_assay`, what a new model of the assay would be trained on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError
from hcs.runinfo import read_run_json, run_plate_path

__all__ = ["KEY", "CropSpec", "cell_crops", "read_field_planes", "read_run_cells",
           "run_plate", "run_channel_map"]

#: the columns naming one cell of a run
KEY = ["plate", "well", "field", "cell_id"]
_BOX = ["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]


def read_run_cells(run_dir: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """All cell tables of a run, one row per cell, sorted by well, field and ``cell_id``.

    Parameters
    ----------
    run_dir
        The run folder (``cells/<well>/<field>.parquet``).
    columns
        Only these columns (those a table lacks are left out; ``p_*``: every column starting
        with ``p_``), always with ``plate, well, row, col, field, cell_id``; ``None``: every
        column (``x, y, bbox_*, p_*, label, confidence`` and the measurements).

    Returns
    -------
    pandas.DataFrame
        ``well`` and ``plate`` as strings; a run without cells gives an empty table.

    Raises
    ------
    InputError
        No ``cells/`` folder, or a table that cannot be read (named).
    """
    import pyarrow.parquet as pq

    cells = Path(run_dir) / "cells"
    if not cells.is_dir():
        raise InputError(f"{run_dir}: not a run folder (no cells/); run `hcs run` first")
    files = sorted(p for p in cells.glob("*/*.parquet") if not p.name.startswith("."))
    parts = []
    for f in files:
        try:
            if columns is None:
                parts.append(pd.read_parquet(f))
            else:
                have = pq.read_schema(f).names
                want = ["plate", "well", "row", "col", "field", "cell_id"]
                for c in columns:
                    want += ([h for h in have if h.startswith(c[:-1])] if c.endswith("*")
                             else [c])
                want = list(dict.fromkeys(want))
                parts.append(pd.read_parquet(f, columns=[c for c in want if c in have]))
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputError(f"{f}: cannot read the cell table ({exc})") from None
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="string" if c in ("plate", "well") else "int64")
                             for c in KEY})
    out = pd.concat(parts, ignore_index=True)
    for c in ("plate", "well"):
        if c in out:
            out[c] = out[c].astype("string")
    return out.sort_values(["well", "field", "cell_id"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class CropSpec:
    """What a classifier sees of a cell: input channel roles (tensor order), the rescale mode
    of each (``percentile`` or ``none``, :func:`hcs.engine.processor.compose_field`) and the
    crop (:func:`hcs.classify.crops.crop_box`).

    Examples
    --------
    >>> s = CropSpec.from_assay("livedead")
    >>> s.roles, s.modes, s.size, s.margin
    (('brightfield',), ('none',), 48, 0.25)
    >>> CropSpec.from_assay("livedead", roles=["hoechst"]).modes
    ('percentile',)
    """

    roles: tuple[str, ...]
    modes: tuple[str, ...]
    size: int
    margin: float = 0.0
    square: bool = True
    pad_mode: str = "constant"

    def __post_init__(self) -> None:
        if not self.roles or len(self.roles) != len(self.modes):
            raise InputError(f"crop spec: {len(self.roles)} channel roles but "
                             f"{len(self.modes)} rescale modes")
        bad = [m for m in self.modes if m not in ("percentile", "none")]
        if bad or self.size < 1 or self.margin < 0:
            raise InputError(f"crop spec: bad rescale modes {bad} / size {self.size} / margin "
                             f"{self.margin}")

    @classmethod
    def from_assay(cls, assay: Any, roles: Sequence[str] | None = None,
                   size: int | None = None, margin: float | None = None) -> CropSpec:
        """The crop an assay declares (``Assay`` or a registry name): its input channels (or
        ``roles``, e.g. to keep a model blind to a marker), their rescale modes (a role the
        assay does not declare: ``percentile``), its crop size and margin (or ``size`` /
        ``margin``)."""
        from hcs.assays import get_assay

        a = get_assay(assay)
        known = {c.name: c.rescale for c in a.channels + a.optional_channels}
        names = tuple(roles) if roles else tuple(c.name for c in a.channels)
        return cls(names, tuple(known.get(r, "percentile") for r in names),
                   int(size if size is not None else a.crop_size),
                   float(margin if margin is not None else a.margin), a.square, a.pad_mode)

    @classmethod
    def from_card(cls, card: Any, assay: Any = None) -> CropSpec:
        """What the model of ``card`` (a :class:`~hcs.classify.models.ModelCard`, a model
        folder or a shipped model's name) sees at run time: its channel roles and crop, the
        rescale modes of its assay's declaration as :class:`~hcs.engine.processor.
        PipelineProcessor` takes them (``assay``: an ``Assay`` for an assay outside the
        registry; roles it does not declare are ``percentile``).

        Raises
        ------
        InputError
            An ensemble (its crops are several projections; not supported here).
        """
        from hcs.assays import ASSAYS, get_assay

        if isinstance(card, str | Path):
            from hcs.engine.model import model_card

            card = model_card(card)[1]
        if not hasattr(card, "crop") or not hasattr(card, "normalisation"):
            raise InputError(f"model {getattr(card, 'name', card)}: an ensemble; annotate and "
                             "train with one of its member models")
        if assay is None and str(card.assay).lower() in ASSAYS:
            assay = card.assay
        known = {}
        if assay is not None:
            a = get_assay(assay)
            known = {c.name: c.rescale for c in a.channels + a.optional_channels}
        roles = tuple(c.name for c in card.channels)
        c = card.crop
        return cls(roles, tuple(known.get(r, "percentile") for r in roles), int(c.size),
                   float(c.margin), bool(c.square), str(c.pad_mode))


def run_plate(run_dir: str | Path, plate: str | Path | None = None) -> Path:
    """The plate of a run: ``plate`` if given, else the one ``run.json`` names.

    Raises
    ------
    InputError
        Neither names an existing plate folder.
    """
    if plate is not None:
        p = Path(plate)
        if not p.is_dir():
            raise InputError(f"--plate {plate}: no such plate folder")
        return p
    p = run_plate_path(read_run_json(run_dir), run_dir)
    if p is None:
        raise InputError(f"{run_dir}: run.json names no plate that exists here (moved?); "
                         "give the plate with --plate")
    return p


def run_channel_map(run_dir: str | Path, channels: dict[str, str] | None = None
                    ) -> dict[str, str]:
    """The role -> plate channel map of a run (``run.json`` ``channel_map``), updated with
    ``channels`` (the caller's ``--channels role=NAME``)."""
    out = {str(k): str(v) for k, v in (read_run_json(run_dir).get("channel_map") or {}).items()}
    out.update({str(k): str(v) for k, v in (channels or {}).items()})
    return out


def read_field_planes(plate: Any, well: str, field: int, timepoint: int = 0,
                      channels: Sequence[int] | None = None) -> np.ndarray:
    """``(c, y, x)`` planes of one field of an opened plate (:func:`hcs.io.omezarr.
    open_plate`): timepoint ``timepoint``, plate channels ``channels`` (all when None), max over
    z, dtype kept, as the engine reads a field (:func:`hcs.engine.tasks.read_field`)."""
    from hcs.engine.processor import EngineParams
    from hcs.engine.tasks import read_field

    params = EngineParams(plate=str(plate.path), timepoint=int(timepoint))
    image, _ = read_field(params, str(well), int(field),
                          None if channels is None else tuple(int(c) for c in channels))
    return np.asarray(image).max(axis=1)


def cell_crops(
    run_dir: str | Path,
    keys: pd.DataFrame,
    spec: CropSpec | Any,
    channels: dict[str, str] | None = None,
    *,
    plate: str | Path | None = None,
    timepoint: int | None = None,
) -> np.ndarray:
    """Crops of the cells ``keys`` names, in row order, as ``hcs run`` feeds them to a model.

    Parameters
    ----------
    run_dir
        The run folder: its cell tables give each cell's box; its ``run.json`` the plate, the
        timepoint and the ``--channels`` map of the run.
    keys
        One row per cell: ``well, field, cell_id`` (``plate`` is not needed: a run has one
        plate). Boxes (``bbox_x0 .. bbox_y1``) in ``keys`` are used as given, else read from the
        run's cell tables.
    spec
        A :class:`CropSpec`, or a model card / model folder / shipped model name
        (:meth:`CropSpec.from_card`: the crops that model sees at run time). For crops of an
        assay with chosen channels use ``CropSpec.from_assay(assay, roles)``.
    channels
        ``role -> plate channel`` (name or index), as ``--channels role=NAME``; it updates the
        run's map. Roles not mapped are matched by name (:func:`hcs.engine.model.
        plate_channel_for`).
    plate, timepoint
        Override the run's plate / timepoint.

    Returns
    -------
    numpy.ndarray
        ``N x size x size x C`` float32 (0-255 scale for ``percentile`` channels), the exact
        input the model's normalisation is applied to. Each field is read once.

    Raises
    ------
    InputError
        A key that is not a cell of the run, a role no plate channel plays, an unreadable plate.
    """
    from hcs.engine.model import plate_channel_for
    from hcs.engine.processor import compose_field, field_crops
    from hcs.io.omezarr import open_plate

    if not isinstance(spec, CropSpec):
        spec = CropSpec.from_card(spec)
    missing = [c for c in ("well", "field", "cell_id") if c not in keys]
    if missing:
        raise InputError(f"cell keys: missing columns {missing}")
    keys = keys.reset_index(drop=True)
    out = np.zeros((len(keys), spec.size, spec.size, len(spec.roles)), np.float32)
    if not len(keys):
        return out
    run = read_run_json(run_dir)
    pl = open_plate(run_plate(run_dir, plate))
    tp = int(timepoint if timepoint is not None else run.get("timepoint") or 0)
    mapping = run_channel_map(run_dir, channels)
    names = list(pl.channels)
    idx = [plate_channel_for(r, names, mapping) for r in spec.roles]
    if not all(c in keys for c in _BOX):
        keys = _with_boxes(run_dir, keys)
    for (well, field), rows in keys.groupby(["well", "field"], sort=True):
        read = sorted(set(idx))
        planes = read_field_planes(pl, str(well), int(field), tp, read)
        composed = compose_field(planes, [read.index(i) for i in idx], list(spec.modes))
        boxes = rows[_BOX].to_numpy(np.float32)
        out[rows.index.to_numpy()] = field_crops(composed, boxes, spec.size, spec.margin,
                                                 spec.square, spec.pad_mode)
    return out


def _with_boxes(run_dir: str | Path, keys: pd.DataFrame) -> pd.DataFrame:
    """``keys`` with the boxes of the run's cell tables (one table read per field)."""
    from hcs.engine.tasks import cells_path

    parts = []
    for (well, field), rows in keys.groupby(["well", "field"], sort=False):
        path = cells_path(run_dir, str(well), int(field))
        if not path.is_file():
            raise InputError(f"{run_dir}: no cell table for well {well} field {field}")
        try:
            table = pd.read_parquet(path, columns=["cell_id", *_BOX])
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise InputError(f"{path}: cannot read the cell table ({exc})") from None
        got = rows[["cell_id"]].reset_index().merge(table, on="cell_id", how="left")
        lost = got[got["bbox_x0"].isna()]
        if len(lost):
            raise InputError(f"well {well} field {field}: no cell {int(lost['cell_id'].iloc[0])}"
                             f" in {path}")
        parts.append(got.set_index("index")[_BOX])
    boxes = pd.concat(parts).reindex(keys.index)
    return pd.concat([keys.drop(columns=[c for c in _BOX if c in keys]), boxes], axis=1)
